"""Reference values for crates/posterior/tests/it/swag.rs (writes swag.json beside it).

SWAG moments after a hand-written trajectory of six f32 vectors of dimension 5 with rank 3,
computed directly (np.mean over the vectors so far, not a running update): the mean, the mean of
squares, the diagonal variance max(E[x^2] - E[x]^2, 0), the deviation columns theta_i - mean_i
(the mean including theta_i) of the last `rank` vectors, oldest first, rounded to f32; the same
after the first two vectors only (K = 2 < rank); samples for fixed z1, z2:
    full:     mean + sqrt(var) * z1 / sqrt(2) + D z2 / sqrt(2 (K - 1))
    diagonal: mean + sqrt(var) * z1
and the covariance the full samples must approach, diag(var) / 2 + D D^T / (2 (K - 1)).

Run: python3 crates/posterior/tests/reference/swag.py   (numpy)
"""

import json
import pathlib

import numpy as np

RANK = 3
trajectory = np.array(
    [
        [0.50, -1.20, 2.00, 0.10, 3.30],
        [0.62, -1.05, 1.90, 0.10, 3.10],
        [0.41, -1.31, 2.22, 0.10, 3.45],
        [0.55, -1.12, 1.84, 0.10, 3.05],
        [0.70, -1.25, 2.10, 0.10, 3.60],
        [0.47, -1.18, 1.95, 0.10, 3.22],
    ],
    dtype=np.float32,
).astype(np.float64)
z1 = np.array([0.7, -1.3, 0.25, 1.9, -0.45])


def state(n):
    thetas = trajectory[:n]
    mean = thetas.mean(axis=0)
    sq_mean = (thetas**2).mean(axis=0)
    var = np.maximum(sq_mean - mean**2, 0.0)
    devs = [trajectory[i] - trajectory[: i + 1].mean(axis=0) for i in range(n)]
    D = np.array(devs[-RANK:], dtype=np.float32).astype(np.float64).T  # d x K, oldest first
    K = D.shape[1]
    z2 = np.array([1.1, -0.6, 0.35])[:K]
    full = mean + np.sqrt(var) * z1 / np.sqrt(2) + D @ z2 / np.sqrt(2 * (K - 1))
    diagonal = mean + np.sqrt(var) * z1
    cov = np.diag(var) / 2 + D @ D.T / (2 * (K - 1))
    return {
        "count": n,
        "mean": mean.tolist(),
        "sq_mean": sq_mean.tolist(),
        "variance": var.tolist(),
        "deviations": D.T.tolist(),
        "z2": z2.tolist(),
        "full": full.tolist(),
        "diagonal": diagonal.tolist(),
        "covariance": cov.reshape(-1).tolist(),
    }


out = {
    "rank": RANK,
    "trajectory": trajectory.tolist(),
    "z1": z1.tolist(),
    "states": [state(2), state(6)],
}
path = pathlib.Path(__file__).with_name("swag.json")
path.write_text(json.dumps(out, indent=1) + "\n")
