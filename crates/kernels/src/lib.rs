//! ferbayes' CPU kernels for the networks' layers, and the process settings their
//! speed depends on.
//!
//! One [`Backend`] choice, made once per process and carried by each model, says which
//! kernels a layer runs on:
//!
//! * [`Backend::Reference`]: candle's own ops ([`reference`]: convolution with a
//!   conv-based backward, pools built from differentiable primitives), on any device;
//! * [`Backend::Im2col`]: the fused CPU f32 kernels below, every conv as im2col + gemm;
//! * [`Backend::Winograd`] (the default): the same, with Winograd F(2x2, 3x3) /
//!   F(2x2, 5x5) for the wide 3x3 / 5x5 'same' convs where it pays (`winograd`).
//!
//! The fused kernels: convolution (im2col + single-threaded gemm, parallel over groups
//! of samples), BatchNorm (one pass for the statistics, one for the normalisation, one
//! fused backward), 2x2 and 3x3 max pooling, and DenseNet's channel concatenation, the
//! dropout mask product and the fully connected layers. Convolution and BatchNorm can
//! apply a ReLU to their output in the same pass (training BatchNorm also a 2x2 max pool
//! after it); their backward passes the upstream gradient where the pre-activation is at
//! least 0 (the conv records its exact zeros in the forward pass, BatchNorm re-evaluates its
//! affine map), so the gradient equals candle's `relu` (`x >= 0`), not PyTorch's
//! (`x > 0`): on VGG16, whose zero biases make many exact zeros early on, PyTorch's
//! convention trained to 48.7 % valid accuracy after one epoch against candle's 52.6 %.
//!
//! They replace candle's general ops, which allocate a fresh buffer per elementwise step
//! and run gemm's own threading on small matrices. Every op has its own backward; every
//! reduction sums in a fixed order over a fixed partition of the batch, so results do
//! not depend on thread timing, and every matrix product sums in the same depth blocks on
//! every CPU (gemm would size them from the cache; see `gemm::depth_block`). The few loops
//! the compiler cannot vectorise (the pool gradient's window shuffles, BatchNorm's f64 lane
//! sums) have AVX2 versions through `pulp`'s safe intrinsics, chosen at run time and equal
//! to the scalar code bit for bit ([`SimdLevel::Scalar`] takes the scalar code).
//!
//! [`runtime`] holds the process settings: [`tune_cpu_process`] and [`run_in_pool`]. The knobs
//! are explicit: the [`Backend`] is an argument, and the two process-wide settings deep in the
//! loops, the SIMD level ([`set_simd_level`]) and TF32 for cuDNN ([`device::set_tf32`]), are
//! installed once by the binaries; this crate reads nothing from the environment.

mod bn;
mod concat;
mod conv;
pub mod device;
mod gemm;
mod linear;
pub mod members;
mod pool;
pub mod reference;
mod runtime;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;
mod winograd;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

pub use bn::{Stats, batch_norm_eval, batch_norm_train, batch_norm_train_pool};
pub use concat::{cat_channels, mul_mask};
pub use conv::Algo;
use conv::Conv;
pub use linear::linear;
pub use pool::{max_pool2, max_pool3_s2_p1};
pub use runtime::{Tuning, run_in_pool, tune_cpu_process};

/// Which kernels the layers run on (see the crate docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// candle's own ops, on any device.
    Reference,
    /// The fused CPU kernels, convolutions as im2col + gemm.
    Im2col,
    /// The fused CPU kernels, Winograd for the wide 3x3 / 5x5 'same' convs.
    #[default]
    Winograd,
    /// The [`device`] ops: every layer one fused op each way on any device (the GPU's
    /// backend; on the CPU, what a GPU runs, for tests and op counts).
    Device,
}

