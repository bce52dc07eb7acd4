//! Seeded weight initialisation and the list of trainable variables.

use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::weights::{FAST_MEAN, FAST_STD};

/// How [`init_seeded`] sets one variable, decided from its name and rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarRole {
    /// Conv or linear weight (rank >= 2): Kaiming normal, std = sqrt(2 / fan_in).
    Weight,
    /// Conv or linear bias: zeros.
    Bias,
    /// BatchNorm scale (gamma): ones.
    BnWeight,
    /// BatchNorm shift (beta): zeros.
    BnBias,
    /// BatchNorm running mean: zeros (not trainable).
    RunningMean,
    /// BatchNorm running variance: ones (not trainable).
    RunningVar,
    /// A variational weight's `weight_rho` (σ = softplus(ρ)): left as the layer created it,
    /// ρ₀ = ln(exp(σ₀) − 1) from its configuration's σ₀ (a constant, nothing to seed).
    Rho,
    /// A BatchEnsemble layer's fast weights `fast_in` / `fast_out` (one row per member):
    /// N(1, 0.5²), seeded like the weights.
    FastWeight,
}

impl VarRole {
    /// Role of the variable `name` of rank `rank`. BatchNorm layers are those whose
    /// last path segment before the tensor name starts with `bn` or `norm`.
    pub fn of(name: &str, rank: usize) -> VarRole {
        let mut parts = name.rsplit('.');
        let leaf = parts.next().unwrap_or("");
        let layer = parts.next().unwrap_or("");
        let is_bn = layer.starts_with("bn") || layer.starts_with("norm");
        match leaf {
            "running_mean" => VarRole::RunningMean,
            "running_var" => VarRole::RunningVar,
            "weight_rho" => VarRole::Rho,
            "fast_in" | "fast_out" => VarRole::FastWeight,
            "weight" if is_bn => VarRole::BnWeight,
            "bias" if is_bn => VarRole::BnBias,
            _ if rank >= 2 => VarRole::Weight,
            _ => VarRole::Bias,
        }
    }

    /// Whether the optimiser updates it (everything but the running stats).
    pub fn is_trainable(self) -> bool {
        !matches!(self, VarRole::RunningMean | VarRole::RunningVar)
    }
}

/// The map's variables sorted by name.
pub fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap
        .data()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut vars: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    drop(data);
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Every variable of `varmap` except BatchNorm running stats, sorted by name.
pub fn trainable_vars(varmap: &VarMap) -> Vec<Var> {
    sorted_vars(varmap)
        .into_iter()
        .filter(|(name, var)| VarRole::of(name, var.rank()).is_trainable())
        .map(|(_, var)| var)
        .collect()
}

/// Seed of the stream that initialises variable `name` under run seed `seed`.
pub(crate) fn var_seed(seed: u64, name: &str) -> u64 {
    ferbayes_core::seed::mix(seed, ferbayes_core::seed::stream_of(name))
}

/// `n` standard-normal samples (Box-Muller, both outputs used).
fn normals(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // u1 in (0, 1] so ln(u1) is finite.
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        out.push(r * theta.cos());
        out.push(r * theta.sin());
    }
    out.truncate(n);
    out
}

/// Deterministically re-initialises every variable of `varmap`.
///
/// Variables are visited sorted by name; each draws from its own ChaCha8 stream
/// seeded from `seed` and a stable (FNV-1a) hash of its name, so adding or
/// removing a layer leaves the other layers' values unchanged. Values by
/// [`VarRole`]: conv / linear weights Kaiming normal for ReLU (std =
/// sqrt(2 / fan_in), fan_in = product of the dims after the first; a variational
/// network's means and a BatchEnsemble's shared weights alike), biases zeros,
/// BatchNorm weight ones, bias zeros, running_mean zeros, running_var ones,
/// BatchEnsemble fast weights N(1, 0.5²) (as torch-uncertainty's `BatchLinear` /
/// `BatchConv2d`; row g is member g's). A variational `weight_rho` keeps the value its
/// layer created it with (ρ₀ from the configuration's σ₀, [`VarRole::Rho`]): build the
/// model in a fresh `VarMap` to reset it.
///
/// A BatchEnsemble is one network: seed it with one seed here, not with [`init_packed`].
///
/// Same seed, same map, same machine: bit-identical weights (the normals use the
/// platform's `ln`/`cos`/`sin`, so other libm implementations could differ in the
/// last bit).
pub fn init_seeded(varmap: &VarMap, seed: u64) -> Result<()> {
    init_packed(varmap, &[seed])
}

