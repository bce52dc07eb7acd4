//! Launchers of the device ops' CUDA kernels (`kernels.cu`, compiled to PTX by build.rs), and
//! the convolutions through cuDNN (feature `cudnn`). Each function here is the `cuda_fwd` of
//! the op named after it in `device/mod.rs` (or of a fused op in `pool.rs` / `concat.rs`),
//! whose CPU twin does the same arithmetic.
//!
//! The one place of this crate besides `gemm.rs` and `runtime.rs` with `unsafe`: kernel launches
//! are FFI calls whose arguments must match the kernel's signature, and the multi-tensor updates
//! write through device pointers of tensors they hold read guards on (no host code reads those
//! tensors meanwhile: the launch is asynchronous on the device's one stream, ordered with every
//! other op on it).
#![allow(unsafe_code)]

use candle_core::cuda_backend::WrapErr;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DevicePtr, LaunchConfig, PushKernelArg,
};
use candle_core::{CudaDevice, CudaStorage, Layout, Result, Shape, Storage, Tensor};

use super::batch_norm::{BnApply, BnBwdDx, BnBwdSums, BnDims, BnStats, PendingRunning};
use super::dropout::{ChannelsDropout, Dropout};
use super::{CHUNK, MaskStream, Target};

/// The kernels' PTX.
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/ferbayes_kernels.ptx"));
/// The module name candle caches it under.
const MODULE: &str = "ferbayes_device_ops";
/// Threads per block.
const THREADS: u32 = 256;

/// A launch over `n` threads.
fn cfg(n: u64) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(u64::from(THREADS)).max(1) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The contiguous f32 view a layout covers.
fn view<'a>(s: &'a CudaStorage, l: &Layout) -> Result<CudaView<'a, f32>> {
    let (a, b) = l.contiguous_offsets().ok_or_else(|| {
        candle_core::Error::Msg("ferbayes device op: want a contiguous tensor".into())
    })?;
    Ok(s.as_cuda_slice::<f32>()?.slice(a..b))
}

/// The CUDA storage behind a storage guard.
fn cuda_of(s: &Storage) -> Result<&CudaStorage> {
    match s {
        Storage::Cuda(c) => Ok(c),
        _ => candle_core::bail!("ferbayes device op: a held tensor is not on the GPU"),
    }
}

/// `n` uninitialised f32 on the device (every kernel below writes all of its output).
fn alloc(dev: &CudaDevice, n: usize) -> Result<CudaSlice<f32>> {
    // SAFETY: the launches that follow write every element before anything reads it.
    unsafe { dev.alloc::<f32>(n.max(1)) }
}

fn wrap(slice: CudaSlice<f32>, dev: &CudaDevice, shape: impl Into<Shape>) -> (CudaStorage, Shape) {
    (
        CudaStorage::wrap_cuda_slice(slice, dev.clone()),
        shape.into(),
    )
}

// ----- Dropout and copies --------------------------------------------------------------------

/// One member's masked entries (see `fb_dropout` in kernels.cu).
struct MaskLaunch {
    base: u64,
    n: u64,
    lb: u64,
    lrow: u64,
    off: u64,
    gather: bool,
}

fn launch_mask(
    dev: &CudaDevice,
    x: &CudaView<'_, f32>,
    y: &mut CudaSlice<f32>,
    drop: &Dropout,
    stream: &MaskStream,
    at: MaskLaunch,
) -> Result<()> {
    let func = dev.get_or_load_custom_func("fb_dropout", MODULE, PTX)?;
    let first_block = (stream.word / 16) as u64;
    let offset0 = (stream.word % 16) as u32;
    let blocks = (at.n + u64::from(offset0)).div_ceil(16);
    let k = stream.key;
    let gather = i32::from(at.gather);
    let mut b = func.builder();
    b.arg(x);
    b.arg(y);
    for w in &k {
        b.arg(w);
    }
    b.arg(&stream.stream);
    b.arg(&first_block);
    b.arg(&offset0);
    b.arg(&at.n);
    b.arg(&drop.threshold);
    b.arg(&drop.scale);
    b.arg(&at.base);
    b.arg(&at.lb);
    b.arg(&at.lrow);
    b.arg(&at.off);
    b.arg(&gather);
    // SAFETY: the arguments match fb_dropout's signature; every index stays within x and y.
    unsafe { b.launch(cfg(blocks)) }.w()?;
    Ok(())
}

pub(super) fn dropout(op: &Dropout, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
    let dev = &s.device;
    let x = view(s, l)?;
    let total = l.shape().elem_count() as u64;
    let mut y = alloc(dev, total as usize)?;
    let n = total / op.streams.len() as u64;
    for (g, stream) in op.streams.iter().enumerate() {
        let at = MaskLaunch {
            base: g as u64 * n,
            n,
            lb: total,
            lrow: total,
            off: 0,
            gather: false,
        };
        launch_mask(dev, &x, &mut y, op, stream, at)?;
    }
    Ok(wrap(y, dev, l.shape().clone()))
}

