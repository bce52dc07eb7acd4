//! 2x2 max pool, stride 2, output size floored (PyTorch's default): the
//! gradient goes to the window's first maximum (row-major), as in PyTorch. And
//! DenseNet's 3x3 / stride-2 / padding-1 pool, bit for bit the reference ops'.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m256, _CMP_GT_OQ};

#[cfg(target_arch = "x86_64")]
use pulp::bytemuck::cast;

use super::{Simd, contiguous_f32, par_chunks_mut};

/// (planes B·C, H, W) of a 4-d layout.
fn planes(dims: &[usize]) -> candle_core::Result<(usize, usize, usize)> {
    let &[b, c, h, w] = dims else {
        candle_core::bail!("ferbayes max pool: want a 4-d tensor, got {dims:?}");
    };
    Ok((b * c, h, w))
}

/// Planes per parallel job: about 16k input elements.
fn per_job(h: usize, w: usize) -> usize {
    (16384 / (h * w).max(1)).max(1)
}

/// 2x2 / stride-2 max pool of a (B, C, H, W) CPU f32 tensor.
pub fn max_pool2(xs: &Tensor) -> candle_core::Result<Tensor> {
    xs.contiguous()?.apply_op1(MaxPool2)
}

#[derive(Clone, Copy, Debug)]
struct MaxPool2;

impl CustomOp1 for MaxPool2 {
    fn name(&self) -> &'static str {
        "ferbayes-fast-maxpool2"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::device::cuda::max_pool(false, s, l)
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l)?;
        let (np, h, w) = planes(l.dims())?;
        let (ho, wo) = (h / 2, w / 2);
        let mut y = vec![0f32; np * ho * wo];
        if !y.is_empty() {
            let k = per_job(h, w);
            par_chunks_mut(&mut y, k * ho * wo, |j, ys| {
                let xs = &x[j * k * h * w..];
                for (yp, xp) in ys.chunks_mut(ho * wo).zip(xs.chunks(h * w)) {
                    // Row pairs, branch-free: the window's maximum is the value at its
                    // first maximum (where the backward sends the gradient).
                    for (yr, rows) in yp.chunks_exact_mut(wo).zip(xp.chunks_exact(2 * w)) {
                        let (r0, r1) = rows.split_at(w);
                        for ((y, a), b) in yr
                            .iter_mut()
                            .zip(r0.chunks_exact(2))
                            .zip(r1.chunks_exact(2))
                        {
                            *y = a[0].max(a[1]).max(b[0].max(b[1]));
                        }
                    }
                }
            });
        }
        let d = l.dims();
        Ok((CpuStorage::F32(y), Shape::from((d[0], d[1], ho, wo))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            x.contiguous()?
                .apply_op2_no_bwd(&grad.contiguous()?, &MaxPool2Bwd)?,
        ))
    }
}

/// (x, dy) -> dx: each dy to its window's first maximum.
#[derive(Clone, Copy, Debug)]
struct MaxPool2Bwd;

impl CustomOp2 for MaxPool2Bwd {
    fn name(&self) -> &'static str {
        "ferbayes-fast-maxpool2-bwd"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::device::cuda::max_pool_bwd(false, (s1, l1), (s2, l2))
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, dy) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let (np, h, w) = planes(l1.dims())?;
        let (ho, wo) = (h / 2, w / 2);
        if dy.len() != np * ho * wo {
            candle_core::bail!("ferbayes max pool bwd: grad {:?}", l2.dims());
        }
        let mut dx = vec![0f32; x.len()];
        if !dy.is_empty() {
            let k = per_job(h, w);
            let simd = super::simd();
            par_chunks_mut(&mut dx, k * h * w, |j, dxs| {
                let (xs, dys) = (&x[j * k * h * w..], &dy[j * k * ho * wo..]);
                pool2_bwd(simd, h, w, xs, dys, dxs);
            });
        }
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// [`pool2_bwd_planes`] with the SIMD kernels enabled when `simd` is given.
pub(super) fn pool2_bwd(
    simd: Option<Simd>,
    h: usize,
    w: usize,
    xs: &[f32],
    dys: &[f32],
    dxs: &mut [f32],
) {
    match simd {
        #[cfg(target_arch = "x86_64")]
        Some(s) => s.vectorize(|| pool2_bwd_planes(simd, h, w, xs, dys, dxs)),
        _ => pool2_bwd_planes(simd, h, w, xs, dys, dxs),
    }
}

