//! Facial-emotion classifiers in [candle]: AlexNet-BN, VGG-16 and DenseNet-121,
//! each usable with MC-Dropout, MC-DropConnect or as a Deep-Ensemble member
//! (Matin & Valdenegro-Toro, "Hey Human, If your Facial Emotions are Uncertain,
//! You Should Use Bayesian Neural Networks!"), and with the methods ferbayes adds:
//! variational weights sampled with Flipout, BatchEnsemble, and the point network that
//! SWAG and last-layer Laplace sample around.
//!
//! Input: f32 tensor (B, 1, S, S), values in [0, 1] (see [`preprocess`]).
//! Output: (B, 8) logits, one per FER+ emotion class.
//!
//! # Layer tables
//!
//! `c(x) = max(1, round(x * width))` is a channel count scaled by
//! [`ModelConfig::width`]. Weight names (as stored in safetensors) are given in
//! brackets; every conv / linear has `.weight` (and `.bias` where stated), every
//! BatchNorm has `.weight`, `.bias`, `.running_mean`, `.running_var`. BatchNorm
//! layers are named `bn*` or `norm*`; [`init_seeded`] and [`trainable_vars`] rely
//! on that. BatchNorm: eps 1e-5, momentum 0.1 (PyTorch defaults). "drop" marks a
//! dropout position (see *Methods*).
//!
//! The tables name one point network's tensors. By method, every conv / linear layer `L`
//! holds instead ([`VarRole`] says which is which):
//!
//! | method | conv / linear `L` | biases, BatchNorm |
//! |--------|-------------------|-------------------|
//! | mc_dropout, mc_dropconnect, ensemble, swag, laplace | `L.weight` (out, in, k, k) / (out, in); G packed members stacked on dim 0 | as the tables; G members stacked on dim 0 |
//! | variational | `L.weight` = the mean μ (the point network's shape, so its weights load as the means: [`load_point_weights`]), `L.weight_rho` = ρ of the same shape (σ = softplus(ρ)) | point estimates, as the tables |
//! | batch_ensemble (M members) | `L.weight` shared (the point network's shape, not stacked), `L.fast_in` (M, in) = the r_g, `L.fast_out` (M, out) = the s_g | `L.bias` (M·out) and every BatchNorm (M·C) per member, stacked |
//!
//! ## alexnet (BatchNorm after every conv and hidden FC; p = 0.5)
//!
//! | # | layer | names |
//! |---|-------|-------|
//! | 1 | conv c(64) 5x5 pad 2 → BN → ReLU → maxpool 2 | `features.conv1`, `features.bn1` |
//! | 2 | conv c(128) 5x5 pad 2 → BN → ReLU → maxpool 2 | `features.conv2`, `features.bn2` |
//! | 3 | conv c(256) 3x3 pad 1 → BN → ReLU | `features.conv3`, `features.bn3` |
//! | 4 | conv c(256) 3x3 pad 1 → BN → ReLU | `features.conv4`, `features.bn4` |
//! | 5 | conv c(128) 3x3 pad 1 → BN → ReLU → maxpool 2 | `features.conv5`, `features.bn5` |
//! | 6 | flatten (c(128)·⌊S/8⌋², e.g. c(128)·8·8 at S = 64) → drop → fc 256 → BN1d → ReLU | `classifier.fc1`, `classifier.bn1` |
//! | 7 | drop → fc 256 → BN1d → ReLU | `classifier.fc2`, `classifier.bn2` |
//! | 8 | fc 8 | `classifier.fc3` |
//!
//! Convs and FCs have biases. The hidden FC width (256) is not scaled by `width`.
//! Minimum S: 8.
//!
//! ## vgg16 (no BatchNorm; p = 0.2)
//!
//! 13 convs 3x3 pad 1 with bias, each followed by ReLU; M = maxpool 2.
//!
//! | block | layers | names |
//! |-------|--------|-------|
//! | 1 | c(64), c(64), M | `features.conv1_1`, `features.conv1_2` |
//! | 2 | c(128), c(128), M | `features.conv2_1`, `features.conv2_2` |
//! | 3 | c(256) ×3, M | `features.conv3_1` … `features.conv3_3` |
//! | 4 | c(512) ×3, M | `features.conv4_1` … `features.conv4_3` |
//! | 5 | c(512) ×3, M | `features.conv5_1` … `features.conv5_3` |
//! | head | flatten (c(512)·⌊S/32⌋²: 1x1 map at S = 48, 2x2 at S = 64) → drop → fc 256 → ReLU → drop → fc 256 → ReLU → fc 8 | `classifier.fc1`, `classifier.fc2`, `classifier.fc3` |
//!
//! Minimum S: 32.
//!
//! ## densenet121 (p = 0.2)
//!
//! Growth k = c(32), blocks of 6 / 12 / 24 / 16 dense layers, bottleneck 4k,
//! compression 0.5. Convs have no bias (as torchvision).
//!
//! | part | layers | names |
//! |------|--------|-------|
//! | stem | conv c(64) 7x7 stride 2 pad 3 → BN → ReLU → maxpool 3x3 stride 2 pad 1 | `features.conv0`, `features.norm0` |
//! | dense layer l of block b | BN → ReLU → conv 1x1 (4k) → BN → ReLU → conv 3x3 pad 1 (k) → drop; the k maps are concatenated to the layer's input on the channel dim | `features.denseblock{b}.denselayer{l}.{norm1,conv1,norm2,conv2}` |
//! | transition b (after blocks 1–3) | BN → ReLU → conv 1x1 (⌊C/2⌋) → avgpool 2 | `features.transition{b}.{norm,conv}` |
//! | head | BN → ReLU → global average pool → linear 8 (with bias) | `features.norm5`, `classifier` |
//!
//! The stem max pool pads with zeros after the ReLU, which equals PyTorch's
//! −∞ padding because its input is ≥ 0. Pools floor their output size:
//! spatial sizes at S = 48 are 24 (conv0), 12 (pool), 6, 3, 1 (transitions); at
//! S = 64: 32, 16, 8, 4, 2. At width 1 the channels are 64 → 256 → 128 → 512 → 256
//! → 1024 → 512 → 1024. Minimum S: 29.
//!
//! # Methods
//!
//! * **mc_dropout** ([`Method::McDropout`]): inverted dropout at each "drop"
//!   position — activations multiplied by a [`Noise::mask`] with keep
//!   probability 1 − p, kept values scaled by 1/(1 − p), one mask entry per
//!   element (so per sample) — whenever [`Mode::stochastic`], i.e. in training and
//!   in MC inference.
//! * **mc_dropconnect** ([`Method::McDropConnect`]): no activation dropout;
//!   instead a Bernoulli(1 − p) mask on the **weights** of the layer following the
//!   dropout position — alexnet / vgg16: the `fc1` and `fc2` weight matrices;
//!   densenet121: the `conv2` weight of every dense layer — drawn once per forward
//!   pass (shared by the whole batch) whenever `mode.stochastic`. Biases are not
//!   masked. Kept weights are scaled by 1/(1 − p): the expected masked weight
//!   then equals the weight, so the expected pre-activation equals the
//!   deterministic network's (as inverted dropout does for activations), and it
//!   matches the authors' keras-uncertainty DropConnect layers, which apply
//!   `K.dropout` (itself inverted dropout) to the kernel.
//! * **ensemble** ([`Method::Ensemble`]): the classical network, with dropout as
//!   in mc_dropout while training; inference uses [`Mode::EVAL`], so each member
//!   is deterministic and the ensemble's spread comes from independently seeded
//!   members.
//! * **swag**, **laplace** ([`Method::Swag`], [`Method::Laplace`]): the classical network
//!   (as ensemble's, dropout while training); their posteriors' weights are drawn outside
//!   the network, which then runs in [`Mode::EVAL`].
//! * **variational** ([`Method::Variational`]): mean-field Gaussian weights q(W) =
//!   N(μ, σ²), σ = softplus(ρ), on every conv and linear layer (Bayes by Backprop,
//!   Blundell et al. 2015), sampled with Flipout (Wen et al. 2018). Biases are point
//!   estimates (TensorFlow Probability's Flipout default), BatchNorm is unchanged and there
//!   is no dropout. With `mode.stochastic` a layer computes
//!   `y = conv(x, μ) + conv(x ∘ s_in, σ ∘ ε) ∘ s_out + b`, with ε ~ N(0, 1) shaped like W
//!   drawn once per forward call, then s_in ∈ {±1} per (sample, input channel) and s_out
//!   ∈ {±1} per (sample, output channel) (linear: per feature), all from the network's
//!   [`Noise`] stream in that order, layer by layer in forward order; otherwise
//!   `y = conv(x, μ) + b`. Every sample's perturbation is then N(0, Σ x² σ²) over its
//!   receptive field, uncorrelated with the batch's other samples'. ρ starts at ρ₀ =
//!   ln(exp(σ₀) − 1), and [`Model::kl`] is KL(q ‖ N(0, σ_p²)) in closed form; σ₀ and σ_p
//!   are the configuration's [`VariationalConfig`]. One network only (no packing); every
//!   layer samples, so there is no deterministic prefix.
//! * **batch_ensemble** ([`Method::BatchEnsemble`]): BatchEnsemble (Wen et al. 2020) of M
//!   members in the packed layout ([`Model::batch_ensemble`]): each conv / linear layer
//!   has one shared slow weight W and per member fast weights r_g (input channels /
//!   features) and s_g (output channels / features) and a bias, and member g computes
//!   `y_g = ((x_g ∘ r_g) ⊛ W) ∘ s_g + b_g` on its rows (g·B..(g+1)·B), i.e. the layer
//!   with weight W ∘ (s_g r_gᵀ); BatchNorms are per member. Dropout as ensemble members
//!   (each member's own stream; off at inference, [`Mode::EVAL`]). W is initialised as a
//!   point weight, biases 0, the fast weights N(1, 0.5²) as torch-uncertainty's
//!   `BatchLinear` / `BatchConv2d` do (edward2's BatchEnsemble layers default to ones;
//!   its uncertainty-baselines models pass N(1, 0.5²) as `random_sign_init = −0.5`).
//!
//! [`Model::forward_flops`] counts a network's forward FLOPs per image and member.
//!
//! # Modes
//!
//! [`Mode`] has two switches: `stochastic` (sample masks) and `batchnorm_train`
//! (BatchNorm on batch statistics with running-stat update, else on running
//! stats). [`Mode::TRAIN`] = both on, [`Mode::EVAL`] = both off, [`Mode::MC`] =
//! masks on, BatchNorm on running stats (so a sample's output never depends on the
//! rest of its batch). [`Mode::for_inference`] picks MC for the MC methods and
//! variational, EVAL for ensembles, batch_ensemble, swag and laplace.
//!
//! # Determinism
//!
//! candle's CPU RNG cannot be seeded, so nothing reproducible uses it: weights come
//! from [`init_seeded`] (ChaCha8 per variable) and masks, Flipout's normals and signs
//! from [`Noise`] (ChaCha8; normals by `rand_distr`'s `StandardNormal`). The same seeds
//! give bit-identical weights and draws on the same machine.
//!
//! # candle 0.11.1 notes
//!
//! * `BatchNorm` works on (B, C) input as well as (B, C, H, W) (it flattens all
//!   but the channel dim), so the FC BatchNorms need no reshape. In training mode
//!   it updates the running variance with the unbiased batch variance, so a batch
//!   of one sample (one value per channel) would make it NaN:
//!   [`Model::forward`] refuses `batchnorm_train` with B < 2 for alexnet and
//!   densenet121.
//! * `max_pool2d` / `avg_pool2d` have wrong gradients in some cases and
//!   `conv2d`'s CPU input gradient is slow; the reference ops of
//!   `ferbayes_kernels::reference` work around them.
//!
//! # Kernels
//!
//! Every layer runs on the [`Backend`] its [`Model`] was built with
//! ([`Model::with_backend`]; [`Model::new`] takes [`Backend::default`]): candle's
//! reference ops on any device, or on the CPU in f32 the fused kernels of
//! `ferbayes_kernels` (convolution, BatchNorm with its ReLU, pooling, the fully
//! connected layers, the dropout product, DenseNet's concatenation). They are
//! deterministic and match candle's ops within 1e-4 relative, bit for bit where
//! their docs say so (tested in this crate's `layer_tests` and in the kernels crate).
//! The train and infer binaries call [`tune_cpu_process`] first and run their work
//! through [`run_in_pool`] (see `docs/perf-notes.md`). The kernel knobs (`--kernels`,
//! `--simd`, `--tf32` and their `FER_*` fallbacks) are read once by the binaries
//! (`ferbayes_core::cli::KernelArgs`) and installed through [`install_kernels`]; nothing in
//! this crate reads the environment.
//!
//! [candle]: https://github.com/huggingface/candle