/// dst[r·dst_stride + dst_off + c] = src[r·src_stride + src_off + c].
#[allow(clippy::too_many_arguments)]
fn copy_rows(
    dev: &CudaDevice,
    src: &CudaView<'_, f32>,
    dst: &mut CudaSlice<f32>,
    rows: u64,
    width: u64,
    (src_stride, src_off): (u64, u64),
    (dst_stride, dst_off): (u64, u64),
) -> Result<()> {
    let func = dev.get_or_load_custom_func("fb_copy_rows", MODULE, PTX)?;
    let mut b = func.builder();
    b.arg(src);
    b.arg(dst);
    b.arg(&rows);
    b.arg(&width);
    b.arg(&src_stride);
    b.arg(&src_off);
    b.arg(&dst_stride);
    b.arg(&dst_off);
    // SAFETY: matches fb_copy_rows; the callers size src and dst for these rows.
    unsafe { b.launch(cfg(rows * width)) }.w()?;
    Ok(())
}

/// (N, C, rest) of a rank >= 2 layout.
fn ncr(l: &Layout) -> (u64, u64, u64) {
    let d = l.dims();
    (
        d[0] as u64,
        d[1] as u64,
        d[2..].iter().product::<usize>() as u64,
    )
}

/// `CatChannels`: a and b joined on dim 1.
pub(crate) fn cat_channels(
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let ((n, ca, r), (_, cb, _)) = (ncr(l1), ncr(l2));
    let (la, lb) = (ca * r, cb * r);
    let mut out = alloc(dev, (n * (la + lb)) as usize)?;
    copy_rows(dev, &view(s1, l1)?, &mut out, n, la, (la, 0), (la + lb, 0))?;
    copy_rows(dev, &view(s2, l2)?, &mut out, n, lb, (lb, 0), (la + lb, la))?;
    let mut dims = l1.dims().to_vec();
    dims[1] = (ca + cb) as usize;
    Ok(wrap(out, dev, dims))
}

/// `Channels`: channels start..start + len of (N, C, ...).
pub(crate) fn channels(
    start: usize,
    len: usize,
    s: &CudaStorage,
    l: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let dev = &s.device;
    let (n, c, r) = ncr(l);
    let (start, len) = (start as u64, len as u64);
    let mut out = alloc(dev, (n * len * r) as usize)?;
    copy_rows(
        dev,
        &view(s, l)?,
        &mut out,
        n,
        len * r,
        (c * r, start * r),
        (len * r, 0),
    )?;
    let mut dims = l.dims().to_vec();
    dims[1] = len as usize;
    Ok(wrap(out, dev, dims))
}

/// `CatDropout`: cat(a, b · mask).
pub(super) fn cat_dropout(
    op: &Dropout,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let ((n, ca, r), (_, cb, _)) = (ncr(l1), ncr(l2));
    let (la, lb) = (ca * r, cb * r);
    let mut out = alloc(dev, (n * (la + lb)) as usize)?;
    copy_rows(dev, &view(s1, l1)?, &mut out, n, la, (la, 0), (la + lb, 0))?;
    let b = view(s2, l2)?;
    let per = n * lb / op.streams.len() as u64;
    for (g, stream) in op.streams.iter().enumerate() {
        let at = MaskLaunch {
            base: g as u64 * per,
            n: per,
            lb,
            lrow: la + lb,
            off: la,
            gather: false,
        };
        launch_mask(dev, &b, &mut out, op, stream, at)?;
    }
    let mut dims = l1.dims().to_vec();
    dims[1] = (ca + cb) as usize;
    Ok(wrap(out, dev, dims))
}

/// `ChannelsDropout`: channels start..start + len of the gradient, times the mask.
pub(super) fn channels_dropout(
    op: &ChannelsDropout,
    s: &CudaStorage,
    l: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let dev = &s.device;
    let (n, c, r) = ncr(l);
    let (start, len) = (op.start as u64, op.len as u64);
    let mut out = alloc(dev, (n * len * r) as usize)?;
    let grad = view(s, l)?;
    let per = n * len * r / op.dropout.streams.len() as u64;
    for (g, stream) in op.dropout.streams.iter().enumerate() {
        let at = MaskLaunch {
            base: g as u64 * per,
            n: per,
            lb: len * r,
            lrow: c * r,
            off: start * r,
            gather: true,
        };
        launch_mask(dev, &grad, &mut out, &op.dropout, stream, at)?;
    }
    let mut dims = l.dims().to_vec();
    dims[1] = op.len;
    Ok(wrap(out, dev, dims))
}

// ----- BatchNorm -----------------------------------------------------------------------------

/// (vcs, chunks, b, c, s) of a BatchNorm's dims, as the kernels take them.
fn bn_args(d: &BnDims) -> (u64, u64, u64, u64, u64) {
    (
        d.channels() as u64,
        d.chunks() as u64,
        d.b as u64,
        d.c as u64,
        d.s as u64,
    )
}

