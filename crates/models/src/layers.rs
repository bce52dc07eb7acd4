//! Building blocks shared by the three architectures.
//!
//! Every layer carries an [`Ops`]: the [`Backend`] its ops run on, the number of
//! packed members (see `ferbayes_kernels::members`) and the kind of its conv and linear
//! weights ([`WeightKind`]). With G members a layer's parameters stack the members' own
//! tensors on dim 0 (a conv weight (G·Cout, Cin, k, k), a BatchNorm vector (G·C)) and its
//! activations are G blocks of samples; with one member it is the plain layer. A
//! BatchEnsemble's members share each conv / linear weight (one network's shape) and stack
//! only their fast weights, biases and BatchNorms.

use candle_core::{ModuleT, Tensor, Var};
use candle_nn::{BatchNorm, BatchNormConfig, Init, VarBuilder};
use ferbayes_kernels::Backend;
use ferbayes_kernels::members::per_member;

use crate::config::{Method, Mode};
use crate::error::{Error, Result};
use crate::noise::Noise;
use crate::weights::{self, Weight, WeightKind};

/// BatchNorm epsilon and momentum (PyTorch defaults).
pub(crate) const BN_EPS: f64 = 1e-5;
pub(crate) const BN_MOMENTUM: f64 = 0.1;

/// How a layer runs: on which kernels, for how many packed members, with which kind of
/// conv / linear weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Ops {
    pub backend: Backend,
    pub members: usize,
    pub weights: WeightKind,
}

impl Ops {
    /// One network on `backend`.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn single(backend: Backend) -> Self {
        Ops {
            backend,
            members: 1,
            weights: WeightKind::Point,
        }
    }

    /// `n` channels (or features) per member, as the packed parameter's length.
    fn packed(self, n: usize) -> usize {
        self.members * n
    }
}

/// A BatchNorm layer (`weight`, `bias`, `running_mean`, `running_var`) over `n`
/// channels per member. Works on (B, C, H, W) and (B, C) input alike.
pub(crate) fn batch_norm(n: usize, ops: Ops, vb: VarBuilder) -> Result<Norm> {
    let cfg = BatchNormConfig {
        eps: BN_EPS,
        remove_mean: true,
        affine: true,
        momentum: BN_MOMENTUM,
    };
    Ok(Norm {
        layer: candle_nn::batch_norm(ops.packed(n), cfg, vb)?,
        ops,
    })
}

/// A BatchNorm layer and how it runs.
#[derive(Clone, Debug)]
pub(crate) struct Norm {
    layer: BatchNorm,
    ops: Ops,
}

impl Norm {
    /// The BatchNorm, then a ReLU when `relu` (see [`bn`]).
    pub(crate) fn forward(&self, xs: &Tensor, mode: Mode, relu: bool) -> Result<Tensor> {
        bn_then(&self.layer, xs, mode, relu, false, self.ops)
    }

    /// The BatchNorm, a ReLU when `relu`, then a 2x2 max pool (see [`bn_pool`]).
    pub(crate) fn forward_pool(&self, xs: &Tensor, mode: Mode, relu: bool) -> Result<Tensor> {
        bn_then(&self.layer, xs, mode, relu, true, self.ops)
    }
}

/// Applies a BatchNorm, then a ReLU when `relu`: batch statistics (and
/// running-stat update) iff `mode.batchnorm_train`.
/// Runs on the fused kernels (BatchNorm and ReLU in one pass) where `backend` has them
/// for these tensors and the layer has affine weights.
#[cfg(test)]
pub(crate) fn bn(
    layer: &BatchNorm,
    xs: &Tensor,
    mode: Mode,
    relu: bool,
    backend: Backend,
) -> Result<Tensor> {
    bn_then(layer, xs, mode, relu, false, Ops::single(backend))
}

/// [`bn`], then a 2x2 / stride-2 max pool. In training on the fused kernels the
/// three run as one op (see `ferbayes_kernels::batch_norm_train_pool`), with the
/// same values and gradients.
#[cfg(test)]
pub(crate) fn bn_pool(
    layer: &BatchNorm,
    xs: &Tensor,
    mode: Mode,
    relu: bool,
    backend: Backend,
) -> Result<Tensor> {
    bn_then(layer, xs, mode, relu, true, Ops::single(backend))
}

