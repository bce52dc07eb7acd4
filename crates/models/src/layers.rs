//! Building blocks shared by the three architectures.

use candle_core::{ModuleT, Tensor, Var};
use candle_nn::{BatchNorm, BatchNormConfig, Init, VarBuilder};

use crate::config::{Method, Mode};
use crate::error::Result;
use crate::fast;
use crate::noise::Noise;

/// BatchNorm epsilon and momentum (PyTorch defaults).
pub(crate) const BN_EPS: f64 = 1e-5;
pub(crate) const BN_MOMENTUM: f64 = 0.1;

/// A BatchNorm layer (`weight`, `bias`, `running_mean`, `running_var`) over `n`
/// channels. Works on (B, C, H, W) and (B, C) input alike.
pub(crate) fn batch_norm(n: usize, vb: VarBuilder) -> Result<BatchNorm> {
    let cfg = BatchNormConfig {
        eps: BN_EPS,
        remove_mean: true,
        affine: true,
        momentum: BN_MOMENTUM,
    };
    Ok(candle_nn::batch_norm(n, cfg, vb)?)
}

/// Applies a BatchNorm, then a ReLU when `relu`: batch statistics (and
/// running-stat update) iff `mode.batchnorm_train`.
/// Runs on the fused kernels of [`crate::fast`] (BatchNorm and ReLU in one pass)
/// unless they are switched off or the layer has no affine weights.
pub(crate) fn bn(layer: &BatchNorm, xs: &Tensor, mode: Mode, relu: bool) -> Result<Tensor> {
    bn_then(layer, xs, mode, relu, false)
}

/// [`bn`], then a 2x2 / stride-2 max pool (`ops::max_pool2`). In training on
/// the fast kernels the three run as one op (see
/// `fast::batch_norm_train_pool`), with the same values and gradients.
pub(crate) fn bn_pool(layer: &BatchNorm, xs: &Tensor, mode: Mode, relu: bool) -> Result<Tensor> {
    bn_then(layer, xs, mode, relu, true)
}

fn bn_then(layer: &BatchNorm, xs: &Tensor, mode: Mode, relu: bool, pool: bool) -> Result<Tensor> {
    let (rm, rv) = (layer.running_mean(), layer.running_var());
    let pooled = |ys: Tensor| {
        if pool {
            crate::ops::max_pool2(&ys)
        } else {
            Ok(ys)
        }
    };
    if let Some((g, b)) = layer.weight_and_bias()
        && fast::enabled()
        && fast::applies(&[xs, g, b, rm, rv])
    {
        if !mode.batchnorm_train {
            return pooled(fast::batch_norm_eval(xs, g, b, rm, rv, layer.eps(), relu)?);
        }
        let (ys, stats) = if pool {
            fast::batch_norm_train_pool(xs, g, b, layer.eps(), relu)?
        } else {
            fast::batch_norm_train(xs, g, b, layer.eps(), relu)?
        };
        // Running-stat update exactly as candle's `BatchNorm::forward_train`
        // (unbiased batch variance). candle-nn's BatchNorm holds its running stats
        // as variables (whatever the VarBuilder), and `Var::from_tensor` on a
        // variable shares its storage, so `set` updates the layer's own buffers.
        let c = stats.mean.len();
        let m = layer.momentum();
        let n = stats.count as f64;
        let mean = Tensor::from_vec(stats.mean, c, xs.device())?;
        let var = Tensor::from_vec(stats.var, c, xs.device())?;
        let new_rm = ((rm * (1.0 - m))? + (mean * m)?)?;
        let new_rv = ((rv * (1.0 - m))? + (var * (m * n / (n - 1.0)))?)?;
        Var::from_tensor(rm)?.set(&new_rm)?;
        Var::from_tensor(rv)?.set(&new_rv)?;
        return Ok(ys);
    }
    let ys = layer.forward_t(xs, mode.batchnorm_train)?;
    pooled(if relu { ys.relu()? } else { ys })
}