impl Backend {
    /// The names [`Backend::from_name`] accepts.
    pub const NAMES: [&'static str; 4] = ["reference", "im2col", "winograd", "device"];

    /// `reference`, `im2col` or `winograd`.
    pub fn from_name(name: &str) -> Option<Backend> {
        match name {
            "reference" => Some(Backend::Reference),
            "im2col" => Some(Backend::Im2col),
            "winograd" => Some(Backend::Winograd),
            "device" => Some(Backend::Device),
            _ => None,
        }
    }

    /// The name [`Backend::from_name`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Reference => "reference",
            Backend::Im2col => "im2col",
            Backend::Winograd => "winograd",
            Backend::Device => "device",
        }
    }

    /// Whether an op over `ts` runs on the fused CPU kernels: [`Backend::Im2col`] or
    /// [`Backend::Winograd`], and every tensor f32 on the CPU.
    pub fn fast(self, ts: &[&Tensor]) -> bool {
        matches!(self, Backend::Im2col | Backend::Winograd) && applies(ts)
    }

    /// Whether an op over `ts` runs on the [`device`] ops: [`Backend::Device`] on a device
    /// they support (the CPU, or a GPU with the `cuda` feature).
    pub fn device_ops(self, ts: &[&Tensor]) -> bool {
        self == Backend::Device && ts.iter().all(|t| device::supported(t))
    }

    /// The backend for `device` when none is chosen: [`Backend::Winograd`] on the CPU,
    /// [`Backend::Device`] elsewhere (with the `cuda` feature; [`Backend::Reference`] without).
    pub fn for_device(device: &candle_core::Device) -> Backend {
        if device.is_cpu() {
            Backend::Winograd
        } else if cfg!(feature = "cuda") && device.is_cuda() {
            Backend::Device
        } else {
            Backend::Reference
        }
    }

    /// The conv kernels of this backend.
    pub fn algo(self) -> Algo {
        match self {
            Backend::Winograd => Algo::Auto,
            Backend::Reference | Backend::Im2col | Backend::Device => Algo::Im2col,
        }
    }
}