/// A BatchNorm layer's affine parameters and running statistics (packed: every member's, stacked).
#[derive(Clone, Copy)]
struct BnParams<'a> {
    g: &'a Tensor,
    b: &'a Tensor,
    rm: &'a Tensor,
    rv: &'a Tensor,
}

fn bn_then(
    layer: &BatchNorm,
    xs: &Tensor,
    mode: Mode,
    relu: bool,
    pool: bool,
    ops: Ops,
) -> Result<Tensor> {
    let backend = ops.backend;
    let pooled = |ys: Tensor| -> Result<Tensor> {
        if pool {
            Ok(backend.max_pool2(&ys)?)
        } else {
            Ok(ys)
        }
    };
    let (rm, rv) = (layer.running_mean(), layer.running_var());
    let affine = layer.weight_and_bias();
    if let Some((g, b)) = affine
        && backend.device_ops(&[xs, g, b, rm, rv])
    {
        let ys = ferbayes_kernels::device::batch_norm(
            xs,
            g,
            b,
            rm,
            rv,
            (layer.eps(), layer.momentum()),
            relu,
            mode.batchnorm_train,
            ops.members,
        )?;
        return pooled(ys);
    }
    if let Some((g, b)) = affine
        && backend.fast(&[xs, g, b, rm, rv])
    {
        let params = BnParams { g, b, rm, rv };
        if mode.batchnorm_train {
            // The training kernels fuse the pool.
            return bn_train_fast(layer, params, xs, relu, pool, ops.members);
        }
        // A per-channel affine map of the running statistics, member by member.
        let ys = per_member(ops.members, &[xs], &[g, b, rm, rv], None, |t, p, _| {
            ferbayes_kernels::batch_norm_eval(t[0], p[0], p[1], p[2], p[3], layer.eps(), relu)
        })?;
        return pooled(ys);
    }
    if ops.members > 1 {
        let (g, b) = affine.ok_or_else(|| Error::Config("BatchNorm without affine".into()))?;
        let params = BnParams { g, b, rm, rv };
        return pooled(bn_packed_reference(
            layer,
            params,
            xs,
            mode,
            relu,
            ops.members,
        )?);
    }
    let ys = layer.forward_t(xs, mode.batchnorm_train)?;
    pooled(if relu { ys.relu()? } else { ys })
}

/// Training BatchNorm on the kernels (with the pool fused when `pool`), then the running
/// statistics updated exactly as candle's `BatchNorm::forward_train` (unbiased batch variance),
/// elementwise over every member's channels.
fn bn_train_fast(
    layer: &BatchNorm,
    params: BnParams<'_>,
    xs: &Tensor,
    relu: bool,
    pool: bool,
    members: usize,
) -> Result<Tensor> {
    use ferbayes_kernels as k;
    let BnParams { g, b, rm, rv } = params;
    let (ys, stats) = if pool {
        k::batch_norm_train_pool(xs, g, b, layer.eps(), relu, members)?
    } else {
        k::batch_norm_train(xs, g, b, layer.eps(), relu, members)?
    };
    // candle-nn's BatchNorm holds its running stats as variables (whatever the VarBuilder), and
    // `Var::from_tensor` on a variable shares its storage, so `set` updates the layer's own
    // buffers.
    let c = stats.mean.len();
    let m = layer.momentum();
    let n = stats.count as f64;
    let mean = Tensor::from_vec(stats.mean, c, xs.device())?;
    let var = Tensor::from_vec(stats.var, c, xs.device())?;
    let new_rm = ((rm * (1.0 - m))? + (mean * m)?)?;
    let new_rv = ((rv * (1.0 - m))? + (var * (m * n / (n - 1.0)))?)?;
    Var::from_tensor(rm)?.set(&new_rm)?;
    Var::from_tensor(rv)?.set(&new_rv)?;
    Ok(ys)
}

