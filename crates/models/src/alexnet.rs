//! AlexNet with BatchNorm (see the crate docs for the layer table).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::config::{ModelConfig, spatial_sizes};
use crate::error::{Error, Result};
use crate::layers::{Conv2d, Linear, Norm, Ops, Stochastic, batch_norm};
use crate::noise::Noise;
use crate::weights::Weight;
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
    bn: Norm,
    pool: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct AlexNet {
    features: Vec<ConvBn>,
    fc1: Linear,
    bn1: Norm,
    fc2: Linear,
    bn2: Norm,
    fc3: Linear,
    drop: Stochastic,
}

impl AlexNet {
    pub(crate) fn new(cfg: &ModelConfig, ops: Ops, vb: VarBuilder) -> Result<Self> {
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
                ops,
                fvb.pp(format!("conv{}", i + 1)),
            )?;
            let bn = batch_norm(out_c, ops, fvb.pp(format!("bn{}", i + 1)))?;
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
            fc1: Linear::new(flat, HIDDEN, ops, cvb.pp("fc1"))?,
            bn1: batch_norm(HIDDEN, ops, cvb.pp("bn1"))?,
            fc2: Linear::new(HIDDEN, HIDDEN, ops, cvb.pp("fc2"))?,
            bn2: batch_norm(HIDDEN, ops, cvb.pp("bn2"))?,
            fc3: Linear::new(HIDDEN, NUM_CLASSES, ops, cvb.pp("fc3"))?,
            drop: Stochastic::new(cfg.method, cfg.drop_rate, ops),
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor, mode: Mode, noise: &mut [Noise]) -> Result<Tensor> {
        let xs = self.trunk(xs, mode, noise)?;
        self.head(&xs, mode, noise)
    }

    /// The deterministic convolutional prefix (no masks), flattened to (B, F); not for a
    /// variational network, whose convs sample.
    pub(crate) fn features(&self, xs: &Tensor, mode: Mode) -> Result<Tensor> {
        self.trunk(xs, mode, &mut [])
    }

    /// The convolutional part, flattened to (B, F).
    fn trunk(&self, xs: &Tensor, mode: Mode, noise: &mut [Noise]) -> Result<Tensor> {
        let mut xs = xs.clone();
        for layer in &self.features {
            let ys = layer.conv.forward(&xs, mode, noise)?;
            xs = if layer.pool {
                layer.bn.forward_pool(&ys, mode, true)?
            } else {
                layer.bn.forward(&ys, mode, true)?
            };
        }
        Ok(xs.flatten_from(1)?)
    }

    /// The classifier head, where every stochastic layer sits.
    pub(crate) fn head(&self, xs: &Tensor, mode: Mode, noise: &mut [Noise]) -> Result<Tensor> {
        let xs = self.drop.linear(&self.fc1, xs, mode, noise)?;
        let xs = self.bn1.forward(&xs, mode, true)?;
        let xs = self.drop.linear(&self.fc2, &xs, mode, noise)?;
        let xs = self.bn2.forward(&xs, mode, true)?;
        self.fc3.forward(&xs, mode, noise)
    }

    /// Every conv and linear weight, in forward order.
    pub(crate) fn weights(&self) -> Vec<&Weight> {
        let convs = self.features.iter().map(|l| l.conv.param());
        let fcs = [&self.fc1, &self.fc2, &self.fc3].map(Linear::param);
        convs.chain(fcs).collect()
    }

    /// One member's forward FLOPs per `size` × `size` image (see [`crate::Model::forward_flops`]).
    pub(crate) fn flops(&self, size: usize) -> u64 {
        let mut side = size;
        let mut total = 0;
        for layer in &self.features {
            total += layer.conv.flops(side);
            side = layer.conv.out_side(side);
            if layer.pool {
                side /= 2;
            }
        }
        total + self.fc1.flops() + self.fc2.flops() + self.fc3.flops()
    }
}
