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
    let (s1, s2, rest) = match super::simd() {
        #[cfg(target_arch = "x86_64")]
        Some(simd) => simd.vectorize(|| lane_sums_v3(simd, a, None, k)),
        _ => lane_sums(a, None, k),
    };
    let (mut t1, mut t2) = (s1.iter().sum::<f64>(), s2.iter().sum::<f64>());
    for &v in &a[rest..] {
        let d = f64::from(v) - k;
        t1 += d;
        t2 += d * d;
    }
    (t1, t2)
}

/// (Σ g, Σ g·(v - m)) over `g` and `x` (same length), in f64.
fn grad_sums(g: &[f32], x: &[f32], m: f64) -> (f64, f64) {
    let (s1, s2, rest) = match super::simd() {
        #[cfg(target_arch = "x86_64")]
        Some(simd) => simd.vectorize(|| lane_sums_v3(simd, g, Some(x), m)),
        _ => lane_sums(g, Some(x), m),
    };
    let (mut t1, mut t2) = (s1.iter().sum::<f64>(), s2.iter().sum::<f64>());
    for (&a, &b) in g[rest..].iter().zip(&x[rest..]) {
        t1 += f64::from(a);
        t2 += f64::from(a) * (f64::from(b) - m);
    }
    (t1, t2)
}

/// The [`LANES`] partial sums over the whole chunks of `a` (and the index
/// where the remainder starts): with `x`, lane l sums `a` and `a·(x - k)`;
/// without, `a - k` and `(a - k)²`.
fn lane_sums(a: &[f32], x: Option<&[f32]>, k: f64) -> ([f64; LANES], [f64; LANES], usize) {
    let (mut s1, mut s2) = ([0f64; LANES], [0f64; LANES]);
    let whole = a.len() / LANES * LANES;
    for (i, c) in a[..whole].chunks_exact(LANES).enumerate() {
        for l in 0..LANES {
            match x {
                Some(x) => {
                    let d = f64::from(c[l]);
                    s1[l] += d;
                    s2[l] += d * (f64::from(x[i * LANES + l]) - k);
                }
                None => {
                    let d = f64::from(c[l]) - k;
                    s1[l] += d;
                    s2[l] += d * d;
                }
            }
        }
    }
    (s1, s2, whole)
}

/// [`lane_sums`] on AVX2: the eight lanes as two f64x4 vectors, each lane's
/// operations (convert, subtract, multiply, add; nothing fused) in the same
/// order, so the same sums.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lane_sums_v3(
    simd: super::Simd,
    a: &[f32],
    x: Option<&[f32]>,
    k: f64,
) -> ([f64; LANES], [f64; LANES], usize) {
    use pulp::bytemuck::cast;
    use std::arch::x86_64::{__m256, __m256d};
    let avx = simd.avx;
    let load = |s: &[f32]| -> (__m256d, __m256d) {
        let mut v = [0f32; LANES];
        v.copy_from_slice(s);
        let v: __m256 = cast(v);
        (
            avx._mm256_cvtps_pd(avx._mm256_castps256_ps128(v)),
            avx._mm256_cvtps_pd(avx._mm256_extractf128_ps::<1>(v)),
        )
    };
    let kv = avx._mm256_set1_pd(k);
    let zero = avx._mm256_setzero_pd();
    let (mut s1, mut s2) = ([zero; 2], [zero; 2]);
    let whole = a.len() / LANES * LANES;
    for (i, c) in a[..whole].chunks_exact(LANES).enumerate() {
        let (lo, hi) = load(c);
        // Lane-wise: s1 += d, s2 += d·e.
        let (d, e) = match x {
            Some(x) => {
                let (xl, xh) = load(&x[i * LANES..(i + 1) * LANES]);
                (
                    [lo, hi],
                    [avx._mm256_sub_pd(xl, kv), avx._mm256_sub_pd(xh, kv)],
                )
            }
            None => {
                let d = [avx._mm256_sub_pd(lo, kv), avx._mm256_sub_pd(hi, kv)];
                (d, d)
            }
        };
        for j in 0..2 {
            s1[j] = avx._mm256_add_pd(s1[j], d[j]);
            s2[j] = avx._mm256_add_pd(s2[j], avx._mm256_mul_pd(d[j], e[j]));
        }
    }
    let lanes = |v: [__m256d; 2]| -> [f64; LANES] {
        let (lo, hi): ([f64; 4], [f64; 4]) = (cast(v[0]), cast(v[1]));
        [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]]
    };
    (lanes(s1), lanes(s2), whole)
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
pub struct Stats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    /// Elements per channel (B·S), for the unbiased running variance.
    pub count: usize,
    /// The per-channel map the forward pass applied (`x·scale + shift`), which
    /// the backward re-evaluates for the fused ReLU's mask.
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
}

