//! 2-D convolution as im2col + gemm, parallel over fixed groups of samples.
//!
//! Layouts (all contiguous, row-major): x (B, Cin, H, W), w (Cout, K) with
//! K = Cin·kh·kw, y (B, Cout, P) with P = Ho·Wo. A group of n samples is
//! unfolded into `col` (K, n·P) (column s·P + p = output pixel p of sample s),
//! so one gemm per group computes W·col; a group has about 256 columns so the
//! gemm stays efficient on the small maps of the deep layers.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::gemm::{Sums, View, sgemm, sgemm_col_major};
use super::members::block_dims;
use super::winograd;
use super::{
    ZeroLog, contiguous_f32, par_chunks_mut, par_map, relu_row, sum_partials, with_scratch,
};
use rayon::prelude::*;

/// Most partial weight gradients (one per task) summed at the end: a fixed
/// partition of the batch, so the sum order never depends on the thread count.
const WGRAD_TASKS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Geom {
    pub b: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub pad: usize,
    pub stride: usize,
    pub ho: usize,
    pub wo: usize,
    /// Which kernels run (from the model's backend; the conv bench sets it to
    /// compare them).
    pub algo: Algo,
    /// How the forward products sum (see [`Sums`]): batch-independent in an inference pass.
    pub sums: Sums,
}

/// The kernels a conv runs on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Algo {
    /// Winograd for 3x3 / 5x5 'same' convs with enough channels, else im2col.
    Auto,
    /// im2col + gemm always.
    Im2col,
    /// Winograd wherever the shape allows (any channel count).
    Winograd,
}

impl Geom {
    pub(super) fn new(
        x: &[usize],
        w: &[usize],
        pad: usize,
        stride: usize,
        algo: Algo,
    ) -> candle_core::Result<Self> {
        let (&[b, cin, h, wd], &[cout, cin2, kh, kw]) = (x, w) else {
            candle_core::bail!("ferbayes conv: want 4-d input and kernel, got {x:?} {w:?}");
        };
        if cin != cin2 || stride == 0 || h + 2 * pad < kh || wd + 2 * pad < kw {
            candle_core::bail!("ferbayes conv: bad shapes {x:?} {w:?} pad {pad} stride {stride}");
        }
        Ok(Geom {
            b,
            cin,
            h,
            w: wd,
            cout,
            kh,
            kw,
            pad,
            stride,
            ho: (h + 2 * pad - kh) / stride + 1,
            wo: (wd + 2 * pad - kw) / stride + 1,
            algo,
            sums: Sums::Gemm,
        })
    }

    fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    fn p(&self) -> usize {
        self.ho * self.wo
    }

    fn in_len(&self) -> usize {
        self.cin * self.h * self.w
    }

    fn out_len(&self) -> usize {
        self.cout * self.p()
    }

    /// A 1x1, stride-1, unpadded conv: `col` would equal the input.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.pad == 0 && self.stride == 1
    }

    /// Samples per group: ~256 gemm columns, at least 4 groups when B >= 4.
    fn group(&self) -> usize {
        256usize
            .div_ceil(self.p().max(1))
            .min(self.b.div_ceil(4))
            .max(1)
    }
}

