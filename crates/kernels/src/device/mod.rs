//! The device ops: each layer's work as one fused op on any device, for
//! [`crate::Backend::Device`], the backend a GPU runs.
//!
//! candle's reference ops spell a BatchNorm as some 90 elementwise ops and reductions per
//! training step, a pool's gradient as a dozen, a dropout mask as a host-side draw and an
//! upload, so a DenseNet-121 step is bound by how fast the host launches kernels. Here every
//! op is one candle custom op whose forward and backward are one or two kernels:
//!
//! * [`batch_norm`]: batch statistics (a two-stage reduction, per channel: fixed chunks of
//!   [`CHUNK`] elements summed in f64 in index order, then the chunks summed in order), the
//!   normalisation with an optional ReLU, a backward of two reductions and one elementwise
//!   pass, and the running statistics updated in place;
//! * [`dropout`]: the mask drawn inside the op from the member's ChaCha8 stream at the
//!   position the CPU would draw it ([`chacha`]), so the masks (and the products) are bit for
//!   bit the CPU's, whatever the device; the backward redraws the same mask;
//! * [`conv2d`]: forward, input gradient and weight gradient as three ops (cuDNN with the
//!   `cudnn` feature; im2col + gemm on the CPU);
//! * the pools and DenseNet's concatenation reuse the fused ops of this crate, which are one
//!   op each way on every device.
//!
//! Every op computes the same arithmetic on the CPU (the `cpu_fwd` below) as its kernel in
//! `kernels.cu` does on a GPU: every reduction sums in a fixed order (so the same device gives
//! the same bits twice), every f32 and f64 operation is rounded as written (the CUDA source
//! uses the `__f*_rn` / `__d*_rn` intrinsics so that nvcc contracts nothing into FMAs). On the
//! CPU these ops exist to test and count what a GPU runs; the CPU backends stay faster there.

pub mod chacha;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
#[cfg(test)]
mod gpu_tests;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, InplaceOp2, Layout, Shape, Tensor,
};

pub use chacha::MaskStream;

use super::conv::{self, Algo, Geom};
use super::{contiguous_f32, par_chunks_mut, par_map};

/// Elements per partial sum of the two-stage reductions (per channel).
pub const CHUNK: usize = 1024;

type Result<T> = candle_core::Result<T>;

static INPLACE_OPS: AtomicUsize = AtomicUsize::new(0);

/// The in-place ops (running-statistic updates, optimiser steps) this process has applied
/// through [`count_inplace`]: they create no tensor, so [`crate::tensors_created`] does not
/// see them; each is one kernel launch on a GPU.
pub fn inplace_ops() -> usize {
    INPLACE_OPS.load(Ordering::Relaxed)
}

/// Counts `n` in-place ops (see [`inplace_ops`]).
pub fn count_inplace(n: usize) {
    INPLACE_OPS.fetch_add(n, Ordering::Relaxed);
}

/// Whether the device ops can run on this tensor's device: the CPU always, a CUDA GPU with the
/// `cuda` feature.
pub fn supported(t: &Tensor) -> bool {
    t.dtype() == DType::F32
        && (t.device().is_cpu() || (cfg!(feature = "cuda") && t.device().is_cuda()))
}

/// Whether the convolutions run as device ops on this tensor's device: the CPU, or a CUDA GPU
/// with the `cudnn` feature (without it, the reference ops' convolution).
pub fn conv_supported(t: &Tensor) -> bool {
    t.dtype() == DType::F32
        && (t.device().is_cpu() || (cfg!(feature = "cudnn") && t.device().is_cuda()))
}

// ----- Dropout ------------------------------------------------------------------------------

/// `xs * mask`, the mask drawn in the op: `xs` holds `streams.len()` equal blocks on its
/// (contiguous) elements, block g's entry i kept (times `1/keep`) iff word i of `streams[g]`
/// is below `round(keep · 2^32)`, else 0 — the mask `Noise::mask` draws on the CPU from the
/// same stream position. The backward multiplies the gradient by the same mask.
pub fn dropout(xs: &Tensor, streams: &[MaskStream], keep: f64) -> Result<Tensor> {
    if !(keep > 0.0 && keep <= 1.0) {
        candle_core::bail!("ferbayes dropout: keep probability {keep} is not in (0, 1]");
    }
    if streams.is_empty() || !xs.elem_count().is_multiple_of(streams.len()) {
        candle_core::bail!(
            "ferbayes dropout: {} elements in {} blocks",
            xs.elem_count(),
            streams.len()
        );
    }
    xs.contiguous()?.apply_op1(Dropout::new(streams, keep))
}

