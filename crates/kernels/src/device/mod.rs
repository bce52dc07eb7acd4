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
//! Every op computes the same arithmetic on the CPU (its `cpu_fwd`) as its kernel in
//! `kernels.cu` does on a GPU: every reduction sums in a fixed order (so the same device gives
//! the same bits twice), every f32 and f64 operation is rounded as written (the CUDA source
//! uses the `__f*_rn` / `__d*_rn` intrinsics so that nvcc contracts nothing into FMAs). On the
//! CPU these ops exist to test and count what a GPU runs; the CPU backends stay faster there.

mod batch_norm;
mod bias_relu;
pub mod chacha;
mod conv;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
mod dropout;
#[cfg(test)]
mod gpu_tests;
mod loss;
mod optim;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use candle_core::{DType, Tensor};

pub use batch_norm::{batch_norm, discard_running, flush_running};
pub use bias_relu::bias_relu;
pub use chacha::MaskStream;
pub use conv::conv2d;
pub use dropout::{cat_dropout, dropout};
pub use loss::{Target, cross_entropy};
pub use optim::{Update, optimizer_step};

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

/// Whether cuDNN's convolutions may use TF32 tensor cores ([`set_tf32`]).
static TF32: AtomicBool = AtomicBool::new(false);

/// Lets cuDNN's convolutions (feature `cudnn`) use TF32 tensor cores, or not (the default, so
/// that f32 convolutions are f32 FMAs): a process-wide setting, installed once by the binaries
/// (their `--tf32`) before any network runs and read by every convolution; the manifests record
/// it ([`gpu_kernels`]).
pub fn set_tf32(on: bool) {
    TF32.store(on, Ordering::Relaxed);
}

/// Whether [`set_tf32`] allowed TF32.
pub fn tf32() -> bool {
    TF32.load(Ordering::Relaxed)
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
