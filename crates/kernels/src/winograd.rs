//! 'Same' 3x3 and 5x5 stride-1 convolutions by Winograd's minimal filtering
//! algorithms F(2x2, 3x3) and F(2x2, 5x5) (Lavin & Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016): every 2x2 output tile is
//! `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` for the α x α input tile `d` around it
//! (α = r + 1 for an r x r kernel), so the multiplications become α² independent
//! gemms (one per position ξ of the transformed tile): 16 instead of 36
//! multiply-adds per tile and channel pair for 3x3 (2.25x fewer than im2col +
//! gemm), 36 instead of 100 for 5x5 (2.8x).
//!
//! All three passes use it: the input gradient is the same convolution of the
//! output gradient with the flipped, transposed kernel; the weight gradient is
//! F(r x r, 2x2) with the same points, `dw = Gᵀ [Σ_tiles (A dy Aᵀ) ⊙ (Bᵀ d B)] G`
//! (the trilinear form of F(2, r) read the other way), whose sum over tiles and
//! samples is again one gemm per ξ.
//!
//! An output whose receptive field is all zeros comes out exactly 0, as with
//! im2col (a fused ReLU then passes the gradient there like candle's `relu`):
//! with these matrices output i of a tile only combines transformed values
//! built from its own field (Aᵀ's row i meets only rows of Bᵀ that read inside
//! it), so no cancellation is involved.
//!
//! The matrices come from the points 0, 1, -1 (and 2, -2 for 5x5) and ∞
//! (`winograd_matrices.py` beside this file derives them in exact rationals and
//! checks the identity); the tests hold every pass to candle's op at 1e-4.
//!
//! Layouts: transformed kernels `u` (K, α², C) (row-major, K output channels, C
//! input channels); a group of n samples is transformed into `v` (α², C, n·T) and
//! multiplied into `m` (α², K, n·T), T = tiles per sample, the α² blocks a cache
//! line more than their size apart ([`skew`]).

use super::conv::{Algo, Geom};
use super::gemm::{View, sgemm};
use super::{par_chunks_mut, sum_partials, with_scratch};

/// The matrices of one F(2x2, r x r) algorithm: its kernel side r, tile side
/// α = r + 1 and matrices (row-major, padded to the 5x5 case's sizes).
#[derive(Debug)]
pub(super) struct Tables {
    r: usize,
    alpha: usize,
    /// Bᵀ (α x α)
    bt: [[f32; 6]; 6],
    /// G (α x r)
    g: [[f32; 5]; 6],
    /// Aᵀ (2 x α)
    at: [[f32; 6]; 2],
}

/// F(2x2, 3x3), points 0, 1, -1, ∞.
static F23_TABLES: Tables = Tables {
    r: 3,
    alpha: 4,
    bt: [
        [1., 0., -1., 0., 0., 0.],
        [0., 1., 1., 0., 0., 0.],
        [0., -1., 1., 0., 0., 0.],
        [0., 1., 0., -1., 0., 0.],
        [0.; 6],
        [0.; 6],
    ],
    g: [
        [1., 0., 0., 0., 0.],
        [0.5, 0.5, 0.5, 0., 0.],
        [0.5, -0.5, 0.5, 0., 0.],
        [0., 0., 1., 0., 0.],
        [0.; 5],
        [0.; 5],
    ],
    at: [[1., 1., 1., 0., 0., 0.], [0., 1., -1., -1., 0., 0.]],
};

/// F(2x2, 5x5), points 0, 1, -1, 2, -2, ∞.
static F25_TABLES: Tables = Tables {
    r: 5,
    alpha: 6,
    bt: [
        [4., 0., -5., 0., 1., 0.],
        [0., -4., -4., 1., 1., 0.],
        [0., 4., -4., -1., 1., 0.],
        [0., -2., -1., 2., 1., 0.],
        [0., 2., -1., -2., 1., 0.],
        [0., 4., 0., -5., 0., 1.],
    ],
    g: [
        [1. / 4., 0., 0., 0., 0.],
        [-1. / 6., -1. / 6., -1. / 6., -1. / 6., -1. / 6.],
        [-1. / 6., 1. / 6., -1. / 6., 1. / 6., -1. / 6.],
        [1. / 24., 1. / 12., 1. / 6., 1. / 3., 2. / 3.],
        [1. / 24., -1. / 12., 1. / 6., -1. / 3., 2. / 3.],
        [0., 0., 0., 0., 1.],
    ],
    at: [[1., 1., 1., 1., 1., 0.], [0., 1., -1., 2., -2., 1.]],
};

/// One algorithm's transforms. The defaults apply the matrices of `T` (any
/// α); F(2x2, 3x3) and F(2x2, 5x5) have their per-tile transforms written out
/// (for 3x3 layers 1.2-2x faster per pass than these table-driven loops), and a
/// test holds them equal to the defaults.
pub(super) trait Alg {
    const T: &'static Tables;

    /// `G k Gᵀ` of one r x r kernel `k` (row-major; `flip` reads it rotated by
    /// 180°), value ξ written to `out[ξ·stride]`.
    fn kernel(k: &[f32], flip: bool, out: &mut [f32], stride: usize) {
        kernel_transform(Self::T, k, flip, out, stride);
    }

    /// `Gᵀ s G` (r x r, row-major) of one transformed weight gradient, value ξ
    /// read from `s[ξ·stride]`.
    fn inverse(s: &[f32], stride: usize, out: &mut [f32]) {
        weight_grad_inverse(Self::T, s, stride, out);
    }

    /// `Bᵀ d B` of every tile of a plane padded by [`pad_rows`] into `v`: value ξ
    /// of tile t goes to `v[ξ·vs + t]`. `rows` is scratch of [`rows_len`].
    fn input(pad: &[f32], th: usize, tw: usize, v: &mut [f32], vs: usize, rows: &mut [f32]) {
        input_generic(Self::T, pad, th, tw, v, vs, rows);
    }

    /// `Aᵀ m A` of every tile of one output plane (h, w) from `m` (value ξ of
    /// tile t at `m[ξ·ms + t]`), written into `out`.
    #[allow(clippy::too_many_arguments)]
    fn output(
        m: &[f32],
        ms: usize,
        th: usize,
        tw: usize,
        out: &mut [f32],
        h: usize,
        w: usize,
        rows: &mut [f32],
    ) {
        output_generic(Self::T, m, ms, th, tw, out, h, w, rows);
    }