/// candle's BatchNorm of each member's own parameters and running statistics (copies, updated in
/// training and then written back into the packed ones): the reference ops' packed BatchNorm.
fn bn_packed_reference(
    layer: &BatchNorm,
    params: BnParams<'_>,
    xs: &Tensor,
    mode: Mode,
    relu: bool,
    members: usize,
) -> Result<Tensor> {
    let BnParams { g, b, rm, rv } = params;
    let c = rm.dim(0)? / members;
    let stats = std::cell::RefCell::new(Vec::with_capacity(members));
    let ys = per_member(members, &[xs], &[g, b, rm, rv], None, |t, p, _| {
        let one = BatchNorm::new(
            c,
            p[2].copy()?,
            p[3].copy()?,
            p[0].clone(),
            p[1].clone(),
            layer.eps(),
        )?;
        let ys = one.forward_t(t[0], mode.batchnorm_train)?;
        stats
            .borrow_mut()
            .push((one.running_mean().clone(), one.running_var().clone()));
        if relu { ys.relu() } else { Ok(ys) }
    })?;
    if mode.batchnorm_train {
        let (means, vars): (Vec<Tensor>, Vec<Tensor>) = stats.into_inner().into_iter().unzip();
        Var::from_tensor(rm)?.set(&Tensor::cat(&means, 0)?)?;
        Var::from_tensor(rv)?.set(&Tensor::cat(&vars, 0)?)?;
    }
    Ok(ys)
}

/// 2-D convolution: a point weight (which DropConnect can swap for a masked copy), a
/// Flipout-sampled Gaussian, or a BatchEnsemble's shared weight (see [`Weight`]).
#[derive(Clone, Debug)]
pub(crate) struct Conv2d {
    weight: Weight,
    bias: Option<Tensor>,
    in_c: usize,
    out_c: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    ops: Ops,
}

impl Conv2d {
    /// A conv of one network's `weight` (out, in, k, k) and, when `bias`, `bias` (out), per
    /// member; the weight's variables by `ops.weights` (see [`Weight::new`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        in_c: usize,
        out_c: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        ops: Ops,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = Weight::new(
            &[out_c, in_c, kernel, kernel],
            ops.weights,
            ops.members,
            &vb,
        )?;
        let bias = if bias {
            Some(vb.get_with_hints(ops.packed(out_c), "bias", Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            in_c,
            out_c,
            kernel,
            stride,
            padding,
            ops,
        })
    }

    /// The layer's weight (for the KL).
    pub(crate) fn param(&self) -> &Weight {
        &self.weight
    }

    /// The point weight DropConnect masks; `None` for Flipout and BatchEnsemble weights.
    pub(crate) fn point_weight(&self) -> Option<&Tensor> {
        match &self.weight {
            Weight::Point(w) => Some(w),
            Weight::Flipout { .. } | Weight::Batch { .. } => None,
        }
    }

    /// The convolution (see [`Conv2d::forward_t`]).
    pub(crate) fn forward(&self, xs: &Tensor, mode: Mode, noise: &mut [Noise]) -> Result<Tensor> {
        self.forward_t(xs, false, mode, noise)
    }

    /// `relu(conv(xs))`, fused into the convolution's own pass on the fast path for point
    /// weights.
    pub(crate) fn forward_relu(
        &self,
        xs: &Tensor,
        mode: Mode,
        noise: &mut [Noise],
    ) -> Result<Tensor> {
        self.forward_t(xs, true, mode, noise)
    }