impl Stats {
    /// Appends the next member's statistics (same count per channel).
    fn append(&mut self, other: Stats) {
        self.mean.extend(other.mean);
        self.var.extend(other.var);
        self.count = other.count;
        self.scale.extend(other.scale);
        self.shift.extend(other.shift);
    }

    /// Member `g`'s statistics of a packed op over `c` channels per member.
    fn member(&self, g: usize, c: usize) -> Stats {
        let part = |v: &Vec<f32>| v.get(g * c..(g + 1) * c).unwrap_or_default().to_vec();
        Stats {
            mean: part(&self.mean),
            var: part(&self.var),
            count: self.count,
            scale: part(&self.scale),
            shift: part(&self.shift),
        }
    }
}

#[derive(Debug)]
struct Train {
    eps: f64,
    /// Whether a ReLU follows (in the same pass). Its backward needs no log of
    /// exact zeros: [`TrainBwd`] re-evaluates the pre-activation.
    relu: bool,
    /// Whether a 2x2 / stride-2 max pool follows (in the same pass): the op then
    /// returns only the pooled map (see [`batch_norm_train_pool`]).
    pool: bool,
    /// Packed networks (see [`crate::members`]): the batch is `members` blocks of
    /// samples, the channels' affine weights `members` blocks of C, each block
    /// normalised with its own statistics.
    members: usize,
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
        normalised_plane(xs, a, b, false, row);
        if let Some(log) = relu {
            relu_row(row, start, log);
        }
    });
}

/// Training BatchNorm: `(x - mean) / sqrt(var + eps) * gamma + beta` with the
/// batch's statistics, then a ReLU when `relu`; also returns the statistics
/// (for the running-stat update).
///
/// With `members` > 1 the tensors are packed (see [`crate::members`]): `xs` (G·B, C, ...),
/// `gamma` and `beta` (G·C); member g's samples are normalised with their own statistics and
/// its own affine weights, exactly as a separate call on its block would, and the statistics
/// returned are the G blocks' one after the other.
pub fn batch_norm_train(
    xs: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
    members: usize,
) -> candle_core::Result<(Tensor, Stats)> {
    train_op(xs, gamma, beta, eps, relu, false, members)
}

/// [`batch_norm_train`] of a (B, C, H, W) tensor followed by a 2x2 / stride-2 max
/// pool (output floored, gradient to each window's first maximum, as
/// `max_pool2`), as one op: the full-size normalised map is neither kept nor
/// written out, and its gradient never becomes a tensor (the backward rebuilds
/// each plane's map in scratch, routes the pooled gradient through it, masks it
/// by the ReLU and keeps the result per channel for the dx pass), which saves
/// the buffer candle would zero-fill and add that gradient into, and the pool's
/// and the ReLU's own full-size passes. Values and gradients equal those of the
/// three ops bit for bit.
/// `members` as for [`batch_norm_train`].
pub fn batch_norm_train_pool(
    xs: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
    members: usize,
) -> candle_core::Result<(Tensor, Stats)> {
    train_op(xs, gamma, beta, eps, relu, true, members)
}