    /// `A f Aᵀ` of every 2x2 tile of one output-gradient plane (h, w) into `v`
    /// (value ξ of tile t at `v[ξ·vs + t]`); entries past the edge count as 0.
    #[allow(clippy::too_many_arguments)]
    fn grad(
        dy: &[f32],
        h: usize,
        w: usize,
        th: usize,
        tw: usize,
        v: &mut [f32],
        vs: usize,
        rows: &mut [f32],
    ) {
        grad_generic(Self::T, dy, h, w, th, tw, v, vs, rows);
    }
}

/// F(2x2, 5x5) with its data transforms written out (kernel transform and weight
/// gradient inverse table-driven: once per kernel, not per tile).
pub(super) struct F25;

/// `Aᵀ m` of F(2x2, 5x5) (the rows of [`F25_TABLES`]'s `at`).
#[inline(always)]
fn at6(m: [f32; 6]) -> [f32; 2] {
    [
        m[0] + m[1] + m[2] + m[3] + m[4],
        m[1] - m[2] + 2.0 * (m[3] - m[4]) + m[5],
    ]
}

/// `A (x, y)` of F(2x2, 5x5): A = (Aᵀ)ᵀ applied to a pair.
#[inline(always)]
fn a6(x: f32, y: f32) -> [f32; 6] {
    [x, x + y, x - y, x + 2.0 * y, x - 2.0 * y, y]
}

/// `Bᵀ d` of F(2x2, 5x5) (the rows of [`F25_TABLES`]'s `bt`).
#[inline(always)]
fn bt6(d: [f32; 6]) -> [f32; 6] {
    [
        4.0 * d[0] - 5.0 * d[2] + d[4],
        -4.0 * (d[1] + d[2]) + d[3] + d[4],
        4.0 * (d[1] - d[2]) - d[3] + d[4],
        -2.0 * d[1] - d[2] + 2.0 * d[3] + d[4],
        2.0 * d[1] - d[2] - 2.0 * d[3] + d[4],
        4.0 * d[1] - 5.0 * d[3] + d[5],
    ]
}

impl Alg for F25 {
    const T: &'static Tables = &F25_TABLES;

    fn input(pad: &[f32], th: usize, tw: usize, v: &mut [f32], vs: usize, rows: &mut [f32]) {
        let (pw, half) = padded(Self::T, tw);
        for ty in 0..th {
            // Bᵀ over the six padded rows from 2ty, whole rows at once.
            let r = &pad[2 * ty * pw..(2 * ty + 6) * pw];
            let (t, _) = rows.split_at_mut(6 * pw);
            for x in 0..pw {
                let o = bt6(std::array::from_fn(|i| r[i * pw + x]));
                for (q, &val) in o.iter().enumerate() {
                    t[q * pw + x] = val;
                }
            }
            // Then B across columns 2tx..2tx+6: even tx, odd tx, even tx+1, ...
            let base = ty * tw;
            for q in 0..6 {
                let (e, o) = t[q * pw..(q + 1) * pw].split_at(half);
                for tx in 0..tw {
                    let c = bt6([e[tx], o[tx], e[tx + 1], o[tx + 1], e[tx + 2], o[tx + 2]]);
                    for (j, &val) in c.iter().enumerate() {
                        v[(6 * q + j) * vs + base + tx] = val;
                    }
                }
            }
        }
    }

    fn output(
        m: &[f32],
        ms: usize,
        th: usize,
        tw: usize,
        out: &mut [f32],
        h: usize,
        w: usize,
        rows: &mut [f32],
    ) {
        for ty in 0..th {
            let base = ty * tw;
            // Aᵀ over the rows: s[r][c] at rows[(6r + c)·tw..], each tw long.
            let (s0, s1) = rows[..12 * tw].split_at_mut(6 * tw);
            for c in 0..6 {
                let e: [&[f32]; 6] = std::array::from_fn(|p| &m[(6 * p + c) * ms + base..][..tw]);
                let (d0, d1) = (&mut s0[c * tw..(c + 1) * tw], &mut s1[c * tw..(c + 1) * tw]);
                for i in 0..tw {
                    let r = at6(std::array::from_fn(|p| e[p][i]));
                    d0[i] = r[0];
                    d1[i] = r[1];
                }
            }
            for (r, sr) in [&*s0, &*s1].into_iter().enumerate() {
                let y = 2 * ty + r;
                if y >= h {
                    break;
                }
                store_pairs(&mut out[y * w..(y + 1) * w], |i| {
                    at6(std::array::from_fn(|c| sr[c * tw + i]))
                });
            }
        }
    }

    fn grad(
        dy: &[f32],
        h: usize,
        w: usize,
        th: usize,
        tw: usize,
        v: &mut [f32],
        vs: usize,
        rows: &mut [f32],
    ) {
        for ty in 0..th {
            deinterleave_pair(dy, h, w, ty, tw, &mut rows[..4 * tw]);
            let (top, bottom) = rows[..4 * tw].split_at(2 * tw);
            let base = ty * tw;
            for i in 0..tw {
                // A over the rows (even and odd columns), then over the columns.
                let (re, ro) = (a6(top[i], bottom[i]), a6(top[tw + i], bottom[tw + i]));
                for p in 0..6 {
                    for (q, &val) in a6(re[p], ro[p]).iter().enumerate() {
                        v[(6 * p + q) * vs + base + i] = val;
                    }
                }
            }
        }
    }
}

/// F(2x2, 3x3) with its transforms written out (the entries of
/// [`F23_TABLES`]).
pub(super) struct F23;

impl Alg for F23 {
    const T: &'static Tables = &F23_TABLES;

    fn kernel(k: &[f32], flip: bool, out: &mut [f32], stride: usize) {
        let tap = |i: usize| if flip { k[8 - i] } else { k[i] };
        // G k (4x3), then (G k) Gᵀ (4x4); G's rows: (1, 0, 0), ½(1, 1, 1), ½(1, -1, 1), (0, 0, 1).
        let g = |a: f32, b: f32, d: f32| [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d];
        let cols: [[f32; 4]; 3] = std::array::from_fn(|c| g(tap(c), tap(3 + c), tap(6 + c)));
        for r in 0..4 {
            let (a, b, d) = (cols[0][r], cols[1][r], cols[2][r]);
            out[4 * r * stride] = a;
            out[(4 * r + 1) * stride] = 0.5 * (a + b + d);
            out[(4 * r + 2) * stride] = 0.5 * (a - b + d);
            out[(4 * r + 3) * stride] = d;
        }
    }

