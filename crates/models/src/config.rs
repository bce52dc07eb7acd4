//! Architecture and method names, the model configuration and forward modes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use ferbayes_core::{Arch, Method};

/// The study's dropout / DropConnect rate p: 0.5 for alexnet, 0.2 for vgg16 and densenet121.
pub fn default_drop_rate(arch: Arch) -> f64 {
    match arch {
        Arch::AlexNet => 0.5,
        Arch::Vgg16 | Arch::DenseNet121 => 0.2,
    }
}

/// Whether the architecture contains BatchNorm layers.
pub fn has_batchnorm(arch: Arch) -> bool {
    matches!(arch, Arch::AlexNet | Arch::DenseNet121)
}

/// Everything needed to build a [`crate::Model`] (together with its weights).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub arch: Arch,
    pub method: Method,
    /// Channel width multiplier: a layer documented with x channels gets
    /// `c(x) = max(1, round(x * width))`.
    pub width: f64,
    /// Side S of the square (B, 1, S, S) input.
    pub input_size: usize,
    /// Dropout / DropConnect rate p (probability of dropping); unused by `variational`.
    pub drop_rate: f64,
    /// The variational posterior's initial scale and the prior (`variational` only, where it
    /// is required; `None` for every other method). Left out of the serialised form when
    /// `None`, so the other methods' configurations serialise as they always have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variational: Option<VariationalConfig>,
}

/// The Gaussian scales of a `variational` network (see the crate docs' *Methods*).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariationalConfig {
    /// σ₀: every weight's initial posterior standard deviation (each `weight_rho` starts at
    /// ρ₀ = ln(exp(σ₀) − 1), so σ = softplus(ρ₀) = σ₀).
    pub sigma0: f64,
    /// σ_p: the standard deviation of the zero-mean Gaussian prior N(0, σ_p²) on every weight
    /// ([`crate::Model::kl`]).
    pub prior_sigma: f64,
}

impl Default for VariationalConfig {
    /// σ₀ = 1e-3 (a narrow start around the means, e.g. a trained network's weights) and the
    /// standard normal prior σ_p = 1 (TensorFlow Probability's default for its Flipout layers).
    fn default() -> Self {
        VariationalConfig {
            sigma0: 1e-3,
            prior_sigma: 1.0,
        }
    }
}

impl VariationalConfig {
    /// ρ₀ = ln(exp(σ₀) − 1), the initial `weight_rho` (softplus⁻¹ of σ₀).
    pub fn rho0(&self) -> f64 {
        self.sigma0.exp_m1().ln()
    }

    /// Checks that both scales are positive and finite.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("sigma0", self.sigma0), ("prior_sigma", self.prior_sigma)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::Config(format!(
                    "variational.{name} must be a positive finite number, got {v}"
                )));
            }
        }
        Ok(())
    }
}

impl ModelConfig {
    /// A configuration with the architecture's default drop rate
    /// ([`default_drop_rate`]) and, for `variational`, [`VariationalConfig::default`].
    pub fn new(arch: Arch, method: Method, width: f64, input_size: usize) -> Self {
        ModelConfig {
            arch,
            method,
            width,
            input_size,
            drop_rate: default_drop_rate(arch),
            variational: (method == Method::Variational).then(VariationalConfig::default),
        }
    }

    /// Scaled channel count `c(x) = max(1, round(x * width))`.
    pub fn channels(&self, x: usize) -> usize {
        scaled(x, self.width)
    }

    /// Smallest input side the architecture accepts (every pooling stage keeps at
    /// least one pixel): 8 for alexnet, 32 for vgg16, 29 for densenet121.
    pub fn min_input_size(arch: Arch) -> usize {
        (1..)
            .find(|&s| spatial_sizes(arch, s).is_some())
            .unwrap_or(usize::MAX)
    }