fn train_op(
    xs: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
    pool: bool,
    members: usize,
) -> candle_core::Result<(Tensor, Stats)> {
    let stats = Arc::new(Mutex::new(Stats::default()));
    let op = Train {
        eps,
        relu,
        pool,
        members: members.max(1),
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
        let m = self.members;
        let block = crate::members::block_dims(l1.dims(), m)?;
        let (b, c, _) = bcs(&block)?;
        if gamma.len() != m * c || beta.len() != m * c {
            candle_core::bail!(
                "ferbayes batch norm: {m}x{c} channels, affine {:?}",
                l2.dims()
            );
        }
        let (y, stats) = if m == 1 {
            self.forward_block(x, gamma, beta, &block)?
        } else {
            let xl = x.len() / m;
            let parts = par_map(m, |g| {
                let (gm, bt) = (&gamma[g * c..(g + 1) * c], &beta[g * c..(g + 1) * c]);
                self.forward_block(&x[g * xl..(g + 1) * xl], gm, bt, &block)
            });
            let mut y = Vec::new();
            let mut all = Stats::default();
            for part in parts {
                let (yg, st) = part?;
                y.extend_from_slice(&yg);
                all.append(st);
            }
            (y, all)
        };
        let mut shape = block;
        shape[0] = m * b;
        if self.pool {
            shape[2] /= 2;
            shape[3] /= 2;
        }
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner) = stats;
        Ok((CpuStorage::F32(y), Shape::from(shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.backward(x, gamma, beta, grad)
    }
}

impl Train {
    /// The forward of one member's block `x` with dims `dims`: the normalised (and
    /// pooled) values and the block's statistics.
    fn forward_block(
        &self,
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        block: &[usize],
    ) -> candle_core::Result<(Vec<f32>, Stats)> {
        let dims = bcs(block)?;
        let (b, c, s) = dims;
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
        let y = if self.pool {
            let (h, w) = spatial(block)?;
            pooled_affine(x, (b, c, h, w), &scale, &shift, self.relu)
        } else {
            let mut y = vec![0f32; x.len()];
            let no_log = ZeroLog::default();
            affine_map(
                &mut y,
                x,
                dims,
                &scale,
                &shift,
                self.relu.then_some(&no_log),
            );
            y
        };
        let stats = Stats {
            mean: mv.iter().map(|&(m, _)| m as f32).collect(),
            var: mv.iter().map(|&(_, v)| v as f32).collect(),
            count: b * s,
            scale,
            shift,
        };
        Ok((y, stats))
    }

    fn backward(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let stats = self
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let sums = Arc::new(Mutex::new(Vec::new()));
        let op = TrainBwd {
            eps: self.eps,
            gamma: gamma.to_vec1()?,
            relu: self.relu,
            pool: self.pool,
            members: self.members,
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
/// With `relu`, dy first goes through the ReLU's gradient: kept where the
/// pre-activation `x·scale + shift` (the forward's floats, recomputed) is >= 0,
/// candle's `relu` rule (exact zeros pass), else 0.
/// With `pool`, dy is the pooled map's gradient; each (sample, channel) plane's
/// full-size gradient is rebuilt in scratch (see [`TrainBwd::routed_plane`]).
#[derive(Debug)]
struct TrainBwd {
    eps: f64,
    gamma: Vec<f32>,
    relu: bool,
    pool: bool,
    members: usize,
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
        let m = self.members;
        let block = crate::members::block_dims(l1.dims(), m)?;
        let (dx, sums) = if m == 1 {
            self.backward_block(x, dy, &block)?
        } else {
            let c = block[1];
            let (xl, yl) = (x.len() / m, dy.len() / m);
            let parts = par_map(m, |g| {
                let one = TrainBwd {
                    eps: self.eps,
                    gamma: self
                        .gamma
                        .get(g * c..(g + 1) * c)
                        .unwrap_or_default()
                        .to_vec(),
                    relu: self.relu,
                    pool: self.pool,
                    members: 1,
                    stats: self.stats.member(g, c),
                    sums: Arc::default(),
                };
                one.backward_block(&x[g * xl..(g + 1) * xl], &dy[g * yl..(g + 1) * yl], &block)
            });
            let (mut dx, mut sums) = (Vec::with_capacity(x.len()), Vec::new());
            for part in parts {
                let (d, s) = part?;
                dx.extend_from_slice(&d);
                sums.extend(s);
            }
            (dx, sums)
        };
        *self.sums.lock().unwrap_or_else(PoisonError::into_inner) = sums;
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

impl TrainBwd {
    /// dx and (dgamma, dbeta) per channel of one member's block (`block` its dims).
    #[allow(clippy::type_complexity)]
    fn backward_block(
        &self,
        x: &[f32],
        dy: &[f32],
        block: &[usize],
    ) -> candle_core::Result<(Vec<f32>, Vec<(f32, f32)>)> {
        let dims = bcs(block)?;
        let c = dims.1;
        let (h, w) = if self.pool { spatial(block)? } else { (0, 0) };
        let dy_len = if self.pool {
            dims.0 * c * (h / 2) * (w / 2)
        } else {
            x.len()
        };
        if dy.len() != dy_len || self.stats.mean.len() != c || self.gamma.len() != c {
            candle_core::bail!("ferbayes batch norm bwd: shape mismatch");
        }
        if self.pool {
            return Ok(self.pooled_bwd(x, dy, dims, (h, w)));
        }
        let n = self.stats.count as f64;
        let invstd = self.invstd();
        let mean = &self.stats.mean;
        let (scale, shift) = (&self.stats.scale, &self.stats.shift);
        if self.relu && (scale.len() != c || shift.len() != c) {
            candle_core::bail!("ferbayes batch norm bwd: no forward map for the ReLU");
        }
        // The ReLU's gradient of one row (channel `ch`) into `out`.
        let masked = |ch: usize, d: &[f32], xs: &[f32], out: &mut Vec<f32>| {
            let (a, b) = (scale[ch], shift[ch]);
            out.clear();
            out.extend(
                d.iter()
                    .zip(xs)
                    .map(|(&g, &v)| if relu_passes(v, a, b) { g } else { 0.0 }),
            );
        };
        // Per channel: Σ dy and Σ dy·(x - mean).
        let sums = per_channel(dy, dims, |ch, it| {
            let m = f64::from(mean[ch]);
            let (mut sdy, mut sdyx) = (0f64, 0f64);
            let mut row = Vec::new();
            for (off, d) in it {
                let xs = &x[off..off + d.len()];
                let d = if self.relu {
                    masked(ch, d, xs, &mut row);
                    &row[..]
                } else {
                    d
                };
                let (a, b) = grad_sums(d, xs, m);
                sdy += a;
                sdyx += b;
            }
            (sdy, sdyx)
        });
        // dx = gamma·invstd·(dy - Σdy/N - (x - mean)·invstd²·Σdy(x - mean)/N).
        let coef = self.coefficients(&sums, &invstd, n);
        let mut dx = vec![0f32; x.len()];
        map_rows(&mut dx, dims, |ch, start, row| {
            let (a, k1, k2, m) = coef[ch];
            let n = row.len();
            let (xs, dys) = (&x[start..start + n], &dy[start..start + n]);
            if self.relu {
                let (sc, sh) = (scale[ch], shift[ch]);
                for ((d, &v), &g) in row.iter_mut().zip(xs).zip(dys) {
                    let g = if relu_passes(v, sc, sh) { g } else { 0.0 };
                    *d = a * (g - k1 - (v - m) * k2);
                }
            } else {
                for ((d, &v), &g) in row.iter_mut().zip(xs).zip(dys) {
                    *d = a * (g - k1 - (v - m) * k2);
                }
            }
        });
        Ok((dx, self.param_grads(&sums, &invstd)))
    }
}

/// (H, W) of a 4-d layout (the pooled op's input).
fn spatial(dims: &[usize]) -> candle_core::Result<(usize, usize)> {
    match dims {
        &[_, _, h, w] => Ok((h, w)),
        _ => candle_core::bail!("ferbayes batch norm + pool: want a 4-d tensor, got {dims:?}"),
    }
}

/// `x·scale + shift` per channel (then `max(·, 0)` when `relu`), 2x2 / stride-2
/// max-pooled: per plane, [`affine_map`]'s and [`relu_row`]'s loops into a
/// scratch plane, then the pool's forward loop, so the same values as the
/// separate ops.
fn pooled_affine(
    x: &[f32],
    (b, c, h, w): (usize, usize, usize, usize),
    scale: &[f32],
    shift: &[f32],
    relu: bool,
) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    let mut y = vec![0f32; b * c * ho * wo];
    if y.is_empty() {
        return y;
    }
    let per = (16384 / (h * w).max(1)).max(1);
    par_chunks_mut(&mut y, per * ho * wo, |j, ys| {
        let mut plane_buf = vec![0f32; h * w];
        for (i, yp) in ys.chunks_mut(ho * wo).enumerate() {
            let plane = j * per + i;
            let (a, k) = (scale[plane % c], shift[plane % c]);
            let xp = &x[plane * h * w..(plane + 1) * h * w];
            normalised_plane(xp, a, k, relu, &mut plane_buf);
            for (yr, rows) in yp.chunks_exact_mut(wo).zip(plane_buf.chunks_exact(2 * w)) {
                let (r0, r1) = rows.split_at(w);
                for ((y, p), q) in yr
                    .iter_mut()
                    .zip(r0.chunks_exact(2))
                    .zip(r1.chunks_exact(2))
                {
                    *y = p[0].max(p[1]).max(q[0].max(q[1]));
                }
            }
        }
    });
    y
}

/// Whether the fused ReLU passes the gradient at input `v` of the map `v·a + k`:
/// the forward's pre-activation (the same f32 operations) is >= 0, candle's
/// `relu` rule (exact zeros pass).
#[inline]
fn relu_passes(v: f32, a: f32, k: f32) -> bool {
    v * a + k >= 0.0
}

/// `out = xp·a + k`, then `max(·, 0)` when `relu` ([`relu_row`]'s maximum, without
/// its zero log: the fused backward re-evaluates the map). [`affine_map`] runs
/// its first loop too.
fn normalised_plane(xp: &[f32], a: f32, k: f32, relu: bool, out: &mut [f32]) {
    out.iter_mut().zip(xp).for_each(|(y, &v)| *y = v * a + k);
    if relu {
        out.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

impl TrainBwd {
    /// The full-size gradient of one (sample, channel) plane `xp` (H x W) from
    /// its pooled gradient `dyp`: the pool's routing over the plane's normalised
    /// map (rebuilt in `ybuf`), then, with `relu`, the ReLU's mask; each value
    /// plus 0, as candle adds a gradient onto zeros (so a -0 becomes +0).
    #[allow(clippy::too_many_arguments)]
    fn routed_plane(
        &self,
        simd: Option<super::Simd>,
        ch: usize,
        (h, w): (usize, usize),
        xp: &[f32],
        dyp: &[f32],
        ybuf: &mut Vec<f32>,
        g: &mut Vec<f32>,
    ) {
        let (a, k) = (self.stats.scale[ch], self.stats.shift[ch]);
        ybuf.resize(xp.len(), 0.0);
        normalised_plane(xp, a, k, self.relu, ybuf);
        g.clear();
        g.resize(h * w, 0.0);
        super::pool::pool2_bwd(simd, h, w, ybuf, dyp, g);
        if self.relu {
            for (d, &v) in g.iter_mut().zip(xp) {
                *d = if relu_passes(v, a, k) { *d + 0.0 } else { 0.0 };
            }
        } else {
            g.iter_mut().for_each(|d| *d += 0.0);
        }
    }

    /// The backward with a pool: as the plain one, on each plane's rebuilt gradient.
    fn pooled_bwd(
        &self,
        x: &[f32],
        dy: &[f32],
        dims: (usize, usize, usize),
        hw: (usize, usize),
    ) -> (Vec<f32>, Vec<(f32, f32)>) {
        let (b, c, s) = dims;
        let so = (hw.0 / 2) * (hw.1 / 2);
        let simd = super::simd();
        let n = self.stats.count as f64;
        let invstd = self.invstd();
        let mean = &self.stats.mean;
        // Per channel: the rebuilt gradients of its planes (kept for dx) and the sums.
        let per: Vec<(Vec<f32>, (f64, f64))> = par_map(c, |ch| {
            let m = f64::from(mean[ch]);
            let (mut sdy, mut sdyx) = (0f64, 0f64);
            let (mut ybuf, mut g) = (Vec::new(), Vec::new());
            let mut all = Vec::with_capacity(b * s);
            for smp in 0..b {
                let plane = smp * c + ch;
                let xp = &x[plane * s..(plane + 1) * s];
                let dyp = &dy[plane * so..(plane + 1) * so];
                self.routed_plane(simd, ch, hw, xp, dyp, &mut ybuf, &mut g);
                let (p, q) = grad_sums(&g, xp, m);
                sdy += p;
                sdyx += q;
                all.extend_from_slice(&g);
            }
            (all, (sdy, sdyx))
        });
        let sums: Vec<(f64, f64)> = per.iter().map(|p| p.1).collect();
        let coef = self.coefficients(&sums, &invstd, n);
        let mut dx = vec![0f32; x.len()];
        map_rows(&mut dx, dims, |ch, start, row| {
            let (a, k1, k2, m) = coef[ch];
            let smp = start / (c * s);
            let xs = &x[start..start + row.len()];
            let g = &per[ch].0[smp * s..(smp + 1) * s];
            for ((d, &v), &gv) in row.iter_mut().zip(xs).zip(g) {
                *d = a * (gv - k1 - (v - m) * k2);
            }
        });
        (dx, self.param_grads(&sums, &invstd))
    }

    /// 1 / sqrt(var + eps) per channel, in f64.
    fn invstd(&self) -> Vec<f64> {
        self.stats
            .var
            .iter()
            .map(|&v| 1.0 / (f64::from(v) + self.eps).sqrt())
            .collect()
    }

    /// Per channel (gamma·invstd, Σdy/N, invstd²·Σdy(x - mean)/N, mean).
    fn coefficients(
        &self,
        sums: &[(f64, f64)],
        invstd: &[f64],
        n: f64,
    ) -> Vec<(f32, f32, f32, f32)> {
        sums.iter()
            .enumerate()
            .map(|(ch, &(sdy, sdyx))| {
                let is = invstd[ch];
                (
                    (f64::from(self.gamma[ch]) * is) as f32,
                    (sdy / n) as f32,
                    (is * is * sdyx / n) as f32,
                    self.stats.mean[ch],
                )
            })
            .collect()
    }

    /// (dgamma, dbeta) per channel, for [`Train`]'s backward to pick up.
    fn param_grads(&self, sums: &[(f64, f64)], invstd: &[f64]) -> Vec<(f32, f32)> {
        sums.iter()
            .enumerate()
            .map(|(ch, &(sdy, sdyx))| ((sdyx * invstd[ch]) as f32, sdy as f32))
            .collect()
    }
}

/// Evaluation BatchNorm: `x * scale + shift` per channel with
/// `scale = gamma / sqrt(running_var + eps)`, `shift = beta - running_mean * scale`
/// (computed with candle ops, so gradients still reach gamma and beta), then a
/// ReLU when `relu`.
pub fn batch_norm_eval(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 lane sums equal the scalar ones bit for bit (both kinds, lengths
    /// with and without a remainder, values of mixed sign and magnitude).
    #[test]
    fn simd_lane_sums_equal_scalar_bit_for_bit() {
        let Some(simd) = crate::simd_detected() else {
            return;
        };
        let vals = |n: usize, seed: u32| -> Vec<f32> {
            (0..n as u32)
                .map(|i| {
                    let h = (i ^ seed).wrapping_mul(2_654_435_761) >> 8;
                    (h % 20_001) as f32 / 997.0 - 10.0 + (i % 7) as f32 * 1e-3
                })
                .collect()
        };
        let bits = |(s1, s2, r): ([f64; LANES], [f64; LANES], usize)| {
            (s1.map(f64::to_bits), s2.map(f64::to_bits), r)
        };
        for n in [0, 7, 8, 64, 1021, 4096] {
            let (a, x) = (vals(n, 1), vals(n, 2));
            for (xs, k) in [(None, 0.37), (Some(&x[..]), -1.25)] {
                let v = simd.vectorize(|| lane_sums_v3(simd, &a, xs, k));
                assert_eq!(
                    bits(v),
                    bits(lane_sums(&a, xs, k)),
                    "n {n} x {}",
                    xs.is_some()
                );
            }
        }
    }
}
