"""Reference values for crates/uq/tests/it/metrics.rs.

An independent, literal transcription of the metric definitions of ferbayes-uq, in plain Python
(standard library only). Inputs are rounded to float32 first, as the Rust code reads them.
Run: python3 crates/uq/tests/reference/metrics_reference.py
"""
import math
import struct


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def rows(xs):
    return [[f32(v) for v in r] for r in xs]


def argmax(p):
    best = 0
    for k in range(len(p)):
        if p[k] > p[best]:
            best = k
    return best


def in_bin(v, b, bins):
    lo, hi = b / bins, (b + 1) / bins
    return (lo < v <= hi) or (b == 0 and v <= 0.0)


def ece(probs, labels, bins):
    n = len(probs)
    total = 0.0
    for b in range(bins):
        members = [i for i in range(n) if in_bin(max(probs[i]), b, bins)]
        if not members:
            continue
        acc = sum(1.0 for i in members if argmax(probs[i]) == labels[i]) / len(members)
        conf = sum(max(probs[i]) for i in members) / len(members)
        total += len(members) / n * abs(acc - conf)
    return total


def classwise_ece(probs, labels, bins):
    n, k_count = len(probs), len(probs[0])
    per_class = []
    for k in range(k_count):
        total = 0.0
        for b in range(bins):
            members = [i for i in range(n) if in_bin(probs[i][k], b, bins)]
            if not members:
                continue
            freq = sum(1.0 for i in members if labels[i] == k) / len(members)
            conf = sum(probs[i][k] for i in members) / len(members)
            total += len(members) / n * abs(freq - conf)
        per_class.append(total)
    return sum(per_class) / k_count


def aurc(probs, labels):
    order = sorted(range(len(probs)), key=lambda i: -max(probs[i]))  # stable
    risks, errors = [], 0
    for rank, i in enumerate(order, start=1):
        errors += argmax(probs[i]) != labels[i]
        risks.append(errors / rank)
    return sum(risks) / len(risks)


def entropy(p):
    return -sum(v * math.log(v) for v in p if v > 0)


def mean_rows(samples):
    n = len(samples)
    return [[f32(sum(s[i][k] for s in samples) / n) for k in range(len(samples[0][0]))]
            for i in range(len(samples[0]))]


def uncertainty(samples):
    pbar = mean_rows(samples)
    total = sum(entropy(p) for p in pbar) / len(pbar)
    aleatoric = sum(sum(entropy(p) for p in s) / len(s) for s in samples) / len(samples)
    return total, aleatoric, total - aleatoric


def kl2(a, b):
    return sum(x * math.log2(x / y) for x, y in zip(a, b) if x > 0)


def jsd(c, p):
    m = [(x + y) / 2 for x, y in zip(c, p)]
    return 0.5 * kl2(c, m) + 0.5 * kl2(p, m)


def kl(c, p):
    return sum(x * (math.log(x) - math.log(max(y, 1e-12))) for x, y in zip(c, p) if x > 0)


def pearson(x, y):
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy)


def show(name, value):
    print(f"{name} = {value:.15f}")


# Case A: 3 faces, 3 classes, confidences on the bin edges of 4 bins.
probs_a = rows([[0.5, 0.25, 0.25], [0.125, 0.75, 0.125], [0.25, 0.25, 0.5]])
labels_a = [0, 0, 2]
show("ece_a_4bins", ece(probs_a, labels_a, 4))
show("classwise_ece_a_4bins", classwise_ece(probs_a, labels_a, 4))
show("aurc_a", aurc(probs_a, labels_a))

# Case B: 4 faces with non-dyadic probabilities, 15 bins (the default).
probs_b = rows([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.1, 0.3, 0.6], [0.05, 0.9, 0.05]])
labels_b = [0, 1, 2, 1]
show("ece_b_15bins", ece(probs_b, labels_b, 15))
show("classwise_ece_b_15bins", classwise_ece(probs_b, labels_b, 15))
show("aurc_b", aurc(probs_b, labels_b))

# Mutual information: 2 faces x 2 samples, then 3 samples with non-dyadic values.
s0 = rows([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
s1 = rows([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])
h, a, e = uncertainty([s0, s1])
show("uncertainty_2x2_entropy", h)
show("uncertainty_2x2_aleatoric", a)
show("uncertainty_2x2_epistemic", e)
t0 = rows([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
t1 = rows([[0.3, 0.6, 0.1], [0.25, 0.15, 0.6]])
t2 = rows([[0.5, 0.4, 0.1], [0.1, 0.3, 0.6]])
h, a, e = uncertainty([t0, t1, t2])
show("uncertainty_3x2_entropy", h)
show("uncertainty_3x2_aleatoric", a)
show("uncertainty_3x2_epistemic", e)

# Crowd metrics.
crowd = rows([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]])
pred = rows([[1.0, 0.0, 0.0], [0.25, 0.25, 0.5], [0.2, 0.5, 0.3]])
for i in range(3):
    show(f"jsd_{i}", jsd(crowd[i], pred[i]))
    show(f"kl_{i}", kl(crowd[i], pred[i]))
show("mean_jsd", sum(jsd(c, p) for c, p in zip(crowd, pred)) / 3)
show("mean_kl", sum(kl(c, p) for c, p in zip(crowd, pred)) / 3)
show("soft_accuracy", sum(sum(min(a, b) for a, b in zip(c, p)) for c, p in zip(crowd, pred)) / 3)

# Pearson.
show("pearson_1234", pearson([1, 2, 3, 4], [1, 3, 2, 5]))
ent_probs = rows([[1.0, 0.0], [0.5, 0.5], [0.75, 0.25]])
crowd_h = [f32(v) for v in [0.1, 0.9, 0.5]]
show("entropy_corr", pearson([entropy(p) for p in ent_probs], crowd_h))
