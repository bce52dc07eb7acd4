//! The [`Model`] wrapper dispatching to the three architectures.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use ferbayes_kernels::Backend;

use crate::alexnet::AlexNet;
use crate::config::{Arch, Method, Mode, ModelConfig};
use crate::densenet::DenseNet121;
use crate::error::{Error, Result};
use crate::layers::Ops;
use crate::noise::Noise;
use crate::vgg::Vgg16;
use crate::weights::{Weight, WeightKind};

#[derive(Clone, Debug)]
enum Net {
    AlexNet(AlexNet),
    Vgg16(Vgg16),
    DenseNet121(DenseNet121),
}

/// A facial-emotion classifier: (B, 1, S, S) pixels in [0, 1] to (B, 8) logits.
#[derive(Clone, Debug)]
pub struct Model {
    cfg: ModelConfig,
    ops: Ops,
    net: Net,
}

impl Model {
    /// Builds the network of `cfg`, taking (or, from a `VarMap`, creating) its
    /// weights from `vb` under the names documented in the crate docs.
    ///
    /// Weights created in a `VarMap` start from candle's unseeded initialisers:
    /// call [`crate::init_seeded`] afterwards for reproducible weights.
    ///
    /// Its layers run on the default kernels ([`Backend::default`]: the CPU's); see
    /// [`Model::with_backend`].
    pub fn new(cfg: &ModelConfig, vb: VarBuilder<'_>) -> Result<Self> {
        Self::with_backend(cfg, Backend::default(), vb)
    }

    /// [`Model::new`] with its layers on `backend`'s kernels (every backend computes the
    /// same function; the fused CPU kernels only where the tensors are f32 on the CPU).
    pub fn with_backend(cfg: &ModelConfig, backend: Backend, vb: VarBuilder<'_>) -> Result<Self> {
        Self::packed(cfg, backend, 1, vb)
    }

    /// `members` networks of `cfg` packed into one (see `ferbayes_kernels::members`): each
    /// variable has the name of the single network's and stacks the members' own tensors on
    /// dim 0, the input is the members' batches one after the other ((G·B, 1, S, S)) and
    /// so are the logits ((G·B, 8)); member g's rows are exactly what member g alone
    /// computes from its own weights, batch and masks ([`Model::forward_packed`]). One
    /// member is the plain network.
    ///
    /// For `batch_ensemble` this is the BatchEnsemble of `members` members (see
    /// [`Model::batch_ensemble`]); `variational` takes one member only.
    pub fn packed(
        cfg: &ModelConfig,
        backend: Backend,
        members: usize,
        vb: VarBuilder<'_>,
    ) -> Result<Self> {
        cfg.validate()?;
        if members == 0 {
            return Err(Error::Config(
                "a packed model needs at least one member".into(),
            ));
        }
        let weights = match (cfg.method, &cfg.variational) {
            (Method::Variational, _) if members != 1 => {
                return Err(Error::Config(format!(
                    "a variational network is one network: members must be 1, got {members}"
                )));
            }
            (Method::Variational, Some(v)) => WeightKind::Flipout { rho0: v.rho0() },
            (Method::BatchEnsemble, _) => WeightKind::Batch,
            _ => WeightKind::Point,
        };
        let ops = Ops {
            backend,
            members,
            weights,
        };
        let net = match cfg.arch {
            Arch::AlexNet => Net::AlexNet(AlexNet::new(cfg, ops, vb)?),
            Arch::Vgg16 => Net::Vgg16(Vgg16::new(cfg, ops, vb)?),
            Arch::DenseNet121 => Net::DenseNet121(DenseNet121::new(cfg, ops, vb)?),
        };
        Ok(Model {
            cfg: cfg.clone(),
            ops,
            net,
        })
    }

    /// A BatchEnsemble (Wen et al. 2020) of `members` members for `cfg.method ==
    /// batch_ensemble`: every conv and linear layer has one shared `weight` (one network's
    /// shape, not stacked) and per member the fast weights `fast_in` (M, in) and `fast_out`
    /// (M, out) and a bias; BatchNorms are per member (stacked as a packed model's). Member
    /// g computes `y = ((x ∘ r_g) ⊛ W) ∘ s_g + b_g` on its rows g·B..(g+1)·B.
    ///
    /// The input is packed as [`Model::forward_packed`] takes it: to run every member on the
    /// same mini-batch the caller repeats it once per member ([`repeat_batch`]); member g
    /// draws its dropout masks from `noise[g]`. Seed it with [`crate::init_seeded`] (one
    /// seed: it is one network).
    pub fn batch_ensemble(
        cfg: &ModelConfig,
        backend: Backend,
        members: usize,
        vb: VarBuilder<'_>,
    ) -> Result<Self> {
        if cfg.method != Method::BatchEnsemble {
            return Err(Error::Config(format!(
                "Model::batch_ensemble builds method batch_ensemble, not {}",
                cfg.method
            )));
        }
        Self::packed(cfg, backend, members, vb)
    }

