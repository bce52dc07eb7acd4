//! The weight of a conv or linear layer, by method: a point estimate (one per packed member), a
//! mean-field Gaussian sampled with Flipout (`variational`), or BatchEnsemble's shared slow
//! weight with each member's rank-one fast weights (`batch_ensemble`). See the crate docs'
//! *Methods* for the formulas and the weight names.

use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::error::Result;
use crate::noise::Noise;

/// Which kind of [`Weight`] a network's conv and linear layers have (chosen from the method).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum WeightKind {
    /// One weight per packed member.
    Point,
    /// Mean and `weight_rho`, created at `rho0` (ρ₀ = softplus⁻¹(σ₀)).
    Flipout { rho0: f64 },
    /// One shared weight and per-member fast weights.
    Batch,
}

/// The fast weights' initialisation: N(1, 0.5²), as torch-uncertainty's `BatchLinear` /
/// `BatchConv2d` (see [`crate::init_seeded`], which draws them seeded).
pub(crate) const FAST_MEAN: f64 = 1.0;
pub(crate) const FAST_STD: f64 = 0.5;

/// A conv or linear layer's weight.
#[derive(Clone, Debug)]
pub(crate) enum Weight {
    /// `weight`: the members' own weights stacked on dim 0.
    Point(Tensor),
    /// `weight` (the mean μ) and `weight_rho` (ρ, σ = softplus(ρ)), both shaped like one
    /// network's weight.
    Flipout { mean: Tensor, rho: Tensor },
    /// `weight` shared by every member (one network's shape), `fast_in` (M, in) = the rows
    /// r_g, `fast_out` (M, out) = the rows s_g.
    Batch {
        shared: Tensor,
        fast_in: Tensor,
        fast_out: Tensor,
    },
}

impl Weight {
    /// The weight of a layer whose single network has a weight of `dims` ((out, in, k, k) or
    /// (out, in)), for `members` packed members.
    pub(crate) fn new(
        dims: &[usize],
        kind: WeightKind,
        members: usize,
        vb: &VarBuilder,
    ) -> Result<Self> {
        let kaiming = candle_nn::init::DEFAULT_KAIMING_NORMAL;
        let (out, inp) = (dims[0], dims[1]);
        Ok(match kind {
            WeightKind::Point => {
                let mut packed = dims.to_vec();
                packed[0] = members * out;
                Weight::Point(vb.get_with_hints(packed, "weight", kaiming)?)
            }
            WeightKind::Flipout { rho0 } => Weight::Flipout {
                mean: vb.get_with_hints(dims, "weight", kaiming)?,
                rho: vb.get_with_hints(dims, "weight_rho", Init::Const(rho0))?,
            },
            WeightKind::Batch => {
                let fast = Init::Randn {
                    mean: FAST_MEAN,
                    stdev: FAST_STD,
                };
                Weight::Batch {
                    shared: vb.get_with_hints(dims, "weight", kaiming)?,
                    fast_in: vb.get_with_hints((members, inp), "fast_in", fast)?,
                    fast_out: vb.get_with_hints((members, out), "fast_out", fast)?,
                }
            }
        })
    }

    /// The `weight` variable: the point weights, the mean, or the shared weight.
    pub(crate) fn tensor(&self) -> &Tensor {
        match self {
            Weight::Point(w) => w,
            Weight::Flipout { mean, .. } => mean,
            Weight::Batch { shared, .. } => shared,
        }
    }

    /// Multiplies of one member's forward pass per multiply of the weight's product: 2 for
    /// Flipout (the mean's product and the perturbation's), else 1.
    pub(crate) fn products(&self) -> u64 {
        match self {
            Weight::Flipout { .. } => 2,
            Weight::Point(_) | Weight::Batch { .. } => 1,
        }
    }