/// Range of output columns `ox` whose input column `ox·stride + kj - pad` lies
/// in `0..w` (with `kj`, `w`, `wo` = `ki`, `h`, `ho`: the range of output rows).
fn valid(g: &Geom, kj: usize, w: usize, wo: usize) -> (usize, usize) {
    let lo = if g.pad > kj {
        (g.pad - kj).div_ceil(g.stride)
    } else {
        0
    };
    let hi = if w + g.pad > kj {
        ((w - 1 + g.pad - kj) / g.stride + 1).min(wo)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Where tap (`ki`, `kj`) of a stride-1 conv as wide as its input reads a plane
/// of `len` pixels: output pixels `jlo..jhi` are the valid rows; of those,
/// `a..b` read plane pixels `src..src + (b - a)` (pixel j reads j + delta, delta =
/// (ki - pad)·W + (kj - pad)). Every valid pixel lies in `a..b`; the others in
/// `jlo..jhi` (those of `a..b` that wrapped across a row edge, and `jlo..a`,
/// `b..jhi`) are in the columns outside `clo..chi`, the columns tap `kj` reads
/// inside the plane.
struct Span {
    jlo: usize,
    jhi: usize,
    a: usize,
    b: usize,
    src: usize,
    clo: usize,
    chi: usize,
}

/// The [`Span`]s of every tap (index ki·kw + kj) over a plane of H·W pixels,
/// computed once per sample rather than per tap row (their integer divisions
/// were most of the edge zeroing's time on small maps).
fn same_spans(g: &Geom) -> Vec<Span> {
    let len = g.h * g.w;
    let mut spans = Vec::with_capacity(g.kh * g.kw);
    for ki in 0..g.kh {
        let (oy0, oy1) = valid(g, ki, g.h, g.ho);
        let (jlo, jhi) = (oy0 * g.w, oy1 * g.w);
        for kj in 0..g.kw {
            let delta =
                (ki as isize - g.pad as isize) * g.w as isize + (kj as isize - g.pad as isize);
            let a = (jlo as isize).max(-delta) as usize;
            let b = (jhi as isize).min(len as isize - delta).max(a as isize) as usize;
            let (clo, chi) = valid(g, kj, g.w, g.wo);
            spans.push(Span {
                jlo,
                jhi,
                a,
                b,
                src: (a as isize + delta) as usize,
                clo,
                chi,
            });
        }
    }
    spans
}

/// Zeroes the entries of columns outside `clo..chi` in `rows` (rows of width
/// `w`), column by column with strided stores: a fill per row would be a memset
/// call for one or two entries.
fn zero_edge_columns(w: usize, clo: usize, chi: usize, rows: &mut [f32]) {
    for c in (0..clo).chain(chi..w) {
        rows.iter_mut().skip(c).step_by(w).for_each(|v| *v = 0.0);
    }
}

/// One im2col row (one kernel tap of one input plane) of a stride-1 conv whose
/// output is as wide as its input: output pixel j reads input pixel j + delta,
/// so the valid rows are one contiguous copy; the entries that wrapped across a
/// row edge, or lie before / after the copy, are edge columns, zeroed afterwards.
/// (Tiny per-row copies were a large share of the small maps' time.)
fn im2col_row_same(w: usize, sp: &Span, plane: &[f32], dst: &mut [f32]) {
    dst[..sp.jlo].fill(0.0);
    dst[sp.jhi..].fill(0.0);
    if sp.jlo >= sp.jhi {
        return;
    }
    dst[sp.a..sp.b].copy_from_slice(&plane[sp.src..sp.src + (sp.b - sp.a)]);
    zero_edge_columns(w, sp.clo, sp.chi, &mut dst[sp.jlo..sp.jhi]);
}

/// Unfolds one sample `x` (Cin, H, W) into rows of `col` with row stride `ld`,
/// starting at column `off`.
fn im2col(g: &Geom, x: &[f32], col: &mut [f32], ld: usize, off: usize) {
    let (p, hw) = (g.p(), g.h * g.w);
    if g.pointwise() {
        // Row ci of `col` is plane ci: one copy per channel, no span bookkeeping (which
        // cost more than the copy itself on DenseNet's 4x4 and 2x2 maps).
        for (ci, plane) in x.chunks_exact(hw).enumerate().take(g.cin) {
            col[ci * ld + off..ci * ld + off + p].copy_from_slice(plane);
        }
        return;
    }
    let same = g.stride == 1 && g.wo == g.w;
    let spans = if same { same_spans(g) } else { Vec::new() };
    for ci in 0..g.cin {
        let plane = &x[ci * hw..(ci + 1) * hw];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = (ci * g.kh + ki) * g.kw + kj;
                let dst = &mut col[row * ld + off..row * ld + off + p];
                if same {
                    im2col_row_same(g.w, &spans[ki * g.kw + kj], plane, dst);
                    continue;
                }
                let (lo, hi) = valid(g, kj, g.w, g.wo);
                for oy in 0..g.ho {
                    let d = &mut dst[oy * g.wo..(oy + 1) * g.wo];
                    let iy = (oy * g.stride + ki).wrapping_sub(g.pad);
                    if iy >= g.h || lo >= hi {
                        d.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    d[..lo].fill(0.0);
                    d[hi..].fill(0.0);
                    let ix0 = lo * g.stride + kj - g.pad;
                    if g.stride == 1 {
                        d[lo..hi].copy_from_slice(&src[ix0..ix0 + hi - lo]);
                    } else {
                        for (v, ix) in d[lo..hi].iter_mut().zip((ix0..).step_by(g.stride)) {
                            *v = src[ix];
                        }
                    }
                }
            }
        }
    }
}

/// One tap's row of [`col2im`] for a stride-1 conv whose output is as wide as
/// its input (the adjoint of [`im2col_row_same`]): the entries that would wrap
/// across a row edge are zeroed in `src` (scratch), then the valid rows are one
/// contiguous shifted add instead of one short add per output row.
fn col2im_row_same(w: usize, sp: &Span, col: &mut [f32], plane: &mut [f32]) {
    if sp.jlo >= sp.jhi {
        return;
    }
    zero_edge_columns(w, sp.clo, sp.chi, &mut col[sp.jlo..sp.jhi]);
    let (a, b) = (sp.a, sp.b);
    for (d, &v) in plane[sp.src..sp.src + (b - a)].iter_mut().zip(&col[a..b]) {
        *d += v;
    }
}

/// Adds the columns `off..off + P` of `col` (row stride `ld`) back onto one
/// sample `dx` (Cin, H, W): the adjoint of [`im2col`]. `col` is scratch: entries
/// that no input pixel reads may be zeroed on the way.
fn col2im(g: &Geom, col: &mut [f32], ld: usize, off: usize, dx: &mut [f32]) {
    let (p, hw) = (g.p(), g.h * g.w);
    if g.pointwise() {
        for (ci, plane) in dx.chunks_exact_mut(hw).enumerate().take(g.cin) {
            let src = &col[ci * ld + off..ci * ld + off + p];
            plane.iter_mut().zip(src).for_each(|(d, &v)| *d += v);
        }
        return;
    }
    let same = g.stride == 1 && g.wo == g.w;
    let spans = if same { same_spans(g) } else { Vec::new() };
    for ci in 0..g.cin {
        let plane = &mut dx[ci * hw..(ci + 1) * hw];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = (ci * g.kh + ki) * g.kw + kj;
                let src = &mut col[row * ld + off..row * ld + off + p];
                if same {
                    col2im_row_same(g.w, &spans[ki * g.kw + kj], src, plane);
                    continue;
                }
                let (lo, hi) = valid(g, kj, g.w, g.wo);
                if lo >= hi {
                    continue;
                }
                for oy in 0..g.ho {
                    let iy = (oy * g.stride + ki).wrapping_sub(g.pad);
                    if iy >= g.h {
                        continue;
                    }
                    let s = &src[oy * g.wo + lo..oy * g.wo + hi];
                    let d = &mut plane[iy * g.w..(iy + 1) * g.w];
                    let ix0 = lo * g.stride + kj - g.pad;
                    if g.stride == 1 {
                        for (a, &v) in d[ix0..ix0 + hi - lo].iter_mut().zip(s) {
                            *a += v;
                        }
                    } else {
                        for (&v, ix) in s.iter().zip((ix0..).step_by(g.stride)) {
                            d[ix] += v;
                        }
                    }
                }
            }
        }
    }
}

