"""Reference values for crates/uq/tests/it/detection.rs.

Recomputes the OOD detection and selective prediction metrics of crates/uq/src/detection.rs
on pseudo-random inputs with scikit-learn and numpy, and prints them as Rust constants to paste
into the test. The inputs come from a 64-bit LCG (Knuth's MMIX constants) written identically in
the Rust test, quantised so that many scores tie.

Setup and run (from the repository root):
    python3 -m venv /tmp/skvenv && /tmp/skvenv/bin/pip install scikit-learn numpy
    /tmp/skvenv/bin/python crates/uq/tests/reference/detection_reference.py

FPR at 95 % TPR. The Rust definition: tau = the largest value with #{out >= tau} / n_out >= tpr,
FPR = #{in >= tau} / n_in. sklearn's roc_curve flags scores >= threshold, one threshold per
distinct score value, descending, with tpr = tps / tps[-1] and fpr = fps / fps[-1]. Going down
the thresholds, the TPR only grows, so the first index with tpr_curve >= 0.95
(np.searchsorted(tpr_curve, 0.95, side="left"), tpr_curve being non-decreasing) is the largest
distinct score tau with #{out >= tau} / n_out >= 0.95 -- the Rust tau (the largest real value
meeting the condition is a score: raising tau past a score value only loses OOD inputs) -- and
fpr_curve there is #{in >= tau} / n_in. That holds only with drop_intermediate=False: the default
drop_intermediate=True removes the points in the middle of straight segments of the ROC curve,
and when the point at tau is one of them searchsorted lands on the next kept point, whose FPR can
be larger. The script computes all three (the direct definition, roc_curve without and with
drop_intermediate) and checks the first two agree; it prints whether the third does too.
"""
import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

MASK = (1 << 64) - 1
A = 6364136223846793005
C = 1442695040888963407


class Lcg:
    """state <- A * state + C mod 2^64; a uniform in [0, 1) from the top 53 bits."""

    def __init__(self, seed):
        self.state = seed & MASK

    def uniform(self):
        self.state = (A * self.state + C) & MASK
        return (self.state >> 11) / float(1 << 53)


def detection_inputs():
    """200 in-distribution scores then 150 OOD scores, on a grid of 1/40 (many ties)."""
    rng = Lcg(20240601)
    ins = [math.floor(rng.uniform() * 40.0) / 40.0 for _ in range(200)]
    outs = [math.floor((0.25 + 0.75 * rng.uniform()) * 40.0) / 40.0 for _ in range(150)]
    return np.array(ins), np.array(outs)


def selective_inputs():
    """300 faces: confidence on a grid of 1/20, correct with probability 0.2 + 0.8 * confidence."""
    rng = Lcg(7)
    conf, correct = [], []
    for _ in range(300):
        c = math.floor(rng.uniform() * 20.0) / 20.0
        conf.append(c)
        correct.append(rng.uniform() < 0.2 + 0.8 * c)
    return np.array(conf), np.array(correct, dtype=bool)


def fpr_direct(ins, outs, tpr):
    """The Rust definition, literally (k / n compared in float64 as in Rust)."""
    n_out = len(outs)
    k = next(k for k in range(1, n_out + 1) if k / n_out >= tpr)
    tau = np.sort(outs)[::-1][k - 1]
    assert np.sum(outs >= tau) / n_out >= tpr
    assert all(np.sum(outs >= t) / n_out < tpr for t in np.unique(outs) if t > tau)
    return np.sum(ins >= tau) / len(ins)


def fpr_sklearn(ins, outs, tpr, drop_intermediate):
    y = np.r_[np.zeros(len(ins)), np.ones(len(outs))]
    s = np.r_[ins, outs]
    fpr_curve, tpr_curve, _ = roc_curve(y, s, drop_intermediate=drop_intermediate)
    return fpr_curve[np.searchsorted(tpr_curve, tpr, side="left")]


def mann_whitney(ins, outs):
    """O(n^2) cross-check of roc_auc_score: P(out > in) + P(out == in) / 2."""
    greater = (outs[:, None] > ins[None, :]).sum()
    ties = (outs[:, None] == ins[None, :]).sum()
    return (greater + 0.5 * ties) / (len(ins) * len(outs))