    /// The convolution by the weight's kind, then a ReLU when `relu`:
    /// point: `conv(x, W) + b`; Flipout: `conv(x, μ) + b`, plus, when `mode.stochastic`,
    /// `conv(x ∘ s_in, σ ∘ ε) ∘ s_out` (ε, then s_in, then s_out drawn from `noise[0]`);
    /// BatchEnsemble: `(conv(x ∘ r_g, W) ∘ s_g) + b_g` on member g's rows.
    fn forward_t(
        &self,
        xs: &Tensor,
        relu: bool,
        mode: Mode,
        noise: &mut [Noise],
    ) -> Result<Tensor> {
        let backend = self.ops.backend;
        let conv = |xs: &Tensor, w: &Tensor, bias: Option<&Tensor>| {
            backend.conv2d(xs, w, bias, self.padding, self.stride, false, 1)
        };
        let ys = match &self.weight {
            Weight::Point(w) => return self.forward_with_weight(xs, w, relu),
            Weight::Flipout { mean, rho } => {
                let ys = conv(xs, mean, self.bias.as_ref())?;
                if mode.stochastic {
                    let noise = single_stream(noise)?;
                    let w = weights::perturbation(rho, noise)?;
                    let rows = xs.dim(0)?;
                    let s_in = weights::signs(noise, rows, self.in_c, xs)?;
                    let s_out = weights::signs(noise, rows, self.out_c, xs)?;
                    let flip = conv(&xs.broadcast_mul(&s_in)?, &w, None)?;
                    (ys + flip.broadcast_mul(&s_out)?)?
                } else {
                    ys
                }
            }
            Weight::Batch {
                shared,
                fast_in,
                fast_out,
            } => {
                let r = weights::per_row(fast_in, xs)?;
                let ys = conv(&xs.broadcast_mul(&r)?, shared, None)?;
                let ys = ys.broadcast_mul(&weights::per_row(fast_out, &ys)?)?;
                match &self.bias {
                    Some(b) => {
                        let b = b.reshape((self.ops.members, self.out_c))?;
                        ys.broadcast_add(&weights::per_row(&b, &ys)?)?
                    }
                    None => ys,
                }
            }
        };
        Ok(if relu { ys.relu()? } else { ys })
    }

    /// The convolution with `weight` in place of the layer's own point weight, then a ReLU
    /// when `relu`.
    pub(crate) fn forward_with_weight(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        relu: bool,
    ) -> Result<Tensor> {
        Ok(self.ops.backend.conv2d(
            xs,
            weight,
            self.bias.as_ref(),
            self.padding,
            self.stride,
            relu,
            self.ops.members,
        )?)
    }

    /// The side of the output maps for `side` × `side` input maps.
    pub(crate) fn out_side(&self, side: usize) -> usize {
        (side + 2 * self.padding).saturating_sub(self.kernel) / self.stride + 1
    }

    /// One member's forward FLOPs for one image of `side` × `side` maps: 2 × the
    /// multiply-adds of its product(s) (two for Flipout), biases and the elementwise
    /// products of signs and fast weights not counted.
    pub(crate) fn flops(&self, side: usize) -> u64 {
        let out = self.out_side(side) as u64;
        let macs = (self.out_c * self.in_c * self.kernel * self.kernel) as u64 * out * out;
        2 * macs * self.weight.products()
    }
}

/// Fully connected layer `y = x W^T + b`: a point weight (which DropConnect can swap for a
/// masked copy), a Flipout-sampled Gaussian, or a BatchEnsemble's shared weight.
#[derive(Clone, Debug)]
pub(crate) struct Linear {
    weight: Weight,
    bias: Tensor,
    in_f: usize,
    out_f: usize,
    ops: Ops,
}

impl Linear {
    /// One network's `weight` (out, in) and `bias` (out) per member; the weight's variables
    /// by `ops.weights` (see [`Weight::new`]).
    pub(crate) fn new(in_f: usize, out_f: usize, ops: Ops, vb: VarBuilder) -> Result<Self> {
        let weight = Weight::new(&[out_f, in_f], ops.weights, ops.members, &vb)?;
        let bias = vb.get_with_hints(ops.packed(out_f), "bias", Init::Const(0.0))?;
        Ok(Linear {
            weight,
            bias,
            in_f,
            out_f,
            ops,
        })
    }

    /// The layer's weight (for the KL).
    pub(crate) fn param(&self) -> &Weight {
        &self.weight
    }

    /// The point weight DropConnect masks; `None` for Flipout and BatchEnsemble weights.
    pub(crate) fn point_weight(&self) -> Option<&Tensor> {
        match &self.weight {
            Weight::Point(w) => Some(w),
            Weight::Flipout { .. } | Weight::Batch { .. } => None,
        }
    }

    /// `xs · weightᵀ + bias` with `weight` in place of the layer's own point weight.
    pub(crate) fn forward_with_weight(&self, xs: &Tensor, weight: &Tensor) -> Result<Tensor> {
        Ok(self
            .ops
            .backend
            .linear(xs, weight, &self.bias, self.ops.members)?)
    }