/// 2-D convolution whose weight can be swapped for a masked copy (DropConnect).
#[derive(Clone, Debug)]
pub(crate) struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// `weight` (out, in, k, k) and, when `bias`, `bias` (out).
    pub(crate) fn new(
        in_c: usize,
        out_c: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get_with_hints(
            (out_c, in_c, kernel, kernel),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let bias = if bias {
            Some(vb.get_with_hints(out_c, "bias", Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            stride,
            padding,
        })
    }

    pub(crate) fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_with_weight(xs, &self.weight, false)
    }

    /// `relu(conv(xs))`, fused into the convolution's own pass on the fast path.
    pub(crate) fn forward_relu(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_with_weight(xs, &self.weight, true)
    }

    /// The convolution with `weight` in place of the layer's own, then a ReLU when `relu`.
    pub(crate) fn forward_with_weight(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        relu: bool,
    ) -> Result<Tensor> {
        let fast_bias = self.bias.as_ref().is_none_or(|b| fast::applies(&[b]));
        if fast::enabled() && fast::applies(&[xs, weight]) && fast_bias {
            let bias = self.bias.as_ref();
            return Ok(fast::conv2d(
                xs,
                weight,
                bias,
                self.padding,
                self.stride,
                relu,
            )?);
        }
        let ys = crate::ops::conv2d(xs, weight, self.padding, self.stride)?;
        let ys = match &self.bias {
            Some(b) => ys.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
            None => ys,
        };
        Ok(if relu { ys.relu()? } else { ys })
    }
}

/// Fully connected layer `y = x W^T + b` whose weight can be swapped for a masked copy.
#[derive(Clone, Debug)]
pub(crate) struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// `weight` (out, in) and `bias` (out).
    pub(crate) fn new(in_f: usize, out_f: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(
            (out_f, in_f),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let bias = vb.get_with_hints(out_f, "bias", Init::Const(0.0))?;
        Ok(Linear { weight, bias })
    }

    pub(crate) fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub(crate) fn forward_with_weight(&self, xs: &Tensor, weight: &Tensor) -> Result<Tensor> {
        if fast::enabled() && fast::applies(&[xs, weight, &self.bias]) && xs.rank() == 2 {
            // Same bits as the line below, with the gemm split over the threads.
            return Ok(fast::linear(xs, weight, &self.bias)?);
        }
        Ok(xs.matmul(&weight.t()?)?.broadcast_add(&self.bias)?)
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_with_weight(xs, &self.weight)
    }
}

/// `xs * mask` on the fused kernel where it applies (same bits as candle's `mul`).
fn masked(xs: &Tensor, mask: &Tensor) -> Result<Tensor> {
    if fast::enabled() && fast::applies(&[xs, mask]) {
        return Ok(fast::mul_mask(xs, mask)?);
    }
    Ok(xs.mul(mask)?)
}

/// What happens at one of the architecture's dropout positions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stochastic {
    /// Drop rate p.
    p: f64,
    /// True for MC-DropConnect (mask the next layer's weight), false for dropout on
    /// the activations (mc_dropout and ensemble).
    drop_connect: bool,
}

impl Stochastic {
    pub(crate) fn new(method: Method, p: f64) -> Self {
        Stochastic {
            p,
            drop_connect: method == Method::McDropConnect,
        }
    }

    fn active(&self, mode: Mode) -> bool {
        mode.stochastic && self.p > 0.0
    }

    /// Inverted dropout on activations (one independent mask entry per element, so
    /// per sample); identity for DropConnect or when not sampling.
    pub(crate) fn dropout(&self, xs: &Tensor, mode: Mode, noise: &mut Noise) -> Result<Tensor> {
        if self.drop_connect || !self.active(mode) {
            return Ok(xs.clone());
        }
        let mask = noise
            .mask(xs.dims(), 1.0 - self.p, xs.device())?
            .to_dtype(xs.dtype())?;
        masked(xs, &mask)
    }

    /// The weight to use: for DropConnect while sampling, `w * mask` with one mask
    /// per call (shared by the whole batch), kept entries scaled by 1/(1-p);
    /// otherwise `w` itself.
    pub(crate) fn weight(&self, w: &Tensor, mode: Mode, noise: &mut Noise) -> Result<Tensor> {
        if !self.drop_connect || !self.active(mode) {
            return Ok(w.clone());
        }
        let mask = noise
            .mask(w.dims(), 1.0 - self.p, w.device())?
            .to_dtype(w.dtype())?;
        masked(w, &mask)
    }

    /// Dropout position followed by a linear layer: dropout on `xs` (mc_dropout,
    /// ensemble) or DropConnect on the layer's weight (mc_dropconnect).
    pub(crate) fn linear(
        &self,
        layer: &Linear,
        xs: &Tensor,
        mode: Mode,
        noise: &mut Noise,
    ) -> Result<Tensor> {
        let xs = self.dropout(xs, mode, noise)?;
        let w = self.weight(layer.weight(), mode, noise)?;
        layer.forward_with_weight(&xs, &w)
    }
}