/// The layers' ops on this backend: the fused kernels where [`Backend::fast`], else
/// the [`reference`] ops. Both give the same values; the fused ones are bit for bit
/// candle's where their docs say so.
impl Backend {
    /// `xs` (B, Cin, H, W) convolved with `w` (Cout, Cin, k, k), plus `bias` (Cout),
    /// then a ReLU when `relu`; `members` packed networks (see [`members`]) when > 1.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        self,
        xs: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        padding: usize,
        stride: usize,
        relu: bool,
        members: usize,
    ) -> candle_core::Result<Tensor> {
        let fast_bias = bias.is_none_or(|b| applies(&[b]));
        if self.fast(&[xs, w]) && fast_bias {
            return conv2d(xs, w, bias, padding, stride, relu, self.algo(), members);
        }
        let device_conv = self == Backend::Device && device::conv_supported(xs);
        let device_ops = self.device_ops(&[xs]);
        members::per_member(members, &[xs], &[w], bias, |t, p, b| {
            let ys = if device_conv {
                device::conv2d(t[0], p[0], padding, stride)?
            } else {
                reference::conv2d(t[0], p[0], padding, stride)?
            };
            if let (true, true, Some(b)) = (device_ops, relu, b) {
                return device::bias_relu(&ys, b);
            }
            let ys = match b {
                Some(b) => ys.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
                None => ys,
            };
            if relu { ys.relu() } else { Ok(ys) }
        })
    }

    /// `xs (B, in) · wᵀ + b` for `w` (out, in), `b` (out); `members` packed networks
    /// when > 1.
    pub fn linear(
        self,
        xs: &Tensor,
        w: &Tensor,
        b: &Tensor,
        members: usize,
    ) -> candle_core::Result<Tensor> {
        if self.fast(&[xs, w, b]) && xs.rank() == 2 {
            return linear(xs, w, b, members);
        }
        members::per_member(members, &[xs], &[w], Some(b), |t, p, b| {
            let b = b.ok_or_else(|| candle_core::Error::Msg("linear without bias".into()))?;
            t[0].matmul(&p[0].t()?)?.broadcast_add(b)
        })
    }

    /// `xs * mask` (same shapes).
    pub fn mul_mask(self, xs: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        if self.fast(&[xs, mask]) {
            return mul_mask(xs, mask);
        }
        xs.mul(mask)
    }

    /// `a` and `b` (B, C, H, W) concatenated on the channel dim.
    pub fn cat_channels(self, a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
        if self.fast(&[a, b]) || self.device_ops(&[a, b]) {
            return cat_channels(a, b);
        }
        Tensor::cat(&[a, b], 1)
    }

    /// 2x2 max pool, stride 2, output floored.
    pub fn max_pool2(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        if self.fast(&[xs]) || self.device_ops(&[xs]) {
            return max_pool2(xs);
        }
        reference::max_pool2(xs)
    }

    /// 3x3 max pool, stride 2, zero padding 1 (for inputs >= 0).
    pub fn max_pool3_s2_p1(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        if self.fast(&[xs]) || self.device_ops(&[xs]) {
            return max_pool3_s2_p1(xs);
        }
        reference::max_pool3_s2_p1(xs)
    }

    /// 2x2 average pool, stride 2, output floored (candle's op on every backend).
    pub fn avg_pool2(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        reference::avg_pool2(xs)
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::from_name(s.trim()).ok_or_else(|| {
            format!(
                "unknown kernels `{s}` (one of {})",
                Backend::NAMES.join(", ")
            )
        })
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The SIMD level of the hand-vectorised kernels: AVX2 + FMA (`pulp`'s V3, whose
/// intrinsics are safe to call once its token exists); none off x86-64.
#[cfg(target_arch = "x86_64")]
type Simd = pulp::x86::V3;
/// No hand-vectorised kernels off x86-64: an empty type, never constructed.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Clone, Copy, Debug)]
enum Simd {}

/// The SIMD level of the hand-vectorised loops (the pool gradient's window shuffles,
/// BatchNorm's lane sums): a process-wide setting, installed once by the binaries
/// ([`set_simd_level`]) before any network runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SimdLevel {
    /// AVX2+FMA where the CPU has it (`pulp`'s V3), else the scalar loops.
    #[default]
    Auto,
    /// The scalar loops everywhere: the same bits, slower (a check that the SIMD code changes no
    /// result).
    Scalar,
}

/// Whether [`SimdLevel::Scalar`] is installed.
static SCALAR_ONLY: AtomicBool = AtomicBool::new(false);

/// Installs the SIMD level of this process's kernels ([`SimdLevel::Auto`] until then). The
/// binaries install their `--simd` setting once, before any network runs; the manifests record
/// it ([`simd_paths`]).
pub fn set_simd_level(level: SimdLevel) {
    SCALAR_ONLY.store(level == SimdLevel::Scalar, Ordering::Relaxed);
}

/// The SIMD level installed by [`set_simd_level`].
pub fn simd_level() -> SimdLevel {
    if SCALAR_ONLY.load(Ordering::Relaxed) {
        SimdLevel::Scalar
    } else {
        SimdLevel::Auto
    }
}

/// [`Simd`], if this CPU has it and [`SimdLevel::Scalar`] does not turn it off (the kernels
/// then run their scalar loops, equal bit for bit).
fn simd() -> Option<Simd> {
    match simd_level() {
        SimdLevel::Scalar => None,
        SimdLevel::Auto => simd_detected(),
    }
}

/// [`Simd`], if this CPU has it (std's feature detection, cached after the first call).
fn simd_detected() -> Option<Simd> {
    #[cfg(target_arch = "x86_64")]
    {
        pulp::x86::V3::try_new()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// What this process's kernels run on, for the manifests: (kernel family, choice) pairs for
/// `backend` on the CPU. gemm (the convolutions' and linear layers' matrix products, and
/// candle's matmul) picks its microkernel at run time from the CPU's features; its AVX-512
/// kernels exist only in a build with this crate's `avx512` feature (gemm's `x86-v4`), and the
/// record says which ran, so artifacts made with them are labelled. gemm would also size its depth blocks (and so the rounding of its sums) from the CPU's
/// cache sizes; the fused kernels fix them (`gemm::depth_block`), candle's own matmul (the
/// `reference` backend) does not.
pub fn simd_paths(backend: Backend) -> Vec<(String, String)> {
    let pulp = match (simd(), simd_detected()) {
        (Some(_), _) => "AVX2+FMA (pulp V3)",
        (None, Some(_)) => "scalar (the simd setting)",
        (None, None) => "scalar (no AVX2+FMA on this CPU)",
    };
    vec![
        ("backend".to_owned(), backend.name().to_owned()),
        ("gemm".to_owned(), gemm_path().to_owned()),
        ("pool, batchnorm".to_owned(), pulp.to_owned()),
    ]
}

/// The f32 microkernel gemm 0.19 dispatches to on this CPU (its `gemm_f32` dispatch: AVX-512
/// only with the `x86-v4` feature, which this build does not enable; else FMA (AVX2); NEON on
/// aarch64; else scalar).
fn gemm_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        let fma = std::arch::is_x86_feature_detected!("fma");
        let avx512f = std::arch::is_x86_feature_detected!("avx512f");
        match (cfg!(feature = "avx512"), avx512f, fma) {
            (true, true, _) => "f32 AVX-512 microkernels (feature avx512), fixed depth blocks",
            (true, false, true) => {
                "f32 AVX2+FMA microkernels (feature avx512 built in, no AVX-512F on this CPU), \
                 fixed depth blocks"
            }
            (false, _, true) => {
                "f32 AVX2+FMA microkernels (AVX-512 not built in), fixed depth blocks"
            }
            (_, _, false) => "f32 scalar microkernels (no FMA on this CPU), fixed depth blocks",
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            "f32 NEON microkernels, fixed depth blocks"
        } else {
            "f32 scalar microkernels, fixed depth blocks"
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "f32 scalar microkernels, fixed depth blocks"
    }
}

/// Whether this build's matrix products run gemm's AVX-512 kernels: built with the `avx512`
/// feature (gemm's `x86-v4`) and on a CPU with AVX-512F (gemm picks its kernels at run time).
pub fn gemm_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        cfg!(feature = "avx512") && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether every tensor is an f32 tensor on the CPU (what the fused kernels handle).
pub fn applies(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// The f32 slice a contiguous layout covers.
fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("ferbayes fast op needs a contiguous f32 cpu tensor"),
    }
}

/// Runs `f(i, piece)` for every `chunk`-long piece of `out`, in parallel on
/// rayon's pool. (candle's own barrier pool measured 3x slower for DenseNet:
/// its pinned, spinning workers suffer on a shared 2-core machine.) Which
/// thread runs a piece does not change any result.
fn par_chunks_mut(out: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let chunk = chunk.max(1);
    if out.len() <= chunk {
        if !out.is_empty() {
            f(0, out);
        }
        return;
    }
    out.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, piece)| f(i, piece));
}