/// The mask product of [`dropout`].
#[derive(Clone, Debug)]
pub(crate) struct Dropout {
    pub(crate) streams: Vec<MaskStream>,
    /// Entries whose word is below this are kept.
    pub(crate) threshold: u64,
    pub(crate) scale: f32,
}

impl Dropout {
    fn new(streams: &[MaskStream], keep: f64) -> Self {
        Dropout {
            streams: streams.to_vec(),
            threshold: (keep * 4_294_967_296.0).round() as u64,
            scale: (1.0 / keep) as f32,
        }
    }

    /// `x * mask` over one member's block.
    fn apply(&self, stream: &MaskStream, x: &[f32], out: &mut [f32]) {
        const PIECE: usize = 1 << 13;
        par_chunks_mut(out, PIECE, |k, o| {
            let at = k * PIECE;
            let len = o.len();
            let mut words = vec![0u32; len];
            stream.fill(at as u64, &mut words);
            for ((o, &x), &w) in o.iter_mut().zip(&x[at..at + len]).zip(&words) {
                let m = if u64::from(w) < self.threshold {
                    self.scale
                } else {
                    0.0
                };
                *o = x * m;
            }
        });
    }
}

impl CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "ferbayes-device-dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l)?;
        let n = x.len() / self.streams.len();
        let mut y = vec![0f32; x.len()];
        for (g, stream) in self.streams.iter().enumerate() {
            self.apply(stream, &x[g * n..(g + 1) * n], &mut y[g * n..(g + 1) * n]);
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::dropout(self, s, l)
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(self)?))
    }
}

/// `a` (B, Ca, ...) and `dropout(b)` (B, Cb, ...) joined along dim 1, as one op (DenseNet's
/// dense layer: its new features, dropped out, after the block's features so far): the mask of
/// `b` exactly as [`dropout`] draws it. The backward is one op per input.
pub fn cat_dropout(a: &Tensor, b: &Tensor, streams: &[MaskStream], keep: f64) -> Result<Tensor> {
    if !(keep > 0.0 && keep <= 1.0)
        || streams.is_empty()
        || !b.elem_count().is_multiple_of(streams.len())
    {
        candle_core::bail!(
            "ferbayes cat dropout: keep {keep}, {} elements in {} blocks",
            b.elem_count(),
            streams.len()
        );
    }
    a.contiguous()?.apply_op2(
        &b.contiguous()?,
        CatDropout {
            dropout: Dropout::new(streams, keep),
        },
    )
}

/// (a, b) -> cat(a, b · mask) on dim 1.
#[derive(Clone, Debug)]
pub(crate) struct CatDropout {
    pub(crate) dropout: Dropout,
}

impl CatDropout {
    /// `b · mask` over b's member blocks.
    fn masked(&self, b: &[f32]) -> Vec<f32> {
        let n = b.len() / self.dropout.streams.len();
        let mut out = vec![0f32; b.len()];
        for (g, stream) in self.dropout.streams.iter().enumerate() {
            self.dropout
                .apply(stream, &b[g * n..(g + 1) * n], &mut out[g * n..(g + 1) * n]);
        }
        out
    }
}

impl CustomOp2 for CatDropout {
    fn name(&self) -> &'static str {
        "ferbayes-device-cat-dropout"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let ((n, _, r), (n2, cb, r2)) = (
            crate::concat::bcr(l1.dims())?,
            crate::concat::bcr(l2.dims())?,
        );
        if n != n2 || r != r2 {
            candle_core::bail!("ferbayes cat dropout: {:?} and {:?}", l1.dims(), l2.dims());
        }
        let b = self.masked(b);
        Ok(crate::concat::cat_cpu(a, &b, l1.dims(), cb))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::cat_dropout(&self.dropout, (s1, l1), (s2, l2))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (ca, cb) = (a.dim(1)?, b.dim(1)?);
        let grad = grad.contiguous()?;
        let da = if a.track_op() {
            Some(grad.apply_op1_no_bwd(&crate::concat::Channels { start: 0, len: ca })?)
        } else {
            None
        };
        let db = if b.track_op() {
            Some(grad.apply_op1_no_bwd(&ChannelsDropout {
                start: ca,
                len: cb,
                dropout: self.dropout.clone(),
            })?)
        } else {
            None
        };
        Ok((da, db))
    }
}