pub(super) fn bn_stats(op: &BnStats, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
    let dev = &s.device;
    let x = view(s, l)?;
    let (vcs, chunks, b, c, sp) = bn_args(&op.dims);
    // SAFETY: fb_bn_stats_partial writes every partial.
    let mut part = unsafe { dev.alloc::<f64>((2 * vcs * chunks) as usize) }?;
    let mut stats = alloc(dev, (2 * vcs) as usize)?;
    let f = dev.get_or_load_custom_func("fb_bn_stats_partial", MODULE, PTX)?;
    let mut a = f.builder();
    a.arg(&x);
    a.arg(&mut part);
    a.arg(&vcs);
    a.arg(&chunks);
    a.arg(&b);
    a.arg(&c);
    a.arg(&sp);
    // SAFETY: matches fb_bn_stats_partial.
    unsafe { a.launch(cfg(vcs * chunks)) }.w()?;
    let f = dev.get_or_load_custom_func("fb_bn_stats_final", MODULE, PTX)?;
    let mut a = f.builder();
    a.arg(&x);
    a.arg(&part);
    a.arg(&mut stats);
    a.arg(&vcs);
    a.arg(&chunks);
    a.arg(&b);
    a.arg(&c);
    a.arg(&sp);
    // SAFETY: matches fb_bn_stats_final.
    unsafe { a.launch(cfg(vcs)) }.w()?;
    Ok(wrap(stats, dev, (2, vcs as usize)))
}

pub(super) fn bn_apply(
    op: &BnApply,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    (s3, l3): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (st_guard, st_l) = op.stats.storage_and_layout();
    let stats = view(cuda_of(&st_guard)?, st_l)?;
    let (x, gamma, beta) = (view(s1, l1)?, view(s2, l2)?, view(s3, l3)?);
    let total = l1.shape().elem_count() as u64;
    let (vcs, _, b, c, sp) = bn_args(&op.dims);
    let mut y = alloc(dev, total as usize)?;
    let relu = i32::from(op.relu);
    let f = dev.get_or_load_custom_func("fb_bn_apply", MODULE, PTX)?;
    let mut a = f.builder();
    a.arg(&x);
    a.arg(&gamma);
    a.arg(&beta);
    a.arg(&stats);
    a.arg(&mut y);
    a.arg(&total);
    a.arg(&vcs);
    a.arg(&b);
    a.arg(&c);
    a.arg(&sp);
    a.arg(&op.eps);
    a.arg(&relu);
    // SAFETY: matches fb_bn_apply.
    unsafe { a.launch(cfg(total)) }.w()?;
    Ok(wrap(y, dev, l1.shape().clone()))
}

pub(super) fn bn_bwd_sums(
    op: &BnBwdSums,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let h = &op.held;
    let (gg, gl) = h.gamma.storage_and_layout();
    let (bg, bl) = h.beta.storage_and_layout();
    let (sg, sl) = h.stats.storage_and_layout();
    let (gamma, beta, stats) = (
        view(cuda_of(&gg)?, gl)?,
        view(cuda_of(&bg)?, bl)?,
        view(cuda_of(&sg)?, sl)?,
    );
    let (x, dy) = (view(s1, l1)?, view(s2, l2)?);
    let (vcs, chunks, b, c, sp) = bn_args(&h.dims);
    // SAFETY: fb_bn_bwd_partial writes every partial.
    let mut part = unsafe { dev.alloc::<f64>((2 * vcs * chunks) as usize) }?;
    let mut sums = alloc(dev, (2 * vcs) as usize)?;
    let relu = i32::from(h.relu);
    let f = dev.get_or_load_custom_func("fb_bn_bwd_partial", MODULE, PTX)?;
    let mut a = f.builder();
    a.arg(&x);
    a.arg(&dy);
    a.arg(&gamma);
    a.arg(&beta);
    a.arg(&stats);
    a.arg(&mut part);
    a.arg(&vcs);
    a.arg(&chunks);
    a.arg(&b);
    a.arg(&c);
    a.arg(&sp);
    a.arg(&h.eps);
    a.arg(&relu);
    // SAFETY: matches fb_bn_bwd_partial.
    unsafe { a.launch(cfg(vcs * chunks)) }.w()?;
    let f = dev.get_or_load_custom_func("fb_bn_bwd_final", MODULE, PTX)?;
    let mut a = f.builder();
    a.arg(&part);
    a.arg(&gamma);
    a.arg(&beta);
    a.arg(&stats);
    a.arg(&mut sums);
    a.arg(&vcs);
    a.arg(&chunks);
    a.arg(&h.eps);
    // SAFETY: matches fb_bn_bwd_final.
    unsafe { a.launch(cfg(vcs)) }.w()?;
    Ok(wrap(sums, dev, (2 * vcs) as usize))
}

