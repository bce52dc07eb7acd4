//! Two copy-bound ops of DenseNet's training step, parallel over the batch: the
//! channel concatenation of each dense layer, and the dropout mask product.
//! candle runs both single-threaded (its elementwise pool is off, see
//! `crate::runtime`), and its concatenation's gradient is a strided add per
//! input; here each gradient is one parallel contiguous copy. Values and
//! gradients are bit for bit candle's (`Tensor::cat`, `Tensor::mul`): copies,
//! and the same f32 products.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

use super::{contiguous_f32, par_chunks_mut, par_zip_map};

/// The CPU concatenation along channels of `a` (dims `a_dims`, (B, C_a, ...)) and `b` (the
/// same dims but `cb` channels), both contiguous: the output storage and shape.
pub(crate) fn cat_cpu(a: &[f32], b: &[f32], a_dims: &[usize], cb: usize) -> (CpuStorage, Shape) {
    let (n, ca) = (a_dims[0], a_dims[1]);
    let r: usize = a_dims[2..].iter().product();
    let (la, lb) = (ca * r, cb * r);
    let mut out = vec![0f32; n * (la + lb)];
    par_chunks_mut(&mut out, la + lb, |s, o| {
        o[..la].copy_from_slice(&a[s * la..(s + 1) * la]);
        o[la..].copy_from_slice(&b[s * lb..(s + 1) * lb]);
    });
    let mut dims = a_dims.to_vec();
    dims[1] = ca + cb;
    (CpuStorage::F32(out), Shape::from(dims))
}

/// (B, C, rest) of a tensor of rank >= 2.
pub(crate) fn bcr(dims: &[usize]) -> candle_core::Result<(usize, usize, usize)> {
    if dims.len() < 2 {
        candle_core::bail!("ferbayes concat: want rank >= 2, got {dims:?}");
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

/// `a` (B, Ca, ...) and `b` (B, Cb, ...) joined along dim 1 into (B, Ca + Cb, ...).
pub fn cat_channels(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, CatChannels)
}

/// `xs * mask`, elementwise (same shape).
pub fn mul_mask(xs: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    xs.contiguous()?.apply_op2(&mask.contiguous()?, MulMask)
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct CatChannels;

impl CustomOp2 for CatChannels {
    fn name(&self) -> &'static str {
        "ferbayes-fast-cat-channels"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::device::cuda::cat_channels((s1, l1), (s2, l2))
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, b) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let ((n, _, r), (n2, cb, r2)) = (bcr(l1.dims())?, bcr(l2.dims())?);
        if n != n2 || r != r2 || l1.dims()[2..] != l2.dims()[2..] {
            candle_core::bail!("ferbayes concat: {:?} and {:?}", l1.dims(), l2.dims());
        }
        Ok(cat_cpu(a, b, l1.dims(), cb))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let ca = a.dim(1)?;
        let grad = grad.contiguous()?;
        let part = |start: usize, len: usize, t: &Tensor| -> candle_core::Result<Option<Tensor>> {
            if !t.track_op() {
                return Ok(None);
            }
            Ok(Some(grad.apply_op1_no_bwd(&Channels { start, len })?))
        };
        Ok((part(0, ca, a)?, part(ca, b.dim(1)?, b)?))
    }
}

/// Channels `start..start + len` of a (B, C, ...) tensor, as a new contiguous tensor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Channels {
    pub(crate) start: usize,
    pub(crate) len: usize,
}

impl CustomOp1 for Channels {
    fn name(&self) -> &'static str {
        "ferbayes-fast-channels"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::device::cuda::channels(self.start, self.len, s, l)
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l)?;
        let (n, c, r) = bcr(l.dims())?;
        if self.start + self.len > c {
            candle_core::bail!(
                "ferbayes concat bwd: channels {}..{} of {c}",
                self.start,
                self.start + self.len
            );
        }
        let (from, len) = (self.start * r, self.len * r);
        let mut out = vec![0f32; n * len];
        par_chunks_mut(&mut out, len, |s, o| {
            o.copy_from_slice(&x[s * c * r + from..][..len]);
        });
        let mut dims = l.dims().to_vec();
        dims[1] = self.len;
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

/// (x, mask) -> x · mask (gradients as candle's `mul`: dx = dy · mask, dmask = dy · x).
#[derive(Clone, Copy, Debug)]
struct MulMask;

impl CustomOp2 for MulMask {
    fn name(&self) -> &'static str {
        "ferbayes-fast-mul-mask"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, m) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        if l1.dims() != l2.dims() {
            candle_core::bail!("ferbayes mask: {:?} vs {:?}", l1.dims(), l2.dims());
        }
        let out = par_zip_map(x, m, |x, m| x * m);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        mask: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let times = |t: &Tensor, other: &Tensor| -> candle_core::Result<Option<Tensor>> {
            if !t.track_op() {
                return Ok(None);
            }
            Ok(Some(grad.apply_op2_no_bwd(&other.contiguous()?, &MulMask)?))
        };
        Ok((times(x, mask)?, times(mask, x)?))
    }
}
