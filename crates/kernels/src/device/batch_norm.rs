//! BatchNorm: the batch statistics, the normalisation with an optional ReLU, its backward, and
//! the running statistics of a forward pass updated as one multi-tensor op ([`flush_running`]).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, InplaceOp2, Layout, Shape, Tensor};

#[cfg(feature = "cuda")]
use super::cuda;
use super::{CHUNK, Result, count_inplace};
use crate::{contiguous_f32, par_chunks_mut, par_map};

/// The layout of a BatchNorm input (G·B, C, S...) with G packed members: each of the G·C
/// "virtual channels" (member g's channel c is g·C + c) normalises its B·S elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BnDims {
    pub(crate) members: usize,
    /// Samples per member.
    pub(crate) b: usize,
    pub(crate) c: usize,
    /// Elements per channel per sample.
    pub(crate) s: usize,
}

impl BnDims {
    pub(crate) fn new(dims: &[usize], members: usize) -> Result<Self> {
        let members = members.max(1);
        if dims.len() < 2 || !dims[0].is_multiple_of(members) || dims[0] == 0 {
            candle_core::bail!("ferbayes device batch norm: dims {dims:?} for {members} members");
        }
        Ok(BnDims {
            members,
            b: dims[0] / members,
            c: dims[1],
            s: dims[2..].iter().product(),
        })
    }

    /// Virtual channels G·C.
    pub(crate) fn channels(&self) -> usize {
        self.members * self.c
    }

    /// Elements per virtual channel, B·S.
    pub(crate) fn per_channel(&self) -> usize {
        self.b * self.s
    }

    /// The flat index of element j (in sample-major order) of virtual channel `vc`.
    #[inline]
    pub(crate) fn index(&self, vc: usize, j: usize) -> usize {
        let (g, c) = (vc / self.c, vc % self.c);
        let n = g * self.b + j / self.s;
        (n * self.c + c) * self.s + j % self.s
    }

    /// The virtual channel of flat index `i`.
    #[inline]
    pub(crate) fn channel_of(&self, i: usize) -> usize {
        let n = i / (self.c * self.s);
        let c = (i / self.s) % self.c;
        (n / self.b) * self.c + c
    }

    /// Partial sums per virtual channel.
    pub(crate) fn chunks(&self) -> usize {
        self.per_channel().div_ceil(CHUNK)
    }
}

/// The per-channel map of the normalisation, in f32 as the kernels compute it:
/// `scale = gamma / sqrt(var + eps)` and `shift = beta - mean · scale`.
#[inline]
fn affine(gamma: f32, beta: f32, mean: f32, var: f32, eps: f32) -> (f32, f32, f32) {
    let inv = 1.0 / (var + eps).sqrt();
    let scale = gamma * inv;
    (inv, scale, beta - mean * scale)
}

/// BatchNorm over dim 1 of `xs` ((G·B, C, ...), `members` packed networks, each normalising
/// its own block), then a ReLU when `relu`. With `train`, the batch's statistics, and the
/// running statistics `running_mean` / `running_var` ((G·C), f32) to be updated in place with
/// `momentum` (unbiased variance, as candle and PyTorch) by the next [`flush_running`] on this
/// thread (every BatchNorm of a forward pass in one multi-tensor update; the model flushes at
/// the end of its forward pass); otherwise the running statistics.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    xs: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    (eps, momentum): (f64, f64),
    relu: bool,
    train: bool,
    members: usize,
) -> Result<Tensor> {
    let xs = xs.contiguous()?;
    let dims = BnDims::new(xs.dims(), members)?;
    let vc = dims.channels();
    for (what, t) in [
        ("gamma", gamma),
        ("beta", beta),
        ("mean", running_mean),
        ("var", running_var),
    ] {
        if t.elem_count() != vc {
            candle_core::bail!(
                "ferbayes device batch norm: {what} has {:?} for {vc} channels",
                t.dims()
            );
        }
    }
    let stats = if train {
        let stats = xs.apply_op1_no_bwd(&BnStats { dims })?;
        let n = dims.per_channel() as f64;
        let unbiased = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
        PENDING.with(|p| {
            p.borrow_mut().push(PendingRunning {
                mean: running_mean.clone(),
                var: running_var.clone(),
                stats: stats.clone(),
                keep: (1.0 - momentum) as f32,
                take_mean: momentum as f32,
                take_var: (momentum * unbiased) as f32,
            })
        });
        stats
    } else {
        Tensor::stack(
            &[running_mean.flatten_all()?, running_var.flatten_all()?],
            0,
        )?
    };
    let op = BnApply {
        dims,
        stats,
        eps: eps as f32,
        relu,
        train,
    };
    xs.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)
}

