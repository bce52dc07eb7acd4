//! VGG-16 without BatchNorm (see the crate docs for the layer table).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::config::{ModelConfig, spatial_sizes};
use crate::error::{Error, Result};
use crate::layers::{Conv2d, Linear, Ops, Stochastic};
use crate::noise::Noise;
use crate::weights::Weight;
use crate::{Mode, NUM_CLASSES};

/// Hidden width of fc1 and fc2 (not scaled by `width`).
const HIDDEN: usize = 256;

/// Channels (before scaling) of the convs of each of the 5 blocks; each block ends
/// with a 2x2 max pool.
const BLOCKS: [&[usize]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256, 256],
    &[512, 512, 512],
    &[512, 512, 512],
];

#[derive(Clone, Debug)]
pub(crate) struct Vgg16 {
    /// Convs per block.
    blocks: Vec<Vec<Conv2d>>,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    drop: Stochastic,
    ops: Ops,
}

impl Vgg16 {
    pub(crate) fn new(cfg: &ModelConfig, ops: Ops, vb: VarBuilder) -> Result<Self> {
        let fvb = vb.pp("features");
        let mut in_c = 1;
        let mut blocks = Vec::with_capacity(BLOCKS.len());
        for (b, chans) in BLOCKS.iter().enumerate() {
            let mut convs = Vec::with_capacity(chans.len());
            for (j, &c) in chans.iter().enumerate() {
                let out_c = cfg.channels(c);
                let name = format!("conv{}_{}", b + 1, j + 1);
                convs.push(Conv2d::new(in_c, out_c, 3, 1, 1, true, ops, fvb.pp(name))?);
                in_c = out_c;
            }
            blocks.push(convs);
        }
        let side = spatial_sizes(cfg.arch, cfg.input_size)
            .and_then(|s| s.last().copied())
            .ok_or_else(|| Error::Config(format!("input_size {} too small", cfg.input_size)))?;
        let flat = in_c * side * side;
        let cvb = vb.pp("classifier");
        Ok(Vgg16 {
            blocks,
            fc1: Linear::new(flat, HIDDEN, ops, cvb.pp("fc1"))?,
            fc2: Linear::new(HIDDEN, HIDDEN, ops, cvb.pp("fc2"))?,
            fc3: Linear::new(HIDDEN, NUM_CLASSES, ops, cvb.pp("fc3"))?,
            drop: Stochastic::new(cfg.method, cfg.drop_rate, ops),
            ops,
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor, mode: Mode, noise: &mut [Noise]) -> Result<Tensor> {
        let xs = self.trunk(xs, mode, noise)?;
        self.head(&xs, mode, noise)
    }

    /// The deterministic convolutional prefix, flattened to (B, F); not for a variational
    /// network, whose convs sample.
    pub(crate) fn features(&self, xs: &Tensor) -> Result<Tensor> {
        self.trunk(xs, Mode::EVAL, &mut [])
    }

    /// The convolutional part, flattened to (B, F).
    fn trunk(&self, xs: &Tensor, mode: Mode, noise: &mut [Noise]) -> Result<Tensor> {
        let mut xs = xs.clone();
        for convs in &self.blocks {
            for conv in convs {
                xs = conv.forward_relu(&xs, mode, noise)?;
            }
            xs = self.ops.backend.max_pool2(&xs)?;
        }
        Ok(xs.flatten_from(1)?)
    }

    /// The classifier head, where every stochastic layer sits.
    pub(crate) fn head(&self, xs: &Tensor, mode: Mode, noise: &mut [Noise]) -> Result<Tensor> {
        let xs = self.drop.linear(&self.fc1, xs, mode, noise)?.relu()?;
        let xs = self.drop.linear(&self.fc2, &xs, mode, noise)?.relu()?;
        self.fc3.forward(&xs, mode, noise)
    }

    /// Every conv and linear weight, in forward order.
    pub(crate) fn weights(&self) -> Vec<&Weight> {
        let convs = self.blocks.iter().flatten().map(Conv2d::param);
        let fcs = [&self.fc1, &self.fc2, &self.fc3].map(Linear::param);
        convs.chain(fcs).collect()
    }

    /// One member's forward FLOPs per `size` × `size` image (see [`crate::Model::forward_flops`]).
    pub(crate) fn flops(&self, size: usize) -> u64 {
        let mut side = size;
        let mut total = 0;
        for convs in &self.blocks {
            for conv in convs {
                total += conv.flops(side);
                side = conv.out_side(side);
            }
            side /= 2;
        }
        total + self.fc1.flops() + self.fc2.flops() + self.fc3.flops()
    }
}