/// Channels `start..start + len` of a (B, C, ...) tensor times the mask of `dropout` (the
/// gradient of [`cat_dropout`]'s second input).
#[derive(Clone, Debug)]
pub(crate) struct ChannelsDropout {
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) dropout: Dropout,
}

impl CustomOp1 for ChannelsDropout {
    fn name(&self) -> &'static str {
        "ferbayes-device-channels-dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (part, shape) = crate::concat::Channels {
            start: self.start,
            len: self.len,
        }
        .cpu_fwd(s, l)?;
        let CpuStorage::F32(part) = part else {
            candle_core::bail!("ferbayes channels dropout: want f32");
        };
        let out = CatDropout {
            dropout: self.dropout.clone(),
        }
        .masked(&part);
        Ok((CpuStorage::F32(out), shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::channels_dropout(self, s, l)
    }
}

// ----- BatchNorm ----------------------------------------------------------------------------

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
    fn new(dims: &[usize], members: usize) -> Result<Self> {
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

// ----- Convolution --------------------------------------------------------------------------

/// `xs` (B, Cin, H, W) convolved with `w` (Cout, Cin, kh, kw), given padding and stride, as one
/// op each way: forward, input gradient ([`ConvBwdData`]) and weight gradient
/// ([`ConvBwdFilter`]). On the CPU im2col + gemm; on a GPU cuDNN (feature `cudnn`) with fixed,
/// deterministic algorithms and no TF32.
pub fn conv2d(xs: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    let xs = xs.contiguous()?;
    let w = w.contiguous()?;
    // Checks the shapes once, with the error naming them.
    Geom::new(xs.dims(), w.dims(), padding, stride, Algo::Im2col)?;
    xs.apply_op2(&w, ConvFwd { padding, stride })
}

/// The geometry of a conv from its input and kernel dims.
fn geom(x: &[usize], w: &[usize], padding: usize, stride: usize) -> Result<Geom> {
    Geom::new(x, w, padding, stride, Algo::Im2col)
}

/// (x, w) -> y.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvFwd {
    pub(crate) padding: usize,
    pub(crate) stride: usize,
}

impl CustomOp2 for ConvFwd {
    fn name(&self) -> &'static str {
        "ferbayes-device-conv"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let g = geom(l1.dims(), l2.dims(), self.padding, self.stride)?;
        let y = conv::forward(&g, x, w, None, None);
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.cout, g.ho, g.wo))))
    }

    #[cfg(feature = "cudnn")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::conv_fwd(self, (s1, l1), (s2, l2))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(
                w,
                &ConvBwdData {
                    padding: self.padding,
                    stride: self.stride,
                    x_dims: [x.dim(0)?, x.dim(1)?, x.dim(2)?, x.dim(3)?],
                },
            )?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(x.apply_op2_no_bwd(
                &grad,
                &ConvBwdFilter {
                    padding: self.padding,
                    stride: self.stride,
                    w_dims: [w.dim(0)?, w.dim(1)?, w.dim(2)?, w.dim(3)?],
                },
            )?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// (dy, w) -> dx of [`ConvFwd`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvBwdData {
    pub(crate) padding: usize,
    pub(crate) stride: usize,
    pub(crate) x_dims: [usize; 4],
}

impl CustomOp2 for ConvBwdData {
    fn name(&self) -> &'static str {
        "ferbayes-device-conv-bwd-data"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (dy, w) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let g = geom(&self.x_dims, l2.dims(), self.padding, self.stride)?;
        if l1.dims() != [g.b, g.cout, g.ho, g.wo] {
            candle_core::bail!("ferbayes conv bwd: gradient {:?} for {g:?}", l1.dims());
        }
        Ok((
            CpuStorage::F32(conv::backward_input(&g, dy, w)),
            Shape::from(self.x_dims.to_vec()),
        ))
    }

    #[cfg(feature = "cudnn")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::conv_bwd_data(self, (s1, l1), (s2, l2))
    }
}

