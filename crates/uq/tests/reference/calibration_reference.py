"""Independent reference values for tests/it/calibration.rs: crowd ECE, classwise crowd ECE,
temperature scaling and split-conformal prediction sets, written from their definitions with
numpy/scipy (scipy.optimize for the temperature, scipy.stats.spearmanr for the rank correlation).

Run: python3 crates/uq/tests/reference/calibration_reference.py
The Rust tests embed the printed values (PY_* constants).
"""

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.stats import spearmanr

# Fixture shared with the Rust test (4 classes). Probabilities are f32 in the pipeline.
VALID = np.array(
    [
        [0.70, 0.10, 0.10, 0.10],
        [0.20, 0.50, 0.20, 0.10],
        [0.40, 0.40, 0.10, 0.10],
        [0.10, 0.10, 0.60, 0.20],
        [0.25, 0.25, 0.25, 0.25],
        [0.05, 0.05, 0.10, 0.80],
        [0.60, 0.30, 0.05, 0.05],
        [0.30, 0.30, 0.30, 0.10],
        [0.10, 0.80, 0.05, 0.05],
        [0.15, 0.15, 0.50, 0.20],
    ],
    dtype=np.float32,
).astype(np.float64)
VALID_LABELS = np.array([0, 1, 1, 2, 3, 3, 0, 2, 1, 0])

TEST = np.array(
    [
        [0.90, 0.05, 0.03, 0.02],
        [0.30, 0.40, 0.20, 0.10],
        [0.50, 0.20, 0.20, 0.10],
        [0.10, 0.20, 0.65, 0.05],
        [0.20, 0.20, 0.20, 0.40],
        [0.35, 0.35, 0.15, 0.15],
    ],
    dtype=np.float32,
).astype(np.float64)
TEST_LABELS = np.array([0, 1, 0, 2, 3, 1])
CROWD = np.array(
    [
        [0.8, 0.1, 0.1, 0.0],
        [0.3, 0.5, 0.2, 0.0],
        [0.4, 0.4, 0.1, 0.1],
        [0.1, 0.1, 0.8, 0.0],
        [0.2, 0.1, 0.3, 0.4],
        [0.3, 0.4, 0.0, 0.3],
    ],
    dtype=np.float32,
).astype(np.float64)
# FER+ multi_target: the classes with the most votes (ties all kept).
MULTI = [[0], [1], [0, 1], [2], [3], [1]]
BINS = 4
FLOOR = 1e-12


def bin_index(v, bins):
    """(lo, hi] equal-width bins, 0 in the first."""
    if v <= 0:
        return 0
    b = math.ceil(v * bins) - 1
    return min(max(b, 0), bins - 1)


def crowd_ece(probs, crowd, bins):
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    agree = crowd[np.arange(len(probs)), pred]
    idx = np.array([bin_index(v, bins) for v in conf])
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() / len(probs) * abs(conf[m].mean() - agree[m].mean())
    return total


def crowd_cw_ece(probs, crowd, bins):
    out = []
    for k in range(probs.shape[1]):
        idx = np.array([bin_index(v, bins) for v in probs[:, k]])
        s = 0.0
        for b in range(bins):
            m = idx == b
            if m.any():
                s += m.sum() / len(probs) * abs(crowd[m, k].mean() - probs[m, k].mean())
        out.append(s)
    return float(np.mean(out))


def tempered(probs, t):
    z = np.log(np.maximum(probs, FLOOR)) / t
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def tempered_nll(probs, labels, t):
    p = tempered(probs, t)
    return float(-np.mean(np.log(p[np.arange(len(labels)), labels])))


def fit_t(probs, labels):
    res = minimize_scalar(
        lambda lt: tempered_nll(probs, labels, math.exp(lt)),
        bounds=(math.log(0.05), math.log(20.0)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return math.exp(res.x)


def qhat(scores, alpha):
    m = len(scores)
    rank = math.ceil(round((m + 1) * (1 - alpha), 9))
    if rank > m:
        return math.inf
    return float(np.sort(scores)[rank - 1])


def set_metrics(probs, labels, multi, crowd, q):
    sets = [set(np.nonzero(1.0 - p <= q)[0].tolist()) for p in probs]
    coverage = np.mean([y in c for y, c in zip(labels, sets)])
    size = np.mean([len(c) for c in sets])
    recall = np.mean([len(c & set(m)) / len(m) for c, m in zip(sets, multi)])
    prec = [len(c & set(m)) / len(c) for c, m in zip(sets, multi) if c]
    precision = np.mean(prec) if prec else float("nan")
    exact = np.mean([c == set(m) for c, m in zip(sets, multi)])
    h = [-sum(v * math.log(v) for v in row if v > 0) for row in crowd]
    rho = spearmanr([len(c) for c in sets], h).correlation
    return [coverage, size, recall, precision, exact, rho]


def show(name, value):
    if isinstance(value, (list, tuple, np.ndarray)):
        print(f"{name} = [{', '.join(f'{float(v):.15f}' for v in value)}]")
    else:
        print(f"{name} = {float(value):.15f}")


show("crowd_ece_test_4bins", crowd_ece(TEST, CROWD, BINS))
show("crowd_cw_ece_test_4bins", crowd_cw_ece(TEST, CROWD, BINS))
show("tempered_nll_valid_t2", tempered_nll(VALID, VALID_LABELS, 2.0))
show("tempered_nll_valid_t05", tempered_nll(VALID, VALID_LABELS, 0.5))
t = fit_t(VALID, VALID_LABELS)
show("fitted_t_valid", t)
show("tempered_test_row0_at_fitted_t", tempered(TEST, t)[0])
scores = 1.0 - VALID[np.arange(len(VALID)), VALID_LABELS]
for alpha in (0.05, 0.1, 0.2):
    q = qhat(scores, alpha)
    show(f"qhat_alpha_{alpha}", q if math.isfinite(q) else -1.0)
    show(f"set_metrics_alpha_{alpha}", set_metrics(TEST, TEST_LABELS, MULTI, CROWD, q))
show("spearman_ties", spearmanr([1, 2, 2, 3, 1, 4], [0.1, 0.5, 0.4, 0.9, 0.2, 0.3]).correlation)