/// A running-statistics update [`batch_norm`] left for [`flush_running`].
#[derive(Clone, Debug)]
pub(crate) struct PendingRunning {
    pub(crate) mean: Tensor,
    pub(crate) var: Tensor,
    /// (2, G·C): the batch mean and biased variance.
    pub(crate) stats: Tensor,
    pub(crate) keep: f32,
    pub(crate) take_mean: f32,
    pub(crate) take_var: f32,
}

thread_local! {
    static PENDING: std::cell::RefCell<Vec<PendingRunning>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Applies the running-statistics updates the training-mode [`batch_norm`] calls on this thread
/// left since the last flush, in their order, as one multi-tensor in-place update (one kernel
/// launch on a GPU): `running ← running · (1 − momentum) + batch statistic · momentum` (the
/// variance unbiased). Nothing to do without pending updates.
pub fn flush_running() -> Result<()> {
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if pending.is_empty() {
        return Ok(());
    }
    #[cfg(feature = "cuda")]
    if pending[0].mean.device().is_cuda() {
        cuda::running_multi(&pending)?;
        count_inplace(1);
        return Ok(());
    }
    for p in &pending {
        for (row, running, take) in [(0, &p.mean, p.take_mean), (1, &p.var, p.take_var)] {
            running.inplace_op2(
                &p.stats,
                &RunningUpdate {
                    row,
                    keep: p.keep,
                    take,
                },
            )?;
        }
    }
    count_inplace(1);
    Ok(())
}

/// Drops the running-statistics updates pending on this thread (those of a forward pass that
/// failed part way).
pub fn discard_running() {
    PENDING.with(|p| p.borrow_mut().clear());
}

/// x -> (2, G·C) f32: row 0 the mean, row 1 the biased variance of each virtual channel, from
/// f64 sums of `x - shift` and `(x - shift)²` (shift: the channel's first element, which keeps
/// the one-pass variance from cancelling), chunk by chunk in index order.
#[derive(Clone, Debug)]
pub(crate) struct BnStats {
    pub(crate) dims: BnDims,
}

/// Of one virtual channel: the chunk partials of (Σ d, Σ d²), d = x - shift.
fn stats_partials(x: &[f32], dims: &BnDims, vc: usize) -> Vec<(f64, f64)> {
    let n = dims.per_channel();
    let shift = f64::from(x[dims.index(vc, 0)]);
    (0..dims.chunks())
        .map(|k| {
            let (mut s1, mut s2) = (0f64, 0f64);
            for j in k * CHUNK..((k + 1) * CHUNK).min(n) {
                let d = f64::from(x[dims.index(vc, j)]) - shift;
                s1 += d;
                s2 += d * d;
            }
            (s1, s2)
        })
        .collect()
}

/// (mean, biased variance) of one virtual channel from its chunk partials.
fn stats_final(x0: f32, partials: &[(f64, f64)], n: usize) -> (f32, f32) {
    let (mut s1, mut s2) = (0f64, 0f64);
    for &(a, b) in partials {
        s1 += a;
        s2 += b;
    }
    let n = n as f64;
    let m1 = s1 / n;
    let var = s2 / n - m1 * m1;
    ((f64::from(x0) + m1) as f32, var.max(0.0) as f32)
}

impl CustomOp1 for BnStats {
    fn name(&self) -> &'static str {
        "ferbayes-device-bn-stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l)?;
        let d = self.dims;
        let vc = d.channels();
        let mv = par_map(vc, |ch| {
            let p = stats_partials(x, &d, ch);
            stats_final(x[d.index(ch, 0)], &p, d.per_channel())
        });
        let mut out = vec![0f32; 2 * vc];
        for (ch, (m, v)) in mv.into_iter().enumerate() {
            out[ch] = m;
            out[vc + ch] = v;
        }
        Ok((CpuStorage::F32(out), Shape::from((2, vc))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::bn_stats(self, s, l)
    }
}

/// running ← running · keep + stats[row] · take, in place (on the CPU; a GPU runs every
/// layer's at once, see [`flush_running`]).
#[derive(Clone, Debug)]
pub(crate) struct RunningUpdate {
    pub(crate) row: usize,
    pub(crate) keep: f32,
    pub(crate) take: f32,
}

impl InplaceOp2 for RunningUpdate {
    fn name(&self) -> &'static str {
        "ferbayes-device-bn-running"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        src: &CpuStorage,
        src_l: &Layout,
    ) -> Result<()> {
        let stats = contiguous_f32(src, src_l)?;
        let (CpuStorage::F32(run), Some((a, b))) = (dst, dst_l.contiguous_offsets()) else {
            candle_core::bail!("ferbayes running statistics: want a contiguous f32 tensor");
        };
        let run = &mut run[a..b];
        let vc = run.len();
        if stats.len() != 2 * vc {
            candle_core::bail!(
                "ferbayes running statistics: {} stats for {vc}",
                stats.len()
            );
        }
        for (r, &s) in run
            .iter_mut()
            .zip(&stats[self.row * vc..(self.row + 1) * vc])
        {
            *r = *r * self.keep + s * self.take;
        }
        Ok(())
    }
}

/// (x, gamma, beta) -> the normalised x (then a ReLU when `relu`), with the statistics of
/// `stats` ((2, G·C): mean; variance). Its backward is the whole BatchNorm's: with `train`,
/// through the batch statistics too.
#[derive(Clone, Debug)]
pub(crate) struct BnApply {
    pub(crate) dims: BnDims,
    pub(crate) stats: Tensor,
    pub(crate) eps: f32,
    pub(crate) relu: bool,
    pub(crate) train: bool,
}

/// The f32 contents of a contiguous CPU tensor, for an op that holds one.
fn held_f32(t: &Tensor) -> Result<Vec<f32>> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(s) => Ok(contiguous_f32(s, layout)?.to_vec()),
        _ => candle_core::bail!("ferbayes device op: held tensor is not on the CPU"),
    }
}

