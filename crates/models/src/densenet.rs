//! DenseNet-121 (see the crate docs for the layer table).

use candle_core::{D, Tensor};
use candle_nn::VarBuilder;

use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::{Conv2d, Linear, Norm, Ops, Stochastic, batch_norm};
use crate::noise::Noise;
use crate::weights::Weight;
use crate::{Mode, NUM_CLASSES};

/// Dense layers per block.
const BLOCKS: [usize; 4] = [6, 12, 24, 16];
/// Growth rate before scaling.
const GROWTH: usize = 32;
/// Stem channels before scaling.
const STEM: usize = 64;
/// Bottleneck width as a multiple of the growth rate.
const BN_SIZE: usize = 4;

#[derive(Clone, Debug)]
struct DenseLayer {
    norm1: Norm,
    conv1: Conv2d,
    norm2: Norm,
    conv2: Conv2d,
}

impl DenseLayer {
    fn new(in_c: usize, growth: usize, ops: Ops, vb: VarBuilder) -> Result<Self> {
        let mid = BN_SIZE * growth;
        Ok(DenseLayer {
            norm1: batch_norm(in_c, ops, vb.pp("norm1"))?,
            conv1: Conv2d::new(in_c, mid, 1, 1, 0, false, ops, vb.pp("conv1"))?,
            norm2: batch_norm(mid, ops, vb.pp("norm2"))?,
            conv2: Conv2d::new(mid, growth, 3, 1, 1, false, ops, vb.pp("conv2"))?,
        })
    }

    /// The k new feature maps (not yet dropped out or concatenated).
    fn forward(
        &self,
        xs: &Tensor,
        drop: &Stochastic,
        mode: Mode,
        noise: &mut [Noise],
    ) -> Result<Tensor> {
        let ys = self.norm1.forward(xs, mode, true)?;
        let ys = self.conv1.forward(&ys, mode, noise)?;
        let ys = self.norm2.forward(&ys, mode, true)?;
        drop.conv(&self.conv2, &ys, mode, noise)
    }
}

#[derive(Clone, Debug)]
struct Transition {
    norm: Norm,
    conv: Conv2d,
}

#[derive(Clone, Debug)]
pub(crate) struct DenseNet121 {
    conv0: Conv2d,
    norm0: Norm,
    blocks: Vec<Vec<DenseLayer>>,
    /// After blocks 1..3.
    transitions: Vec<Transition>,
    norm5: Norm,
    classifier: Linear,
    drop: Stochastic,
    ops: Ops,
}

impl DenseNet121 {
    pub(crate) fn new(cfg: &ModelConfig, ops: Ops, vb: VarBuilder) -> Result<Self> {
        let fvb = vb.pp("features");
        let growth = cfg.channels(GROWTH);
        let mut c = cfg.channels(STEM);
        let conv0 = Conv2d::new(1, c, 7, 2, 3, false, ops, fvb.pp("conv0"))?;
        let norm0 = batch_norm(c, ops, fvb.pp("norm0"))?;
        let mut blocks = Vec::with_capacity(BLOCKS.len());
        let mut transitions = Vec::with_capacity(BLOCKS.len() - 1);
        for (b, &n) in BLOCKS.iter().enumerate() {
            let bvb = fvb.pp(format!("denseblock{}", b + 1));
            let mut layers = Vec::with_capacity(n);
            for l in 0..n {
                layers.push(DenseLayer::new(
                    c,
                    growth,
                    ops,
                    bvb.pp(format!("denselayer{}", l + 1)),
                )?);
                c += growth;
            }
            blocks.push(layers);
            if b + 1 < BLOCKS.len() {
                let tvb = fvb.pp(format!("transition{}", b + 1));
                let out = (c / 2).max(1);
                transitions.push(Transition {
                    norm: batch_norm(c, ops, tvb.pp("norm"))?,
                    conv: Conv2d::new(c, out, 1, 1, 0, false, ops, tvb.pp("conv"))?,
                });
                c = out;
            }
        }
        let norm5 = batch_norm(c, ops, fvb.pp("norm5"))?;
        let classifier = Linear::new(c, NUM_CLASSES, ops, vb.pp("classifier"))?;
        Ok(DenseNet121 {
            conv0,
            norm0,
            blocks,
            transitions,
            norm5,
            classifier,
            drop: Stochastic::new(cfg.method, cfg.drop_rate, ops),
            ops,
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor, mode: Mode, noise: &mut [Noise]) -> Result<Tensor> {
        let xs = self.conv0.forward(xs, mode, noise)?;
        let xs = self.norm0.forward(&xs, mode, true)?;
        // Zero padding after the ReLU equals PyTorch's -inf padding since xs >= 0.
        let mut xs = self.ops.backend.max_pool3_s2_p1(&xs)?;
        for (b, layers) in self.blocks.iter().enumerate() {
            for layer in layers {
                // The layer's new features, dropped out (mc_dropout, ensemble), joined on.
                let new = layer.forward(&xs, &self.drop, mode, noise)?;
                xs = self.drop.cat_dropout(&xs, &new, mode, noise)?;
            }
            if let Some(t) = self.transitions.get(b) {
                let ys = t.norm.forward(&xs, mode, true)?;
                xs = self
                    .ops
                    .backend
                    .avg_pool2(&t.conv.forward(&ys, mode, noise)?)?;
            }
        }
        let xs = self.norm5.forward(&xs, mode, true)?;
        let xs = xs.flatten_from(2)?.mean(D::Minus1)?;
        self.classifier.forward(&xs, mode, noise)
    }

    /// Every conv and linear weight, in forward order.
    pub(crate) fn weights(&self) -> Vec<&Weight> {
        let mut out = vec![self.conv0.param()];
        for (b, layers) in self.blocks.iter().enumerate() {
            for layer in layers {
                out.extend([layer.conv1.param(), layer.conv2.param()]);
            }
            if let Some(t) = self.transitions.get(b) {
                out.push(t.conv.param());
            }
        }
        out.push(self.classifier.param());
        out
    }

    /// One member's forward FLOPs per `size` × `size` image (see [`crate::Model::forward_flops`]).
    pub(crate) fn flops(&self, size: usize) -> u64 {
        let mut total = self.conv0.flops(size);
        // The stem's 3x3 / stride 2 / pad 1 max pool.
        let mut side = (self.conv0.out_side(size) - 1) / 2 + 1;
        for (b, layers) in self.blocks.iter().enumerate() {
            for layer in layers {
                total += layer.conv1.flops(side) + layer.conv2.flops(side);
            }
            if let Some(t) = self.transitions.get(b) {
                total += t.conv.flops(side);
                side /= 2;
            }
        }
        total + self.classifier.flops()
    }
}
