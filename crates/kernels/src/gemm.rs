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
    // One call per depth block (see `depth_block`), each adding its sum into `c`.
    let block = depth_block(m, n, k, (a, b), (rs, cs));
    let mut start = 0;
    while start < k {
        let depth = block.min(k - start);
        // The block's first column of `a` and first row of `b`: in bounds, as start < k.
        let (a_block, b_block) = (&a.data[start * a.cs..], &b.data[start * b.rs..]);
        // SAFETY: checked above: every element gemm reads, a[i*rs + l*cs] for i < m,
        // l < k (and likewise b for l < k, j < n), lies inside its slice, so the
        // elements of a block, l in start..start + depth, lie inside the sub-slices
        // starting at l = start; every element it writes, c[i*rs + j*cs] for i < m,
        // j < n, lies inside `c`; distinct (i, j) map to distinct elements of `c` (the
        // callers' stride checks: ldc >= the other extent, the other stride 1), and `c`
        // is a unique borrow, so it aliases neither `a` nor `b`. Strides fit in isize.
        // With `read_dst` false gemm never reads `c`, so stale values there are harmless.
        unsafe {
            gemm::gemm(
                m,
                n,
                depth,
                c.as_mut_ptr(),
                cs as isize,
                rs as isize,
                accumulate || start > 0,
                a_block.as_ptr(),
                a.cs as isize,
                a.rs as isize,
                b_block.as_ptr(),
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
        start += depth;
    }
}

/// Depths up to this are summed by gemm in one block on every CPU.
const DEPTH_BLOCK: usize = 512;

/// The depth block length to call gemm with, so that a product rounds the same on every CPU.
///
/// gemm 0.19 sums a product's depth (k) in blocks, each block's sum added into `c`, so the
/// blocking decides the rounding. On its general path (neither its k <= 2 nor its
/// matrix-vector paths, and m or n over 64) it sizes the blocks from the L1 data cache
/// (`gemm_common::cache::kernel_params`): blocks of ⌈k / ⌈k / kc⌉⌉ with kc = 512 on a 32 KiB
/// 8-way L1, 1024 on a 48 KiB 12-way one, 672 on that one shared by two threads; so one
/// product rounded differently on different CPUs, and training with it (docs/results.md).
/// A depth of at most 512 is one block on every CPU, so such a product is cut here into
/// ⌈k / 512⌉ equal blocks (the last one shorter), exactly what a 32 KiB 8-way L1 gives, each
/// one gemm call. Every other product (gemm's fixed 512-long blocks when m and n are at most
/// 64, its matrix-vector paths) is one call, as gemm sums it the same everywhere. The paths
/// are gemm's: after it transposes a product whose `c` is column-oriented.
fn depth_block(
    m: usize,
    n: usize,
    k: usize,
    (a, b): (View<'_>, View<'_>),
    (rs, cs): (usize, usize),
) -> usize {
    // gemm's own view: lhs (m x k), rhs (k x n), dst (m x n), transposed when `c` is
    // column-oriented (dst_cs < dst_rs).
    let (m, n, dst_rs, dst_cs, lhs, rhs) = if cs < rs {
        (n, m, cs, rs, (b.cs, b.rs), (a.cs, a.rs))
    } else {
        (m, n, rs, cs, (a.rs, a.cs), (b.rs, b.cs))
    };
    let ((lhs_rs, lhs_cs), (rhs_rs, rhs_cs)) = (lhs, rhs);
    let gemv = (n <= 1 && lhs_rs == 1 && dst_rs == 1)
        || (n <= 1 && lhs_cs == 1 && rhs_rs == 1)
        || (m <= 1 && rhs_cs == 1 && dst_cs == 1)
        || (m <= 1 && rhs_rs == 1 && lhs_cs == 1);
    // (A depth over 512 is also past gemm's k <= 2 path.)
    let cache_sized = k > DEPTH_BLOCK && !gemv && (m > 64 || n > 64);
    if cache_sized {
        k.div_ceil(k.div_ceil(DEPTH_BLOCK))
    } else {
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `c = a·b` summed as gemm's f32 microkernels sum on an FMA CPU: per entry one
    /// accumulator, a fused multiply-add per depth step in ascending order, each block's sum
    /// then added into `c`; blocks of `block(k)` (an independent model of the blocking).
    fn blocked_reference(
        (m, n, k): (usize, usize, usize),
        a: &[f32],
        b: &[f32],
        block: usize,
    ) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut start = 0;
                while start < k {
                    let end = (start + block).min(k);
                    let mut acc = 0f32;
                    for l in start..end {
                        acc = a[i * k + l].mul_add(b[l * n + j], acc);
                    }
                    c[i * n + j] = if start == 0 { acc } else { c[i * n + j] + acc };
                    start = end;
                }
            }
        }
        c
    }

    /// Products whose depth blocks gemm would size from the CPU's L1 cache (m or n over 64,
    /// k over 512) are summed in ⌈k / 512⌉ equal blocks, whatever the CPU: bit for bit the
    /// blocked reference (run with a 48 KiB 12-way L1 described under /sys, they differed
    /// before `depth_block`); small products keep gemm's own fixed 512-long blocks.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn every_cpu_sums_a_product_in_the_same_depth_blocks() {
        if !std::arch::is_x86_feature_detected!("fma") {
            return;
        }
        for (m, n, k, block) in [
            (128, 128, 513, 257),
            (128, 128, 1024, 512),
            (16, 576, 2304, 461),
            (96, 40, 1300, 434),
            (64, 64, 2304, 512),
            (8, 32, 1300, 512),
        ] {
            let a = values(m * k, 4);
            let b = values(k * n, 5);
            let mut c = vec![f32::NAN; m * n];
            let av = View {
                data: &a,
                rs: k,
                cs: 1,
            };
            let bv = View {
                data: &b,
                rs: n,
                cs: 1,
            };
            sgemm(m, n, k, av, bv, &mut c, n, false, false);
            let want = blocked_reference((m, n, k), &a, &b, block);
            let differ = c
                .iter()
                .zip(&want)
                .filter(|(x, y)| x.to_bits() != y.to_bits())
                .count();
            assert_eq!(
                differ, 0,
                "{m}x{n}x{k}: {differ} entries off blocks of {block}"
            );
        }
    }

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
