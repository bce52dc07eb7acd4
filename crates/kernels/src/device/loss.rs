//! The loss: the mean cross-entropy of logits against classes or distributions, one op each way.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};

use super::Result;
#[cfg(feature = "cuda")]
use super::cuda;
use crate::contiguous_f32;

/// What [`cross_entropy`] compares each row of the logits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// One class per row: (N,) u32.
    Classes,
    /// A distribution over the classes per row: (N, K) f32.
    Soft,
}

/// The mean over the rows of `logits` (N, K) of the cross-entropy with `target` (see
/// [`Target`]): −log softmax(row)[y], or −Σ_k t_k · log softmax(row)_k; as one op whose
/// backward is one op (softmax − target, over N). Row maxima subtracted, the exponentials summed
/// over the K classes in order in f32, the rows' losses summed in order in f64.
pub fn cross_entropy(logits: &Tensor, target: &Tensor, kind: Target) -> Result<Tensor> {
    let logits = logits.contiguous()?;
    let (n, k) = logits.dims2()?;
    let ok = match kind {
        Target::Classes => target.dims() == [n] && target.dtype() == DType::U32,
        Target::Soft => target.dims() == [n, k] && target.dtype() == DType::F32,
    };
    if !ok || n == 0 {
        candle_core::bail!(
            "ferbayes cross entropy: target {:?} {:?} for logits {:?}",
            target.dims(),
            target.dtype(),
            logits.dims()
        );
    }
    logits.apply_op2(&target.contiguous()?, CrossEntropy { kind })
}

/// (logits, target) -> the mean loss (a scalar).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CrossEntropy {
    pub(crate) kind: Target,
}

/// log Σ_k exp(row_k): the row's maximum plus the log of the shifted exponentials' sum.
fn log_sum_exp(row: &[f32]) -> f32 {
    let m = row
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    let mut s = 0f32;
    for &v in row {
        s += (v - m).exp();
    }
    m + s.ln()
}

/// The target's class labels or distributions as the CPU ops read them.
enum TargetValues<'a> {
    Classes(&'a [u32]),
    Soft(&'a [f32]),
}

fn target_values<'a>(kind: Target, s: &'a CpuStorage, l: &Layout) -> Result<TargetValues<'a>> {
    Ok(match (kind, s, l.contiguous_offsets()) {
        (Target::Classes, CpuStorage::U32(v), Some((a, b))) => TargetValues::Classes(&v[a..b]),
        (Target::Soft, _, _) => TargetValues::Soft(contiguous_f32(s, l)?),
        _ => candle_core::bail!("ferbayes cross entropy: class targets must be contiguous u32"),
    })
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "ferbayes-device-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1)?;
        let (n, k) = (l1.dims()[0], l1.dims()[1]);
        let target = target_values(self.kind, s2, l2)?;
        let mut total = 0f64;
        for r in 0..n {
            let row = &x[r * k..(r + 1) * k];
            let lse = log_sum_exp(row);
            let loss = match &target {
                TargetValues::Classes(y) => {
                    let y = y[r] as usize;
                    if y >= k {
                        candle_core::bail!("ferbayes cross entropy: class {y} of {k}");
                    }
                    lse - row[y]
                }
                TargetValues::Soft(t) => {
                    let mut l = 0f32;
                    for (&v, &tk) in row.iter().zip(&t[r * k..(r + 1) * k]) {
                        l += tk * (lse - v);
                    }
                    l
                }
            };
            total += f64::from(loss);
        }
        Ok((
            CpuStorage::F32(vec![(total / n as f64) as f32]),
            Shape::from(()),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::cross_entropy(self.kind, (s1, l1), (s2, l2))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        target: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dl = logits.apply_op3_no_bwd(target, grad, &CrossEntropyBwd { kind: self.kind })?;
        Ok((Some(dl), None))
    }
}

/// (logits, target, g) -> g · (softmax(row) · Σ_k t_k − t) / N per row (t one-hot for classes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CrossEntropyBwd {
    pub(crate) kind: Target,
}

impl CustomOp3 for CrossEntropyBwd {
    fn name(&self) -> &'static str {
        "ferbayes-device-cross-entropy-bwd"
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
        let x = contiguous_f32(s1, l1)?;
        let (n, k) = (l1.dims()[0], l1.dims()[1]);
        let target = target_values(self.kind, s2, l2)?;
        let g = contiguous_f32(s3, l3)?[0] / n as f32;
        let mut d = vec![0f32; x.len()];
        for r in 0..n {
            let row = &x[r * k..(r + 1) * k];
            let lse = log_sum_exp(row);
            let out = &mut d[r * k..(r + 1) * k];
            match &target {
                TargetValues::Classes(y) => {
                    for (j, (o, &v)) in out.iter_mut().zip(row).enumerate() {
                        let t = if j == y[r] as usize { 1.0 } else { 0.0 };
                        *o = ((v - lse).exp() - t) * g;
                    }
                }
                TargetValues::Soft(t) => {
                    let t = &t[r * k..(r + 1) * k];
                    let mut mass = 0f32;
                    for &tk in t {
                        mass += tk;
                    }
                    for ((o, &v), &tk) in out.iter_mut().zip(row).zip(t) {
                        *o = ((v - lse).exp() * mass - tk) * g;
                    }
                }
            }
        }
        Ok((CpuStorage::F32(d), l1.shape().clone()))
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
        cuda::cross_entropy_bwd(self.kind, (s1, l1), (s2, l2), (s3, l3))
    }
}