    /// The layer by its weight's kind: point: `x Wᵀ + b`; Flipout: `x μᵀ + b`, plus, when
    /// `mode.stochastic`, `((x ∘ s_in)(σ ∘ ε)ᵀ) ∘ s_out` (ε, then s_in, then s_out drawn from
    /// `noise[0]`); BatchEnsemble: `((x ∘ r_g) Wᵀ) ∘ s_g + b_g` on member g's rows.
    pub(crate) fn forward(&self, xs: &Tensor, mode: Mode, noise: &mut [Noise]) -> Result<Tensor> {
        let backend = self.ops.backend;
        match &self.weight {
            Weight::Point(w) => self.forward_with_weight(xs, w),
            Weight::Flipout { mean, rho } => {
                let ys = backend.linear(xs, mean, &self.bias, 1)?;
                if !mode.stochastic {
                    return Ok(ys);
                }
                let noise = single_stream(noise)?;
                let w = weights::perturbation(rho, noise)?;
                let rows = xs.dim(0)?;
                let s_in = weights::signs(noise, rows, self.in_f, xs)?;
                let s_out = weights::signs(noise, rows, self.out_f, xs)?;
                let flip = backend.linear(&xs.mul(&s_in)?, &w, &self.zero_bias()?, 1)?;
                Ok((ys + flip.mul(&s_out)?)?)
            }
            Weight::Batch {
                shared,
                fast_in,
                fast_out,
            } => {
                let xs = xs.mul(&weights::per_row(fast_in, xs)?)?;
                let ys = backend.linear(&xs, shared, &self.zero_bias()?, 1)?;
                let ys = ys.mul(&weights::per_row(fast_out, &ys)?)?;
                let b = self.bias.reshape((self.ops.members, self.out_f))?;
                Ok(ys.add(&weights::per_row(&b, &ys)?)?)
            }
        }
    }

    fn zero_bias(&self) -> Result<Tensor> {
        Ok(Tensor::zeros(
            self.out_f,
            self.bias.dtype(),
            self.bias.device(),
        )?)
    }

    /// One member's forward FLOPs for one input row: 2 × the multiply-adds of its product(s)
    /// (two for Flipout), biases and elementwise products not counted.
    pub(crate) fn flops(&self) -> u64 {
        2 * (self.in_f * self.out_f) as u64 * self.weight.products()
    }
}

/// The one noise stream of a single (unpacked) network: Flipout layers sample only there.
fn single_stream(noise: &mut [Noise]) -> Result<&mut Noise> {
    match noise {
        [one] => Ok(one),
        _ => Err(Error::Config(format!(
            "a variational network samples from one noise stream, got {}",
            noise.len()
        ))),
    }
}

/// What happens at one of the architecture's dropout positions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stochastic {
    /// Drop rate p.
    p: f64,
    /// True for MC-DropConnect (mask the next layer's weight), false for dropout on
    /// the activations (mc_dropout and ensemble).
    drop_connect: bool,
    ops: Ops,
}

impl Stochastic {
    /// The dropout positions of `method` at rate `p`: DropConnect for mc_dropconnect, none for
    /// variational (its weights are its stochastic layers), dropout on the activations else.
    pub(crate) fn new(method: Method, p: f64, ops: Ops) -> Self {
        Stochastic {
            p: if method == Method::Variational {
                0.0
            } else {
                p
            },
            drop_connect: method == Method::McDropConnect,
            ops,
        }
    }

    fn active(&self, mode: Mode) -> bool {
        mode.stochastic && self.p > 0.0
    }

    /// The elements of one member's block of `t`, once `noise` holds one stream per member.
    fn member_block(&self, t: &Tensor, noise: &[Noise]) -> Result<usize> {
        let members = self.ops.members;
        if noise.len() != members {
            return Err(Error::Config(format!(
                "{} noise streams for {members} packed members",
                noise.len()
            )));
        }
        Ok(t.elem_count() / members)
    }

    /// A mask shaped like `t`: each member's block drawn from that member's own
    /// stream (`noise[g]`), as the member alone would draw it, the blocks stacked.
    fn mask(&self, t: &Tensor, noise: &mut [Noise]) -> Result<Tensor> {
        let n = self.member_block(t, noise)?;
        let mut values = Vec::with_capacity(t.elem_count());
        for stream in noise {
            values.extend(stream.mask_values(n, 1.0 - self.p)?);
        }
        Ok(Tensor::from_vec(values, t.dims(), t.device())?.to_dtype(t.dtype())?)
    }

