//! The optimiser's update of every variable as one multi-tensor kernel launch on a GPU.

use candle_core::{DType, Tensor};

use super::Result;
#[cfg(feature = "cuda")]
use super::{count_inplace, cuda};

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