    fn inverse(s: &[f32], stride: usize, out: &mut [f32]) {
        // Gᵀ applied to four values: (s0 + ½(s1 + s2), ½(s1 - s2), ½(s1 + s2) + s3).
        let col =
            |a: f32, b: f32, c: f32, d: f32| [a + 0.5 * (b + c), 0.5 * (b - c), 0.5 * (b + c) + d];
        let e = |xi: usize| s[xi * stride];
        let rows: [[f32; 3]; 4] =
            std::array::from_fn(|q| col(e(4 * q), e(4 * q + 1), e(4 * q + 2), e(4 * q + 3)));
        for c in 0..3 {
            let v = col(rows[0][c], rows[1][c], rows[2][c], rows[3][c]);
            for r in 0..3 {
                out[3 * r + c] = v[r];
            }
        }
    }

    fn input(pad: &[f32], th: usize, tw: usize, v: &mut [f32], vs: usize, rows: &mut [f32]) {
        let (half, pw) = (tw + 1, 2 * tw + 2);
        for ty in 0..th {
            // Bᵀ over the four padded rows 2ty..2ty+4, whole rows at once.
            let r = &pad[2 * ty * pw..(2 * ty + 4) * pw];
            let (r0, r1, r2, r3) = (&r[..pw], &r[pw..2 * pw], &r[2 * pw..3 * pw], &r[3 * pw..]);
            let (t0, rest) = rows[..4 * pw].split_at_mut(pw);
            let (t1, rest) = rest.split_at_mut(pw);
            let (t2, t3) = rest.split_at_mut(pw);
            for x in 0..pw {
                t0[x] = r0[x] - r2[x];
                t1[x] = r1[x] + r2[x];
                t2[x] = r2[x] - r1[x];
                t3[x] = r1[x] - r3[x];
            }
            // Then B across columns 2tx..2tx+4 = even tx, odd tx, even tx+1, odd tx+1.
            let base = ty * tw;
            for (q, tr) in [&*t0, &*t1, &*t2, &*t3].into_iter().enumerate() {
                let (e, o) = tr.split_at(half);
                let (e0, e1, o0, o1) = (&e[..tw], &e[1..], &o[..tw], &o[1..half]);
                let row = |j: usize| (4 * q + j) * vs + base;
                for (d, (a, b)) in v[row(0)..][..tw].iter_mut().zip(e0.iter().zip(e1)) {
                    *d = a - b;
                }
                for (d, (a, b)) in v[row(1)..][..tw].iter_mut().zip(o0.iter().zip(e1)) {
                    *d = a + b;
                }
                for (d, (a, b)) in v[row(2)..][..tw].iter_mut().zip(e1.iter().zip(o0)) {
                    *d = a - b;
                }
                for (d, (a, b)) in v[row(3)..][..tw].iter_mut().zip(o0.iter().zip(o1)) {
                    *d = a - b;
                }
            }
        }
    }

    fn output(
        m: &[f32],
        ms: usize,
        th: usize,
        tw: usize,
        out: &mut [f32],
        h: usize,
        w: usize,
        rows: &mut [f32],
    ) {
        for ty in 0..th {
            let e = |xi: usize| &m[xi * ms + ty * tw..][..tw];
            // Aᵀ over the rows: s[r][c] for r in 0..2, c in 0..4, each tw long.
            for c in 0..4 {
                let (a, b, d, f) = (e(c), e(4 + c), e(8 + c), e(12 + c));
                let (s0, s1) = rows[2 * c * tw..(2 * c + 2) * tw].split_at_mut(tw);
                for i in 0..tw {
                    s0[i] = a[i] + b[i] + d[i];
                    s1[i] = b[i] - d[i] - f[i];
                }
            }
            for r in 0..2 {
                let y = 2 * ty + r;
                if y >= h {
                    break;
                }
                let sr = |c: usize| &rows[(2 * c + r) * tw..][..tw];
                let (a, b, d, f) = (sr(0), sr(1), sr(2), sr(3));
                store_pairs(&mut out[y * w..(y + 1) * w], |i| {
                    [a[i] + b[i] + d[i], b[i] - d[i] - f[i]]
                });
            }
        }
    }

    fn grad(
        dy: &[f32],
        h: usize,
        w: usize,
        th: usize,
        tw: usize,
        v: &mut [f32],
        vs: usize,
        rows: &mut [f32],
    ) {
        for ty in 0..th {
            deinterleave_pair(dy, h, w, ty, tw, &mut rows[..4 * tw]);
            let (top, bottom) = rows[..4 * tw].split_at(2 * tw);
            let base = ty * tw;
            // A over the rows gives f0, f0 + f1, f0 - f1, -f1; then A over the
            // columns gives e, e + o, e - o, -o of each.
            for q in 0..4 {
                let row = |j: usize| (4 * q + j) * vs + base;
                let pick = |i: usize, part: usize| {
                    let (a, b) = (top[part * tw + i], bottom[part * tw + i]);
                    match q {
                        0 => a,
                        1 => a + b,
                        2 => a - b,
                        _ => -b,
                    }
                };
                for i in 0..tw {
                    let (e, o) = (pick(i, 0), pick(i, 1));
                    v[row(0) + i] = e;
                    v[row(1) + i] = e + o;
                    v[row(2) + i] = e - o;
                    v[row(3) + i] = -o;
                }
            }
        }
    }
}

/// Writes one output row from its tiles' column pairs: `row[2i]`, `row[2i + 1]`
/// = `pair(i)` (the second dropped past an odd width).
#[inline(always)]
fn store_pairs(row: &mut [f32], pair: impl Fn(usize) -> [f32; 2]) {
    for (i, d) in row.chunks_mut(2).enumerate() {
        let p = pair(i);
        d[0] = p[0];
        if let Some(v) = d.get_mut(1) {
            *v = p[1];
        }
    }
}

