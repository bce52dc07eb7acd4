//! BatchNorm over dim 1 of a (B, C, ...) tensor: training (batch statistics, one
//! fused backward) and evaluation (running statistics as a per-channel affine map),
//! each optionally followed by a ReLU in the same pass.

use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::{ZeroLog, contiguous_f32, par_chunks_mut, par_map, relu_row};

/// (B, C, S): batch, channels, elements per channel per sample.
fn bcs(dims: &[usize]) -> candle_core::Result<(usize, usize, usize)> {
    if dims.len() < 2 {
        candle_core::bail!("ferbayes batch norm: want rank >= 2, got {dims:?}");
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

/// Per channel `f(channel, [the channel's S values in sample 0, 1, ...])`, in
/// parallel over channels.
fn per_channel<T: Send>(
    x: &[f32],
    (b, c, s): (usize, usize, usize),
    f: impl Fn(usize, &mut dyn Iterator<Item = (usize, &[f32])>) -> T + Sync,
) -> Vec<T> {
    par_map(c, |ch| {
        let mut it = (0..b).map(|n| (n * c * s + ch * s, &x[n * c * s + ch * s..][..s]));
        f(ch, &mut it)
    })
}

/// Partial sums per lane in the f64 reductions below: independent accumulators
/// the compiler can vectorise, added in a fixed order (so still deterministic).
const LANES: usize = 8;

/// (Σ (v - k), Σ (v - k)²) over `a`, in f64.
fn shifted_sums(a: &[f32], k: f64) -> (f64, f64) {
    let (mut s1, mut s2) = ([0f64; LANES], [0f64; LANES]);
    let mut chunks = a.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            let d = f64::from(c[l]) - k;
            s1[l] += d;
            s2[l] += d * d;
        }
    }
    let (mut t1, mut t2) = (s1.iter().sum::<f64>(), s2.iter().sum::<f64>());
    for &v in chunks.remainder() {
        let d = f64::from(v) - k;
        t1 += d;
        t2 += d * d;
    }
    (t1, t2)
}

/// (Σ g, Σ g·(v - m)) over `g` and `x` (same length), in f64.
fn grad_sums(g: &[f32], x: &[f32], m: f64) -> (f64, f64) {
    let (mut s1, mut s2) = ([0f64; LANES], [0f64; LANES]);
    let (mut gc, mut xc) = (g.chunks_exact(LANES), x.chunks_exact(LANES));
    for (a, b) in (&mut gc).zip(&mut xc) {
        for l in 0..LANES {
            let d = f64::from(a[l]);
            s1[l] += d;
            s2[l] += d * (f64::from(b[l]) - m);
        }
    }
    let (mut t1, mut t2) = (s1.iter().sum::<f64>(), s2.iter().sum::<f64>());
    for (&a, &b) in gc.remainder().iter().zip(xc.remainder()) {
        t1 += f64::from(a);
        t2 += f64::from(a) * (f64::from(b) - m);
    }
    (t1, t2)
}

/// `g(channel, start, row)` for every row (one channel of one sample: `s`
/// elements of `out` from flat index `start`), in parallel over blocks of samples.
/// Row-wise, so `g` can run a vectorised loop over slices.
fn map_rows(
    out: &mut [f32],
    (_, c, s): (usize, usize, usize),
    g: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    let sample = c * s;
    if sample == 0 {
        return;
    }
    let per = (16384 / sample).max(1) * sample;
    par_chunks_mut(out, per, |k, o| {
        let base = k * per;
        for (j, row) in o.chunks_mut(s).enumerate() {
            g(j % c, base + j * s, row);
        }
    });
}

/// Batch statistics of a forward pass: per-channel mean and biased variance.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    /// Elements per channel (B·S), for the unbiased running variance.
    pub count: usize,
}

#[derive(Debug)]
struct Train {
    eps: f64,
    /// The fused ReLU's exact zeros, when there is one.
    relu: Option<Arc<ZeroLog>>,
    stats: Arc<Mutex<Stats>>,
}

/// `y = x·scale + shift` per channel, then `max(y, 0)` when `relu` (recording
/// the exact zeros there).
fn affine_map(
    y: &mut [f32],
    x: &[f32],
    dims: (usize, usize, usize),
    scale: &[f32],
    shift: &[f32],
    relu: Option<&ZeroLog>,
) {
    map_rows(y, dims, |ch, start, row| {
        let (a, b) = (scale[ch], shift[ch]);
        let xs = &x[start..start + row.len()];
        row.iter_mut().zip(xs).for_each(|(y, &v)| *y = v * a + b);
        if let Some(log) = relu {
            relu_row(row, start, log);
        }
    });
}