pub(super) fn bn_bwd_dx(
    op: &BnBwdDx,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    (s3, l3): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let h = &op.held;
    let (gg, gl) = h.gamma.storage_and_layout();
    let (bg, bl) = h.beta.storage_and_layout();
    let (sg, sl) = h.stats.storage_and_layout();
    let (gamma, beta, stats) = (
        view(cuda_of(&gg)?, gl)?,
        view(cuda_of(&bg)?, bl)?,
        view(cuda_of(&sg)?, sl)?,
    );
    let (x, dy, sums) = (view(s1, l1)?, view(s2, l2)?, view(s3, l3)?);
    let total = l1.shape().elem_count() as u64;
    let (vcs, _, b, c, sp) = bn_args(&h.dims);
    let n = h.dims.per_channel() as f32;
    let (relu, train) = (i32::from(h.relu), i32::from(op.train));
    let mut dx = alloc(dev, total as usize)?;
    let f = dev.get_or_load_custom_func("fb_bn_bwd_dx", MODULE, PTX)?;
    let mut a = f.builder();
    a.arg(&x);
    a.arg(&dy);
    a.arg(&sums);
    a.arg(&gamma);
    a.arg(&beta);
    a.arg(&stats);
    a.arg(&mut dx);
    a.arg(&total);
    a.arg(&vcs);
    a.arg(&b);
    a.arg(&c);
    a.arg(&sp);
    a.arg(&n);
    a.arg(&h.eps);
    a.arg(&relu);
    a.arg(&train);
    // SAFETY: matches fb_bn_bwd_dx.
    unsafe { a.launch(cfg(total)) }.w()?;
    Ok(wrap(dx, dev, l1.shape().clone()))
}

/// Runs `launch` with the device addresses of the first element of each of `tensors`
/// (contiguous f32 on `dev`), holding their storage guards and stream records until it returns
/// (the kernel is queued by then, on the device's one stream, ordered with every other op).
fn with_addresses(
    tensors: &[&Tensor],
    dev: &CudaDevice,
    launch: impl FnOnce(&[u64]) -> Result<()>,
) -> Result<()> {
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let stream = dev.cuda_stream();
    let mut records = Vec::with_capacity(guards.len());
    let mut addrs = Vec::with_capacity(guards.len());
    for (guard, l) in &guards {
        let (start, _) = l.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("ferbayes multi-tensor op: want contiguous tensors".into())
        })?;
        let (ptr, record) = cuda_of(guard)?.as_cuda_slice::<f32>()?.device_ptr(&stream);
        addrs.push(ptr + (start * std::mem::size_of::<f32>()) as u64);
        records.push(record);
    }
    let done = launch(&addrs);
    drop(records);
    drop(guards);
    done
}

/// Every pending running-statistics update in one launch (`fb_bn_running`).
pub(super) fn running_multi(pending: &[PendingRunning]) -> Result<()> {
    let dev = match pending[0].mean.device() {
        candle_core::Device::Cuda(d) => d.clone(),
        _ => candle_core::bail!("ferbayes running statistics: not on the GPU"),
    };
    let tensors: Vec<&Tensor> = pending
        .iter()
        .flat_map(|p| [&p.mean, &p.var, &p.stats])
        .collect();
    let vcs: Vec<u64> = pending.iter().map(|p| p.mean.elem_count() as u64).collect();
    let factors: Vec<f32> = pending
        .iter()
        .flat_map(|p| [p.keep, p.take_mean, p.take_var])
        .collect();
    with_addresses(&tensors, &dev, |addrs| {
        let (ptrs, vcs_dev, factors) = (
            dev.clone_htod(addrs)?,
            dev.clone_htod(vcs.as_slice())?,
            dev.clone_htod(factors.as_slice())?,
        );
        let max_vc = vcs.iter().copied().max().unwrap_or(1);
        let entries = pending.len() as u64;
        let f = dev.get_or_load_custom_func("fb_bn_running", MODULE, PTX)?;
        let mut a = f.builder();
        a.arg(&ptrs);
        a.arg(&vcs_dev);
        a.arg(&factors);
        a.arg(&entries);
        let grid = LaunchConfig {
            grid_dim: (
                max_vc.div_ceil(u64::from(THREADS)) as u32,
                entries as u32,
                1,
            ),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: matches fb_bn_running; every pointer is a live f32 tensor of the sizes given.
        unsafe { a.launch(grid) }.w()?;
        Ok(())
    })
}

// ----- Bias and ReLU, channel sums -------------------------------------------------------------

/// `BiasRelu` (forward) or `BiasReluBwd` (with `dy`).
pub(super) fn bias_relu(
    _bwd: bool,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    dy: Option<(&CudaStorage, &Layout)>,
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (x, bias) = (view(s1, l1)?, view(s2, l2)?);
    let (_, c, s) = ncr(l1);
    let total = l1.shape().elem_count() as u64;
    let mut out = alloc(dev, total as usize)?;
    let f = dev.get_or_load_custom_func("fb_bias_relu", MODULE, PTX)?;
    let dyv = dy.map(|(s, l)| view(s, l)).transpose()?;
    let null = 0u64;
    let mut a = f.builder();
    a.arg(&x);
    a.arg(&bias);
    match &dyv {
        Some(v) => a.arg(v),
        None => a.arg(&null),
    };
    a.arg(&mut out);
    a.arg(&total);
    a.arg(&c);
    a.arg(&s);
    // SAFETY: matches fb_bias_relu (dy a null pointer in the forward).
    unsafe { a.launch(cfg(total)) }.w()?;
    Ok(wrap(out, dev, l1.shape().clone()))
}

pub(super) fn channel_sums(s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
    let dev = &s.device;
    let x = view(s, l)?;
    let d = BnDims::new(l.dims(), 1)?;
    let (c, chunks, b, sp) = (d.c as u64, d.chunks() as u64, d.b as u64, d.s as u64);
    // SAFETY: fb_channel_sums_partial writes every partial.
    let mut part = unsafe { dev.alloc::<f64>((c * chunks) as usize) }?;
    let mut out = alloc(dev, c as usize)?;
    let f = dev.get_or_load_custom_func("fb_channel_sums_partial", MODULE, PTX)?;
    let mut a = f.builder();
    a.arg(&x);
    a.arg(&mut part);
    a.arg(&c);
    a.arg(&chunks);
    a.arg(&b);
    a.arg(&sp);
    // SAFETY: matches fb_channel_sums_partial.
    unsafe { a.launch(cfg(c * chunks)) }.w()?;
    let f = dev.get_or_load_custom_func("fb_channel_sums_final", MODULE, PTX)?;
    let mut a = f.builder();
    a.arg(&part);
    a.arg(&mut out);
    a.arg(&c);
    a.arg(&chunks);
    // SAFETY: matches fb_channel_sums_final.
    unsafe { a.launch(cfg(c)) }.w()?;
    Ok(wrap(out, dev, c as usize))
}

// ----- Loss ------------------------------------------------------------------------------------

/// The target's view: u32 labels or f32 distributions.
enum TargetView<'a> {
    Classes(CudaView<'a, u32>),
    Soft(CudaView<'a, f32>),
}

fn target_view<'a>(kind: Target, s: &'a CudaStorage, l: &Layout) -> Result<TargetView<'a>> {
    let (a, b) = l.contiguous_offsets().ok_or_else(|| {
        candle_core::Error::Msg("ferbayes cross entropy: want a contiguous target".into())
    })?;
    Ok(match kind {
        Target::Classes => TargetView::Classes(s.as_cuda_slice::<u32>()?.slice(a..b)),
        Target::Soft => TargetView::Soft(s.as_cuda_slice::<f32>()?.slice(a..b)),
    })
}