/// Rows 2ty and 2ty + 1 of plane `dy` (h, w), each de-interleaved into `f`
/// (4·tw): even columns of row 2ty, its odd columns, then the same of row
/// 2ty + 1; entries past the edge are 0.
fn deinterleave_pair(dy: &[f32], h: usize, w: usize, ty: usize, tw: usize, f: &mut [f32]) {
    f.fill(0.0);
    for r in 0..2 {
        let y = 2 * ty + r;
        if y >= h {
            break;
        }
        let (e, o) = f[2 * r * tw..(2 * r + 2) * tw].split_at_mut(tw);
        for (i, &val) in dy[y * w..(y + 1) * w].iter().enumerate() {
            if i % 2 == 0 {
                e[i / 2] = val;
            } else {
                o[i / 2] = val;
            }
        }
    }
}

/// Which algorithm a conv takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Kind {
    F23,
    F25,
}

/// `out` = the 'same' convolution of `x` (B, C', H, W) with `w` (Cout, Cin, r, r)
/// (`flip`: with the flipped, transposed kernel, i.e. the input gradient when
/// `x` is the output gradient); `after(s0, out_piece)` as in [`conv`].
#[allow(clippy::too_many_arguments)]
pub(super) fn convolve(
    kind: Kind,
    g: &Geom,
    x: &[f32],
    w: &[f32],
    flip: bool,
    out: &mut [f32],
    after: impl Fn(usize, &mut [f32]) + Sync,
) {
    let (c_in, k_out) = if flip {
        (g.cout, g.cin)
    } else {
        (g.cin, g.cout)
    };
    match kind {
        Kind::F23 => {
            let u = transform_kernels::<F23>(g, w, flip);
            conv::<F23>(g, x, c_in, &u, k_out, out, after);
        }
        Kind::F25 => {
            let u = transform_kernels::<F25>(g, w, flip);
            conv::<F25>(g, x, c_in, &u, k_out, out, after);
        }
    }
}

/// Weight gradient (Cout, Cin, r, r) of the 'same' conv of `x` with output
/// gradient `dy`.
pub(super) fn weight_grad(kind: Kind, g: &Geom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    match kind {
        Kind::F23 => weight_grad_with::<F23>(g, x, dy),
        Kind::F25 => weight_grad_with::<F25>(g, x, dy),
    }
}

/// Most partial weight gradients (one per task) summed at the end, as in the
/// im2col path: a fixed partition of the batch.
const WGRAD_TASKS: usize = 4;

/// Smallest Cin·Cout routed here. Per layer (`cargo bench -p ferbayes-models
/// --bench conv`, quiet machine), F(2x2, 3x3) beat im2col from 64x64 and 128x32
/// channel pairs up, on maps of 16x16 and more (1.9-2.8x at 64x64 channels on
/// 64x64 maps, where im2col is least efficient). On smaller maps it won at
/// 512x512 channels (1.1-2.0x on 8x8 and 4x4 maps) and lost at 128x32 (0.8-1.0x
/// on 4x4 and 2x2) and below, hence [`MIN_CH_PRODUCT_SMALL`] under [`SMALL_MAP`]
/// pixels.
const MIN_CH_PRODUCT: usize = 4096;

/// Smallest Cin·Cout routed here on maps of fewer than [`SMALL_MAP`] pixels.
const MIN_CH_PRODUCT_SMALL: usize = 65536;

/// Maps under this many pixels (16x16) count as small.
const SMALL_MAP: usize = 256;

/// The algorithm for a conv this module computes, if any: a 3x3 or 5x5 kernel,
/// stride 1, 'same' padding, and (with [`Algo::Auto`]) enough channels (above).
pub(super) fn alg(g: &Geom) -> Option<Kind> {
    let kind = match (g.kh, g.kw) {
        (3, 3) => Kind::F23,
        (5, 5) => Kind::F25,
        _ => return None,
    };
    let wide = match g.algo {
        Algo::Im2col => return None,
        Algo::Winograd => true,
        Algo::Auto if g.h * g.w < SMALL_MAP => g.cin * g.cout >= MIN_CH_PRODUCT_SMALL,
        Algo::Auto => g.cin * g.cout >= MIN_CH_PRODUCT,
    };
    (wide && g.stride == 1 && 2 * g.pad + 1 == g.kh).then_some(kind)
}

/// Tiles of one sample: rows, columns.
fn tiles(g: &Geom) -> (usize, usize) {
    (g.h.div_ceil(2), g.w.div_ceil(2))
}

/// Samples per group: ~[`COLS`] gemm columns, at least 4 groups when B >= 4.
fn group(g: &Geom) -> usize {
    let (th, tw) = tiles(g);
    COLS.div_ceil(th * tw).min(g.b.div_ceil(4)).max(1)
}

/// Target gemm columns (tiles) per group or chunk.
const COLS: usize = 256;

/// Tile rows per chunk: a group of one sample is split into chunks of about
/// [`COLS`] tiles, so its transformed blocks stay in the core's L2 cache.
fn chunk_rows(g: &Geom, n: usize) -> usize {
    let (th, tw) = tiles(g);
    if n > 1 {
        th
    } else {
        COLS.div_ceil(tw).clamp(1, th)
    }
}

/// Padded row width (2·tw + α - 2) and its de-interleaved halves' length.
fn padded(a: &Tables, tw: usize) -> (usize, usize) {
    let pw = 2 * tw + a.alpha - 2;
    (pw, pw / 2)
}

/// `G k Gᵀ` (α x α) of one r x r kernel `k` (row-major; `flip` reads it rotated
/// by 180°), value ξ written to `out[ξ·stride]`.
fn kernel_transform(a: &Tables, k: &[f32], flip: bool, out: &mut [f32], stride: usize) {
    let (r, al) = (a.r, a.alpha);
    let tap = |i: usize, j: usize| {
        if flip {
            k[(r - 1 - i) * r + r - 1 - j]
        } else {
            k[i * r + j]
        }
    };
    // G k: α x r.
    let mut gk = [[0f32; 5]; 6];
    for (p, row) in gk.iter_mut().enumerate().take(al) {
        for (j, v) in row.iter_mut().enumerate().take(r) {
            *v = (0..r).map(|i| a.g[p][i] * tap(i, j)).sum();
        }
    }
    for p in 0..al {
        for q in 0..al {
            out[(p * al + q) * stride] = (0..r).map(|j| gk[p][j] * a.g[q][j]).sum();
        }
    }
}