    /// The KL divergence KL(q ‖ p) of a `variational` network's weight posterior q from the
    /// prior p = N(0, σ_p²) (σ_p: `cfg.variational.prior_sigma`), in closed form, summed over
    /// every variational weight: Σ [ln(σ_p/σ) + (σ² + μ²)/(2σ_p²) − ½], σ = softplus(ρ). A
    /// scalar f32 tensor, differentiable in every `weight` (μ) and `weight_rho` (ρ) (computed
    /// and summed in f64). Biases and BatchNorm are point estimates and add nothing. 0 for the
    /// other methods.
    pub fn kl(&self) -> Result<Tensor> {
        let ws = self.weights();
        let device = ws
            .first()
            .map(|w| w.tensor().device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let mut total = Tensor::zeros((), DType::F64, &device)?;
        if let Some(v) = &self.cfg.variational {
            for w in ws {
                if let Some(kl) = w.kl(v.prior_sigma)? {
                    total = (total + kl)?;
                }
            }
        }
        Ok(total.to_dtype(DType::F32)?)
    }

    /// Forward FLOPs per image and member at the configuration's input size, from the layers'
    /// own shapes: 2 × the multiply-adds of every conv and linear layer. For `variational`
    /// both of Flipout's products count (the mean's and the perturbation's, the cost of a
    /// sampled pass); for `batch_ensemble` one member's (the shared weights run once over each
    /// member's rows). Not counted: biases, BatchNorm, pools, activations, dropout, Flipout's
    /// sign products and BatchEnsemble's fast-weight products (all linear in the activations).
    pub fn forward_flops(&self) -> u64 {
        let size = self.cfg.input_size;
        match &self.net {
            Net::AlexNet(n) => n.flops(size),
            Net::Vgg16(n) => n.flops(size),
            Net::DenseNet121(n) => n.flops(size),
        }
    }

    fn weights(&self) -> Vec<&Weight> {
        match &self.net {
            Net::AlexNet(n) => n.weights(),
            Net::Vgg16(n) => n.weights(),
            Net::DenseNet121(n) => n.weights(),
        }
    }

    /// The kernels the layers run on.
    pub fn backend(&self) -> Backend {
        self.ops.backend
    }

    /// Networks packed into this one (1: a plain network).
    pub fn members(&self) -> usize {
        self.ops.members
    }

    /// Logits (B, 8) for `xs` of shape (B, 1, S, S), S = `config().input_size`.
    ///
    /// Masks are drawn from `noise` only when `mode.stochastic`. With
    /// `mode.batchnorm_train` the BatchNorm layers (alexnet, densenet121) use batch
    /// statistics and update their running stats, which needs B >= 2 (as PyTorch,
    /// a single sample has no batch variance).
    pub fn forward(&self, xs: &Tensor, mode: Mode, noise: &mut Noise) -> Result<Tensor> {
        self.forward_packed(xs, mode, std::slice::from_mut(noise))
    }

    /// [`Model::forward`] of a packed model: `xs` (G·B, 1, S, S) holds member g's batch in
    /// rows g·B..(g+1)·B, and member g draws its masks from `noise[g]` (one stream per
    /// member, G = [`Model::members`]).
    pub fn forward_packed(&self, xs: &Tensor, mode: Mode, noise: &mut [Noise]) -> Result<Tensor> {
        self.check_input(xs, mode)?;
        self.check_noise(noise)?;
        running_stats_updated(|| match &self.net {
            Net::AlexNet(n) => n.forward(xs, mode, noise),
            Net::Vgg16(n) => n.forward(xs, mode, noise),
            Net::DenseNet121(n) => n.forward(xs, mode, noise),
        })
    }

    fn check_noise(&self, noise: &[Noise]) -> Result<()> {
        if noise.len() != self.ops.members {
            return Err(Error::Config(format!(
                "{} noise streams for a model of {} members",
                noise.len(),
                self.ops.members
            )));
        }
        Ok(())
    }

    fn check_input(&self, xs: &Tensor, mode: Mode) -> Result<()> {
        let size = self.cfg.input_size;
        let dims = xs.dims();
        let members = self.ops.members;
        let shape_ok = dims.len() == 4 && dims[1] == 1 && dims[2] == size && dims[3] == size;
        if !shape_ok || dims[0] == 0 || !dims[0].is_multiple_of(members) {
            return Err(Error::InputShape {
                got: dims.to_vec(),
                size,
                extra: if members > 1 {
                    format!(" with B a multiple of the {members} packed members")
                } else {
                    String::new()
                },
            });
        }
        let per_member = dims[0] / members;
        if mode.batchnorm_train && crate::config::has_batchnorm(self.cfg.arch) && per_member < 2 {
            return Err(Error::InputShape {
                got: dims.to_vec(),
                size,
                extra: " with B >= 2 when BatchNorm trains".to_owned(),
            });
        }
        Ok(())
    }

    /// Whether every stochastic layer sits in the classifier head after a deterministic prefix
    /// (AlexNet, VGG16), so Monte Carlo sampling can compute [`Model::features`] once and
    /// sample only [`Model::head`]. DenseNet-121 has dropout in every dense layer, and a
    /// variational network samples every layer.
    pub fn has_deterministic_prefix(&self) -> bool {
        !matches!(self.net, Net::DenseNet121(_)) && self.cfg.method != Method::Variational
    }

    fn check_prefix(&self) -> Result<()> {
        if self.cfg.method == Method::Variational {
            return Err(Error::Config(
                "a variational network samples every layer: sample full passes".into(),
            ));
        }
        Ok(())
    }

    /// The deterministic prefix (B, F) of a prefix-separable model (see
    /// [`Model::has_deterministic_prefix`]); draws no masks. BatchNorm follows `mode`.
    pub fn features(&self, xs: &Tensor, mode: Mode) -> Result<Tensor> {
        self.check_input(xs, mode)?;
        self.check_prefix()?;
        running_stats_updated(|| match &self.net {
            Net::AlexNet(n) => n.features(xs, mode),
            Net::Vgg16(n) => n.features(xs),
            Net::DenseNet121(_) => Err(Error::Config(
                "densenet121 has no deterministic prefix: sample full passes".into(),
            )),
        })
    }

    /// Logits from the output of [`Model::features`]: `head(features(x))` equals `forward(x)`
    /// with the same `noise` state.
    pub fn head(&self, features: &Tensor, mode: Mode, noise: &mut Noise) -> Result<Tensor> {
        self.head_packed(features, mode, std::slice::from_mut(noise))
    }

    /// [`Model::head`] of a packed model (see [`Model::forward_packed`]).
    pub fn head_packed(
        &self,
        features: &Tensor,
        mode: Mode,
        noise: &mut [Noise],
    ) -> Result<Tensor> {
        self.check_noise(noise)?;
        self.check_prefix()?;
        match &self.net {
            Net::AlexNet(n) => n.head(features, mode, noise),
            Net::Vgg16(n) => n.head(features, mode, noise),
            Net::DenseNet121(_) => Err(Error::Config(
                "densenet121 has no separate head: sample full passes".into(),
            )),
        }
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }
}

/// `xs` (B, ...) repeated `members` times on dim 0, (M·B, ...): the packed input that runs
/// every member of a packed model or BatchEnsemble on the same mini-batch (member g's copy in
/// rows g·B..(g+1)·B).
pub fn repeat_batch(xs: &Tensor, members: usize) -> Result<Tensor> {
    if members == 1 {
        return Ok(xs.clone());
    }
    Ok(Tensor::cat(&vec![xs; members], 0)?)
}

/// Runs a forward pass and then the running-statistics updates its BatchNorm layers left on the
/// device ops (one multi-tensor update, `ferbayes_kernels::device::flush_running`); a failed
/// pass leaves the statistics as they were.
fn running_stats_updated(forward: impl FnOnce() -> Result<Tensor>) -> Result<Tensor> {
    ferbayes_kernels::device::discard_running();
    match forward() {
        Ok(ys) => {
            ferbayes_kernels::device::flush_running()?;
            Ok(ys)
        }
        Err(e) => {
            ferbayes_kernels::device::discard_running();
            Err(e)
        }
    }
}