pub(super) fn cross_entropy(
    kind: Target,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let x = view(s1, l1)?;
    let target = target_view(kind, s2, l2)?;
    let (n, k) = (l1.dims()[0] as u64, l1.dims()[1] as u64);
    let soft = i32::from(kind == Target::Soft);
    let mut rows = alloc(dev, n as usize)?;
    let mut out = alloc(dev, 1)?;
    let f = dev.get_or_load_custom_func("fb_ce_rows", MODULE, PTX)?;
    let mut a = f.builder();
    a.arg(&x);
    match &target {
        TargetView::Classes(t) => a.arg(t),
        TargetView::Soft(t) => a.arg(t),
    };
    a.arg(&mut rows);
    a.arg(&n);
    a.arg(&k);
    a.arg(&soft);
    // SAFETY: matches fb_ce_rows.
    unsafe { a.launch(cfg(n)) }.w()?;
    let f = dev.get_or_load_custom_func("fb_ce_mean", MODULE, PTX)?;
    let mut a = f.builder();
    a.arg(&rows);
    a.arg(&mut out);
    a.arg(&n);
    // SAFETY: matches fb_ce_mean.
    unsafe { a.launch(cfg(1)) }.w()?;
    Ok(wrap(out, dev, ()))
}

pub(super) fn cross_entropy_bwd(
    kind: Target,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    (s3, l3): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let x = view(s1, l1)?;
    let target = target_view(kind, s2, l2)?;
    let grad = view(s3, l3)?;
    let (n, k) = (l1.dims()[0] as u64, l1.dims()[1] as u64);
    let soft = i32::from(kind == Target::Soft);
    let mut dx = alloc(dev, (n * k) as usize)?;
    let f = dev.get_or_load_custom_func("fb_ce_bwd", MODULE, PTX)?;
    let mut a = f.builder();
    a.arg(&x);
    match &target {
        TargetView::Classes(t) => a.arg(t),
        TargetView::Soft(t) => a.arg(t),
    };
    a.arg(&grad);
    a.arg(&mut dx);
    a.arg(&n);
    a.arg(&k);
    a.arg(&soft);
    // SAFETY: matches fb_ce_bwd.
    unsafe { a.launch(cfg(n)) }.w()?;
    Ok(wrap(dx, dev, l1.shape().clone()))
}

// ----- Pools -----------------------------------------------------------------------------------

/// (planes, h, w) of a (B, C, H, W) layout.
fn phw(l: &Layout) -> Result<(u64, u64, u64)> {
    let &[b, c, h, w] = l.dims() else {
        candle_core::bail!("ferbayes max pool: want a 4-d tensor, got {:?}", l.dims());
    };
    Ok(((b * c) as u64, h as u64, w as u64))
}

