"""Reference values for crates/uq/tests/it/predictive.rs: the per-face split of the predictive
entropy (mean prediction, entropy, aleatoric and epistemic parts, predicted class), written from
the definitions in plain Python (standard library only).

The mean of n samples is summed in f64 in sample order, divided by n and rounded to f32; the
predictive entropy is that of the f32 mean; the aleatoric part is the mean of the samples'
entropies; the epistemic part their difference (not clamped). The predicted class is the first
largest mean probability. Inputs are f32, as the pipeline stores them.

Run: python3 crates/uq/tests/reference/predictive_reference.py
The Rust test embeds the printed values (PY_* constants).
"""
import math
import struct


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def rows(xs):
    return [[f32(v) for v in r] for r in xs]


def entropy(p):
    return -sum(v * math.log(v) for v in p if v > 0.0)


def argmax(p):
    best = 0
    for k in range(len(p)):
        if p[k] > p[best]:
            best = k
    return best


def split(samples):
    n = len(samples)
    mean = [f32(sum(s[k] for s in samples) / n) for k in range(len(samples[0]))]
    h = entropy(mean)
    aleatoric = sum(entropy(s) for s in samples) / n
    return mean, h, aleatoric, h - aleatoric, argmax(mean)


# Face "mc": four MC passes that disagree (K = 8).
MC = rows(
    [
        [0.50, 0.20, 0.10, 0.05, 0.05, 0.04, 0.03, 0.03],
        [0.10, 0.60, 0.10, 0.05, 0.05, 0.04, 0.03, 0.03],
        [0.30, 0.30, 0.20, 0.05, 0.05, 0.04, 0.03, 0.03],
        [0.45, 0.15, 0.15, 0.10, 0.05, 0.04, 0.03, 0.03],
    ]
)
# Face "tie": the mean has 0.375 at classes 2 and 5 (dyadic, exact): the first (2) is predicted.
TIE = rows(
    [
        [0.0, 0.0, 0.5, 0.0, 0.0, 0.25, 0.25, 0.0],
        [0.0, 0.0, 0.25, 0.0, 0.0, 0.5, 0.25, 0.0],
        [0.0, 0.0, 0.5, 0.0, 0.0, 0.25, 0.25, 0.0],
        [0.0, 0.0, 0.25, 0.0, 0.0, 0.5, 0.25, 0.0],
    ]
)
# Two samples a few ulps apart (found by a random search): the exact mean's mutual information
# is ~0, and rounding the mean to f32 lowers its entropy below the samples' mean entropy.
NEAR = rows(
    [
        [0.042268358170986176, 0.18193809688091278, 0.1308959573507309, 0.17402184009552002,
         0.1282373070716858, 0.23613083362579346, 0.027967482805252075, 0.0785401239991188],
        [0.042268358170986176, 0.18193809688091278, 0.1308959424495697, 0.17402184009552002,
         0.12823732197284698, 0.23613083362579346, 0.027967482805252075, 0.0785401239991188],
    ]
)

for name, samples in [("MC", MC), ("TIE", TIE), ("NEAR", NEAR)]:
    mean, h, a, e, k = split(samples)
    print(f"const PY_{name}_MEAN: [f32; 8] = [{', '.join(repr(v) for v in mean)}];")
    print(f"// entropy, aleatoric, epistemic; predicted class {k}")
    print(f"const PY_{name}_SPLIT: [f64; 3] = [{h!r}, {a!r}, {e!r}];")
    # The split after the first n samples (the running accumulator's values).
    for n in range(1, len(samples)):
        mean, h, a, e, k = split(samples[:n])
        print(f"// first {n}: entropy {h!r}, aleatoric {a!r}, epistemic {e!r}, class {k}")
