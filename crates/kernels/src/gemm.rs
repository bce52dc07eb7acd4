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
    checked_gemm(
        m,
        n,
        k,
        a,
        b,
        c,
        (ldc, 1),
        accumulate,
        parallel,
        Blocks::Gemm,
    );
}

/// [`sgemm`] whose every entry is summed the same way whatever m and n are (see
/// [`Blocks::Uniform`]): entry (i, j) of `c` depends on row i of `a` and column j of `b` alone,
/// never on how many other rows or columns share the call, so a layer's output for a face does
/// not depend on the batch it is computed in (nor on the group of samples an im2col product
/// holds). The forward products of an inference pass use it (convolution, Winograd's per-tile
/// products, the linear layer: [`Sums::Independent`]), so `ferbayes predict` on one face gives
/// bit for bit the probabilities infer wrote for it among 256.
///
/// gemm 0.19 has five ways to sum a product, chosen from m, n, k and the strides: dot-product
/// ("horizontal") kernels when `a` and `b` are both contiguous along the depth and m·n <= 256,
/// matrix-vector kernels when m or n is 1, a k <= 2 path, and its microkernels, which sum each
/// entry in one accumulator, a fused multiply-add per depth step in ascending order, per depth
/// block. This wrapper always reaches the microkernels: `a` and `b` are copied row-major when
/// they are not (then `b` is never contiguous along the depth), a side of 1 is doubled, and the
/// depth is cut into the same blocks whatever m and n.
#[allow(clippy::too_many_arguments)]
pub(super) fn sgemm_rows(
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
    assert!(ldc >= n, "sgemm_rows: ldc {ldc} < n {n}");
    if m == 0 || n == 0 {
        return;
    }
    assert!(last(m, n, ldc, 1) < c.len(), "sgemm: c too short");
    if k > 0 {
        assert!(last(m, k, a.rs, a.cs) < a.data.len(), "sgemm: a too short");
        assert!(last(k, n, b.rs, b.cs) < b.data.len(), "sgemm: b too short");
    }
    // Row-major copies where needed, a side of 1 doubled (the copy repeated).
    let (m2, n2) = (m.max(2), n.max(2));
    let a2: Option<Vec<f32>> = (a.cs != 1 || m == 1).then(|| {
        (0..m2 * k)
            .map(|x| a.data[(x / k).min(m - 1) * a.rs + (x % k) * a.cs])
            .collect()
    });
    let b2: Option<Vec<f32>> = (b.cs != 1 || n == 1).then(|| {
        (0..k * n2)
            .map(|x| b.data[(x / n2) * b.rs + (x % n2).min(n - 1) * b.cs])
            .collect()
    });
    let av = a2.as_deref().map_or(a, |data| View { data, rs: k, cs: 1 });
    let bv = b2.as_deref().map_or(b, |data| View {
        data,
        rs: n2,
        cs: 1,
    });
    if m2 == m && n2 == n {
        return checked_gemm(
            m,
            n,
            k,
            av,
            bv,
            c,
            (ldc, 1),
            accumulate,
            parallel,
            Blocks::Uniform,
        );
    }
    // A side doubled: compute into scratch holding c's start values, keep the first copy.
    let mut c2 = vec![0f32; m2 * n2];
    if accumulate {
        for i in 0..m2 {
            for j in 0..n2 {
                c2[i * n2 + j] = c[i.min(m - 1) * ldc + j.min(n - 1)];
            }
        }
    }
    checked_gemm(
        m2,
        n2,
        k,
        av,
        bv,
        &mut c2,
        (n2, 1),
        accumulate,
        parallel,
        Blocks::Uniform,
    );
    for i in 0..m {
        c[i * ldc..i * ldc + n].copy_from_slice(&c2[i * n2..i * n2 + n]);
    }
}

/// How a product's summation may depend on its shape: [`sgemm`] (training: gemm's own paths,
/// as the published results were computed) or [`sgemm_rows`] (inference: the same sums for a
/// face whatever its batch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Sums {
    /// [`sgemm`].
    #[default]
    Gemm,
    /// [`sgemm_rows`].
    Independent,
}

impl Sums {
    /// For an op over `ts`: [`Sums::Independent`] when none of them tracks gradients (an
    /// inference pass; in training the weights are variables), else [`Sums::Gemm`], so training
    /// sums exactly as it did before the inference products were made batch-independent.
    pub(super) fn for_inputs(ts: &[Option<&candle_core::Tensor>]) -> Sums {
        if ts.iter().flatten().any(|t| t.track_op()) {
            Sums::Gemm
        } else {
            Sums::Independent
        }
    }

