"""Reference outputs of the BatchEnsemble layers' tests (tests/reference/mod.rs): each member g
as a plain layer with its own explicit weight W_g = W * (s_g r_g^T) (conv: s_g on the output
channels, r_g on the input channels) and bias b_g, on its block of rows.

Run: python3 crates/models/tests/reference/batch_ensemble.py
"""

import numpy as np


def show(name, a):
    print(f"{name} = {[float(v) for v in np.ravel(a)]}")


# Linear: M = 2 members, B = 2 rows each, in 3, out 2.
W = np.array([[0.5, -1.0, 0.25], [0.75, 0.125, -0.5]])
r = np.array([[1.0, 0.5, -1.5], [2.0, -0.25, 0.75]])  # fast_in (M, in)
s = np.array([[0.5, 1.25], [-1.0, 1.5]])  # fast_out (M, out)
b = np.array([[0.1, -0.2], [0.3, 0.05]])  # bias, member-major (M * out)
x = np.array([[1.0, 2.0, -1.0], [0.5, -0.5, 0.25], [-1.0, 0.0, 2.0], [0.25, 1.5, -0.75]])
ys = []
for g in range(2):
    Wg = W * np.outer(s[g], r[g])
    ys.append(x[2 * g : 2 * g + 2] @ Wg.T + b[g])
show("LINEAR_Y", np.concatenate(ys))

# Conv: M = 2 members, B = 1 row each, in 2, out 2, 3x3, padding 1, 3x3 maps; values by formula
# (the test builds the same ones).
n = np.arange(36)
cW = ((((n * 5) % 11) - 5) / 4.0).reshape(2, 2, 3, 3)
cr = np.array([[1.5, -0.5], [0.75, 1.25]])
cs = np.array([[-1.0, 0.5], [2.0, 0.25]])
cb = np.array([[0.125, -0.25], [0.5, 0.0]])
m = np.arange(36)
cx = ((((m * 3) % 7) - 3) / 2.0).reshape(2, 2, 3, 3)
out = np.zeros((2, 2, 3, 3))
for g in range(2):
    Wg = cW * (cs[g][:, None] * cr[g][None, :])[:, :, None, None]
    xp = np.pad(cx[g], ((0, 0), (1, 1), (1, 1)))
    for o in range(2):
        for h in range(3):
            for w in range(3):
                out[g, o, h, w] = np.sum(xp[:, h : h + 3, w : w + 3] * Wg[o]) + cb[g, o]
show("CONV_Y", out)