/// Training BatchNorm: `(x - mean) / sqrt(var + eps) * gamma + beta` with the
/// batch's statistics, then a ReLU when `relu`; also returns the statistics
/// (for the running-stat update).
pub(crate) fn batch_norm_train(
    xs: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> candle_core::Result<(Tensor, Stats)> {
    let stats = Arc::new(Mutex::new(Stats::default()));
    let op = Train {
        eps,
        relu: relu.then(|| ZeroLog::for_inputs(&[Some(xs), Some(gamma), Some(beta)])),
        stats: stats.clone(),
    };
    let ys = xs
        .contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let stats = stats.lock().unwrap_or_else(PoisonError::into_inner).clone();
    Ok((ys, stats))
}

impl CustomOp3 for Train {
    fn name(&self) -> &'static str {
        "ferbayes-fast-batchnorm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1)?;
        let (gamma, beta) = (contiguous_f32(s2, l2)?, contiguous_f32(s3, l3)?);
        let dims = bcs(l1.dims())?;
        let (b, c, s) = dims;
        if gamma.len() != c || beta.len() != c {
            candle_core::bail!("ferbayes batch norm: {c} channels, affine {:?}", l2.dims());
        }
        let n = (b * s) as f64;
        // One pass: sums shifted by the channel's first value (close to its mean, so
        // Σd² - (Σd)²/n does not cancel badly), in f64.
        let mv = per_channel(x, dims, |_, it| {
            let (mut s1, mut s2, mut k) = (0f64, 0f64, None);
            for (_, p) in it {
                let k = *k.get_or_insert_with(|| p.first().map_or(0.0, |&v| f64::from(v)));
                let (a, b) = shifted_sums(p, k);
                s1 += a;
                s2 += b;
            }
            let d = s1 / n;
            (k.unwrap_or(0.0) + d, (s2 / n - d * d).max(0.0))
        });
        let scale: Vec<f32> = mv
            .iter()
            .zip(gamma)
            .map(|(&(_, var), &g)| (f64::from(g) / (var + self.eps).sqrt()) as f32)
            .collect();
        let shift: Vec<f32> = mv
            .iter()
            .zip(&scale)
            .zip(beta)
            .map(|((&(mean, _), &sc), &bt)| (f64::from(bt) - mean * f64::from(sc)) as f32)
            .collect();
        let mut y = vec![0f32; x.len()];
        affine_map(&mut y, x, dims, &scale, &shift, self.relu.as_deref());
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner) = Stats {
            mean: mv.iter().map(|&(m, _)| m as f32).collect(),
            var: mv.iter().map(|&(_, v)| v as f32).collect(),
            count: b * s,
        };
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = match &self.relu {
            Some(log) => super::relu_grad(grad, res, log)?,
            None => grad.contiguous()?,
        };
        let stats = self
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let sums = Arc::new(Mutex::new(Vec::new()));
        let op = TrainBwd {
            eps: self.eps,
            gamma: gamma.to_vec1()?,
            stats,
            sums: sums.clone(),
        };
        let dx = x.contiguous()?.apply_op2_no_bwd(&grad, &op)?;
        let sums = sums.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let (dg, db): (Vec<f32>, Vec<f32>) = sums.into_iter().unzip();
        let dev = x.device();
        Ok((
            x.track_op().then_some(dx),
            if gamma.track_op() {
                Some(Tensor::from_vec(dg, gamma.shape(), dev)?)
            } else {
                None
            },
            if beta.track_op() {
                Some(Tensor::from_vec(db, beta.shape(), dev)?)
            } else {
                None
            },
        ))
    }
}

/// Backward of [`Train`]: (x, dy) -> dx; stores (dgamma, dbeta) per channel.
#[derive(Debug)]
struct TrainBwd {
    eps: f64,
    gamma: Vec<f32>,
    stats: Stats,
    sums: Arc<Mutex<Vec<(f32, f32)>>>,
}

