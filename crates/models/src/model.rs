//! The [`Model`] wrapper dispatching to the three architectures.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::alexnet::AlexNet;
use crate::config::{Arch, Mode, ModelConfig};
use crate::densenet::DenseNet121;
use crate::error::{Error, Result};
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
    net: Net,
}

impl Model {
    /// Builds the network of `cfg`, taking (or, from a `VarMap`, creating) its
    /// weights from `vb` under the names documented in the crate docs.
    ///
    /// Weights created in a `VarMap` start from candle's unseeded initialisers:
    /// call [`crate::init_seeded`] afterwards for reproducible weights.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder<'_>) -> Result<Self> {
        cfg.validate()?;
        let net = match cfg.arch {
            Arch::AlexNet => Net::AlexNet(AlexNet::new(cfg, vb)?),
            Arch::Vgg16 => Net::Vgg16(Vgg16::new(cfg, vb)?),
            Arch::DenseNet121 => Net::DenseNet121(DenseNet121::new(cfg, vb)?),
        };
        Ok(Model {
            cfg: cfg.clone(),
            net,
        })
    }

    /// Logits (B, 8) for `xs` of shape (B, 1, S, S), S = `config().input_size`.
    ///
    /// Masks are drawn from `noise` only when `mode.stochastic`. With
    /// `mode.batchnorm_train` the BatchNorm layers (alexnet, densenet121) use batch
    /// statistics and update their running stats, which needs B >= 2 (as PyTorch,
    /// a single sample has no batch variance).
    pub fn forward(&self, xs: &Tensor, mode: Mode, noise: &mut Noise) -> Result<Tensor> {
        self.check_input(xs, mode)?;
        match &self.net {
            Net::AlexNet(n) => n.forward(xs, mode, noise),
            Net::Vgg16(n) => n.forward(xs, mode, noise),
            Net::DenseNet121(n) => n.forward(xs, mode, noise),
        }
    }

    fn check_input(&self, xs: &Tensor, mode: Mode) -> Result<()> {
        let size = self.cfg.input_size;
        let dims = xs.dims();
        let shape_ok = dims.len() == 4 && dims[1] == 1 && dims[2] == size && dims[3] == size;
        if !shape_ok || dims[0] == 0 {
            return Err(Error::InputShape {
                got: dims.to_vec(),
                size,
                extra: String::new(),
            });
        }
        if mode.batchnorm_train && crate::config::has_batchnorm(self.cfg.arch) && dims[0] < 2 {
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
        match &self.net {
            Net::AlexNet(n) => n.features(xs, mode),
            Net::Vgg16(n) => n.features(xs),
            Net::DenseNet121(_) => Err(Error::Config(
                "densenet121 has no deterministic prefix: sample full passes".into(),
            )),
        }
    }

    /// Logits from the output of [`Model::features`]: `head(features(x))` equals `forward(x)`
    /// with the same `noise` state.
    pub fn head(&self, features: &Tensor, mode: Mode, noise: &mut Noise) -> Result<Tensor> {
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