/// The transformed kernels (K', α², C') of `w` (Cout, Cin, r, r): for the
/// forward pass K' = Cout, C' = Cin; `flip` gives those of the input gradient,
/// K' = Cin, C' = Cout, kernel (ci, co) = w[co, ci] rotated by 180°.
fn transform_kernels<A: Alg>(g: &Geom, w: &[f32], flip: bool) -> Vec<f32> {
    let a = A::T;
    let (ko, ci) = if flip {
        (g.cin, g.cout)
    } else {
        (g.cout, g.cin)
    };
    let (rr, aa) = (a.r * a.r, a.alpha * a.alpha);
    let mut u = vec![0f32; ko * aa * ci];
    par_chunks_mut(&mut u, aa * ci, |k, row| {
        for c in 0..ci {
            let src = if flip {
                (c * g.cin + k) * rr
            } else {
                (k * g.cin + c) * rr
            };
            A::kernel(&w[src..src + rr], flip, &mut row[c..], ci);
        }
    });
    u
}

/// Copies padded rows `y0..y0 + pad.len() / pw` of plane `src` (h, w) into `pad`,
/// the plane having a zero border of (r - 1) / 2 before and the rest after; each
/// row is stored de-interleaved: the even padded columns, then the odd ones.
/// Tiles start at even padded columns, so the transforms read contiguous runs.
fn pad_rows(a: &Tables, src: &[f32], h: usize, w: usize, tw: usize, y0: usize, pad: &mut [f32]) {
    let (pw, half) = padded(a, tw);
    let p = (a.r - 1) / 2;
    pad.fill(0.0);
    for (i, dst) in pad.chunks_exact_mut(pw).enumerate() {
        let Some(y) = (y0 + i).checked_sub(p).filter(|&y| y < h) else {
            continue;
        };
        let (even, odd) = dst.split_at_mut(half);
        for (x, &v) in src[y * w..(y + 1) * w].iter().enumerate() {
            let j = x + p;
            if j.is_multiple_of(2) {
                even[j / 2] = v;
            } else {
                odd[j / 2] = v;
            }
        }
    }
}

/// `dst[i] = Σ_j c[j]·src_j[i]` over the nonzero coefficients (the first term
/// assigns, so no zeros are added).
fn combine(dst: &mut [f32], c: &[f32], src: &[&[f32]]) {
    let mut first = true;
    for (&c, s) in c.iter().zip(src) {
        if c == 0.0 {
            continue;
        }
        let s = &s[..dst.len()];
        match (first, c) {
            (true, 1.0) => dst.copy_from_slice(s),
            (true, _) => dst.iter_mut().zip(s).for_each(|(d, &v)| *d = c * v),
            (false, 1.0) => dst.iter_mut().zip(s).for_each(|(d, &v)| *d += v),
            (false, -1.0) => dst.iter_mut().zip(s).for_each(|(d, &v)| *d -= v),
            (false, _) => dst.iter_mut().zip(s).for_each(|(d, &v)| *d += c * v),
        }
        first = false;
    }
    if first {
        dst.fill(0.0);
    }
}

/// `Bᵀ d B` of every tile of one plane padded by [`pad_rows`] into `v`: value ξ
/// of tile t goes to `v[ξ·vs + t]`. `rows` is scratch of α·pw.
fn input_generic(
    a: &Tables,
    pad: &[f32],
    th: usize,
    tw: usize,
    v: &mut [f32],
    vs: usize,
    rows: &mut [f32],
) {
    let al = a.alpha;
    let (pw, half) = padded(a, tw);
    for ty in 0..th {
        // Bᵀ over the α padded rows from 2ty, whole rows at once.
        let src: [&[f32]; 6] = std::array::from_fn(|i| {
            if i < al {
                &pad[(2 * ty + i) * pw..][..pw]
            } else {
                &[]
            }
        });
        for (q, t) in rows[..al * pw].chunks_exact_mut(pw).enumerate() {
            combine(t, &a.bt[q][..al], &src);
        }
        // Then B across the α columns from 2tx: column 2tx + i is element
        // tx + i/2 of the even (i even) or odd half.
        let base = ty * tw;
        for (q, t) in rows[..al * pw].chunks_exact(pw).enumerate() {
            let (e, o) = t.split_at(half);
            let cols: [&[f32]; 6] = std::array::from_fn(|i| match (i < al, i % 2) {
                (false, _) => &[][..],
                (true, 0) => &e[i / 2..],
                (true, _) => &o[i / 2..],
            });
            for j in 0..al {
                combine(
                    &mut v[(q * al + j) * vs + base..][..tw],
                    &a.bt[j][..al],
                    &cols,
                );
            }
        }
    }
}

/// `Aᵀ m A` of every tile of one output plane (h, w) from `m` (value ξ of tile t
/// at `m[ξ·ms + t]`), written into `out`. `rows` is scratch of 2·α·tw.
#[allow(clippy::too_many_arguments)]
fn output_generic(
    a: &Tables,
    m: &[f32],
    ms: usize,
    th: usize,
    tw: usize,
    out: &mut [f32],
    h: usize,
    w: usize,
    rows: &mut [f32],
) {
    let al = a.alpha;
    for ty in 0..th {
        let base = ty * tw;
        // Aᵀ over the rows: s[r][c] for r in 0..2, c in 0..α, each tw long.
        for c in 0..al {
            let src: [&[f32]; 6] = std::array::from_fn(|p| {
                if p < al {
                    &m[(p * al + c) * ms + base..][..tw]
                } else {
                    &[]
                }
            });
            for r in 0..2 {
                combine(&mut rows[(r * al + c) * tw..][..tw], &a.at[r][..al], &src);
            }
        }
        // Then A across the columns: output (2ty + r, 2tx + q).
        let (s, pair) = rows[..(2 * al + 2) * tw].split_at_mut(2 * al * tw);
        for r in 0..2 {
            let y = 2 * ty + r;
            if y >= h {
                break;
            }
            let src: [&[f32]; 6] = std::array::from_fn(|c| {
                if c < al {
                    &s[(r * al + c) * tw..][..tw]
                } else {
                    &[]
                }
            });
            let (o0, o1) = pair.split_at_mut(tw);
            combine(o0, &a.at[0][..al], &src);
            combine(o1, &a.at[1][..al], &src);
            store_pairs(&mut out[y * w..(y + 1) * w], |i| [o0[i], o1[i]]);
        }
    }
}

