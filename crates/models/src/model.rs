//! The [`Model`] wrapper dispatching to the three architectures.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use ferbayes_kernels::Backend;

use crate::alexnet::AlexNet;
use crate::config::{Arch, Mode, ModelConfig};
use crate::densenet::DenseNet121;
use crate::error::{Error, Result};
use crate::layers::Ops;
use crate::noise::Noise;
use crate::vgg::Vgg16;

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
        let ops = Ops { backend, members };
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
    /// sample only [`Model::head`]. DenseNet-121 has dropout in every dense layer.
    pub fn has_deterministic_prefix(&self) -> bool {
        !matches!(self.net, Net::DenseNet121(_))
    }

    /// The deterministic prefix (B, F) of a prefix-separable model (see
    /// [`Model::has_deterministic_prefix`]); draws no masks. BatchNorm follows `mode`.
    pub fn features(&self, xs: &Tensor, mode: Mode) -> Result<Tensor> {
        self.check_input(xs, mode)?;
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