/// Copies `n` samples' (Cout, P) blocks of `y` (B-major) into `t` (Cout, n·P).
fn gather(g: &Geom, y: &[f32], n: usize, t: &mut [f32]) {
    let p = g.p();
    for s in 0..n {
        for co in 0..g.cout {
            let src = &y[s * g.out_len() + co * p..][..p];
            t[co * n * p + s * p..][..p].copy_from_slice(src);
        }
    }
}

/// Adds the bias to, then applies the ReLU (if any) on, the outputs `o` of the
/// samples from `s0` on (`base`: the flat index of sample 0's first output in the
/// op's whole output, for the ReLU's log).
fn epilogue(
    g: &Geom,
    (base, s0): (usize, usize),
    o: &mut [f32],
    bias: Option<&[f32]>,
    relu: Option<&ZeroLog>,
) {
    if bias.is_none() && relu.is_none() {
        return;
    }
    let (p, base) = (g.p(), base + s0 * g.out_len());
    for (i, row) in o.chunks_exact_mut(p).enumerate() {
        if let Some(bias) = bias {
            let b = bias[i % g.cout];
            row.iter_mut().for_each(|v| *v += b);
        }
        if let Some(log) = relu {
            relu_row(row, base + i * p, log);
        }
    }
}

/// Forward: y = conv(x, w) (+ bias), then max(y, 0) when `relu` (which records
/// the exact zeros).
pub(super) fn forward(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: Option<&ZeroLog>,
) -> Vec<f32> {
    let mut out = vec![0f32; g.b * g.out_len()];
    forward_into(g, x, w, bias, relu, 0, &mut out);
    out
}