    /// `t` times a mask shaped like it (see [`Stochastic::mask`]); on the device ops the mask
    /// is drawn inside the op, from the same stream positions, so the product is the same.
    fn masked(&self, t: &Tensor, noise: &mut [Noise]) -> Result<Tensor> {
        let backend = self.ops.backend;
        if backend.device_ops(&[t]) {
            let streams = self.streams(t, noise)?;
            return Ok(ferbayes_kernels::device::dropout(
                t,
                &streams,
                1.0 - self.p,
            )?);
        }
        let mask = self.mask(t, noise)?;
        Ok(backend.mul_mask(t, &mask)?)
    }

    /// `cat(xs, dropout(new))` on the channel dim (DenseNet's dense layer), as one op on the
    /// device ops (the same mask, drawn in the op).
    pub(crate) fn cat_dropout(
        &self,
        xs: &Tensor,
        new: &Tensor,
        mode: Mode,
        noise: &mut [Noise],
    ) -> Result<Tensor> {
        let backend = self.ops.backend;
        if !self.drop_connect && self.active(mode) && backend.device_ops(&[xs, new]) {
            let streams = self.streams(new, noise)?;
            return Ok(ferbayes_kernels::device::cat_dropout(
                xs,
                new,
                &streams,
                1.0 - self.p,
            )?);
        }
        let new = self.dropout(new, mode, noise)?;
        Ok(backend.cat_channels(xs, &new)?)
    }

    /// Each member's stream position for a mask shaped like `t` (see [`Noise::reserve`]).
    fn streams(
        &self,
        t: &Tensor,
        noise: &mut [Noise],
    ) -> Result<Vec<ferbayes_kernels::device::MaskStream>> {
        let n = self.member_block(t, noise)?;
        noise
            .iter_mut()
            .map(|stream| stream.reserve(n, 1.0 - self.p))
            .collect()
    }

    /// Inverted dropout on activations (one independent mask entry per element, so
    /// per sample); identity for DropConnect or when not sampling.
    pub(crate) fn dropout(&self, xs: &Tensor, mode: Mode, noise: &mut [Noise]) -> Result<Tensor> {
        if self.drop_connect || !self.active(mode) {
            return Ok(xs.clone());
        }
        self.masked(xs, noise)
    }

    /// The weight to use: for DropConnect while sampling, `w * mask` with one mask
    /// per call and member (shared by the member's whole batch), kept entries scaled
    /// by 1/(1-p); otherwise `w` itself.
    pub(crate) fn weight(&self, w: &Tensor, mode: Mode, noise: &mut [Noise]) -> Result<Tensor> {
        if !self.drop_connect || !self.active(mode) {
            return Ok(w.clone());
        }
        self.masked(w, noise)
    }

    /// Dropout position followed by a linear layer: dropout on `xs` (mc_dropout,
    /// ensemble, batch_ensemble, swag, laplace) or DropConnect on the layer's weight
    /// (mc_dropconnect); a Flipout layer samples its own weight.
    pub(crate) fn linear(
        &self,
        layer: &Linear,
        xs: &Tensor,
        mode: Mode,
        noise: &mut [Noise],
    ) -> Result<Tensor> {
        let xs = self.dropout(xs, mode, noise)?;
        match layer.point_weight() {
            Some(w) => {
                let w = self.weight(w, mode, noise)?;
                layer.forward_with_weight(&xs, &w)
            }
            None => layer.forward(&xs, mode, noise),
        }
    }

    /// A convolution after a DropConnect position (DenseNet's `conv2`): its weight masked
    /// for mc_dropconnect, else the layer as it is.
    pub(crate) fn conv(
        &self,
        layer: &Conv2d,
        xs: &Tensor,
        mode: Mode,
        noise: &mut [Noise],
    ) -> Result<Tensor> {
        match layer.point_weight() {
            Some(w) => {
                let w = self.weight(w, mode, noise)?;
                layer.forward_with_weight(xs, &w, false)
            }
            None => layer.forward(xs, mode, noise),
        }
    }
}
