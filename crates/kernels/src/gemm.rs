//! The one place that calls the `unsafe` [`gemm::gemm`]: a safe, bounds-checked
//! single-precision wrapper.
// `gemm::gemm` takes raw pointers and strides; `sgemm` below checks every index it
// can reach against the slice lengths before the call, so callers stay safe code.
#![allow(unsafe_code)]

use gemm::Parallelism;

/// A read-only row-major-or-strided matrix view: element (i, j) is
/// `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

/// Highest index (i, j) < (rows, cols) reaches, if the matrix is non-empty.
fn last(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    (rows - 1) * rs + (cols - 1) * cs
}

/// `c (m x n, row stride ldc, column stride 1) = a (m x k) · b (k x n)`, or
/// `c += a · b` when `accumulate`. Panics when a view does not fit its slice or
/// `ldc < n` (rows of `c` would overlap). `parallel` lets gemm use rayon.
#[allow(clippy::too_many_arguments)]
pub(super) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: View<'_>,
    b: View<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    assert!(ldc >= n, "sgemm: ldc {ldc} < n {n}");
    checked_gemm(m, n, k, a, b, c, (ldc, 1), accumulate, parallel);
}

/// As [`sgemm`] with `c` column-major: element (i, j) at `c[i + j·ldc]`,
/// `ldc >= m`. gemm computes this orientation as asked, where a row-major `c`
/// makes it swap the operands (`cᵀ = bᵀ·aᵀ`); so the choice decides which
/// operand gemm repacks. Each entry's sum is the same either way: one
/// accumulator, k ascending, in depth blocks that depend on k alone.
#[allow(clippy::too_many_arguments)]
pub(super) fn sgemm_col_major(
    m: usize,
    n: usize,
    k: usize,
    a: View<'_>,
    b: View<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    assert!(ldc >= m, "sgemm_col_major: ldc {ldc} < m {m}");
    checked_gemm(m, n, k, a, b, c, (1, ldc), accumulate, parallel);
}

/// `c = a·b` (or `c += a·b`) with `c`'s element (i, j) at `c[i·rs + j·cs]`,
/// where the callers guarantee distinct (i, j) map to distinct elements.
#[allow(clippy::too_many_arguments)]
fn checked_gemm(
    m: usize,
    n: usize,
    k: usize,
    a: View<'_>,
    b: View<'_>,
    c: &mut [f32],
    (rs, cs): (usize, usize),
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(last(m, n, rs, cs) < c.len(), "sgemm: c too short");
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    c[i * rs + j * cs] = 0.0;
                }
            }
        }
        return;
    }
    assert!(last(m, k, a.rs, a.cs) < a.data.len(), "sgemm: a too short");
    assert!(last(k, n, b.rs, b.cs) < b.data.len(), "sgemm: b too short");
    let strides = [a.rs, a.cs, b.rs, b.cs, rs, cs];
    assert!(strides.iter().all(|&s| isize::try_from(s).is_ok()));
    let par = if parallel {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: checked above: every element gemm reads, a[i*rs + l*cs] for i < m,
    // l < k (and likewise b for l < k, j < n), lies inside its slice, and every
    // element it writes, c[i*rs + j*cs] for i < m, j < n, lies inside `c`; distinct
    // (i, j) map to distinct elements of `c` (the callers' stride checks: ldc >= the
    // other extent, the other stride 1), and `c` is a unique borrow, so it aliases
    // neither `a` nor `b`. Strides fit in isize. With `read_dst` false gemm never
    // reads `c`, so stale values there are harmless.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            cs as isize,
            rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0)
            .collect()
    }

    /// A column-major product equals the row-major one's transpose bit for bit,
    /// accumulating onto the same start values: shapes of the weight gradients
    /// (a = dy: Cout x n·P row-major, b = colᵀ: a transposed view), with
    /// m and n off the kernel's 16 x 6 blocks and depths beyond one 512 block.
    #[test]
    fn column_major_c_equals_row_major_c_bit_for_bit() {
        for (m, n, k) in [
            (32, 400, 256),
            (16, 25, 1024),
            (64, 576, 256),
            (5, 7, 1300),
            (3, 2, 9),
        ] {
            let a = values(m * k, 1);
            let b = values(n * k, 2);
            let av = View {
                data: &a,
                rs: k,
                cs: 1,
            };
            // bᵀ stored row-major as n x k: element (l, j) of b at j·k + l.
            let bv = View {
                data: &b,
                rs: 1,
                cs: k,
            };
            let start = values(m * n, 3);
            let mut row = start.clone();
            sgemm(m, n, k, av, bv, &mut row, n, true, false);
            let mut col = vec![0f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    col[i + j * m] = start[i * n + j];
                }
            }
            sgemm_col_major(m, n, k, av, bv, &mut col, m, true, false);
            for i in 0..m {
                for j in 0..n {
                    assert_eq!(
                        row[i * n + j].to_bits(),
                        col[i + j * m].to_bits(),
                        "{m}x{n}x{k} at ({i}, {j})"
                    );
                }
            }
            assert!(row != start, "{m}x{n}x{k}: nothing computed");
        }
    }
}
