//! AlexNet with BatchNorm (see the crate docs for the layer table).

use candle_core::Tensor;
use candle_nn::{BatchNorm, VarBuilder};

use crate::config::{ModelConfig, spatial_sizes};
use crate::error::{Error, Result};
use crate::layers::{Conv2d, Linear, Stochastic, batch_norm, bn, bn_pool};
use crate::noise::Noise;
use crate::{Mode, NUM_CLASSES};

/// Hidden width of fc1 and fc2 (not scaled by `width`).
const HIDDEN: usize = 256;

/// (channels before scaling, kernel, padding, max-pool after).
const CONVS: [(usize, usize, usize, bool); 5] = [
    (64, 5, 2, true),
    (128, 5, 2, true),
    (256, 3, 1, false),
    (256, 3, 1, false),
    (128, 3, 1, true),
];

#[derive(Clone, Debug)]
struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
    pool: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct AlexNet {
    features: Vec<ConvBn>,
    fc1: Linear,
    bn1: BatchNorm,
    fc2: Linear,
    bn2: BatchNorm,
    fc3: Linear,
    drop: Stochastic,
}

impl AlexNet {
    pub(crate) fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let fvb = vb.pp("features");
        let mut in_c = 1;
        let mut features = Vec::with_capacity(CONVS.len());
        for (i, &(c, k, pad, pool)) in CONVS.iter().enumerate() {
            let out_c = cfg.channels(c);
            let conv = Conv2d::new(
                in_c,
                out_c,
                k,
                1,
                pad,
                true,
                fvb.pp(format!("conv{}", i + 1)),
            )?;
            let bn = batch_norm(out_c, fvb.pp(format!("bn{}", i + 1)))?;
            features.push(ConvBn { conv, bn, pool });
            in_c = out_c;
        }
        let side = spatial_sizes(cfg.arch, cfg.input_size)
            .and_then(|s| s.last().copied())
            .ok_or_else(|| Error::Config(format!("input_size {} too small", cfg.input_size)))?;
        let flat = in_c * side * side;
        let cvb = vb.pp("classifier");
        Ok(AlexNet {
            features,
            fc1: Linear::new(flat, HIDDEN, cvb.pp("fc1"))?,
            bn1: batch_norm(HIDDEN, cvb.pp("bn1"))?,
            fc2: Linear::new(HIDDEN, HIDDEN, cvb.pp("fc2"))?,
            bn2: batch_norm(HIDDEN, cvb.pp("bn2"))?,
            fc3: Linear::new(HIDDEN, NUM_CLASSES, cvb.pp("fc3"))?,
            drop: Stochastic::new(cfg.method, cfg.drop_rate),
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor, mode: Mode, noise: &mut Noise) -> Result<Tensor> {
        let xs = self.features(xs, mode)?;
        self.head(&xs, mode, noise)
    }

    /// The deterministic convolutional prefix (no masks), flattened to (B, F).
    pub(crate) fn features(&self, xs: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut xs = xs.clone();
        for layer in &self.features {
            let ys = layer.conv.forward(&xs)?;
            xs = if layer.pool {
                bn_pool(&layer.bn, &ys, mode, true)?
            } else {
                bn(&layer.bn, &ys, mode, true)?
            };
        }
        Ok(xs.flatten_from(1)?)
    }

    /// The classifier head, where every stochastic layer sits.
    pub(crate) fn head(&self, xs: &Tensor, mode: Mode, noise: &mut Noise) -> Result<Tensor> {
        let xs = self.drop.linear(&self.fc1, xs, mode, noise)?;
        let xs = bn(&self.bn1, &xs, mode, true)?;
        let xs = self.drop.linear(&self.fc2, &xs, mode, noise)?;
        let xs = bn(&self.bn2, &xs, mode, true)?;
        self.fc3.forward(&xs)
    }
}
