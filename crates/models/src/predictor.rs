//! [`Predictor`]: a combination's trained networks (the weights the train stage wrote) loaded
//! beside the models, sampling a batch of 48x48 faces: T stochastic passes for the MC methods
//! (the masks of pass t over batch b seeded from (seed, t, b)), every member for ensembles
//! (packed `train.pack_members` at a time). The infer stage's tables, `ferbayes predict` and
//! `ferbayes explore` sample through it.
//!
//! AlexNet and VGG16 draw masks only in their classifier head, so their convolutional prefix is
//! computed once per face and only the head is sampled T times; this gives exactly the
//! probabilities of T full passes with the same seeds (tested below). DenseNet-121 has dropout
//! throughout and pays T full passes.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use ferbayes_core::seed::mix;
use ferbayes_core::{Arch, IMAGE_PIXELS, Layout, Method, NUM_CLASSES, Settings};

use crate::error::{Error, Result};
use crate::{Backend, Mode, Model, ModelConfig, Noise};

/// The trained networks of one architecture × method, ready to sample.
#[derive(Debug)]
pub struct Predictor {
    pub arch: Arch,
    pub method: Method,
    models: Vec<Model>,
    samples: usize,
    seed: u64,
    input_size: usize,
    device: Device,
    /// Compute the deterministic prefix once and sample only the head (AlexNet, VGG16).
    pub cache_prefix: bool,
}

impl Predictor {
    /// Loads the weights of `arch`/`method` written by the train stage for this profile, on the
    /// default kernels ([`Backend::default`]; [`Predictor::load_on`] takes them).
    pub fn load(
        layout: &Layout,
        settings: &Settings,
        arch: Arch,
        method: Method,
        device: &Device,
    ) -> Result<Predictor> {
        Self::load_on(layout, settings, arch, method, device, Backend::default())
    }