/// The 2x2 (`three` false) or 3x3 / 2 / pad-1 max pool's forward.
pub(crate) fn max_pool(three: bool, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
    let dev = &s.device;
    let x = view(s, l)?;
    let (planes, h, w) = phw(l)?;
    let (ho, wo) = if three {
        ((h - 1) / 2 + 1, (w - 1) / 2 + 1)
    } else {
        (h / 2, w / 2)
    };
    let total = planes * ho * wo;
    let mut y = alloc(dev, total as usize)?;
    let name = if three {
        "fb_max_pool3"
    } else {
        "fb_max_pool2"
    };
    let f = dev.get_or_load_custom_func(name, MODULE, PTX)?;
    let mut a = f.builder();
    a.arg(&x);
    a.arg(&mut y);
    a.arg(&planes);
    a.arg(&h);
    a.arg(&w);
    // SAFETY: matches fb_max_pool2 / fb_max_pool3.
    unsafe { a.launch(cfg(total)) }.w()?;
    let d = l.dims();
    Ok(wrap(y, dev, (d[0], d[1], ho as usize, wo as usize)))
}

/// The max pools' backward: (x, dy) -> dx.
pub(crate) fn max_pool_bwd(
    three: bool,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (x, dy) = (view(s1, l1)?, view(s2, l2)?);
    let (planes, h, w) = phw(l1)?;
    let total = planes * h * w;
    let mut dx = alloc(dev, total as usize)?;
    let name = if three {
        "fb_max_pool3_bwd"
    } else {
        "fb_max_pool2_bwd"
    };
    let f = dev.get_or_load_custom_func(name, MODULE, PTX)?;
    let mut a = f.builder();
    a.arg(&x);
    a.arg(&dy);
    a.arg(&mut dx);
    a.arg(&planes);
    a.arg(&h);
    a.arg(&w);
    // SAFETY: matches fb_max_pool2_bwd / fb_max_pool3_bwd.
    unsafe { a.launch(cfg(total)) }.w()?;
    Ok(wrap(dx, dev, l1.shape().clone()))
}

// ----- Optimiser -------------------------------------------------------------------------------