mod alexnet;
mod config;
mod densenet;
mod device;
mod error;
mod init;
mod knobs;
#[cfg(test)]
mod layer_tests;
mod layers;
mod machine;
mod model;
mod noise;
pub mod predictor;
mod preprocess;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
mod vgg;
mod weights;

pub use config::{
    Arch, Method, Mode, ModelConfig, VariationalConfig, default_drop_rate, has_batchnorm,
};
pub use device::device;
pub use error::{Error, Result};
pub use ferbayes_kernels::device as device_ops;
pub use ferbayes_kernels::device::{count_inplace, inplace_ops};
pub use ferbayes_kernels::{
    Backend, Tuning, ops_of, run_in_pool, tensors_created, tune_cpu_process,
};
pub use ferbayes_kernels::{SimdLevel, gemm_avx512, set_simd_level, simd_level, simd_paths};
pub use init::{
    VarRole, init_packed, init_seeded, load_point_weights, pack_members, sorted_vars,
    trainable_vars, unpack_member,
};
pub use knobs::{backend_of, install_kernels};
pub use machine::machine;
pub use model::{Model, repeat_batch};
pub use noise::Noise;
pub use predictor::Predictor;
pub use preprocess::{SOURCE_SIZE, batch_tensor, preprocess, resize_bilinear};

/// Number of emotion classes (logits per sample).
pub use ferbayes_core::NUM_CLASSES;