impl CustomOp3 for BnApply {
    fn name(&self) -> &'static str {
        "ferbayes-device-bn-apply"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, gamma, beta) = (
            contiguous_f32(s1, l1)?,
            contiguous_f32(s2, l2)?,
            contiguous_f32(s3, l3)?,
        );
        let stats = held_f32(&self.stats)?;
        let d = self.dims;
        let vc = d.channels();
        let mut y = vec![0f32; x.len()];
        par_chunks_mut(&mut y, 1 << 14, |k, ys| {
            let at = k * (1 << 14);
            for (i, y) in (at..).zip(ys.iter_mut()) {
                let ch = d.channel_of(i);
                let (_, scale, shift) =
                    affine(gamma[ch], beta[ch], stats[ch], stats[vc + ch], self.eps);
                let v = x[i] * scale + shift;
                *y = if self.relu && v < 0.0 { 0.0 } else { v };
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    #[allow(clippy::too_many_arguments)]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::bn_apply(self, (s1, l1), (s2, l2), (s3, l3))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let x = x.contiguous()?;
        let held = BnHeld {
            dims: self.dims,
            stats: self.stats.clone(),
            gamma: gamma.contiguous()?,
            beta: beta.contiguous()?,
            eps: self.eps,
            relu: self.relu,
        };
        // (2·G·C,): dgamma, then dbeta.
        let sums = x.apply_op2_no_bwd(&grad, &BnBwdSums { held: held.clone() })?;
        let dx = if x.track_op() {
            Some(x.apply_op3_no_bwd(
                &grad,
                &sums,
                &BnBwdDx {
                    held,
                    train: self.train,
                },
            )?)
        } else {
            None
        };
        let vc = self.dims.channels();
        let row = |r: usize| sums.narrow(0, r * vc, vc);
        Ok((
            dx,
            gamma.track_op().then(|| row(0)).transpose()?,
            beta.track_op().then(|| row(1)).transpose()?,
        ))
    }
}

/// What the BatchNorm backward ops hold: the forward's statistics and affine weights.
#[derive(Clone, Debug)]
pub(crate) struct BnHeld {
    pub(crate) dims: BnDims,
    pub(crate) stats: Tensor,
    pub(crate) gamma: Tensor,
    pub(crate) beta: Tensor,
    pub(crate) eps: f32,
    pub(crate) relu: bool,
}

/// The upstream gradient through the fused ReLU: `dy` where the pre-activation (recomputed
/// exactly as the forward computed it) is >= 0 (candle's `relu` rule), else 0.
#[inline]
fn relu_masked(relu: bool, x: f32, dy: f32, scale: f32, shift: f32) -> f32 {
    if relu && x * scale + shift < 0.0 {
        0.0
    } else {
        dy
    }
}

/// (x, dy) -> (2·G·C,) f32: dgamma = Σ dy·(x − mean)·inv per virtual channel, then dbeta = Σ dy
/// (dy through the ReLU), f64 sums over the same chunks as the statistics. Flat, so that each
/// half is the parameter's gradient as one view.
#[derive(Clone, Debug)]
pub(crate) struct BnBwdSums {
    pub(crate) held: BnHeld,
}

impl CustomOp2 for BnBwdSums {
    fn name(&self) -> &'static str {
        "ferbayes-device-bn-bwd-sums"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, dy) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let h = &self.held;
        let (stats, gamma, beta) = (held_f32(&h.stats)?, held_f32(&h.gamma)?, held_f32(&h.beta)?);
        let d = h.dims;
        let vc = d.channels();
        let n = d.per_channel();
        let sums = par_map(vc, |ch| {
            let (mean, var) = (stats[ch], stats[vc + ch]);
            let (inv, scale, shift) = affine(gamma[ch], beta[ch], mean, var, h.eps);
            let partials: Vec<(f64, f64)> = (0..d.chunks())
                .map(|k| {
                    let (mut t1, mut t2) = (0f64, 0f64);
                    for j in k * CHUNK..((k + 1) * CHUNK).min(n) {
                        let i = d.index(ch, j);
                        let g = f64::from(relu_masked(h.relu, x[i], dy[i], scale, shift));
                        t1 += g;
                        t2 += g * (f64::from(x[i]) - f64::from(mean));
                    }
                    (t1, t2)
                })
                .collect();
            let (mut t1, mut t2) = (0f64, 0f64);
            for (a, b) in partials {
                t1 += a;
                t2 += b;
            }
            ((t2 * f64::from(inv)) as f32, t1 as f32)
        });
        let mut out = vec![0f32; 2 * vc];
        for (ch, (dg, db)) in sums.into_iter().enumerate() {
            out[ch] = dg;
            out[vc + ch] = db;
        }
        Ok((CpuStorage::F32(out), Shape::from(2 * vc)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::bn_bwd_sums(self, (s1, l1), (s2, l2))
    }
}

/// (x, dy, sums) -> dx. With `train`: `scale · (dy − dbeta/N − x̂ · dgamma/N)`, x̂ = (x − mean)·inv,
/// N = B·S, the gradient through the batch statistics; otherwise `scale · dy` (dy through the
/// ReLU in both).
#[derive(Clone, Debug)]
pub(crate) struct BnBwdDx {
    pub(crate) held: BnHeld,
    pub(crate) train: bool,
}

impl CustomOp3 for BnBwdDx {
    fn name(&self) -> &'static str {
        "ferbayes-device-bn-bwd-dx"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, dy, sums) = (
            contiguous_f32(s1, l1)?,
            contiguous_f32(s2, l2)?,
            contiguous_f32(s3, l3)?,
        );
        let h = &self.held;
        let (stats, gamma, beta) = (held_f32(&h.stats)?, held_f32(&h.gamma)?, held_f32(&h.beta)?);
        let d = h.dims;
        let vc = d.channels();
        let n = d.per_channel() as f32;
        let mut dx = vec![0f32; x.len()];
        par_chunks_mut(&mut dx, 1 << 14, |k, out| {
            let at = k * (1 << 14);
            for (i, o) in (at..).zip(out.iter_mut()) {
                let ch = d.channel_of(i);
                let (mean, var) = (stats[ch], stats[vc + ch]);
                let (inv, scale, shift) = affine(gamma[ch], beta[ch], mean, var, h.eps);
                let g = relu_masked(h.relu, x[i], dy[i], scale, shift);
                *o = if self.train {
                    let xhat = (x[i] - mean) * inv;
                    scale * ((g - sums[vc + ch] / n) - xhat * (sums[ch] / n))
                } else {
                    scale * g
                };
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    #[allow(clippy::too_many_arguments)]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::bn_bwd_dx(self, (s1, l1), (s2, l2), (s3, l3))
    }
}
