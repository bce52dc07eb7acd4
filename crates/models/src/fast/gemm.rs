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
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n, "sgemm: ldc {ldc} < n {n}");
    assert!(last(m, n, ldc, 1) < c.len(), "sgemm: c too short");
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                c[i * ldc..i * ldc + n].fill(0.0);
            }
        }
        return;
    }
    assert!(last(m, k, a.rs, a.cs) < a.data.len(), "sgemm: a too short");
    assert!(last(k, n, b.rs, b.cs) < b.data.len(), "sgemm: b too short");
    let strides = [a.rs, a.cs, b.rs, b.cs, ldc];
    assert!(strides.iter().all(|&s| isize::try_from(s).is_ok()));
    let par = if parallel {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: checked above: every element gemm reads, a[i*rs + l*cs] for i < m,
    // l < k (and likewise b for l < k, j < n), lies inside its slice, and every
    // element it writes, c[i*ldc + j] for i < m, j < n, lies inside `c`; distinct
    // (i, j) map to distinct elements of `c` since ldc >= n, and `c` is a unique
    // borrow, so it aliases neither `a` nor `b`. Strides fit in isize. With
    // `read_dst` false gemm never reads `c`, so stale values there are harmless.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
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