/// One multi-tensor update of every variable (θ, g, first, second): Adam with
/// `[b1, c1, b2, c2, r1, r2, eps, lr]` and weight decay `wd`, or SGD (`sgd = Some((momentum,
/// lr))`, `wd`), as `train::optim`'s in-place passes compute it, in one launch. Variable v's
/// elements go in blocks of [`CHUNK`], each block told its variable and first element.
pub(crate) fn optimizer_step(
    vars: &[[&Tensor; 4]],
    adam: Option<[f32; 8]>,
    sgd: Option<(Option<f32>, f32)>,
    wd: Option<f32>,
) -> Result<()> {
    let Some(first) = vars.first() else {
        return Ok(());
    };
    let dev = match first[0].device() {
        candle_core::Device::Cuda(d) => d.clone(),
        _ => candle_core::bail!("ferbayes optimiser: not on the GPU"),
    };
    let tensors: Vec<&Tensor> = vars.iter().flat_map(|v| v.iter().copied()).collect();
    let (mut lens, mut chunk_var, mut chunk_start) = (Vec::new(), Vec::new(), Vec::new());
    for (v, ts) in vars.iter().enumerate() {
        let len = ts[0].elem_count() as u64;
        lens.push(len);
        for start in (0..len).step_by(CHUNK) {
            chunk_var.push(v as u32);
            chunk_start.push(start);
        }
    }
    let (use_wd, wd) = (i32::from(wd.is_some()), wd.unwrap_or(0.0));
    let grid = LaunchConfig {
        grid_dim: (chunk_var.len().max(1) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    with_addresses(&tensors, &dev, |addrs| {
        let (ptrs, lens, chunk_var, chunk_start) = (
            dev.clone_htod(addrs)?,
            dev.clone_htod(lens.as_slice())?,
            dev.clone_htod(chunk_var.as_slice())?,
            dev.clone_htod(chunk_start.as_slice())?,
        );
        match (adam, sgd) {
            (Some([b1, c1, b2, c2, r1, r2, eps, lr]), _) => {
                let f = dev.get_or_load_custom_func("fb_adam", MODULE, PTX)?;
                let mut a = f.builder();
                a.arg(&ptrs);
                a.arg(&lens);
                a.arg(&chunk_var);
                a.arg(&chunk_start);
                for v in [&b1, &c1, &b2, &c2, &r1, &r2, &eps, &wd] {
                    a.arg(v);
                }
                a.arg(&use_wd);
                a.arg(&lr);
                // SAFETY: matches fb_adam; every address is a live f32 tensor of lens[v] elements.
                unsafe { a.launch(grid) }.w()?;
            }
            (None, Some((momentum, lr))) => {
                let (use_m, m) = (i32::from(momentum.is_some()), momentum.unwrap_or(0.0));
                let f = dev.get_or_load_custom_func("fb_sgd", MODULE, PTX)?;
                let mut a = f.builder();
                a.arg(&ptrs);
                a.arg(&lens);
                a.arg(&chunk_var);
                a.arg(&chunk_start);
                a.arg(&m);
                a.arg(&use_m);
                a.arg(&wd);
                a.arg(&use_wd);
                a.arg(&lr);
                // SAFETY: matches fb_sgd; every address is a live f32 tensor of lens[v] elements.
                unsafe { a.launch(grid) }.w()?;
            }
            _ => candle_core::bail!("ferbayes optimiser: Adam or SGD"),
        }
        Ok(())
    })
}

// ----- Convolutions through cuDNN --------------------------------------------------------------

#[cfg(feature = "cudnn")]
mod cudnn {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::Arc;

    use candle_core::cuda_backend::DeviceId;
    use candle_core::cuda_backend::cudarc::cudnn::sys::{
        cudnnConvolutionBwdDataAlgo_t as DataAlgo, cudnnConvolutionBwdFilterAlgo_t as FilterAlgo,
        cudnnConvolutionFwdAlgo_t as FwdAlgo, cudnnConvolutionMode_t, cudnnMathType_t,
        cudnnTensorFormat_t,
    };
    use candle_core::cuda_backend::cudarc::cudnn::{
        ConvBackwardData, ConvBackwardFilter, ConvDescriptor, ConvForward, Cudnn, FilterDescriptor,
        TensorDescriptor,
    };
    use candle_core::{CudaDevice, CudaStorage, Layout, Result, Shape};

    use super::{alloc, view, wrap};
    use crate::device::conv::{ConvBwdData, ConvBwdFilter, ConvFwd};
    use crate::device::tf32;

    /// The algorithms, fixed: each is deterministic (the same bits twice on one GPU) and runs
    /// every shape the networks have.
    pub(crate) const FWD: FwdAlgo = FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
    pub(crate) const BWD_DATA: DataAlgo = DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
    pub(crate) const BWD_FILTER: FilterAlgo = FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;

    thread_local! {
        // cuDNN handles are neither Send nor Sync: one per thread and device, as candle keeps them.
        static HANDLES: RefCell<HashMap<DeviceId, Arc<Cudnn>>> = RefCell::new(HashMap::new());
    }

    fn handle(dev: &CudaDevice) -> Result<Arc<Cudnn>> {
        HANDLES.with(|h| {
            if let Some(c) = h.borrow().get(&dev.id()) {
                return Ok(c.clone());
            }
            let c = Cudnn::new(dev.cuda_stream()).map_err(candle_core::Error::wrap)?;
            h.borrow_mut().insert(dev.id(), c.clone());
            Ok(c)
        })
    }

    /// The descriptors of one convolution: x (b, cin, h, w), w (cout, cin, kh, kw), y.
    struct Descs {
        conv: ConvDescriptor<f32>,
        x: TensorDescriptor<f32>,
        w: FilterDescriptor<f32>,
        y: TensorDescriptor<f32>,
    }

    fn descs(
        cudnn: &Arc<Cudnn>,
        x: [usize; 4],
        w: [usize; 4],
        padding: usize,
        stride: usize,
    ) -> Result<Descs> {
        let i = |v: usize| v as i32;
        let (p, s) = (i(padding), i(stride));
        let mut conv = cudnn
            .create_conv2d::<f32>(
                [p, p],
                [s, s],
                [1, 1],
                cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
            )
            .map_err(candle_core::Error::wrap)?;
        let math = if tf32() {
            cudnnMathType_t::CUDNN_DEFAULT_MATH
        } else {
            cudnnMathType_t::CUDNN_FMA_MATH
        };
        conv.set_math_type(math).map_err(candle_core::Error::wrap)?;
        let nchw = cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
        let ho = (x[2] + 2 * padding - w[2]) / stride + 1;
        let wo = (x[3] + 2 * padding - w[3]) / stride + 1;
        Ok(Descs {
            conv,
            x: cudnn
                .create_4d_tensor::<f32>(nchw, [i(x[0]), i(x[1]), i(x[2]), i(x[3])])
                .map_err(candle_core::Error::wrap)?,
            w: cudnn
                .create_4d_filter::<f32>(nchw, [i(w[0]), i(w[1]), i(w[2]), i(w[3])])
                .map_err(candle_core::Error::wrap)?,
            y: cudnn
                .create_4d_tensor::<f32>(nchw, [i(x[0]), i(w[0]), i(ho), i(wo)])
                .map_err(candle_core::Error::wrap)?,
        })
    }

    fn dims4(l: &Layout) -> Result<[usize; 4]> {
        match l.dims() {
            &[a, b, c, d] => Ok([a, b, c, d]),
            d => candle_core::bail!("ferbayes conv: want 4-d tensors, got {d:?}"),
        }
    }

    /// A workspace of `bytes` (none for 0).
    fn workspace(
        dev: &CudaDevice,
        bytes: usize,
    ) -> Result<Option<candle_core::cuda_backend::cudarc::driver::CudaSlice<u8>>> {
        if bytes == 0 {
            return Ok(None);
        }
        Ok(Some(dev.alloc_zeros::<u8>(bytes)?))
    }

    pub(crate) fn conv_fwd(
        op: &ConvFwd,
        (s1, l1): (&CudaStorage, &Layout),
        (s2, l2): (&CudaStorage, &Layout),
    ) -> Result<(CudaStorage, Shape)> {
        let dev = &s1.device;
        let (xd, wd) = (dims4(l1)?, dims4(l2)?);
        let cudnn = handle(dev)?;
        let d = descs(&cudnn, xd, wd, op.padding, op.stride)?;
        let ho = (xd[2] + 2 * op.padding - wd[2]) / op.stride + 1;
        let wo = (xd[3] + 2 * op.padding - wd[3]) / op.stride + 1;
        let mut y = alloc(dev, xd[0] * wd[0] * ho * wo)?;
        let fwd = ConvForward {
            conv: &d.conv,
            x: &d.x,
            w: &d.w,
            y: &d.y,
        };
        let mut ws = workspace(
            dev,
            fwd.get_workspace_size(FWD)
                .map_err(candle_core::Error::wrap)?,
        )?;
        let (x, w) = (view(s1, l1)?, view(s2, l2)?);
        // SAFETY: the views and y match the descriptors' shapes and f32 type.
        unsafe { fwd.launch(FWD, ws.as_mut(), (1f32, 0f32), &x, &w, &mut y) }
            .map_err(candle_core::Error::wrap)?;
        Ok(wrap(y, dev, (xd[0], wd[0], ho, wo)))
    }

    pub(crate) fn conv_bwd_data(
        op: &ConvBwdData,
        (s1, l1): (&CudaStorage, &Layout),
        (s2, l2): (&CudaStorage, &Layout),
    ) -> Result<(CudaStorage, Shape)> {
        let dev = &s1.device;
        let (xd, wd) = (op.x_dims, dims4(l2)?);
        let cudnn = handle(dev)?;
        let d = descs(&cudnn, xd, wd, op.padding, op.stride)?;
        let mut dx = alloc(dev, xd.iter().product())?;
        let bwd = ConvBackwardData {
            conv: &d.conv,
            dx: &d.x,
            w: &d.w,
            dy: &d.y,
        };
        let mut ws = workspace(
            dev,
            bwd.get_workspace_size(BWD_DATA)
                .map_err(candle_core::Error::wrap)?,
        )?;
        let (dy, w) = (view(s1, l1)?, view(s2, l2)?);
        // SAFETY: the views and dx match the descriptors' shapes and f32 type.
        unsafe { bwd.launch(BWD_DATA, ws.as_mut(), (1f32, 0f32), &mut dx, &w, &dy) }
            .map_err(candle_core::Error::wrap)?;
        Ok(wrap(dx, dev, xd.to_vec()))
    }

    pub(crate) fn conv_bwd_filter(
        op: &ConvBwdFilter,
        (s1, l1): (&CudaStorage, &Layout),
        (s2, l2): (&CudaStorage, &Layout),
    ) -> Result<(CudaStorage, Shape)> {
        let dev = &s1.device;
        let (xd, wd) = (dims4(l1)?, op.w_dims);
        let cudnn = handle(dev)?;
        let d = descs(&cudnn, xd, wd, op.padding, op.stride)?;
        let mut dw = alloc(dev, wd.iter().product())?;
        let bwd = ConvBackwardFilter {
            conv: &d.conv,
            x: &d.x,
            dw: &d.w,
            dy: &d.y,
        };
        let mut ws = workspace(
            dev,
            bwd.get_workspace_size(BWD_FILTER)
                .map_err(candle_core::Error::wrap)?,
        )?;
        let (x, dy) = (view(s1, l1)?, view(s2, l2)?);
        // SAFETY: the views and dw match the descriptors' shapes and f32 type.
        unsafe { bwd.launch(BWD_FILTER, ws.as_mut(), (1f32, 0f32), &x, &mut dw, &dy) }
            .map_err(candle_core::Error::wrap)?;
        Ok(wrap(dw, dev, wd.to_vec()))
    }

    /// `cuDNN <version>; conv algorithms ...; TF32 on|off`, for the manifests.
    pub(crate) fn describe() -> String {
        let v = candle_core::cuda_backend::cudarc::cudnn::result::get_version();
        format!(
            "cuDNN {}.{}.{}; conv forward {FWD:?}, input gradient {BWD_DATA:?}, weight gradient \
             {BWD_FILTER:?}; TF32 {}",
            v / 10000,
            (v / 100) % 100,
            v % 100,
            if tf32() {
                "on (the tf32 setting)"
            } else {
                "off"
            }
        )
    }
}

#[cfg(feature = "cudnn")]
pub(super) use cudnn::{conv_bwd_data, conv_bwd_filter, conv_fwd, describe as describe_cudnn};