    /// [`Predictor::load`] with the networks on the kernels of `kernels`.
    pub fn load_on(
        layout: &Layout,
        settings: &Settings,
        arch: Arch,
        method: Method,
        device: &Device,
        kernels: Backend,
    ) -> Result<Predictor> {
        if !Method::STUDY.contains(&method) {
            return Err(Error::UnsupportedMethod(method));
        }
        let s = settings.train.arch(arch);
        let mut cfg = ModelConfig::new(arch, method, s.width, s.input_size);
        cfg.drop_rate = s.drop_rate;
        let members = ferbayes_core::plan::members(settings, method);
        // Ensemble members run packed, up to `train.pack_members` per model (see
        // `Model::packed`): member g of a pack computes exactly what it computes alone.
        let pack = settings.train.pack_members.clamp(1, members.max(1));
        let mut models = Vec::with_capacity(members.div_ceil(pack));
        for first in (0..members).step_by(pack) {
            let ids: Vec<usize> = (first..(first + pack).min(members)).collect();
            let mut own = Vec::with_capacity(ids.len());
            let mut single = None;
            for &m in &ids {
                let path = layout.member_weights(arch, method, m);
                let recipe = format!("just train --arch {arch} --method {method}");
                if !path.is_file() {
                    return Err(Error::MissingWeights { path, recipe });
                }
                let tensors =
                    candle_core::safetensors::load(&path, device).map_err(|e| Error::Weights {
                        path: path.clone(),
                        message: format!("not a readable safetensors file: {e}"),
                        recipe: recipe.clone(),
                    })?;
                // Each member's own file must fit the settings (so an error names it); a pack
                // of one keeps this model.
                let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, device);
                let model = Model::with_backend(&cfg, kernels, vb).map_err(|e| Error::Weights {
                    path: path.clone(),
                    message: format!(
                        "does not fit the profile's {arch} settings (width {}, input {}): {e}",
                        s.width, s.input_size
                    ),
                    recipe: recipe.clone(),
                })?;
                single = Some(model);
                own.push(tensors);
            }
            let model = match single {
                Some(model) if own.len() == 1 => model,
                _ => {
                    let packed = crate::pack_members(&own)?;
                    let vb = VarBuilder::from_tensors(packed, DType::F32, device);
                    Model::packed(&cfg, kernels, own.len(), vb)?
                }
            };
            models.push(model);
        }
        let samples = ferbayes_core::plan::samples(settings, method);
        Ok(Predictor {
            arch,
            method,
            cache_prefix: models[0].has_deterministic_prefix(),
            models,
            samples,
            seed: settings.seed,
            input_size: s.input_size,
            device: device.clone(),
        })
    }

    /// Samples per face: T passes, or N members.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Probabilities of every (face, sample) of a batch of faces (`pixels`: B · 2304), face-major:
    /// entry `i · samples + t` is face i, sample t. `batch` numbers the batch for the seeds.
    pub fn predict(&self, pixels: &[u8], batch: u64) -> Result<Vec<[f32; NUM_CLASSES]>> {
        let b = pixels.len() / IMAGE_PIXELS;
        let xs = crate::batch_tensor(pixels.chunks(IMAGE_PIXELS), self.input_size, &self.device)?;
        let mut per_sample: Vec<Tensor> = Vec::with_capacity(self.samples);
        match self.method {
            Method::Ensemble => {
                for model in &self.models {
                    // A pack of G members sees G copies of the batch, member g's rows
                    // g·B..(g+1)·B of the logits.
                    let g = model.members();
                    let mut noise: Vec<Noise> = (0..g).map(|_| Noise::new(0)).collect();
                    let input = if g == 1 {
                        xs.clone()
                    } else {
                        Tensor::cat(&vec![&xs; g], 0)?
                    };
                    let logits = model.forward_packed(&input, Mode::EVAL, &mut noise)?;
                    for k in 0..g {
                        per_sample.push(logits.narrow(0, k * b, b)?);
                    }
                }
            }
            Method::McDropout | Method::McDropConnect => {
                let model = &self.models[0];
                let prefix = if self.cache_prefix {
                    Some(model.features(&xs, Mode::MC)?)
                } else {
                    None
                };
                for t in 0..self.samples {
                    let mut noise = Noise::new(self.pass_seed(t, batch));
                    let logits = match &prefix {
                        Some(features) => model.head(features, Mode::MC, &mut noise)?,
                        None => model.forward(&xs, Mode::MC, &mut noise)?,
                    };
                    per_sample.push(logits);
                }
            }
            Method::Variational | Method::Swag | Method::Laplace | Method::BatchEnsemble => {
                return Err(Error::UnsupportedMethod(self.method));
            }
        }
        // (S, B, 8) → face-major rows.
        let probs = candle_nn::ops::softmax(&Tensor::stack(&per_sample, 0)?, 2)?;
        let probs: Vec<f32> = probs
            .transpose(0, 1)?
            .contiguous()?
            .flatten_all()?
            .to_vec1()?;
        debug_assert_eq!(probs.len(), b * self.samples * NUM_CLASSES);
        Ok(probs
            .chunks_exact(NUM_CLASSES)
            .map(|c| {
                let mut p = [0.0; NUM_CLASSES];
                p.copy_from_slice(c);
                p
            })
            .collect())
    }

    /// The probabilities of T *full* passes with the same seeds as [`Predictor::predict`]
    /// (no prefix caching): the reference the cached path is tested against (feature
    /// `testing`).
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub fn predict_uncached(&self, pixels: &[u8], batch: u64) -> Result<Vec<[f32; NUM_CLASSES]>> {
        let uncached = Predictor {
            arch: self.arch,
            method: self.method,
            models: self.models.clone(),
            samples: self.samples,
            seed: self.seed,
            input_size: self.input_size,
            device: self.device.clone(),
            cache_prefix: false,
        };
        uncached.predict(pixels, batch)
    }

    fn pass_seed(&self, pass: usize, batch: u64) -> u64 {
        mix(mix(self.seed, pass as u64), batch)
    }
}

#[cfg(test)]
mod tests {
    //! On seeded (untrained) weights and a fixed pattern of faces: what the tests check does
    //! not depend on the weights' values (moved here from infer's tests with the predictor).

    use std::path::Path;

    use candle_core::{DType, Device};
    use candle_nn::VarBuilder;
    use ferbayes_core::{Arch, Layout, Method, PipelineFile, Settings};

    use super::Predictor;
    use crate::testing::write_seeded_weights;
    use crate::{Mode, Model, ModelConfig, Noise};

    const SAMPLES: usize = 4;
    const MEMBERS: usize = 3;