/// `A f Aᵀ` (α x α) of every 2x2 tile of one output-gradient plane (h, w) into
/// `v` (value ξ of tile t at `v[ξ·vs + t]`); entries past the edge count as 0.
/// `rows` is scratch of (4 + 2·α)·tw.
#[allow(clippy::too_many_arguments)]
fn grad_generic(
    a: &Tables,
    dy: &[f32],
    h: usize,
    w: usize,
    th: usize,
    tw: usize,
    v: &mut [f32],
    vs: usize,
    rows: &mut [f32],
) {
    let al = a.alpha;
    let (f, rest) = rows[..(4 + 2 * al) * tw].split_at_mut(4 * tw);
    for ty in 0..th {
        deinterleave_pair(dy, h, w, ty, tw, f);
        // A over the rows: row p = Aᵀ[0][p]·(row 2ty) + Aᵀ[1][p]·(row 2ty + 1),
        // both halves; then A over the columns.
        let (top, bottom) = f.split_at(2 * tw);
        let base = ty * tw;
        for p in 0..al {
            let (re, ro) = rest[..2 * tw].split_at_mut(tw);
            let c = [a.at[0][p], a.at[1][p]];
            combine(re, &c, &[&top[..tw], &bottom[..tw]]);
            combine(ro, &c, &[&top[tw..], &bottom[tw..]]);
            let (re, ro) = (&*re, &*ro);
            for q in 0..al {
                combine(
                    &mut v[(p * al + q) * vs + base..][..tw],
                    &[a.at[0][q], a.at[1][q]],
                    &[re, ro],
                );
            }
        }
    }
}

/// Scratch length for the row buffers of the transforms.
fn rows_len(a: &Tables, tw: usize) -> usize {
    (a.alpha * padded(a, tw).0).max((2 * a.alpha + 4) * tw)
}

/// `out` (n, K', H, W) = the 'same' convolution of `x` (n, C', H, W) with the
/// transformed kernels `u` (K', α², C'), for one group of n samples
/// (single-threaded), one chunk of tile rows at a time.
#[allow(clippy::too_many_arguments)]
fn conv_group<A: Alg>(g: &Geom, x: &[f32], c_in: usize, u: &[f32], k_out: usize, out: &mut [f32]) {
    let a = A::T;
    let (h, w, hw) = (g.h, g.w, g.h * g.w);
    let (th, tw) = tiles(g);
    let (aa, pw) = (a.alpha * a.alpha, padded(a, tw).0);
    let n = out.len() / (k_out * hw);
    let step = chunk_rows(g, n);
    let mut pad = vec![0f32; (2 * step + a.alpha - 2) * pw];
    let mut rows = vec![0f32; rows_len(a, tw)];
    for ty0 in (0..th).step_by(step) {
        let tr = step.min(th - ty0);
        let (t, y0) = (tr * tw, 2 * ty0);
        let cols = n * t;
        let pad = &mut pad[..(2 * tr + a.alpha - 2) * pw];
        let (vs, ms) = (skew(c_in * cols), skew(k_out * cols));
        with_scratch(aa * vs, aa * ms, |v, m| {
            for s in 0..n {
                for c in 0..c_in {
                    pad_rows(a, &x[(s * c_in + c) * hw..][..hw], h, w, tw, y0, pad);
                    let vv = &mut v[c * cols + s * t..];
                    A::input(pad, tr, tw, vv, vs, &mut rows);
                }
            }
            for xi in 0..aa {
                let ua = View {
                    data: &u[xi * c_in..],
                    rs: aa * c_in,
                    cs: 1,
                };
                let vb = View {
                    data: &v[xi * vs..xi * vs + c_in * cols],
                    rs: cols,
                    cs: 1,
                };
                let mc = &mut m[xi * ms..xi * ms + k_out * cols];
                g.sums
                    .sgemm(k_out, cols, c_in, ua, vb, mc, cols, false, false);
            }
            for s in 0..n {
                for k in 0..k_out {
                    let plane = &mut out[(s * k_out + k) * hw + y0 * w..(s * k_out + k + 1) * hw];
                    let mk = &m[k * cols + s * t..];
                    A::output(mk, ms, tr, tw, plane, h - y0, w, &mut rows);
                }
            }
        });
    }
}

/// Runs the convolution of `x` (B, C', H, W) with the transformed kernels `u`
/// (K', α², C') into `out` (B, K', H, W); `after(s0, out_piece)` runs on the
/// output of the samples from `s0` on. Small maps go through [`conv_whole`], the
/// others through [`conv_group`] in parallel groups of samples.
#[allow(clippy::too_many_arguments)]
fn conv<A: Alg>(
    g: &Geom,
    x: &[f32],
    c_in: usize,
    u: &[f32],
    k_out: usize,
    out: &mut [f32],
    after: impl Fn(usize, &mut [f32]) + Sync,
) {
    if whole_batch(g) {
        return conv_whole::<A>(g, x, c_in, u, k_out, out, after);
    }
    let (hw, gs) = (g.h * g.w, group(g));
    par_chunks_mut(out, gs * k_out * hw, |gi, o| {
        let n = o.len() / (k_out * hw);
        let xs = &x[gi * gs * c_in * hw..][..n * c_in * hw];
        conv_group::<A>(g, xs, c_in, u, k_out, o);
        after(gi * gs, o);
    });
}

/// Whether the batch has few enough tiles (at most [`WHOLE_COLS`]) to be
/// transformed at once, with the α² gemms (each over the whole batch) run in
/// parallel: on small maps, groups of samples would make short gemms that each
/// re-read all transformed kernels.
fn whole_batch(g: &Geom) -> bool {
    let (th, tw) = tiles(g);
    g.b * th * tw <= WHOLE_COLS
}

/// `n` plus [`SKEW`]: the stride between the α² blocks of transformed values.
/// The transforms write (and read) α² streams at once; with a stride of a power
/// of two times 256 floats (as `C·cols` mostly is) they all fall on one set of
/// the L1 cache, which holds 12 lines.
fn skew(n: usize) -> usize {
    n + SKEW
}

/// One cache line of f32s: consecutive blocks start on different cache sets.
const SKEW: usize = 16;

/// Most tiles in a batch for [`whole_batch`].
const WHOLE_COLS: usize = 1024;