    /// KL(q ‖ N(0, σ_p²)) of a Flipout weight (see [`kl`]); `None` for the others.
    pub(crate) fn kl(&self, prior_sigma: f64) -> Result<Option<Tensor>> {
        match self {
            Weight::Flipout { mean, rho } => Ok(Some(kl(mean, rho, prior_sigma)?)),
            Weight::Point(_) | Weight::Batch { .. } => Ok(None),
        }
    }
}

/// σ = softplus(ρ) = ln(1 + exp(ρ)), in f64 (a candle expression, differentiable in ρ), computed
/// as relu(ρ) + ln(1 + exp(−|ρ|)): no overflow for large ρ, and for very negative ρ (small σ)
/// the f64 `ln(1 + u)` keeps σ to about 1e-16 / u relative (1e-8 at σ = 1e-8).
pub(crate) fn softplus(rho: &Tensor) -> Result<Tensor> {
    let r = rho.to_dtype(DType::F64)?;
    let tail = r.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    Ok((r.relu()? + tail)?)
}

/// Σ over the weight's entries of KL(N(μ, σ²) ‖ N(0, σ_p²)) = ln(σ_p/σ) + (σ² + μ²)/(2σ_p²) − ½,
/// σ = softplus(ρ): a scalar f64 tensor, differentiable in μ and ρ, summed in f64.
pub(crate) fn kl(mean: &Tensor, rho: &Tensor, prior_sigma: f64) -> Result<Tensor> {
    let sigma = softplus(rho)?;
    let mu = mean.to_dtype(DType::F64)?;
    let n = mean.elem_count() as f64;
    let quad = (sigma.sqr()? + mu.sqr()?)?.sum_all()?;
    let logs = sigma.log()?.sum_all()?;
    let scale = 1.0 / (2.0 * prior_sigma * prior_sigma);
    let constant = n * (prior_sigma.ln() - 0.5);
    Ok((quad.affine(scale, constant)? - logs)?)
}

/// Flipout's perturbation weight σ ∘ ε in ρ's dtype, ε ~ N(0, 1) shaped like ρ drawn from
/// `noise` ([`Noise::normals`], row-major).
pub(crate) fn perturbation(rho: &Tensor, noise: &mut Noise) -> Result<Tensor> {
    let sigma = softplus(rho)?.to_dtype(rho.dtype())?;
    let eps = noise
        .normal_tensor(rho.shape(), rho.device())?
        .to_dtype(rho.dtype())?;
    Ok((sigma * eps)?)
}

/// `rows` × `channels` Rademacher signs from `noise` ([`Noise::signs`], row-major) in `like`'s
/// dtype and device, shaped (rows, channels), or (rows, channels, 1, 1) for a (B, C, H, W)
/// `like` so they broadcast over its maps.
pub(crate) fn signs(
    noise: &mut Noise,
    rows: usize,
    channels: usize,
    like: &Tensor,
) -> Result<Tensor> {
    let t = noise
        .sign_tensor((rows, channels), like.device())?
        .to_dtype(like.dtype())?;
    broadcastable(t, like)
}

/// Each member's row `v[g]` of `v` (M, C) repeated for the rows of its block of `like`
/// (M blocks of B rows): (M·B, C), or (M·B, C, 1, 1) for a (M·B, C, H, W) `like`. The
/// gradient of the repeat sums each member's rows back into its own row of `v`.
pub(crate) fn per_row(v: &Tensor, like: &Tensor) -> Result<Tensor> {
    let (m, c) = v.dims2()?;
    let rows = like.dim(0)?;
    let t = v
        .unsqueeze(1)?
        .broadcast_as((m, rows / m, c))?
        .reshape((rows, c))?;
    broadcastable(t, like)
}

fn broadcastable(t: Tensor, like: &Tensor) -> Result<Tensor> {
    if like.rank() == 4 {
        let (rows, c) = t.dims2()?;
        Ok(t.reshape((rows, c, 1, 1))?)
    } else {
        Ok(t)
    }
}
