"""Closed-form reference values for the Flipout layers' tests (tests/reference/mod.rs).

A variational layer's output, y = conv(x, mu) + b + conv(x * s_in, sigma * eps) * s_out with
eps ~ N(0, 1) and Rademacher signs, has E[y] = conv(x, mu) + b and, since the perturbation is a
sum of independent zero-mean normals whatever the signs, Var[y_j] = sum over the receptive field
of x^2 * sigma_j^2 (linear: sum_i x_i^2 sigma_ji^2). sigma = softplus(rho) = log1p(exp(rho)).
KL(q || N(0, sp^2)) = sum [ln(sp / sigma) + (sigma^2 + mu^2) / (2 sp^2) - 1/2], and its gradient
d/dmu = mu / sp^2, d/drho = (sigma / sp^2 - 1 / sigma) * sigmoid(rho).

Run: python3 crates/models/tests/reference/flipout.py
"""

import numpy as np

np.set_printoptions(precision=17)


def softplus(r):
    return np.log1p(np.exp(r))


def kl(mu, rho, sp):
    s = softplus(rho)
    return np.sum(np.log(sp / s) + (s**2 + mu**2) / (2 * sp**2) - 0.5)


def show(name, a):
    print(f"{name} = {[float(v) for v in np.ravel(a)]}")


# The linear layer (out 3, in 4): every value exact in f32.
mu = np.array([[0.5, -0.25, 0.125, 1.0], [-0.75, 0.375, 0.0, -0.5], [0.25, 0.625, -1.0, 0.875]])
rho = np.array([[-3.0, -2.5, -2.0, -1.5], [-1.0, -0.5, 0.0, 0.5], [-4.0, -1.25, -0.75, -2.25]])
b = np.array([0.125, -0.5, 0.25])
x = np.array([1.0, -0.5, 2.0, 0.75])
sig = softplus(rho)
show("LINEAR_MEAN", mu @ x + b)
show("LINEAR_VAR", (sig**2) @ (x**2))
show("LINEAR_KL (prior 0.5, 1.0)", [kl(mu, rho, 0.5), kl(mu, rho, 1.0)])
sp = 0.5
show("LINEAR_KL_GRAD_MU (prior 0.5)", mu / sp**2)
show("LINEAR_KL_GRAD_RHO (prior 0.5)", (sig / sp**2 - 1 / sig) / (1 + np.exp(-rho)))

# The conv layer: weight (2, 2, 3, 3), padding 1, stride 1, input (1, 2, 4, 4), values by formula
# (the test builds the same ones).
n = np.arange(36)
cmu = (((n * 37) % 17) - 8) / 16.0
crho = -3.0 + ((n * 13) % 11) / 4.0
cmu, crho = cmu.reshape(2, 2, 3, 3), crho.reshape(2, 2, 3, 3)
cb = np.array([0.25, -0.125])
m = np.arange(32)
cx = ((((m * 7) % 13) - 6) / 8.0).reshape(2, 4, 4)
xp = np.pad(cx, ((0, 0), (1, 1), (1, 1)))
csig = softplus(crho)
mean = np.zeros((2, 4, 4))
var = np.zeros((2, 4, 4))
for o in range(2):
    for h in range(4):
        for w in range(4):
            patch = xp[:, h : h + 3, w : w + 3]
            mean[o, h, w] = np.sum(patch * cmu[o]) + cb[o]
            var[o, h, w] = np.sum(patch**2 * csig[o] ** 2)
show("CONV_MEAN", mean)
show("CONV_VAR", var)
show("CONV_KL (prior 0.5)", [kl(cmu, crho, 0.5)])