/// The transforms of every plane of `x` (B, C, H, W) into `v` (C, α², B·T; the
/// α² blocks of a channel [`skew`]ed apart):
/// `Bᵀ d B` of the input tiles, or with `grad` `A f Aᵀ` of the output-gradient
/// tiles. In parallel over channels.
fn transform_all<A: Alg>(g: &Geom, x: &[f32], c: usize, v: &mut [f32], grad: bool) {
    let a = A::T;
    let (h, w, hw) = (g.h, g.w, g.h * g.w);
    let (th, tw) = tiles(g);
    let (t, cols) = (th * tw, g.b * th * tw);
    let aa = a.alpha * a.alpha;
    let cs = skew(cols);
    par_chunks_mut(v, aa * cs, |ci, vc| {
        let mut pad = vec![0f32; (2 * th + a.alpha - 2) * padded(a, tw).0];
        let mut rows = vec![0f32; rows_len(a, tw)];
        for s in 0..g.b {
            let plane = &x[(s * c + ci) * hw..][..hw];
            let dst = &mut vc[s * t..];
            if grad {
                A::grad(plane, h, w, th, tw, dst, cs, &mut rows);
            } else {
                pad_rows(a, plane, h, w, tw, 0, &mut pad);
                A::input(&pad, th, tw, dst, cs, &mut rows);
            }
        }
    });
}

/// [`conv`] for a [`whole_batch`]: transform every input plane (in parallel
/// over channels), one gemm per ξ over the whole batch (in parallel over ξ),
/// transform back (in parallel over samples).
#[allow(clippy::too_many_arguments)]
fn conv_whole<A: Alg>(
    g: &Geom,
    x: &[f32],
    c_in: usize,
    u: &[f32],
    k_out: usize,
    out: &mut [f32],
    after: impl Fn(usize, &mut [f32]) + Sync,
) {
    let a = A::T;
    let (h, w, hw) = (g.h, g.w, g.h * g.w);
    let (th, tw) = tiles(g);
    let (t, cols) = (th * tw, g.b * th * tw);
    let aa = a.alpha * a.alpha;
    let (cs, ms) = (skew(cols), skew(k_out * cols));
    with_scratch(aa * c_in * cs, aa * ms, |v, m| {
        transform_all::<A>(g, x, c_in, v, false);
        let v = &*v;
        par_chunks_mut(m, ms, |xi, mx| {
            let ua = View {
                data: &u[xi * c_in..],
                rs: aa * c_in,
                cs: 1,
            };
            let vb = View {
                data: &v[xi * cs..],
                rs: aa * cs,
                cs: 1,
            };
            g.sums
                .sgemm(k_out, cols, c_in, ua, vb, mx, cols, false, false);
        });
        let m = &*m;
        par_chunks_mut(out, k_out * hw, |s, o| {
            let mut rows = vec![0f32; rows_len(a, tw)];
            for (k, plane) in o.chunks_exact_mut(hw).enumerate() {
                let mk = &m[k * cols + s * t..];
                A::output(mk, ms, th, tw, plane, h, w, &mut rows);
            }
            after(s, o);
        });
    });
}

/// `Gᵀ s G` (r x r, row-major) of one transformed weight gradient, value ξ read
/// from `s[ξ·stride]`.
fn weight_grad_inverse(a: &Tables, s: &[f32], stride: usize, out: &mut [f32]) {
    let (r, al) = (a.r, a.alpha);
    // Gᵀ s: r x α.
    let mut gs = [[0f32; 6]; 5];
    for (i, row) in gs.iter_mut().enumerate().take(r) {
        for (q, v) in row.iter_mut().enumerate().take(al) {
            *v = (0..al).map(|p| a.g[p][i] * s[(p * al + q) * stride]).sum();
        }
    }
    for i in 0..r {
        for j in 0..r {
            out[i * r + j] = (0..al).map(|q| gs[i][q] * a.g[q][j]).sum();
        }
    }
}

/// Weight gradient (Cout, Cin, r, r) of the 'same' conv of `x` with output
/// gradient `dy`. Small maps: every plane transformed at once, one gemm per ξ
/// over the whole batch (in parallel over ξ). Otherwise per task (a fixed
/// partition of the groups) the transformed sum (α², Cout, Cin) is accumulated by
/// one gemm per ξ and chunk; the tasks' sums are added in order. Then the sum is
/// transformed back.
fn weight_grad_with<A: Alg>(g: &Geom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let a = A::T;
    let (h, w) = (g.h, g.w);
    let (th, tw) = tiles(g);
    let (hw, gs) = (h * w, group(g));
    let (cin, cout) = (g.cin, g.cout);
    let aa = a.alpha * a.alpha;
    let slen = aa * cout * cin;
    let groups = g.b.div_ceil(gs);
    let tasks = groups.min(WGRAD_TASKS);
    if tasks == 0 || hw == 0 {
        return vec![0f32; cout * cin * a.r * a.r];
    }
    if whole_batch(g) {
        return weight_grad_whole::<A>(g, x, dy);
    }
    let pw = padded(a, tw).0;
    let partial = |task: usize| -> Vec<f32> {
        let mut acc = vec![0f32; slen];
        let mut rows = vec![0f32; rows_len(a, tw)];
        for gi in task * groups / tasks..(task + 1) * groups / tasks {
            let s0 = gi * gs;
            let n = gs.min(g.b - s0);
            let step = chunk_rows(g, n);
            let mut pad = vec![0f32; (2 * step + a.alpha - 2) * pw];
            for ty0 in (0..th).step_by(step) {
                let tr = step.min(th - ty0);
                let (t, y0) = (tr * tw, 2 * ty0);
                let cols = n * t;
                let pad = &mut pad[..(2 * tr + a.alpha - 2) * pw];
                let (vs, ds) = (skew(cin * cols), skew(cout * cols));
                with_scratch(aa * vs, aa * ds, |v, d| {
                    for s in 0..n {
                        for c in 0..cin {
                            let plane = &x[((s0 + s) * cin + c) * hw..][..hw];
                            pad_rows(a, plane, h, w, tw, y0, pad);
                            let vv = &mut v[c * cols + s * t..];
                            A::input(pad, tr, tw, vv, vs, &mut rows);
                        }
                        for k in 0..cout {
                            let plane = &dy[((s0 + s) * cout + k) * hw + y0 * w..][..(h - y0) * w];
                            let dd = &mut d[k * cols + s * t..];
                            A::grad(plane, h - y0, w, tr, tw, dd, ds, &mut rows);
                        }
                    }
                    for xi in 0..aa {
                        let da = View {
                            data: &d[xi * ds..xi * ds + cout * cols],
                            rs: cols,
                            cs: 1,
                        };
                        // vᵀ: element (j, c) = v[ξ][c][j].
                        let vb = View {
                            data: &v[xi * vs..xi * vs + cin * cols],
                            rs: 1,
                            cs: cols,
                        };
                        let sc = &mut acc[xi * cout * cin..(xi + 1) * cout * cin];
                        sgemm(cout, cin, cols, da, vb, sc, cin, true, tasks == 1);
                    }
                });
            }
        }
        acc
    };
    inverse_all::<A>(g, &sum_partials(tasks, partial))
}

