"""Derives and checks the Winograd matrices of winograd.rs, in exact rationals.

    python3 crates/models/src/fast/winograd_matrices.py

For F(2, r) (2 outputs of an r-tap correlation, alpha = r + 1 inputs) from the points
0, 1, -1 (and 2, -2 for r = 5) and infinity, Cook-Toom gives A^T and G; B^T then solves
sum_j A^T[i][j] G[j][k] B^T[j][l] = [l == i + k] for every output i, tap k and input l,
i.e. y_i = sum_k g_k d_{i+k} = (A^T [(G g) * (B^T d)])_i for all g, d. The same trilinear
identity read the other way gives the weight gradient, F(r, 2):
dw_k = sum_i f_i d_{i+k} = (G^T [(A f) * (B^T d)])_k. The 2-D algorithms nest the 1-D ones.

The script prints the derived matrices and checks that the tables in winograd.rs (copied
below; F(2,3) with two rows' signs flipped, which leaves the identity intact) satisfy it.
"""
from fractions import Fraction as F


def cook_toom(m, r, pts):
    a = m + r - 1
    at = [[F(p) ** i for p in pts] + [F(int(i == m - 1))] for i in range(m)]
    f = []
    for j, p in enumerate(pts):
        prod = F(1)
        for q in pts[:j] + pts[j + 1:]:
            prod *= p - q
        f.append(prod)
    g = [[F(p) ** k / f[j] for k in range(r)] for j, p in enumerate(pts)]
    g.append([F(int(k == r - 1)) for k in range(r)])
    bt = [[F(0)] * a for _ in range(a)]
    for l in range(a):
        # Rows (i, k) of the linear system in the unknowns bt[0..a][l].
        rows = [[at[i][j] * g[j][k] for j in range(a)] + [F(int(l == i + k))]
                for i in range(m) for k in range(r)]
        pivots = []
        for c in range(a):
            p = next(x for x in range(len(pivots), len(rows)) if rows[x][c] != 0)
            rows[len(pivots)], rows[p] = rows[p], rows[len(pivots)]
            piv = rows[len(pivots)]
            piv[:] = [v / piv[c] for v in piv]
            for x, row in enumerate(rows):
                if x != len(pivots) and row[c] != 0:
                    row[:] = [v - row[c] * w for v, w in zip(row, piv)]
            pivots.append(c)
        assert all(row[a] == 0 for row in rows[a:]), "inconsistent system"
        for c in range(a):
            bt[c][l] = rows[c][a]
    return at, g, bt


def check(m, r, at, g, bt):
    a = m + r - 1
    for i in range(m):
        for k in range(r):
            for l in range(a):
                s = sum(F(at[i][j]) * F(g[j][k]) * F(bt[j][l]) for j in range(a))
                assert s == int(l == i + k), (m, r, i, k, l, s)


# The tables of winograd.rs (F23_TABLES, F25_TABLES).
F23 = (
    [[1, 1, 1, 0], [0, 1, -1, -1]],
    [[1, 0, 0], [F(1, 2), F(1, 2), F(1, 2)], [F(1, 2), F(-1, 2), F(1, 2)], [0, 0, 1]],
    [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
)
F25 = (
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 1]],
    [[F(1, 4), 0, 0, 0, 0], [F(-1, 6)] * 5, [F(-1, 6), F(1, 6), F(-1, 6), F(1, 6), F(-1, 6)],
     [F(1, 24), F(1, 12), F(1, 6), F(1, 3), F(2, 3)],
     [F(1, 24), F(-1, 12), F(1, 6), F(-1, 3), F(2, 3)], [0, 0, 0, 0, 1]],
    [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
     [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
)

if __name__ == "__main__":
    for r, pts, used in [(3, [0, 1, -1], F23), (5, [0, 1, -1, 2, -2], F25)]:
        at, g, bt = cook_toom(2, r, [F(p) for p in pts])
        check(2, r, at, g, bt)
        print(f"F(2,{r}), points {pts} and infinity")
        for name, mat in [("A^T", at), ("G", g), ("B^T", bt)]:
            print(f"  {name}: {[[str(v) for v in row] for row in mat]}")
        check(2, r, *used)
        print(f"  winograd.rs tables for F(2,{r}) satisfy the identity")