def ranked(conf, correct):
    """correct in order of confidence, descending, ties in input order (stable)."""
    return correct[np.argsort(-conf, kind="stable")]


def risk_coverage(conf, correct):
    r = ranked(conf, correct)
    k = np.arange(1, len(r) + 1)
    return k / len(r), np.cumsum(~r) / k


def accuracy_at_coverage(conf, correct, coverage):
    r = ranked(conf, correct)
    n = len(r)
    k = next(k for k in range(1, n + 1) if k / n >= coverage or k == n)
    return r[:k].sum() / k


def coverage_at_accuracy(conf, correct, accuracy):
    r = ranked(conf, correct)
    k = np.arange(1, len(r) + 1)
    ok = np.cumsum(r) / k >= accuracy
    return k[ok].max() / len(r) if ok.any() else 0.0


def r(x):
    """Shortest round-trip repr of a Python or numpy float (a valid Rust f64 literal)."""
    return repr(float(x))


def main():
    ins, outs = detection_inputs()
    y = np.r_[np.zeros(len(ins)), np.ones(len(outs))]
    s = np.r_[ins, outs]
    auroc = roc_auc_score(y, s)
    assert abs(auroc - mann_whitney(ins, outs)) < 1e-14
    ap = average_precision_score(y, s)
    print("// detection: 200 in (seed 20240601), 150 out")
    print(f"const PY_AUROC: f64 = {r(auroc)};")
    print(f"const PY_AUPR: f64 = {r(ap)};")
    for name, tpr in (("FPR95", 0.95), ("FPR80", 0.8)):
        direct = fpr_direct(ins, outs, tpr)
        sk = fpr_sklearn(ins, outs, tpr, drop_intermediate=False)
        assert direct == sk, (name, direct, sk)
        dropped = fpr_sklearn(ins, outs, tpr, drop_intermediate=True)
        print(f"// {name}: roc_curve(drop_intermediate=True) gives {r(dropped)}"
              f" ({'same' if dropped == sk else 'differs'})")
        print(f"const PY_{name}: f64 = {r(sk)};")
    # drop_intermediate=True can differ: three tied pairs on a diagonal ROC, in = out = [3, 2, 1].
    # At TPR >= 0.5 the Rust tau is 2 (2 of 3 OOD flagged) and the FPR 2/3; the default roc_curve
    # keeps only (0, 0) and (1, 1) and so reports 1.
    small = np.array([3.0, 2.0, 1.0])
    assert fpr_direct(small, small, 0.5) == fpr_sklearn(small, small, 0.5, False) == 2 / 3
    print(f"// in = out = [3, 2, 1], TPR 0.5: direct {r(fpr_direct(small, small, 0.5))},"
          f" drop_intermediate=True {r(fpr_sklearn(small, small, 0.5, True))}")
    # The swapped roles reverse the detector: AUROC 1 - a.
    print(f"const PY_AUROC_SWAPPED: f64 = {r(roc_auc_score(1 - y, s))};")
    print(f"const PY_AUPR_SWAPPED: f64 = {r(average_precision_score(1 - y, s))};")

    conf, correct = selective_inputs()
    coverage, risk = risk_coverage(conf, correct)
    print("// selective: 300 faces (seed 7)")
    print(f"const PY_SEL_AURC: f64 = {r(risk.mean())};")
    print(f"const PY_SEL_CORRECT: usize = {int(correct.sum())};")
    picks = [1, 10, 75, 150, 299, 300]
    print(f"const PY_RISK_AT: [(usize, f64); {len(picks)}] = [")
    for k in picks:
        print(f"    ({k}, {r(risk[k - 1])}),")
    print("];")
    covs = [0.0, 0.1, 0.25, 0.5, 0.9, 1.0]
    print(f"const PY_ACC_AT_COV: [(f64, f64); {len(covs)}] = [")
    for c in covs:
        print(f"    ({r(c)}, {r(accuracy_at_coverage(conf, correct, c))}),")
    print("];")
    accs = [0.5, 0.7, 0.8, 0.9, 0.95, 1.0]
    print(f"const PY_COV_AT_ACC: [(f64, f64); {len(accs)}] = [")
    for a in accs:
        print(f"    ({r(a)}, {r(coverage_at_accuracy(conf, correct, a))}),")
    print("];")


if __name__ == "__main__":
    main()