/// [`weight_grad_with`] for small maps: every plane transformed at once, one gemm per ξ over the
/// whole batch (in parallel over ξ).
fn weight_grad_whole<A: Alg>(g: &Geom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let a = A::T;
    let (th, tw) = tiles(g);
    let (cin, cout) = (g.cin, g.cout);
    let aa = a.alpha * a.alpha;
    let slen = aa * cout * cin;
    let cols = g.b * th * tw;
    let mut s = vec![0f32; slen];
    let cs = skew(cols);
    with_scratch(aa * cin * cs, aa * cout * cs, |v, d| {
        transform_all::<A>(g, x, cin, v, false);
        transform_all::<A>(g, dy, cout, d, true);
        let (v, d) = (&*v, &*d);
        par_chunks_mut(&mut s, cout * cin, |xi, sx| {
            let da = View {
                data: &d[xi * cs..],
                rs: aa * cs,
                cs: 1,
            };
            // vᵀ: element (j, c) = v[c][ξ][j].
            let vb = View {
                data: &v[xi * cs..],
                rs: 1,
                cs: aa * cs,
            };
            sgemm(cout, cin, cols, da, vb, sx, cin, false, false);
        });
    });
    inverse_all::<A>(g, &s)
}

/// The weight gradient (Cout, Cin, r, r) from its transform `s` (α², Cout, Cin).
fn inverse_all<A: Alg>(g: &Geom, s: &[f32]) -> Vec<f32> {
    let a = A::T;
    let (cin, cout, rr) = (g.cin, g.cout, a.r * a.r);
    let mut out = vec![0f32; cout * cin * rr];
    par_chunks_mut(&mut out, cin * rr, |k, row| {
        for c in 0..cin {
            A::inverse(
                &s[k * cin + c..],
                cout * cin,
                &mut row[c * rr..(c + 1) * rr],
            );
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One tile through each algorithm against the correlations it stands for,
    /// on small integers: F(2, r) forward, y(i, j) = Σ k(a, b)·d(i + a, j + b), and
    /// F(r, 2) for the weight gradient, dw(a, b) = Σ f(i, j)·d(i + a, j + b).
    #[test]
    fn one_tile_gives_the_correlations() {
        one_tile::<F23>();
        one_tile::<F25>();
    }

    fn one_tile<A: Alg>() {
        {
            let a = A::T;
            let (r, al) = (a.r, a.alpha);
            let d: Vec<f32> = (0..al * al)
                .map(|i| ((i * 7 + 3) % 11) as f32 - 5.0)
                .collect();
            let k: Vec<f32> = (0..r * r).map(|i| ((i * 5 + 1) % 9) as f32 - 4.0).collect();
            let f: [f32; 4] = [2., -3., 5., 7.];
            // The tile as [`pad_rows`] leaves it (one tile, tw = 1): per row the
            // even columns, then the odd ones.
            let half = al / 2;
            let pad: Vec<f32> = (0..al * al)
                .map(|i| {
                    let (row, j) = (i / al, i % al);
                    let col = if j < half { 2 * j } else { 2 * (j - half) + 1 };
                    d[row * al + col]
                })
                .collect();
            let mut rows = vec![0f32; rows_len(a, 1)];
            let (mut v, mut u, mut t) = (
                vec![0f32; al * al],
                vec![0f32; al * al],
                vec![0f32; al * al],
            );
            A::input(&pad, 1, 1, &mut v, 1, &mut rows);
            A::kernel(&k, false, &mut u, 1);
            let m: Vec<f32> = v.iter().zip(&u).map(|(x, y)| x * y).collect();
            let mut y = [0f32; 4];
            A::output(&m, 1, 1, 1, &mut y, 2, 2, &mut rows);
            for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let want: f32 = (0..r * r)
                    .map(|q| k[q] * d[(i + q / r) * al + j + q % r])
                    .sum();
                let got = y[2 * i + j];
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "r {r} y({i},{j}) {got} vs {want}"
                );
            }
            A::grad(&f, 2, 2, 1, 1, &mut t, 1, &mut rows);
            let s: Vec<f32> = v.iter().zip(&t).map(|(x, y)| x * y).collect();
            let mut dw = vec![0f32; r * r];
            A::inverse(&s, 1, &mut dw);
            // The written-out transforms equal the table-driven ones.
            let (mut v2, mut u2, mut t2, mut y2) = (
                vec![0f32; al * al],
                vec![0f32; al * al],
                vec![0f32; al * al],
                [0f32; 4],
            );
            input_generic(a, &pad, 1, 1, &mut v2, 1, &mut rows);
            kernel_transform(a, &k, false, &mut u2, 1);
            grad_generic(a, &f, 2, 2, 1, 1, &mut t2, 1, &mut rows);
            output_generic(a, &m, 1, 1, 1, &mut y2, 2, 2, &mut rows);
            let mut dw2 = vec![0f32; r * r];
            weight_grad_inverse(a, &s, 1, &mut dw2);
            for (what, x, y) in [
                ("input", &v, &v2),
                ("kernel", &u, &u2),
                ("grad", &t, &t2),
                ("output", &y.to_vec(), &y2.to_vec()),
                ("inverse", &dw, &dw2),
            ] {
                for (p, q) in x.iter().zip(y) {
                    assert!(
                        (p - q).abs() <= 1e-5 * q.abs().max(1.0),
                        "r {r} {what}: {p} vs {q}"
                    );
                }
            }
            for (q, &got) in dw.iter().enumerate() {
                let (p0, p1) = (q / r, q % r);
                let want: f32 = (0..4)
                    .map(|i| f[i] * d[(p0 + i / 2) * al + p1 + i % 2])
                    .sum();
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "r {r} dw {q} {got} vs {want}"
                );
            }
        }
    }
}