/// [`forward`] of `members` packed networks (see [`crate::members`]): `x`, `w` and
/// `bias` hold the members' blocks one after the other, `g` is one member's geometry.
fn forward_members(
    g: &Geom,
    members: usize,
    (x, w, bias): (&[f32], &[f32], Option<&[f32]>),
    relu: Option<&ZeroLog>,
) -> Vec<f32> {
    if members == 1 {
        return forward(g, x, w, bias, relu);
    }
    let (xl, yl, wl) = (g.b * g.in_len(), g.b * g.out_len(), g.cout * g.k());
    let mut out = vec![0f32; members * yl];
    out.par_chunks_mut(yl.max(1))
        .enumerate()
        .for_each(|(m, o)| {
            let bias = bias.map(|b| &b[m * g.cout..(m + 1) * g.cout]);
            let (xm, wm) = (&x[m * xl..(m + 1) * xl], &w[m * wl..(m + 1) * wl]);
            forward_into(g, xm, wm, bias, relu, m * yl, o);
        });
    out
}

/// [`forward`] into `out` (zeroed, B·Cout·P long), whose first element is flat
/// index `base` of the op's output.
fn forward_into(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: Option<&ZeroLog>,
    base: usize,
    out: &mut [f32],
) {
    let (k, p, gs) = (g.k(), g.p(), g.group());
    if out.is_empty() {
        return;
    }
    if let Some(kind) = winograd::alg(g) {
        winograd::convolve(kind, g, x, w, false, out, |s0, o| {
            epilogue(g, (base, s0), o, bias, relu)
        });
        return;
    }
    let single = g.b <= gs;
    let wv = View {
        data: w,
        rs: k,
        cs: 1,
    };
    let run = |gi: usize, o: &mut [f32]| {
        let s0 = gi * gs;
        let n = o.len() / g.out_len();
        let xs = &x[s0 * g.in_len()..(s0 + n) * g.in_len()];
        if n == 1 && g.pointwise() {
            let xv = View {
                data: xs,
                rs: p,
                cs: 1,
            };
            g.sums.sgemm(g.cout, p, k, wv, xv, o, p, false, single);
        } else {
            let tmp_len = if n == 1 { 0 } else { g.cout * n * p };
            with_scratch(k * n * p, tmp_len, |col, tmp| {
                for s in 0..n {
                    im2col(
                        g,
                        &xs[s * g.in_len()..(s + 1) * g.in_len()],
                        col,
                        n * p,
                        s * p,
                    );
                }
                let cv = View {
                    data: col,
                    rs: n * p,
                    cs: 1,
                };
                if n == 1 {
                    g.sums.sgemm(g.cout, p, k, wv, cv, o, p, false, single);
                } else {
                    g.sums
                        .sgemm(g.cout, n * p, k, wv, cv, tmp, n * p, false, single);
                    for s in 0..n {
                        for co in 0..g.cout {
                            o[s * g.out_len() + co * p..][..p]
                                .copy_from_slice(&tmp[co * n * p + s * p..][..p]);
                        }
                    }
                }
            });
        }
        epilogue(g, (base, s0), o, bias, relu);
    };
    if single {
        run(0, out);
    } else {
        par_chunks_mut(out, gs * g.out_len(), run);
    }
}

/// Input gradient: dx = col2im(Wᵀ · dy).
pub(super) fn backward_input(g: &Geom, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let (k, p, gs) = (g.k(), g.p(), g.group());
    let mut dx = vec![0f32; g.b * g.in_len()];
    if dx.is_empty() || g.out_len() == 0 {
        return dx;
    }
    if let Some(kind) = winograd::alg(g) {
        winograd::convolve(kind, g, dy, w, true, &mut dx, |_, _| {});
        return dx;
    }
    let single = g.b <= gs;
    // Wᵀ: element (r, co) = w[co·K + r].
    let wt = View {
        data: w,
        rs: 1,
        cs: k,
    };
    let run = |gi: usize, d: &mut [f32]| {
        let s0 = gi * gs;
        let n = d.len() / g.in_len();
        let dys = &dy[s0 * g.out_len()..(s0 + n) * g.out_len()];
        if n == 1 && g.pointwise() {
            let dv = View {
                data: dys,
                rs: p,
                cs: 1,
            };
            sgemm(k, p, g.cout, wt, dv, d, p, false, single);
            return;
        }
        let t_len = if n == 1 { 0 } else { g.cout * n * p };
        with_scratch(k * n * p, t_len, |dcol, t| {
            let dv = if n == 1 {
                View {
                    data: dys,
                    rs: p,
                    cs: 1,
                }
            } else {
                gather(g, dys, n, t);
                View {
                    data: t,
                    rs: n * p,
                    cs: 1,
                }
            };
            sgemm(k, n * p, g.cout, wt, dv, dcol, n * p, false, single);
            for s in 0..n {
                col2im(
                    g,
                    dcol,
                    n * p,
                    s * p,
                    &mut d[s * g.in_len()..(s + 1) * g.in_len()],
                );
            }
        });
    };
    if single {
        run(0, &mut dx);
    } else {
        par_chunks_mut(&mut dx, gs * g.in_len(), run);
    }
    dx
}