    fn settings() -> Settings {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml");
        let mut s = PipelineFile::load(&path)
            .expect("pipeline.toml")
            .settings("smoke")
            .expect("smoke");
        s.train.ensemble_members = MEMBERS;
        s.infer.samples = SAMPLES;
        for arch in Arch::ALL {
            let a = s.train.arch_mut(arch);
            a.width = 0.125;
            a.input_size = 48;
        }
        s
    }

    /// `n` 48x48 faces of a fixed pattern.
    fn faces(n: usize) -> Vec<u8> {
        (0..n * ferbayes_core::IMAGE_PIXELS)
            .map(|i| ((i * 37 + i / 48 * 11) % 256) as u8)
            .collect()
    }

    /// A fresh artifact root with seeded weights for `combos`.
    fn seeded(combos: &[(Arch, Method)]) -> (tempfile::TempDir, Layout, Settings) {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path(), "smoke");
        let s = settings();
        for &(arch, method) in combos {
            write_seeded_weights(&layout, &s, arch, method).expect("weights");
        }
        (dir, layout, s)
    }

    #[test]
    fn prefix_cached_sampling_equals_full_passes() {
        let (_dir, layout, s) = seeded(&[
            (Arch::AlexNet, Method::McDropout),
            (Arch::AlexNet, Method::McDropConnect),
            (Arch::DenseNet121, Method::McDropout),
        ]);
        let pixels = faces(16);
        for method in [Method::McDropout, Method::McDropConnect] {
            let p =
                Predictor::load(&layout, &s, Arch::AlexNet, method, &Device::Cpu).expect("load");
            assert!(p.cache_prefix);
            assert_eq!(p.samples(), SAMPLES);
            let cached = p.predict(&pixels, 3).expect("cached");
            let full = p.predict_uncached(&pixels, 3).expect("full");
            assert_eq!(cached.len(), 16 * SAMPLES);
            let max = cached
                .iter()
                .flatten()
                .zip(full.iter().flatten())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                max < 1e-5,
                "{method}: cached and full passes differ by {max}"
            );
            // The passes are stochastic: two samples of one face differ.
            assert_ne!(
                cached[0], cached[1],
                "{method}: passes 0 and 1 are identical"
            );
        }
        let dense = Predictor::load(
            &layout,
            &s,
            Arch::DenseNet121,
            Method::McDropout,
            &Device::Cpu,
        )
        .expect("load");
        assert!(!dense.cache_prefix, "densenet has dropout throughout");
    }

    #[test]
    fn ensemble_sample_k_is_member_k_alone() {
        let (_dir, layout, s) = seeded(&[(Arch::AlexNet, Method::Ensemble)]);
        let pixels = faces(5);
        let p = Predictor::load(&layout, &s, Arch::AlexNet, Method::Ensemble, &Device::Cpu)
            .expect("load");
        let probs = p.predict(&pixels, 0).expect("predict");
        for k in 0..MEMBERS {
            let tensors = candle_core::safetensors::load(
                layout.member_weights(Arch::AlexNet, Method::Ensemble, k),
                &Device::Cpu,
            )
            .expect("weights");
            let mut cfg = ModelConfig::new(Arch::AlexNet, Method::Ensemble, 0.125, 48);
            cfg.drop_rate = s.train.arch(Arch::AlexNet).drop_rate;
            let model = Model::new(
                &cfg,
                VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
            )
            .expect("model");
            let xs =
                crate::batch_tensor(pixels.chunks(ferbayes_core::IMAGE_PIXELS), 48, &Device::Cpu)
                    .expect("xs");
            let logits = model
                .forward(&xs, Mode::EVAL, &mut Noise::new(1))
                .expect("forward");
            let alone: Vec<Vec<f32>> = candle_nn::ops::softmax(&logits, 1)
                .expect("softmax")
                .to_vec2()
                .expect("vec");
            for (face, row) in alone.iter().enumerate() {
                let got = probs[face * MEMBERS + k];
                for c in 0..8 {
                    assert!((got[c] - row[c]).abs() < 1e-6, "member {k}, face {face}");
                }
            }
        }
    }

    #[test]
    fn missing_weights_name_the_recipe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path(), "empty");
        let err = Predictor::load(
            &layout,
            &settings(),
            Arch::Vgg16,
            Method::Ensemble,
            &Device::Cpu,
        )
        .expect_err("no weights")
        .to_string();
        assert!(
            err.contains("member-00.safetensors")
                && err.contains("just train --arch vgg16 --method ensemble"),
            "{err}"
        );
    }
}