/// `[f(a[0], b[0]), .., f(a[n-1], b[n-1])]` over two slices of one length, in
/// parallel pieces of 32k elements.
fn par_zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    const PIECE: usize = 1 << 15;
    let mut out = vec![0f32; a.len()];
    par_chunks_mut(&mut out, PIECE, |i, o| {
        let at = i * PIECE;
        let (a, b) = (&a[at..at + o.len()], &b[at..at + o.len()]);
        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
            *o = f(a, b);
        }
    });
    out
}

/// `[f(0), .., f(n - 1)]` computed in parallel (results in index order).
fn par_map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    if n <= 1 {
        return (0..n).map(f).collect();
    }
    (0..n).into_par_iter().map(&f).collect()
}

/// `partial(0) + .. + partial(tasks - 1)`, elementwise, the partials computed in
/// parallel and added in index order (so the sum does not depend on thread timing).
fn sum_partials(tasks: usize, partial: impl Fn(usize) -> Vec<f32> + Sync) -> Vec<f32> {
    let mut it = par_map(tasks, partial).into_iter();
    let mut out = it.next().unwrap_or_default();
    for part in it {
        out.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
    }
    out
}

thread_local! {
    /// Per-thread scratch buffers (im2col columns and a gather buffer), kept
    /// between calls so big blocks are not mapped and faulted in per op.
    static SCRATCH: RefCell<[Vec<f32>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// Runs `f` on two scratch slices of lengths `n0` and `n1` (stale contents).
fn with_scratch<R>(n0: usize, n1: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let [a, b] = &mut *bufs;
            for (v, n) in [(&mut *a, n0), (&mut *b, n1)] {
                if v.len() < n {
                    v.resize(n, 0.0);
                }
            }
            f(&mut a[..n0], &mut b[..n1])
        }
        // Re-entered on this thread (a job run while gemm's rayon waits): fresh buffers.
        Err(_) => f(&mut vec![0.0; n0], &mut vec![0.0; n1]),
    })
}

