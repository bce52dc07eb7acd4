//! Test and bench helpers (feature `testing`; not a stable API, never in a release build):
//! [`write_seeded_weights`] (untrained weights where train would write them, for the tests and
//! benches of infer, predict, explore and cli) and [`Layer`] (single conv and linear layers of
//! this crate built from given tensors, so tests can check one layer's arithmetic against an
//! independent reference).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ferbayes_core::{Arch, Layout, Method, Settings};
use ferbayes_kernels::Backend;

use crate::config::Mode;
use crate::error::Result;
use crate::layers::{Conv2d, Linear, Ops};
use crate::noise::Noise;
use crate::weights::{Weight, WeightKind};
use crate::{Model, ModelConfig};

/// Writes weights drawn from fixed seeds (member m from seed m) for every member of
/// `arch`/`method` at the sizes of `settings`, where the train stage would put them, so that
/// [`crate::Predictor::load`] works without training (speed and plumbing do not depend on the
/// weights' values).
pub fn write_seeded_weights(
    layout: &Layout,
    settings: &Settings,
    arch: Arch,
    method: Method,
) -> Result<()> {
    let a = settings.train.arch(arch);
    for m in 0..ferbayes_core::plan::members(settings, method) {
        let varmap = VarMap::new();
        let mut cfg = ModelConfig::new(arch, method, a.width, a.input_size);
        cfg.drop_rate = a.drop_rate;
        Model::new(
            &cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )?;
        crate::init_seeded(&varmap, m as u64)?;
        let path = layout.member_weights(arch, method, m);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ferbayes_core::Error::io(dir, e))?;
        }
        varmap.save(&path)?;
    }
    Ok(())
}

/// One layer: what a network's conv or linear layer of the same weights computes.
#[derive(Clone, Debug)]
pub struct Layer {
    inner: Inner,
}

#[derive(Clone, Debug)]
enum Inner {
    Conv(Conv2d),
    Linear(Linear),
}

/// The layer's tensors under their weight names, and how it runs.
fn builder(named: &[(&str, &Tensor)]) -> VarBuilder<'static> {
    let map: HashMap<String, Tensor> = named
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).clone()))
        .collect();
    let first = named[0].1;
    VarBuilder::from_tensors(map, first.dtype(), first.device())
}

impl Layer {
    /// A variational conv: mean `weight` μ (out, in, k, k), `weight_rho` ρ of the same shape,
    /// optional `bias` (out).
    pub fn flipout_conv(
        mean: &Tensor,
        rho: &Tensor,
        bias: Option<&Tensor>,
        (padding, stride): (usize, usize),
        backend: Backend,
    ) -> Result<Layer> {
        let (out_c, in_c, k, _) = mean.dims4()?;
        let mut named = vec![("weight", mean), ("weight_rho", rho)];
        named.extend(bias.map(|b| ("bias", b)));
        let ops = Ops {
            weights: WeightKind::Flipout { rho0: 0.0 },
            ..Ops::single(backend)
        };
        let conv = Conv2d::new(
            in_c,
            out_c,
            k,
            stride,
            padding,
            bias.is_some(),
            ops,
            builder(&named),
        )?;
        Ok(Layer {
            inner: Inner::Conv(conv),
        })
    }

    /// A variational linear layer: mean `weight` μ (out, in), `weight_rho` ρ, `bias` (out).
    pub fn flipout_linear(
        mean: &Tensor,
        rho: &Tensor,
        bias: &Tensor,
        backend: Backend,
    ) -> Result<Layer> {
        let (out_f, in_f) = mean.dims2()?;
        let ops = Ops {
            weights: WeightKind::Flipout { rho0: 0.0 },
            ..Ops::single(backend)
        };
        let named = [("weight", mean), ("weight_rho", rho), ("bias", bias)];
        let linear = Linear::new(in_f, out_f, ops, builder(&named))?;
        Ok(Layer {
            inner: Inner::Linear(linear),
        })
    }

    /// A BatchEnsemble conv of M = `fast_in.dim(0)` members: shared `weight` (out, in, k, k),
    /// `fast_in` (M, in), `fast_out` (M, out), optional `bias` (M·out).
    pub fn batch_conv(
        shared: &Tensor,
        (fast_in, fast_out): (&Tensor, &Tensor),
        bias: Option<&Tensor>,
        (padding, stride): (usize, usize),
        backend: Backend,
    ) -> Result<Layer> {
        let (out_c, in_c, k, _) = shared.dims4()?;
        let mut named = vec![
            ("weight", shared),
            ("fast_in", fast_in),
            ("fast_out", fast_out),
        ];
        named.extend(bias.map(|b| ("bias", b)));
        let ops = Ops {
            backend,
            members: fast_in.dim(0)?,
            weights: WeightKind::Batch,
        };
        let conv = Conv2d::new(
            in_c,
            out_c,
            k,
            stride,
            padding,
            bias.is_some(),
            ops,
            builder(&named),
        )?;
        Ok(Layer {
            inner: Inner::Conv(conv),
        })
    }

    /// A BatchEnsemble linear layer of M = `fast_in.dim(0)` members: shared `weight`
    /// (out, in), `fast_in` (M, in), `fast_out` (M, out), `bias` (M·out).
    pub fn batch_linear(
        shared: &Tensor,
        (fast_in, fast_out): (&Tensor, &Tensor),
        bias: &Tensor,
        backend: Backend,
    ) -> Result<Layer> {
        let (out_f, in_f) = shared.dims2()?;
        let ops = Ops {
            backend,
            members: fast_in.dim(0)?,
            weights: WeightKind::Batch,
        };
        let named = [
            ("weight", shared),
            ("fast_in", fast_in),
            ("fast_out", fast_out),
            ("bias", bias),
        ];
        let linear = Linear::new(in_f, out_f, ops, builder(&named))?;
        Ok(Layer {
            inner: Inner::Linear(linear),
        })
    }

    /// The layer's output for `xs` (a BatchEnsemble's: M blocks of rows); a variational layer
    /// samples from `noise` (one stream) when `mode.stochastic`.
    pub fn forward(&self, xs: &Tensor, mode: Mode, noise: &mut [Noise]) -> Result<Tensor> {
        match &self.inner {
            Inner::Conv(c) => c.forward(xs, mode, noise),
            Inner::Linear(l) => l.forward(xs, mode, noise),
        }
    }

    /// The layer's KL(q ‖ N(0, σ_p²)) as [`crate::Model::kl`] sums it (f64 scalar); 0 for a
    /// BatchEnsemble layer.
    pub fn kl(&self, prior_sigma: f64) -> Result<Tensor> {
        let w: &Weight = match &self.inner {
            Inner::Conv(c) => c.param(),
            Inner::Linear(l) => l.param(),
        };
        match w.kl(prior_sigma)? {
            Some(kl) => Ok(kl),
            None => Ok(Tensor::new(0f64, w.tensor().device())?),
        }
    }

    /// One member's forward FLOPs for one input of `side` × `side` maps (a linear layer
    /// ignores `side`).
    pub fn flops(&self, side: usize) -> u64 {
        match &self.inner {
            Inner::Conv(c) => c.flops(side),
            Inner::Linear(l) => l.flops(),
        }
    }
}