/// The 2x2 max pool gradient of the planes in `dxs` (H x W each; `xs`, `dys`
/// start at the same planes): windows do not overlap, so each writes its own
/// 2x2 block, the gradient at its first maximum in row-major order (strict `>`)
/// and 0 at the other three. With AVX2, eight windows at a time, then the rest
/// one by one with the same comparisons.
#[inline(always)]
fn pool2_bwd_planes(
    simd: Option<Simd>,
    h: usize,
    w: usize,
    xs: &[f32],
    dys: &[f32],
    dxs: &mut [f32],
) {
    let (ho, wo) = (h / 2, w / 2);
    for ((dp, xp), gp) in dxs
        .chunks_mut(h * w)
        .zip(xs.chunks(h * w))
        .zip(dys.chunks(ho * wo))
    {
        for ((rows, drows), gr) in xp
            .chunks_exact(2 * w)
            .zip(dp.chunks_exact_mut(2 * w))
            .zip(gp.chunks_exact(wo))
        {
            let (x0, x1) = rows.split_at(w);
            let (d0, d1) = drows.split_at_mut(w);
            let done = simd.map_or(0, |s| pool2_bwd_rows_v3(s, x0, x1, gr, d0, d1));
            for (ox, &g) in gr.iter().enumerate().skip(done) {
                let (a, b) = (x0[2 * ox], x0[2 * ox + 1]);
                let (c, d) = (x1[2 * ox], x1[2 * ox + 1]);
                let ib = b > a;
                let m = if ib { b } else { a };
                let ic = c > m;
                let id = d > if ic { c } else { m };
                d1[2 * ox + 1] = if id { g } else { 0.0 };
                d1[2 * ox] = if !id && ic { g } else { 0.0 };
                d0[2 * ox + 1] = if !id && !ic && ib { g } else { 0.0 };
                d0[2 * ox] = if !id && !ic && !ib { g } else { 0.0 };
            }
        }
    }
}

/// Eight windows at a time of one row pair (`x0`, `x1` -> `d0`, `d1`, upstream
/// `gr`), the scalar loop's comparisons and selections lane by lane; returns
/// how many windows it did (a multiple of 8). The two rows split into the
/// windows' left and right entries with in-lane shuffles, which leave the
/// windows in the order 0 1 4 5 2 3 6 7; the upstream values are permuted to
/// match, and the unpacks that interleave the results back undo that order.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn pool2_bwd_rows_v3(
    simd: Simd,
    x0: &[f32],
    x1: &[f32],
    gr: &[f32],
    d0: &mut [f32],
    d1: &mut [f32],
) -> usize {
    let load = |s: &[f32], at: usize| -> __m256 {
        let mut v = [0f32; 8];
        v.copy_from_slice(&s[at..at + 8]);
        cast(v)
    };
    let store = |d: &mut [f32], at: usize, v: __m256| {
        d[at..at + 8].copy_from_slice(&cast::<__m256, [f32; 8]>(v));
    };
    let (avx, avx2) = (simd.avx, simd.avx2);
    let done = gr.len() / 8 * 8;
    for ox in (0..done).step_by(8) {
        let (t0, t1) = (load(x0, 2 * ox), load(x0, 2 * ox + 8));
        let (b0, b1) = (load(x1, 2 * ox), load(x1, 2 * ox + 8));
        let a = avx._mm256_shuffle_ps::<0x88>(t0, t1);
        let b = avx._mm256_shuffle_ps::<0xDD>(t0, t1);
        let c = avx._mm256_shuffle_ps::<0x88>(b0, b1);
        let d = avx._mm256_shuffle_ps::<0xDD>(b0, b1);
        let g: __m256 = cast(avx2._mm256_permute4x64_pd::<0xD8>(cast(load(gr, ox))));
        let ib = avx._mm256_cmp_ps::<_CMP_GT_OQ>(b, a);
        let m = avx._mm256_blendv_ps(a, b, ib);
        let ic = avx._mm256_cmp_ps::<_CMP_GT_OQ>(c, m);
        let m = avx._mm256_blendv_ps(m, c, ic);
        let id = avx._mm256_cmp_ps::<_CMP_GT_OQ>(d, m);
        let rd = avx._mm256_and_ps(id, g);
        let rc = avx._mm256_andnot_ps(id, avx._mm256_and_ps(ic, g));
        let dc = avx._mm256_or_ps(id, ic);
        let rb = avx._mm256_andnot_ps(dc, avx._mm256_and_ps(ib, g));
        let ra = avx._mm256_andnot_ps(avx._mm256_or_ps(dc, ib), g);
        store(d0, 2 * ox, avx._mm256_unpacklo_ps(ra, rb));
        store(d0, 2 * ox + 8, avx._mm256_unpackhi_ps(ra, rb));
        store(d1, 2 * ox, avx._mm256_unpacklo_ps(rc, rd));
        store(d1, 2 * ox + 8, avx._mm256_unpackhi_ps(rc, rd));
    }
    done
}