/// (x, dy) -> dw of [`ConvFwd`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvBwdFilter {
    pub(crate) padding: usize,
    pub(crate) stride: usize,
    pub(crate) w_dims: [usize; 4],
}

impl CustomOp2 for ConvBwdFilter {
    fn name(&self) -> &'static str {
        "ferbayes-device-conv-bwd-filter"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, dy) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let g = geom(l1.dims(), &self.w_dims, self.padding, self.stride)?;
        if l2.dims() != [g.b, g.cout, g.ho, g.wo] {
            candle_core::bail!("ferbayes conv bwd: gradient {:?} for {g:?}", l2.dims());
        }
        Ok((
            CpuStorage::F32(conv::backward_weight(&g, x, dy)),
            Shape::from(self.w_dims.to_vec()),
        ))
    }

    #[cfg(feature = "cudnn")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::conv_bwd_filter(self, (s1, l1), (s2, l2))
    }
}

// ----- Bias and ReLU ------------------------------------------------------------------------

/// `relu(xs + bias)` with `bias` (C) added along dim 1 of `xs` (N, C, ...), as one op; its
/// backward passes the gradient where `xs + bias >= 0` (candle's `relu` rule, recomputed from
/// the inputs) and sums it per channel for the bias.
pub fn bias_relu(xs: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let xs = xs.contiguous()?;
    if xs.rank() < 2 || bias.elem_count() != xs.dim(1)? {
        candle_core::bail!(
            "ferbayes bias + relu: bias {:?} for input {:?}",
            bias.dims(),
            xs.dims()
        );
    }
    xs.apply_op2(&bias.contiguous()?, BiasRelu)
}

/// (N, C, S...) -> (C, S) of a rank >= 2 layout: channels, elements per channel per sample.
fn channels_of(dims: &[usize]) -> (usize, usize) {
    (dims[1], dims[2..].iter().product())
}

/// (x, bias) -> relu(x + bias).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BiasRelu;