    /// Checks width, input size, drop rate and the variational scales (present, and valid,
    /// exactly for `variational`).
    pub fn validate(&self) -> Result<()> {
        match (self.method, &self.variational) {
            (Method::Variational, Some(v)) => v.validate()?,
            (Method::Variational, None) => {
                return Err(Error::Config(
                    "method variational needs its scales (variational.sigma0, \
                     variational.prior_sigma)"
                        .into(),
                ));
            }
            (method, Some(_)) => {
                return Err(Error::Config(format!(
                    "variational scales given for method {method}, which has no variational \
                     weights"
                )));
            }
            (_, None) => {}
        }
        if !(self.width.is_finite() && self.width > 0.0) {
            return Err(Error::Config(format!(
                "width must be a positive finite number, got {}",
                self.width
            )));
        }
        if !(self.drop_rate.is_finite() && (0.0..1.0).contains(&self.drop_rate)) {
            return Err(Error::Config(format!(
                "drop_rate must be in [0, 1), got {}",
                self.drop_rate
            )));
        }
        if spatial_sizes(self.arch, self.input_size).is_none() {
            return Err(Error::Config(format!(
                "input_size {} is too small for {} (minimum {})",
                self.input_size,
                self.arch,
                Self::min_input_size(self.arch)
            )));
        }
        Ok(())
    }
}

/// `max(1, round(x * width))`.
pub(crate) fn scaled(x: usize, width: f64) -> usize {
    let v = (x as f64 * width).round();
    if v < 1.0 { 1 } else { v as usize }
}

/// Side of the feature map after each down-sampling stage, or `None` when a stage
/// would leave less than one pixel (or, for DenseNet's avg pools, less than the
/// 2x2 window).
///
/// alexnet: after pool1, pool2, pool3; vgg16: after each of the 5 pools;
/// densenet121: after conv0, pool0, transition1, transition2, transition3.
pub(crate) fn spatial_sizes(arch: Arch, input: usize) -> Option<Vec<usize>> {
    let pool2 = |s: usize| if s >= 2 { Some(s / 2) } else { None };
    let mut out = Vec::new();
    match arch {
        Arch::AlexNet | Arch::Vgg16 => {
            let n = if arch == Arch::AlexNet { 3 } else { 5 };
            let mut s = input;
            for _ in 0..n {
                s = pool2(s)?;
                out.push(s);
            }
        }
        Arch::DenseNet121 => {
            if input == 0 {
                return None;
            }
            // conv0 7x7 stride 2 pad 3: (s + 6 - 7) / 2 + 1
            let s = (input - 1) / 2 + 1;
            out.push(s);
            // pool0 3x3 stride 2 pad 1: (s + 2 - 3) / 2 + 1
            let mut s = (s - 1) / 2 + 1;
            out.push(s);
            for _ in 0..3 {
                s = pool2(s)?;
                out.push(s);
            }
        }
    }
    Some(out)
}

/// How a forward pass treats the stochastic layers and BatchNorm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// Sample dropout / DropConnect masks (from the [`crate::Noise`] passed in).
    pub stochastic: bool,
    /// BatchNorm normalises with batch statistics and updates its running stats;
    /// otherwise it uses the running stats and leaves them alone.
    pub batchnorm_train: bool,
}

impl Mode {
    /// Training: masks sampled, BatchNorm on batch statistics (running stats updated).
    pub const TRAIN: Mode = Mode {
        stochastic: true,
        batchnorm_train: true,
    };
    /// Deterministic evaluation: no masks, BatchNorm on running stats.
    pub const EVAL: Mode = Mode {
        stochastic: false,
        batchnorm_train: false,
    };
    /// Monte-Carlo sampling: masks sampled, BatchNorm on running stats (so a sample's
    /// output does not depend on the rest of the batch).
    pub const MC: Mode = Mode {
        stochastic: true,
        batchnorm_train: false,
    };

    /// The mode inference uses for a method: [`Mode::MC`] for mc_dropout, mc_dropconnect and
    /// variational (whose weights are sampled inside the layers), [`Mode::EVAL`] for ensemble
    /// and batch_ensemble members and for swag and laplace (whose weights are sampled outside
    /// the network, which then runs deterministically).
    pub fn for_inference(method: Method) -> Mode {
        match method {
            Method::McDropout | Method::McDropConnect | Method::Variational => Mode::MC,
            Method::Ensemble | Method::BatchEnsemble | Method::Swag | Method::Laplace => Mode::EVAL,
        }
    }
}