/// [`init_seeded`] of a packed model (`Model::packed`) of `seeds.len()` members: member g's
/// block of every variable (its rows on dim 0) gets exactly the values [`init_seeded`] gives
/// the member alone with seed `seeds[g]`.
pub fn init_packed(varmap: &VarMap, seeds: &[u64]) -> Result<()> {
    let members = seeds.len().max(1);
    for (name, var) in sorted_vars(varmap) {
        if VarRole::of(&name, var.rank()) == VarRole::Rho {
            continue;
        }
        let dims = var.dims().to_vec();
        let block = ferbayes_kernels::members::block_dims(&dims, members)?;
        let mut values = Vec::with_capacity(var.elem_count());
        for &seed in seeds {
            values.extend(init_values(&name, &block, seed));
        }
        let t = Tensor::from_vec(values, dims.as_slice(), var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}

/// The initial values of one network's variable `name` of shape `dims` under seed `seed`.
fn init_values(name: &str, dims: &[usize], seed: u64) -> Vec<f32> {
    let n: usize = dims.iter().product();
    match VarRole::of(name, dims.len()) {
        VarRole::Weight => {
            let fan_in: usize = dims[1..].iter().product();
            let std = (2.0 / fan_in.max(1) as f64).sqrt();
            let mut rng = ChaCha8Rng::seed_from_u64(var_seed(seed, name));
            normals(&mut rng, n)
                .into_iter()
                .map(|z| (z * std) as f32)
                .collect()
        }
        VarRole::FastWeight => {
            let mut rng = ChaCha8Rng::seed_from_u64(var_seed(seed, name));
            normals(&mut rng, n)
                .into_iter()
                .map(|z| (FAST_MEAN + FAST_STD * z) as f32)
                .collect()
        }
        VarRole::Bias | VarRole::BnBias | VarRole::RunningMean => vec![0.0; n],
        VarRole::BnWeight | VarRole::RunningVar => vec![1.0; n],
        // Skipped by `init_packed`.
        VarRole::Rho => Vec::new(),
    }
}

/// Member g's tensors (of `members`) out of a packed model's named tensors (weights or
/// optimiser state, every one stacking the members on dim 0): what member g alone would
/// hold under the same names.
pub fn unpack_member<'a>(
    packed: impl IntoIterator<Item = (&'a String, &'a Tensor)>,
    members: usize,
    g: usize,
) -> Result<std::collections::HashMap<String, Tensor>> {
    packed
        .into_iter()
        .map(|(name, t)| {
            let n = ferbayes_kernels::members::block_dims(t.dims(), members)?[0];
            Ok((name.clone(), t.narrow(0, g * n, n)?.contiguous()?))
        })
        .collect()
}

/// The packed tensors of several networks' named tensors (the inverse of
/// [`unpack_member`]): per name, the members' tensors stacked on dim 0. Every member must
/// hold the same names.
pub fn pack_members(
    members: &[std::collections::HashMap<String, Tensor>],
) -> Result<std::collections::HashMap<String, Tensor>> {
    let Some(first) = members.first() else {
        return Ok(Default::default());
    };
    first
        .keys()
        .map(|name| {
            let parts = members
                .iter()
                .map(|m| {
                    m.get(name).ok_or_else(|| {
                        crate::Error::Config(format!("a packed member lacks tensor `{name}`"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((name.clone(), Tensor::cat(&parts, 0)?))
        })
        .collect()
}

/// Sets every variable of `varmap` from the tensor of the same name in `point` (a point
/// network's weights, e.g. a trained MC-Dropout network's `member-00.safetensors`), so a
/// `variational` network of the same architecture starts with those weights as its means
/// (`weight`) and the point network's biases and BatchNorms; its `weight_rho` keep their
/// value (ρ₀, [`VarRole::Rho`]). Every other variable must be in `point` with its shape.
pub fn load_point_weights(
    varmap: &VarMap,
    point: &std::collections::HashMap<String, Tensor>,
) -> Result<()> {
    for (name, var) in sorted_vars(varmap) {
        if VarRole::of(&name, var.rank()) == VarRole::Rho {
            continue;
        }
        let t = point.get(&name).ok_or_else(|| {
            crate::Error::Config(format!("the point weights lack tensor `{name}`"))
        })?;
        if t.dims() != var.dims() {
            return Err(crate::Error::Config(format!(
                "the point weights' `{name}` is {:?}, the network's {:?}",
                t.dims(),
                var.dims()
            )));
        }
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
    }
    Ok(())
}