/// Weight gradient: dW = Σ_groups dy_g · col_gᵀ, summed per task over a fixed
/// partition of the groups, then over tasks in order (deterministic). The sums
/// are kept column-major (dWᵀ, K x Cout) and transposed at the end: for that
/// orientation gemm repacks only dy (Cout x n·P) and reads the columns as they
/// are, where a row-major dW made it repack the K x n·P columns per group (a
/// quarter of the weight gradient's time on cpu AlexNet); same sums either way.
pub(super) fn backward_weight(g: &Geom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (k, p, gs) = (g.k(), g.p(), g.group());
    let wlen = g.cout * k;
    let groups = g.b.div_ceil(gs);
    let tasks = groups.min(WGRAD_TASKS);
    if wlen == 0 || tasks == 0 || p == 0 {
        return vec![0f32; wlen];
    }
    if let Some(kind) = winograd::alg(g) {
        return winograd::weight_grad(kind, g, x, dy);
    }
    let single = tasks == 1;
    let partial = |t: usize| -> Vec<f32> {
        let mut acc = vec![0f32; wlen];
        for gi in t * groups / tasks..(t + 1) * groups / tasks {
            let s0 = gi * gs;
            let n = gs.min(g.b - s0);
            let xs = &x[s0 * g.in_len()..(s0 + n) * g.in_len()];
            let dys = &dy[s0 * g.out_len()..(s0 + n) * g.out_len()];
            if n == 1 && g.pointwise() {
                let dv = View {
                    data: dys,
                    rs: p,
                    cs: 1,
                };
                let xt = View {
                    data: xs,
                    rs: 1,
                    cs: p,
                };
                sgemm_col_major(g.cout, k, p, dv, xt, &mut acc, g.cout, true, single);
                continue;
            }
            let t_len = if n == 1 { 0 } else { g.cout * n * p };
            with_scratch(k * n * p, t_len, |col, t| {
                for s in 0..n {
                    im2col(
                        g,
                        &xs[s * g.in_len()..(s + 1) * g.in_len()],
                        col,
                        n * p,
                        s * p,
                    );
                }
                let dv = if n == 1 {
                    View {
                        data: dys,
                        rs: p,
                        cs: 1,
                    }
                } else {
                    gather(g, dys, n, t);
                    View {
                        data: t,
                        rs: n * p,
                        cs: 1,
                    }
                };
                // colᵀ: element (j, r) = col[r·nP + j].
                let ct = View {
                    data: col,
                    rs: 1,
                    cs: n * p,
                };
                sgemm_col_major(g.cout, k, n * p, dv, ct, &mut acc, g.cout, true, single);
            });
        }
        acc
    };
    let t = sum_partials(tasks, partial);
    let mut dw = vec![0f32; wlen];
    for (r, col) in t.chunks_exact(g.cout).enumerate() {
        for (co, &v) in col.iter().enumerate() {
            dw[co * k + r] = v;
        }
    }
    dw
}

/// Bias gradient: dy summed over batch and pixels, per output channel (fixed order:
/// each sample's plane summed, the planes added in sample order), channels in parallel.
pub(super) fn backward_bias(g: &Geom, dy: &[f32]) -> Vec<f32> {
    let p = g.p();
    par_map(g.cout, |co| {
        (0..g.b).fold(0f32, |o, s| {
            o + dy[s * g.out_len() + co * p..][..p].iter().sum::<f32>()
        })
    })
}

/// The conv custom op: (x, w) or (x, w, bias), with an optional ReLU on the
/// output (`relu`: where its forward pass records the exact zeros).
#[derive(Clone, Debug)]
pub(super) struct Conv {
    pub pad: usize,
    pub stride: usize,
    pub relu: Option<Arc<ZeroLog>>,
    pub algo: Algo,
    /// Packed networks (see [`crate::members`]); 1 for one network.
    pub members: usize,
    /// How the forward products sum: [`Sums::Independent`] when no input tracks gradients.
    pub sums: Sums,
}