    /// [`sgemm`] or [`sgemm_rows`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sgemm(
        self,
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
        match self {
            Sums::Gemm => sgemm(m, n, k, a, b, c, ldc, accumulate, parallel),
            Sums::Independent => sgemm_rows(m, n, k, a, b, c, ldc, accumulate, parallel),
        }
    }
}

/// How a product's depth is cut into the blocks whose sums are added into `c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blocks {
    /// gemm's own blocking, made CPU-independent by [`depth_block`]: depends on k and, through
    /// gemm's paths, on m and n (a product with m and n at most 64 sums in 512-long blocks,
    /// a larger one in ⌈k / ⌈k / 512⌉⌉-long blocks; a matrix-vector product takes gemm's
    /// vector kernels). The training products keep it, so training is bit for bit what it was.
    Gemm,
    /// ⌈k / ⌈k / 512⌉⌉-long blocks whatever m and n, each one gemm call of depth at most 512
    /// (one block on every path); with [`sgemm_rows`]' operands, always its microkernels.
    Uniform,
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
    checked_gemm(
        m,
        n,
        k,
        a,
        b,
        c,
        (1, ldc),
        accumulate,
        parallel,
        Blocks::Gemm,
    );
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
    blocks: Blocks,
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
    let block = match blocks {
        Blocks::Gemm => depth_block(m, n, k, (a, b), (rs, cs)),
        Blocks::Uniform => k.div_ceil(k.div_ceil(DEPTH_BLOCK)),
    };
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

    /// [`sgemm_rows`] sums every entry in ⌈k / ⌈k / 512⌉⌉-long blocks on every path gemm has
    /// (one row or column, m·n up to 256 with both operands contiguous along the depth, m and n
    /// at most 64, larger ones), whatever the layout of `b` (row-major, or transposed as the
    /// linear layer's weight): bit for bit the blocked reference; so one row of a product,
    /// computed alone, is bit for bit that row computed among many (and likewise a column).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn uniform_products_do_not_depend_on_the_other_rows_or_columns() {
        if !std::arch::is_x86_feature_detected!("fma") {
            return;
        }
        for (m, n, k) in [
            (1, 8, 1300),
            (1, 256, 1152),
            (8, 1, 1300),
            (1, 1, 700),
            (2, 9, 576),
            (5, 8, 256),
            (32, 8, 256),
            (16, 9, 576),
            (64, 36, 1152),
            (256, 256, 1152),
            (5, 7, 3),
        ] {
            for transposed_b in [false, true] {
                let a = values(m * k, 6);
                let b = values(k * n, 7);
                let av = View {
                    data: &a,
                    rs: k,
                    cs: 1,
                };
                // b (k x n): row-major, or stored as bᵀ (n x k) row-major.
                let bt: Vec<f32> = (0..n * k).map(|x| b[(x % k) * n + x / k]).collect();
                let bv = if transposed_b {
                    View {
                        data: &bt,
                        rs: 1,
                        cs: k,
                    }
                } else {
                    View {
                        data: &b,
                        rs: n,
                        cs: 1,
                    }
                };
                let case = format!("{m}x{n}x{k}, b transposed {transposed_b}");
                let mut c = vec![f32::NAN; m * n];
                sgemm_rows(m, n, k, av, bv, &mut c, n, false, false);
                let block = k.div_ceil(k.div_ceil(DEPTH_BLOCK));
                let want = blocked_reference((m, n, k), &a, &b, block);
                let differ = c
                    .iter()
                    .zip(&want)
                    .filter(|(x, y)| x.to_bits() != y.to_bits())
                    .count();
                assert_eq!(differ, 0, "{case}: {differ} entries off the reference");
                // The last row alone, and the last column alone.
                let row = View {
                    data: &a[(m - 1) * k..],
                    rs: k,
                    cs: 1,
                };
                let mut alone = vec![f32::NAN; n];
                sgemm_rows(1, n, k, row, bv, &mut alone, n, false, true);
                assert_eq!(bits(&alone), bits(&c[(m - 1) * n..]), "{case}: last row");
                let col = View {
                    data: &bv.data[(n - 1) * bv.cs..],
                    rs: bv.rs,
                    cs: bv.cs,
                };
                let mut alone = vec![f32::NAN; m];
                sgemm_rows(m, 1, k, av, col, &mut alone, 1, false, false);
                let last_col: Vec<f32> = (0..m).map(|i| c[i * n + n - 1]).collect();
                assert_eq!(bits(&alone), bits(&last_col), "{case}: last column");
            }
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
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