/// `xs` (B, Cin, H, W) convolved with `w` (Cout, Cin, kh, kw), plus `bias`
/// (Cout) when given, then a ReLU when `relu`; padding and stride as
/// `Tensor::conv2d`, on the kernels `algo` picks. CPU f32 only.
///
/// With `members` > 1, packed (see [`members`]): `xs` (G·B, Cin, H, W), `w`
/// (G·Cout, Cin, kh, kw), `bias` (G·Cout); member g's samples through member g's kernel.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    xs: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
    relu: bool,
    algo: Algo,
    members: usize,
) -> candle_core::Result<Tensor> {
    let op = Conv {
        pad: padding,
        stride,
        algo,
        members: members.max(1),
        relu: relu.then(|| ZeroLog::for_inputs(&[Some(xs), Some(w), bias])),
        sums: gemm::Sums::for_inputs(&[Some(xs), Some(w), bias]),
    };
    let (xs, w) = (xs.contiguous()?, w.contiguous()?);
    match bias {
        Some(b) => xs.apply_op3(&w, &b.contiguous()?, op),
        None => xs.apply_op2(&w, op),
    }
}

/// The flat indices where a fused op's ReLU met an exact 0 (where candle's
/// `relu` passes the gradient although the output is 0), filled by the forward
/// pass, read by the backward. Only `active` logs record: none is needed when no
/// gradient will flow back (inference), where dropout's zeros would otherwise
/// fill it.
#[derive(Debug, Default)]
struct ZeroLog {
    active: bool,
    zeros: Mutex<Vec<(usize, Vec<usize>)>>,
}

impl ZeroLog {
    /// A log for a fused ReLU; it records iff some input of the op tracks gradients.
    fn for_inputs(inputs: &[Option<&Tensor>]) -> Arc<ZeroLog> {
        Arc::new(ZeroLog {
            active: inputs.iter().flatten().any(|t| t.track_op()),
            zeros: Mutex::default(),
        })
    }

    /// The recorded indices, ascending.
    fn sorted(&self) -> Vec<usize> {
        let mut pieces = self
            .zeros
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        pieces.sort_unstable_by_key(|&(start, _)| start);
        pieces.into_iter().flat_map(|(_, v)| v).collect()
    }
}

/// `max(v, 0)` over `row`, whose first element has flat index `start`; the
/// indices of exact zeros go to `log`.
fn relu_row(row: &mut [f32], start: usize, log: &ZeroLog) {
    if log.active && row.contains(&0.0) {
        let zeros = row
            .iter()
            .enumerate()
            .filter(|&(_, &v)| v == 0.0)
            .map(|(i, _)| start + i)
            .collect();
        log.zeros
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((start, zeros));
    }
    row.iter_mut().for_each(|v| *v = v.max(0.0));
}