impl Conv {
    /// One member's geometry.
    fn geom_of(&self, x: &[usize], w: &[usize]) -> candle_core::Result<Geom> {
        let (x, w) = (block_dims(x, self.members)?, block_dims(w, self.members)?);
        let mut g = Geom::new(&x, &w, self.pad, self.stride, self.algo)?;
        g.sums = self.sums;
        Ok(g)
    }

    fn geom(&self, l1: &Layout, l2: &Layout) -> candle_core::Result<Geom> {
        self.geom_of(l1.dims(), l2.dims())
    }

    /// The output shape of all members.
    fn out_shape(&self, g: &Geom) -> Shape {
        Shape::from((self.members * g.b, g.cout, g.ho, g.wo))
    }

    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        res: &Tensor,
        grad: &Tensor,
        bias: bool,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.geom_of(x.dims(), w.dims())?;
        let members = self.members;
        let grad = match &self.relu {
            Some(log) => super::relu_grad(grad, res, log)?,
            None => grad.contiguous()?,
        };
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(
                &w.contiguous()?,
                &Bwd {
                    g,
                    members,
                    what: What::Input,
                },
            )?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(x.contiguous()?.apply_op2_no_bwd(
                &grad,
                &Bwd {
                    g,
                    members,
                    what: What::Weight,
                },
            )?)
        } else {
            None
        };
        let db = if bias {
            Some(grad.apply_op2_no_bwd(
                &grad,
                &Bwd {
                    g,
                    members,
                    what: What::Bias,
                },
            )?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        "ferbayes-fast-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.geom(l1, l2)?;
        let (x, w) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let y = forward_members(&g, self.members, (x, w, None), self.relu.as_deref());
        Ok((CpuStorage::F32(y), self.out_shape(&g)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.grads(x, w, res, grad, false)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for Conv {
    fn name(&self) -> &'static str {
        "ferbayes-fast-conv2d-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.geom(l1, l2)?;
        let bias = contiguous_f32(s3, l3)?;
        if bias.len() != self.members * g.cout {
            candle_core::bail!(
                "ferbayes conv: bias {:?} for {} channels",
                l3.dims(),
                g.cout
            );
        }
        let (x, w) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let y = forward_members(&g, self.members, (x, w, Some(bias)), self.relu.as_deref());
        Ok((CpuStorage::F32(y), self.out_shape(&g)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.grads(x, w, res, grad, b.track_op())
    }
}

#[derive(Clone, Copy, Debug)]
enum What {
    /// (dy, w) -> dx
    Input,
    /// (x, dy) -> dw
    Weight,
    /// (dy, dy) -> dbias
    Bias,
}

/// The three gradients as no-backward ops.
#[derive(Clone, Copy, Debug)]
struct Bwd {
    /// One member's geometry.
    g: Geom,
    members: usize,
    what: What,
}

impl CustomOp2 for Bwd {
    fn name(&self) -> &'static str {
        "ferbayes-fast-conv2d-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g, m) = (&self.g, self.members);
        let (a, b) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let (xl, yl, wl) = (g.b * g.in_len(), g.b * g.out_len(), g.cout * g.k());
        let want = match self.what {
            What::Input => (yl, wl),
            What::Weight => (xl, yl),
            What::Bias => (yl, yl),
        };
        if (a.len(), b.len()) != (m * want.0, m * want.1) {
            candle_core::bail!(
                "ferbayes conv bwd: lengths {:?}, want {m} x {want:?}",
                (a.len(), b.len())
            );
        }
        // Member by member (in parallel when packed), each block as one network's.
        let one = |i: usize| {
            let (a, b) = (&a[i * want.0..][..want.0], &b[i * want.1..][..want.1]);
            match self.what {
                What::Input => backward_input(g, a, b),
                What::Weight => backward_weight(g, a, b),
                What::Bias => backward_bias(g, a),
            }
        };
        let v = if m == 1 {
            one(0)
        } else {
            par_map(m, one).concat()
        };
        let shape = match self.what {
            What::Input => Shape::from((m * g.b, g.cin, g.h, g.w)),
            What::Weight => Shape::from((m * g.cout, g.cin, g.kh, g.kw)),
            What::Bias => Shape::from(m * g.cout),
        };
        Ok((CpuStorage::F32(v), shape))
    }
}