impl CustomOp2 for TrainBwd {
    fn name(&self) -> &'static str {
        "ferbayes-fast-batchnorm-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, dy) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let dims = bcs(l1.dims())?;
        let c = dims.1;
        if dy.len() != x.len() || self.stats.mean.len() != c || self.gamma.len() != c {
            candle_core::bail!("ferbayes batch norm bwd: shape mismatch");
        }
        let n = self.stats.count as f64;
        let invstd: Vec<f64> = self
            .stats
            .var
            .iter()
            .map(|&v| 1.0 / (f64::from(v) + self.eps).sqrt())
            .collect();
        let mean = &self.stats.mean;
        // Per channel: Σ dy and Σ dy·(x - mean).
        let sums = per_channel(dy, dims, |ch, it| {
            let m = f64::from(mean[ch]);
            let (mut sdy, mut sdyx) = (0f64, 0f64);
            for (off, d) in it {
                let (a, b) = grad_sums(d, &x[off..off + d.len()], m);
                sdy += a;
                sdyx += b;
            }
            (sdy, sdyx)
        });
        // dx = gamma·invstd·(dy - Σdy/N - (x - mean)·invstd²·Σdy(x - mean)/N).
        let coef: Vec<(f32, f32, f32, f32)> = sums
            .iter()
            .enumerate()
            .map(|(ch, &(sdy, sdyx))| {
                let is = invstd[ch];
                (
                    (f64::from(self.gamma[ch]) * is) as f32,
                    (sdy / n) as f32,
                    (is * is * sdyx / n) as f32,
                    mean[ch],
                )
            })
            .collect();
        let mut dx = vec![0f32; x.len()];
        map_rows(&mut dx, dims, |ch, start, row| {
            let (a, k1, k2, m) = coef[ch];
            let n = row.len();
            let (xs, dys) = (&x[start..start + n], &dy[start..start + n]);
            for ((d, &v), &g) in row.iter_mut().zip(xs).zip(dys) {
                *d = a * (g - k1 - (v - m) * k2);
            }
        });
        *self.sums.lock().unwrap_or_else(PoisonError::into_inner) = sums
            .iter()
            .enumerate()
            .map(|(ch, &(sdy, sdyx))| ((sdyx * invstd[ch]) as f32, sdy as f32))
            .collect();
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Evaluation BatchNorm: `x * scale + shift` per channel with
/// `scale = gamma / sqrt(running_var + eps)`, `shift = beta - running_mean * scale`
/// (computed with candle ops, so gradients still reach gamma and beta), then a
/// ReLU when `relu`.
pub(crate) fn batch_norm_eval(
    xs: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
    relu: bool,
) -> candle_core::Result<Tensor> {
    // The running stats are buffers, never differentiated: detached, so that (candle's
    // BatchNorm holding them as variables) an inference pass records no autograd graph
    // and frees each intermediate as soon as it is used.
    let (running_mean, running_var) = (running_mean.detach(), running_var.detach());
    let scale = gamma.div(&(running_var + eps)?.sqrt()?)?;
    let shift = beta.sub(&running_mean.mul(&scale)?)?;
    let relu = relu.then(|| ZeroLog::for_inputs(&[Some(xs), Some(gamma), Some(beta)]));
    xs.contiguous()?
        .apply_op3(&scale.contiguous()?, &shift.contiguous()?, Affine { relu })
}

/// Per-channel affine map (x, scale, shift) -> x·scale + shift, then a ReLU
/// when `relu`.
#[derive(Clone, Debug)]
struct Affine {
    relu: Option<Arc<ZeroLog>>,
}

impl CustomOp3 for Affine {
    fn name(&self) -> &'static str {
        "ferbayes-fast-channel-affine"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1)?;
        let (scale, shift) = (contiguous_f32(s2, l2)?, contiguous_f32(s3, l3)?);
        let dims = bcs(l1.dims())?;
        if scale.len() != dims.1 || shift.len() != dims.1 {
            candle_core::bail!("ferbayes channel affine: {} channels", dims.1);
        }
        let mut y = vec![0f32; x.len()];
        affine_map(&mut y, x, dims, scale, shift, self.relu.as_deref());
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        shift: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Rarely needed (gradients through eval-mode BatchNorm): plain candle ops.
        let grad = &match &self.relu {
            Some(log) => super::relu_grad(grad, res, log)?,
            None => grad.clone(),
        };
        let c = scale.dim(0)?;
        let mut bshape = vec![1usize; x.rank()];
        bshape[1] = c;
        let per_channel_sum = |t: &Tensor| -> candle_core::Result<Tensor> {
            t.transpose(0, 1)?.contiguous()?.reshape((c, ()))?.sum(1)
        };
        let dx = if x.track_op() {
            Some(grad.broadcast_mul(&scale.reshape(bshape)?)?)
        } else {
            None
        };
        let dscale = if scale.track_op() {
            Some(per_channel_sum(&(grad * x)?)?)
        } else {
            None
        };
        let dshift = if shift.track_op() {
            Some(per_channel_sum(grad)?)
        } else {
            None
        };
        Ok((dx, dscale, dshift))
    }
}