/// The gradient through a fused ReLU whose output was `ys`: `dy` where `ys > 0`
/// or the pre-activation was exactly 0 (`log`), else 0.
fn relu_grad(dy: &Tensor, ys: &Tensor, log: &ZeroLog) -> candle_core::Result<Tensor> {
    let op = ReluGrad { pass: log.sorted() };
    dy.contiguous()?.apply_op2_no_bwd(&ys.contiguous()?, &op)
}

/// (dy, y) -> dy · [y > 0 or index in `pass`], no backward of its own.
#[derive(Clone, Debug)]
struct ReluGrad {
    pass: Vec<usize>,
}

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "ferbayes-fast-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (dy, y) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        if l1.dims() != l2.dims() {
            candle_core::bail!("ferbayes relu grad: {:?} vs {:?}", l1.dims(), l2.dims());
        }
        let mut out = par_zip_map(dy, y, |d, y| if y > 0.0 { d } else { 0.0 });
        for &i in &self.pass {
            match (out.get_mut(i), dy.get(i)) {
                (Some(o), Some(&d)) => *o = d,
                _ => candle_core::bail!("ferbayes relu grad: index {i} out of {}", dy.len()),
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// The conv kernels on plain slices, for `benches/conv.rs` (im2col against
/// Winograd per layer shape); not a stable API.
#[doc(hidden)]
pub mod bench {
    pub use super::conv::Algo;
    use super::conv::{self, Geom};

    /// One conv layer's geometry and the kernels it runs on. Its methods panic
    /// when a slice is shorter than the shape needs.
    #[derive(Clone, Copy, Debug)]
    pub struct Layer(Geom);

    impl Layer {
        /// x (b, cin, h, w), kernel (cout, cin, k, k), stride 1; None for a shape
        /// the kernels reject.
        #[allow(clippy::too_many_arguments)]
        pub fn new(
            b: usize,
            cin: usize,
            cout: usize,
            h: usize,
            w: usize,
            k: usize,
            pad: usize,
            algo: Algo,
        ) -> Option<Layer> {
            let g = Geom::new(&[b, cin, h, w], &[cout, cin, k, k], pad, 1, algo).ok()?;
            Some(Layer(g))
        }

        /// Whether this layer runs on the Winograd kernels.
        pub fn winograd(&self) -> bool {
            super::winograd::alg(&self.0).is_some()
        }

        /// y = conv(x, w).
        pub fn forward(&self, x: &[f32], w: &[f32]) -> Vec<f32> {
            conv::forward(&self.0, x, w, None, None)
        }

        /// dx from dy and w.
        pub fn backward_input(&self, dy: &[f32], w: &[f32]) -> Vec<f32> {
            conv::backward_input(&self.0, dy, w)
        }

        /// dw from x and dy.
        pub fn backward_weight(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
            conv::backward_weight(&self.0, x, dy)
        }
    }
}

/// The number of candle tensors this process has created so far, from candle's own tensor
/// counter (every op's result, every view and every upload gets the next id). The difference
/// over a training step counts its ops: an upper bound of the kernels a GPU launches for it
/// (views launch nothing). Creates one tensor itself to read the counter.
pub fn tensors_created() -> usize {
    let probe = Tensor::zeros((), DType::U8, &candle_core::Device::Cpu)
        .map(|t| format!("{:?}", t.id()))
        .unwrap_or_default();
    // `TensorId(n)`: candle keeps the number private but derives Debug.
    probe
        .trim_start_matches("TensorId(")
        .trim_end_matches(')')
        .parse()
        .unwrap_or(0)
}

/// The ops `f` runs: the tensors it creates ([`tensors_created`]) plus the in-place ops it
/// applies ([`device::inplace_ops`]), the counters' own probe tensor excluded. The counters are
/// the process's: nothing else may create tensors meanwhile.
pub fn ops_of(f: impl FnOnce()) -> usize {
    let (t0, i0) = (tensors_created(), device::inplace_ops());
    f();
    let (t1, i1) = (tensors_created(), device::inplace_ops());
    // Less the probe tensor the second reading of the tensor counter creates.
    (t1 - t0 - 1) + (i1 - i0)
}
