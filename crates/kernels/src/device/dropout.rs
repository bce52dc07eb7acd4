//! Dropout with its mask drawn in the op ([`dropout`]), and DenseNet's dropout-then-concatenate
//! ([`cat_dropout`]) with its backward's masked channels.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

#[cfg(feature = "cuda")]
use super::cuda;
use super::{MaskStream, Result};
use crate::{contiguous_f32, par_chunks_mut};

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