/// No SIMD kernel off x86-64 (`Simd` has no values there).
#[cfg(not(target_arch = "x86_64"))]
fn pool2_bwd_rows_v3(
    simd: Simd,
    _: &[f32],
    _: &[f32],
    _: &[f32],
    _: &mut [f32],
    _: &mut [f32],
) -> usize {
    match simd {}
}

/// 3x3 / stride-2 max pool with one pixel of zero padding (DenseNet's stem pool,
/// for inputs >= 0) of a (B, C, H, W) CPU f32 tensor: output side `(H - 1) / 2 + 1`.
/// Values and gradients are bit for bit those of the reference
/// `ops::max_pool3_s2_p1` (zero padding, then `maximum` chains over rows and then
/// columns: a gradient splits in halves between tied entries of each `maximum`),
/// computed per plane in parallel instead of by a dozen single-threaded candle ops.
pub fn max_pool3_s2_p1(xs: &Tensor) -> candle_core::Result<Tensor> {
    xs.contiguous()?.apply_op1(MaxPool3)
}

/// candle's `maximum` on f32.
#[inline]
fn maximum(a: f32, b: f32) -> f32 {
    if a < b { b } else { a }
}

/// The gradient shares of `m = maximum(maximum(a, b), c)` given dm = `g`, as
/// candle's `maximum` backward computes them: each side gets `[side == max] · g /
/// ([other side == max] + 1)`.
#[inline]
fn max3_grads(a: f32, b: f32, c: f32, g: f32) -> [f32; 3] {
    let eq = |x: f32, y: f32| if x == y { 1f32 } else { 0f32 };
    let t = maximum(a, b);
    let m = maximum(t, c);
    let gc = (eq(c, m) * g) / (eq(t, m) + 1.0);
    let gt = (eq(t, m) * g) / (eq(c, m) + 1.0);
    let ga = (eq(a, t) * gt) / (eq(b, t) + 1.0);
    let gb = (eq(b, t) * gt) / (eq(a, t) + 1.0);
    [ga, gb, gc]
}

/// One plane's geometry: (H, W), output (Ho, Wo), padded width W + 2.
#[derive(Clone, Copy, Debug)]
struct Pool3 {
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
}

impl Pool3 {
    fn new(h: usize, w: usize) -> candle_core::Result<Self> {
        if h == 0 || w == 0 {
            candle_core::bail!("ferbayes max pool 3x3: empty plane {h}x{w}");
        }
        Ok(Pool3 {
            h,
            w,
            ho: (h - 1) / 2 + 1,
            wo: (w - 1) / 2 + 1,
        })
    }

    /// The zero-padded plane's value at row `r`, column `c` (padded coordinates).
    #[inline]
    fn padded(&self, x: &[f32], r: usize, c: usize) -> f32 {
        if r == 0 || c == 0 || r > self.h || c > self.w {
            0.0
        } else {
            x[(r - 1) * self.w + (c - 1)]
        }
    }

