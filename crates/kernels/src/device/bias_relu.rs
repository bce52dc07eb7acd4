//! `relu(xs + bias)` as one op each way, and the per-channel sums of its bias gradient.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::batch_norm::BnDims;
#[cfg(feature = "cuda")]
use super::cuda;
use super::{CHUNK, Result};
use crate::{contiguous_f32, par_chunks_mut, par_map};

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
