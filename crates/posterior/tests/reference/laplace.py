"""Reference values for crates/posterior/tests/it/laplace.rs (writes laplace.json beside it).

A softmax regression with K = 3 classes and F = 2 features on hand-written data, its last-layer
Laplace quantities computed independently of the Rust code: the GGN face by face with explicit
Jacobians J_n = kron(I_K, [phi_n, 1]) and dense products J_n^T Lambda_n J_n, the valid NLL of the
probit predictive for every prior precision of the grid with a dense inverse each, the posterior
covariance, Cholesky factor, logit variances and probit predictive at the chosen precision,
theta_MAP + L^-T z for two fixed z, and the sampled predictive's mean over 10^6 numpy draws.

Run: python3 crates/posterior/tests/reference/laplace.py   (numpy, scipy)
"""

import json
import pathlib

import numpy as np
import scipy.linalg

K, F = 3, 2
D = K * (F + 1)

# Training faces (N = 20) and valid faces (12, with labels); f32 as the network's features.
train = np.array(
    [
        [1.2, 0.3], [0.8, -0.4], [1.5, 0.9], [2.1, 0.1], [0.4, 0.2],
        [-0.7, 1.4], [-1.1, 0.8], [-0.2, 1.9], [-1.6, 1.1], [0.3, 1.2],
        [-0.5, -1.3], [-1.2, -0.6], [0.1, -1.8], [-0.9, -1.5], [-1.8, -0.2],
        [0.6, 0.7], [-0.3, 0.1], [1.0, -1.0], [-1.0, 0.0], [0.0, -0.5],
    ],
    dtype=np.float32,
).astype(np.float64)
valid = np.array(
    [
        [1.1, 0.2], [1.9, -0.3], [-0.8, 1.0], [-0.1, 1.6], [-0.6, -1.1],
        [-1.4, -0.9], [0.9, 0.9], [1.3, -0.8], [-1.2, 0.4], [0.2, -1.2],
        [2.2, 0.5], [-0.4, 2.1],
    ],
    dtype=np.float32,
).astype(np.float64)
valid_labels = np.array([0, 0, 1, 1, 2, 2, 1, 2, 0, 0, 0, 1])
# MAP last layer (W row-major K x F, b), f32 as the network stores it.
W = np.array([[1.6, -0.3], [-1.1, 1.4], [-0.5, -1.5]], dtype=np.float32).astype(np.float64)
b = np.array([0.2, -0.1, 0.05], dtype=np.float32).astype(np.float64)
theta_map = np.concatenate([W, b[:, None]], axis=1).reshape(-1)  # [W | b] row-major


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def jacobian(phi):
    return np.kron(np.eye(K), np.append(phi, 1.0)[None, :])  # K x D


G = np.zeros((D, D))
for phi in train:
    p = softmax(W @ phi + b)
    lam = np.diag(p) - np.outer(p, p)
    J = jacobian(phi)
    G += J.T @ lam @ J

grid = [10.0 ** (-4 + i / 4) for i in range(33)]


def probit(sigma, feats):
    out, var = [], []
    for phi in feats:
        J = jacobian(phi)
        v = np.diag(J @ sigma @ J.T)
        out.append(softmax((W @ phi + b) / np.sqrt(1 + np.pi / 8 * v)))
        var.append(v)
    return np.array(out), np.array(var)


nll = []
for delta in grid:
    sigma = np.linalg.inv(G + delta * np.eye(D))
    p, _ = probit(sigma, valid)
    nll.append(float(-np.mean(np.log(np.maximum(p[np.arange(len(valid)), valid_labels], 1e-12)))))
best = int(np.argmin(nll))  # first minimum: the smaller delta on a tie (grid ascending)
delta = grid[best]
P = G + delta * np.eye(D)
sigma = np.linalg.inv(P)
L = np.linalg.cholesky(P)
probs, var = probit(sigma, valid)

z = np.array(
    [
        [0.3, -1.2, 0.8, 0.05, -0.6, 1.7, -0.9, 0.4, 1.1],
        [-1.5, 0.2, -0.3, 2.0, 0.7, -0.1, 0.6, -1.8, 0.9],
    ]
)
theta_fixed = np.array([theta_map + scipy.linalg.solve_triangular(L.T, zt, lower=False) for zt in z])

# The sampled predictive's mean per valid face from 10^6 draws theta ~ N(theta_MAP, Sigma) (numpy's
# own generator), and the standard deviation of each softmax value over the draws.
rng = np.random.default_rng(20240611)
draws = 1_000_000
thetas = theta_map + rng.standard_normal((draws, D)) @ np.linalg.cholesky(sigma).T
mc_mean, mc_std = [], []
for phi in valid:
    phit = np.append(phi, 1.0)
    logits = thetas.reshape(draws, K, F + 1) @ phit
    s = softmax(logits)
    mc_mean.append(s.mean(axis=0))
    mc_std.append(s.std(axis=0))

out = {
    "classes": K,
    "features": F,
    "train_features": train.reshape(-1).tolist(),
    "valid_features": valid.reshape(-1).tolist(),
    "valid_labels": valid_labels.tolist(),
    "weight": W.reshape(-1).tolist(),
    "bias": b.tolist(),
    "ggn": G.reshape(-1).tolist(),
    "grid": grid,
    "nll": nll,
    "best": best,
    "prior_precision": delta,
    "covariance": sigma.reshape(-1).tolist(),
    "cholesky": L.reshape(-1).tolist(),
    "logit_variances": var.reshape(-1).tolist(),
    "probit": probs.reshape(-1).tolist(),
    "z": z.reshape(-1).tolist(),
    "theta_fixed": theta_fixed.reshape(-1).tolist(),
    "mc_draws": draws,
    "mc_mean": np.array(mc_mean).reshape(-1).tolist(),
    "mc_std": np.array(mc_std).reshape(-1).tolist(),
}
path = pathlib.Path(__file__).with_name("laplace.json")
path.write_text(json.dumps(out, indent=1) + "\n")
print("best", best, "delta", delta, "nll", [round(x, 4) for x in nll])