impl CustomOp2 for BiasRelu {
    fn name(&self) -> &'static str {
        "ferbayes-device-bias-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, b) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let (c, s) = channels_of(l1.dims());
        let mut y = vec![0f32; x.len()];
        par_chunks_mut(&mut y, 1 << 14, |k, ys| {
            let at = k * (1 << 14);
            for (i, y) in (at..).zip(ys.iter_mut()) {
                let v = x[i] + b[(i / s) % c];
                *y = if v < 0.0 { 0.0 } else { v };
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::bias_relu(false, (s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = x.apply_op3_no_bwd(bias, &grad.contiguous()?, &BiasReluBwd)?;
        let db = if bias.track_op() {
            Some(dx.apply_op1_no_bwd(&ChannelSums)?)
        } else {
            None
        };
        Ok((x.track_op().then_some(dx), db))
    }
}

/// (x, bias, dy) -> dy where x + bias >= 0, else 0.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BiasReluBwd;

impl CustomOp3 for BiasReluBwd {
    fn name(&self) -> &'static str {
        "ferbayes-device-bias-relu-bwd"
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
        let (x, b, dy) = (
            contiguous_f32(s1, l1)?,
            contiguous_f32(s2, l2)?,
            contiguous_f32(s3, l3)?,
        );
        let (c, s) = channels_of(l1.dims());
        let mut dx = vec![0f32; x.len()];
        par_chunks_mut(&mut dx, 1 << 14, |k, out| {
            let at = k * (1 << 14);
            for (i, o) in (at..).zip(out.iter_mut()) {
                *o = if x[i] + b[(i / s) % c] < 0.0 {
                    0.0
                } else {
                    dy[i]
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
        cuda::bias_relu(true, (s1, l1), (s2, l2), Some((s3, l3)))
    }
}

/// (N, C, S...) -> (C): the sum of each channel over samples and positions, in f64 over the
/// same fixed chunks as BatchNorm's sums.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChannelSums;

impl CustomOp1 for ChannelSums {
    fn name(&self) -> &'static str {
        "ferbayes-device-channel-sums"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(st, l)?;
        let dims = BnDims::new(l.dims(), 1)?;
        let n = dims.per_channel();
        let sums = par_map(dims.channels(), |ch| {
            let mut total = 0f64;
            for k in 0..dims.chunks() {
                let mut part = 0f64;
                for j in k * CHUNK..((k + 1) * CHUNK).min(n) {
                    part += f64::from(x[dims.index(ch, j)]);
                }
                total += part;
            }
            total as f32
        });
        Ok((CpuStorage::F32(sums), Shape::from(dims.channels())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::channel_sums(s, l)
    }
}

// ----- Loss ---------------------------------------------------------------------------------

/// What [`cross_entropy`] compares each row of the logits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// One class per row: (N,) u32.
    Classes,
    /// A distribution over the classes per row: (N, K) f32.
    Soft,
}

/// The mean over the rows of `logits` (N, K) of the cross-entropy with `target` (see
/// [`Target`]): −log softmax(row)[y], or −Σ_k t_k · log softmax(row)_k; as one op whose
/// backward is one op (softmax − target, over N). Row maxima subtracted, the exponentials summed
/// over the K classes in order in f32, the rows' losses summed in order in f64.
pub fn cross_entropy(logits: &Tensor, target: &Tensor, kind: Target) -> Result<Tensor> {
    let logits = logits.contiguous()?;
    let (n, k) = logits.dims2()?;
    let ok = match kind {
        Target::Classes => target.dims() == [n] && target.dtype() == DType::U32,
        Target::Soft => target.dims() == [n, k] && target.dtype() == DType::F32,
    };
    if !ok || n == 0 {
        candle_core::bail!(
            "ferbayes cross entropy: target {:?} {:?} for logits {:?}",
            target.dims(),
            target.dtype(),
            logits.dims()
        );
    }
    logits.apply_op2(&target.contiguous()?, CrossEntropy { kind })
}

/// (logits, target) -> the mean loss (a scalar).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CrossEntropy {
    pub(crate) kind: Target,
}

/// log Σ_k exp(row_k): the row's maximum plus the log of the shifted exponentials' sum.
fn log_sum_exp(row: &[f32]) -> f32 {
    let m = row
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    let mut s = 0f32;
    for &v in row {
        s += (v - m).exp();
    }
    m + s.ln()
}

/// The target's class labels or distributions as the CPU ops read them.
enum TargetValues<'a> {
    Classes(&'a [u32]),
    Soft(&'a [f32]),
}

fn target_values<'a>(kind: Target, s: &'a CpuStorage, l: &Layout) -> Result<TargetValues<'a>> {
    Ok(match (kind, s, l.contiguous_offsets()) {
        (Target::Classes, CpuStorage::U32(v), Some((a, b))) => TargetValues::Classes(&v[a..b]),
        (Target::Soft, _, _) => TargetValues::Soft(contiguous_f32(s, l)?),
        _ => candle_core::bail!("ferbayes cross entropy: class targets must be contiguous u32"),
    })
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "ferbayes-device-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1)?;
        let (n, k) = (l1.dims()[0], l1.dims()[1]);
        let target = target_values(self.kind, s2, l2)?;
        let mut total = 0f64;
        for r in 0..n {
            let row = &x[r * k..(r + 1) * k];
            let lse = log_sum_exp(row);
            let loss = match &target {
                TargetValues::Classes(y) => {
                    let y = y[r] as usize;
                    if y >= k {
                        candle_core::bail!("ferbayes cross entropy: class {y} of {k}");
                    }
                    lse - row[y]
                }
                TargetValues::Soft(t) => {
                    let mut l = 0f32;
                    for (&v, &tk) in row.iter().zip(&t[r * k..(r + 1) * k]) {
                        l += tk * (lse - v);
                    }
                    l
                }
            };
            total += f64::from(loss);
        }
        Ok((
            CpuStorage::F32(vec![(total / n as f64) as f32]),
            Shape::from(()),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::cross_entropy(self.kind, (s1, l1), (s2, l2))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        target: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dl = logits.apply_op3_no_bwd(target, grad, &CrossEntropyBwd { kind: self.kind })?;
        Ok((Some(dl), None))
    }
}

/// (logits, target, g) -> g · (softmax(row) · Σ_k t_k − t) / N per row (t one-hot for classes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CrossEntropyBwd {
    pub(crate) kind: Target,
}

impl CustomOp3 for CrossEntropyBwd {
    fn name(&self) -> &'static str {
        "ferbayes-device-cross-entropy-bwd"
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
        let x = contiguous_f32(s1, l1)?;
        let (n, k) = (l1.dims()[0], l1.dims()[1]);
        let target = target_values(self.kind, s2, l2)?;
        let g = contiguous_f32(s3, l3)?[0] / n as f32;
        let mut d = vec![0f32; x.len()];
        for r in 0..n {
            let row = &x[r * k..(r + 1) * k];
            let lse = log_sum_exp(row);
            let out = &mut d[r * k..(r + 1) * k];
            match &target {
                TargetValues::Classes(y) => {
                    for (j, (o, &v)) in out.iter_mut().zip(row).enumerate() {
                        let t = if j == y[r] as usize { 1.0 } else { 0.0 };
                        *o = ((v - lse).exp() - t) * g;
                    }
                }
                TargetValues::Soft(t) => {
                    let t = &t[r * k..(r + 1) * k];
                    let mut mass = 0f32;
                    for &tk in t {
                        mass += tk;
                    }
                    for ((o, &v), &tk) in out.iter_mut().zip(row).zip(t) {
                        *o = ((v - lse).exp() * mass - tk) * g;
                    }
                }
            }
        }
        Ok((CpuStorage::F32(d), l1.shape().clone()))
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
        cuda::cross_entropy_bwd(self.kind, (s1, l1), (s2, l2), (s3, l3))
    }
}

// ----- Optimiser ----------------------------------------------------------------------------

/// The update [`optimizer_step`] applies to every variable, its constants rounded to f32 as
/// `train::optim`'s in-place CPU passes round them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Update {
    /// m ← b1·m + c1·g; v ← b2·v + c2·g²; θ ← θ − lr·(m·r1 / (√(v·r2) + eps) + wd·θ).
    Adam {
        b1: f32,
        c1: f32,
        b2: f32,
        c2: f32,
        r1: f32,
        r2: f32,
        eps: f32,
        lr: f32,
        wd: Option<f32>,
    },
    /// b ← momentum·b + (g + wd·θ) (or without the momentum term); θ ← θ − lr·b.
    Sgd {
        momentum: Option<f32>,
        lr: f32,
        wd: Option<f32>,
    },
}

/// Every variable's update in one multi-tensor kernel launch, when every tensor (θ, gradient,
/// first and second state; all contiguous f32) is on a CUDA GPU: the arithmetic of
/// `train::optim`'s in-place CPU passes, element by element, with the same roundings. Returns
/// false, doing nothing, anywhere else (the caller runs the CPU passes).
pub fn optimizer_step(vars: &[[&Tensor; 4]], update: Update) -> Result<bool> {
    let on_gpu = !vars.is_empty()
        && vars
            .iter()
            .flatten()
            .all(|t| t.device().is_cuda() && t.dtype() == DType::F32 && t.is_contiguous());
    if !on_gpu {
        return Ok(false);
    }
    #[cfg(feature = "cuda")]
    {
        match update {
            Update::Adam {
                b1,
                c1,
                b2,
                c2,
                r1,
                r2,
                eps,
                lr,
                wd,
            } => cuda::optimizer_step(vars, Some([b1, c1, b2, c2, r1, r2, eps, lr]), None, wd)?,
            Update::Sgd { momentum, lr, wd } => {
                cuda::optimizer_step(vars, None, Some((momentum, lr)), wd)?
            }
        }
        count_inplace(1);
        Ok(true)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = update;
        Ok(false)
    }
}

/// What the GPU path runs on, for the manifests: the convolutions' library and algorithms, and
/// whether TF32 is allowed; `None` without the `cuda` feature.
pub fn gpu_kernels() -> Option<String> {
    #[cfg(feature = "cudnn")]
    {
        Some(format!(
            "ferbayes device ops (CUDA); {}",
            cuda::describe_cudnn()
        ))
    }
    #[cfg(all(feature = "cuda", not(feature = "cudnn")))]
    {
        Some(
            "ferbayes device ops (CUDA); convolutions: candle's reference ops (no cudnn feature)"
                .to_owned(),
        )
    }
    #[cfg(not(feature = "cuda"))]
    {
        None
    }
}
