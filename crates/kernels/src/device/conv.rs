//! Convolution: forward, input gradient and weight gradient as three ops (cuDNN with the `cudnn`
//! feature; im2col + gemm on the CPU).

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

use super::Result;
#[cfg(feature = "cudnn")]
use super::cuda;
use crate::contiguous_f32;
use crate::conv::{self, Algo, Geom};

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