    /// The row stage: `t1` (Ho, W + 2), the maximum over each window's three rows.
    fn rows(&self, x: &[f32], t1: &mut [f32]) {
        let wp = self.w + 2;
        for (oy, row) in t1.chunks_exact_mut(wp).enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                let r = 2 * oy;
                let t = maximum(self.padded(x, r, c), self.padded(x, r + 1, c));
                *v = maximum(t, self.padded(x, r + 2, c));
            }
        }
    }

    /// Forward of one plane.
    fn forward(&self, x: &[f32], y: &mut [f32], t1: &mut [f32]) {
        self.rows(x, t1);
        let wp = self.w + 2;
        for (yr, tr) in y.chunks_exact_mut(self.wo).zip(t1.chunks_exact(wp)) {
            for (ox, v) in yr.iter_mut().enumerate() {
                *v = maximum(maximum(tr[2 * ox], tr[2 * ox + 1]), tr[2 * ox + 2]);
            }
        }
    }

    /// Backward of one plane: `dx` (zeroed) from `dy`; `t1`, `dt1` scratch of
    /// (Ho, W + 2), `dxp` of (H + 2, W + 2).
    fn backward(&self, x: &[f32], dy: &[f32], dx: &mut [f32], scratch: &mut [f32]) {
        let wp = self.w + 2;
        let (t1, rest) = scratch.split_at_mut(self.ho * wp);
        let (dt1, dxp) = rest.split_at_mut(self.ho * wp);
        self.rows(x, t1);
        dt1.fill(0.0);
        dxp.fill(0.0);
        // Column stage: each output's gradient to its three row maxima.
        for oy in 0..self.ho {
            let (tr, dr) = (&t1[oy * wp..][..wp], &mut dt1[oy * wp..][..wp]);
            for ox in 0..self.wo {
                let c = 2 * ox;
                let g = max3_grads(tr[c], tr[c + 1], tr[c + 2], dy[oy * self.wo + ox]);
                dr[c] += g[0];
                dr[c + 1] += g[1];
                dr[c + 2] += g[2];
            }
        }
        // Row stage: each row maximum's gradient to its three (padded) rows.
        for oy in 0..self.ho {
            let r = 2 * oy;
            for c in 0..wp {
                let g = max3_grads(
                    self.padded(x, r, c),
                    self.padded(x, r + 1, c),
                    self.padded(x, r + 2, c),
                    dt1[oy * wp + c],
                );
                for (k, gk) in g.into_iter().enumerate() {
                    dxp[(r + k) * wp + c] += gk;
                }
            }
        }
        for (r, row) in dx.chunks_exact_mut(self.w).enumerate() {
            row.copy_from_slice(&dxp[(r + 1) * wp + 1..][..self.w]);
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct MaxPool3;

impl CustomOp1 for MaxPool3 {
    fn name(&self) -> &'static str {
        "ferbayes-fast-maxpool3-s2-p1"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::device::cuda::max_pool(true, s, l)
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l)?;
        let (np, h, w) = planes(l.dims())?;
        let p = Pool3::new(h, w)?;
        let mut y = vec![0f32; np * p.ho * p.wo];
        let k = per_job(h, w);
        par_chunks_mut(&mut y, k * p.ho * p.wo, |j, ys| {
            let mut t1 = vec![0f32; p.ho * (w + 2)];
            for (i, yp) in ys.chunks_mut(p.ho * p.wo).enumerate() {
                let plane = (j * k + i) * h * w;
                p.forward(&x[plane..plane + h * w], yp, &mut t1);
            }
        });
        let d = l.dims();
        Ok((CpuStorage::F32(y), Shape::from((d[0], d[1], p.ho, p.wo))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            x.contiguous()?
                .apply_op2_no_bwd(&grad.contiguous()?, &MaxPool3Bwd)?,
        ))
    }
}

/// (x, dy) -> dx of [`MaxPool3`].
#[derive(Clone, Copy, Debug)]
struct MaxPool3Bwd;

impl CustomOp2 for MaxPool3Bwd {
    fn name(&self) -> &'static str {
        "ferbayes-fast-maxpool3-s2-p1-bwd"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::device::cuda::max_pool_bwd(true, (s1, l1), (s2, l2))
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, dy) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let (np, h, w) = planes(l1.dims())?;
        let p = Pool3::new(h, w)?;
        if dy.len() != np * p.ho * p.wo {
            candle_core::bail!("ferbayes max pool 3x3 bwd: grad {:?}", l2.dims());
        }
        let mut dx = vec![0f32; x.len()];
        let k = per_job(h, w);
        par_chunks_mut(&mut dx, k * h * w, |j, dxs| {
            let mut scratch = vec![0f32; 2 * p.ho * (w + 2) + (h + 2) * (w + 2)];
            for (i, dp) in dxs.chunks_mut(h * w).enumerate() {
                let plane = j * k + i;
                p.backward(
                    &x[plane * h * w..][..h * w],
                    &dy[plane * p.ho * p.wo..][..p.ho * p.wo],
                    dp,
                    &mut scratch,
                );
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}
