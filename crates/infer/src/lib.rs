//! The infer stage: for every trained architecture × method, the class probabilities of every
//! valid and test face for each stochastic pass (MC-Dropout, MC-DropConnect; T =
//! `infer.samples`) or ensemble member (N), cached as long-format Parquet tables.
//!
//! Sampling is reproducible: the masks of pass t over the faces of batch b come from a generator
//! seeded from (seed, t, b), so reruns give identical tables. AlexNet and VGG16 draw masks only
//! in their classifier head, so their convolutional prefix is computed once per face and only
//! the head is sampled T times; this gives exactly the probabilities of T full passes with the
//! same seeds (checked by the tests). DenseNet-121 has dropout throughout and pays T full passes.

pub mod error;
#[cfg(feature = "testing")]
pub mod testing;

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Instant;

use arrow_array::RecordBatch;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use ferbayes_core::cli::Selection;
use ferbayes_core::io::rows_batch;
use ferbayes_core::runner::Begin;
use ferbayes_core::schema::Row;
use ferbayes_core::schema::rows::{
    FaceRow, InferOodRow, InferRow, InferShiftRow, OodImageRow, ShiftFaceRow,
};
use ferbayes_core::seed::mix;
use ferbayes_core::{Arch, IMAGE_PIXELS, Layout, Method, NUM_CLASSES, Settings, Split};
use ferbayes_models::{Backend, Mode, Model, ModelConfig, Noise};
use tracing_indicatif::span_ext::IndicatifSpanExt;

pub use error::{InferError, Result};

/// Faces of one ingest split: names and pixels, all faces (labelled or not).
#[derive(Debug, Clone, Default)]
pub struct Faces {
    pub images: Vec<String>,
    /// `images.len() · 2304` pixels.
    pub pixels: Vec<u8>,
}

impl FromIterator<(String, Vec<u8>)> for Faces {
    /// Faces from (image, pixels) pairs, in order.
    fn from_iter<I: IntoIterator<Item = (String, Vec<u8>)>>(iter: I) -> Self {
        let mut faces = Faces::default();
        for (image, pixels) in iter {
            faces.images.push(image);
            faces.pixels.extend_from_slice(&pixels);
        }
        faces
    }
}

impl Faces {
    /// Reads every face of an ingest split.
    pub fn load(path: &std::path::Path) -> Result<Faces> {
        let rows: Vec<FaceRow> =
            ferbayes_core::io::read_rows(path, Some(&["image", "pixels"]), "just ingest")?;
        Ok(rows.into_iter().map(|r| (r.image, r.pixels)).collect())
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

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
    /// Loads the weights of `arch`/`method` written by the train stage for this profile.
    pub fn load(
        layout: &Layout,
        settings: &Settings,
        arch: Arch,
        method: Method,
        device: &Device,
    ) -> Result<Predictor> {
        Self::load_on(layout, settings, arch, method, device, Backend::from_env())
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
            return Err(InferError::UnsupportedMethod(method));
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
                    return Err(InferError::MissingWeights { path, recipe });
                }
                let tensors = candle_core::safetensors::load(&path, device).map_err(|e| {
                    InferError::Weights {
                        path: path.clone(),
                        message: format!("not a readable safetensors file: {e}"),
                        recipe: recipe.clone(),
                    }
                })?;
                // Each member's own file must fit the settings (so an error names it); a pack
                // of one keeps this model.
                let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, device);
                let model =
                    Model::with_backend(&cfg, kernels, vb).map_err(|e| InferError::Weights {
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
                    let packed = ferbayes_models::pack_members(&own)?;
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
        let xs = ferbayes_models::batch_tensor(
            pixels.chunks(IMAGE_PIXELS),
            self.input_size,
            &self.device,
        )?;
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
                return Err(InferError::UnsupportedMethod(self.method));
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
    #[cfg(feature = "testing")]
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

/// What infer wrote for one combination.
#[derive(Debug, Clone)]
pub struct InferSummary {
    pub arch: Arch,
    pub method: Method,
    pub samples: usize,
    /// (split, faces, seconds); empty when skipped.
    pub splits: Vec<(Split, usize, f64)>,
    /// The outputs were up to date (manifest key and files) and were not rewritten.
    pub skipped: bool,
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct InferOptions {
    /// Combinations to run (default: the profile's).
    pub selection: Selection,
    pub device: Device,
    /// Rerun combinations that are up to date.
    pub force: bool,
    /// The kernels the networks run on (default: [`Backend::from_env`]).
    pub kernels: Backend,
}

impl Default for InferOptions {
    fn default() -> Self {
        InferOptions {
            selection: Selection::default(),
            device: Device::Cpu,
            force: false,
            kernels: Backend::from_env(),
        }
    }
}

/// Runs inference for every selected combination on the valid and test splits.
pub fn run(
    layout: &Layout,
    settings: &Settings,
    options: &InferOptions,
) -> Result<Vec<InferSummary>> {
    let mut splits: Option<Vec<Faces>> = None;
    let mut out = Vec::new();
    for (arch, method) in options.selection.combos(&settings.train) {
        let plan = ferbayes_core::plan::infer(layout, settings, arch, method);
        let mut stage = match plan.begin(options.force)? {
            Begin::Run(stage) => *stage,
            Begin::UpToDate(_) => {
                out.push(InferSummary {
                    arch,
                    method,
                    samples: ferbayes_core::plan::samples(settings, method),
                    splits: Vec::new(),
                    skipped: true,
                });
                continue;
            }
        };
        stage.manifest_mut().machine = ferbayes_models::machine(&options.device, options.kernels);
        let predictor = Predictor::load_on(
            layout,
            settings,
            arch,
            method,
            &options.device,
            options.kernels,
        )?;
        let splits = match &mut splits {
            Some(f) => f,
            None => splits.insert(
                SPLITS
                    .iter()
                    .map(|&s| Faces::load(&layout.ingest_split(s)))
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let tables = tables(layout, settings, &predictor, splits)?;
        stage.note("prefix_cached", predictor.cache_prefix);
        let mut summary = InferSummary {
            arch,
            method,
            samples: predictor.samples(),
            splits: Vec::new(),
            skipped: false,
        };
        for table in tables {
            let t0 = Instant::now();
            let batch = table.sample(&predictor, settings.infer.batch_size)?;
            let seconds = t0.elapsed().as_secs_f64();
            tracing::info!(
                "{arch}/{method} {}: {} images × {} samples in {seconds:.1}s ({:.0} images/s)",
                table.name,
                table.faces.len(),
                predictor.samples(),
                table.faces.len() as f64 / seconds
            );
            if let Some(split) = table.split {
                summary.splits.push((split, table.faces.len(), seconds));
            }
            stage.write_table(
                table.path,
                &batch.schema(),
                vec![batch],
                ferbayes_core::io::TABLE_ZSTD_LEVEL,
            )?;
        }
        stage.finish()?;
        out.push(summary);
    }
    Ok(out)
}

/// The ingest splits every combination samples.
const SPLITS: [Split; 2] = [Split::Valid, Split::Test];

/// One table infer writes for a combination: which images it samples, where it goes, and the
/// per-image keys its rows carry beside `image`, `sample` and `probs`.
struct Table<'a> {
    name: String,
    /// Set for the valid and test tables (reported in [`InferSummary::splits`]).
    split: Option<Split>,
    faces: Cow<'a, Faces>,
    path: PathBuf,
    keys: Keys,
}

/// The per-image keys of a table's rows beyond the image name.
enum Keys {
    /// A split table ([`InferRow`]).
    Split,
    /// The shift table ([`InferShiftRow`]): each image's corruption and severity.
    Shift {
        corruption: Vec<String>,
        severity: Vec<u8>,
    },
    /// The OOD table ([`InferOodRow`]): each image's set.
    Ood { set: Vec<String> },
}

impl Table<'_> {
    /// Samples every image and builds the table's rows, image after image, sample after sample.
    fn sample(&self, predictor: &Predictor, batch_size: usize) -> Result<RecordBatch> {
        let task = format!("{}/{}/{}", predictor.arch, predictor.method, self.name);
        let probs = sample_probs(predictor, &self.faces, batch_size, &task)?;
        let (images, s) = (&self.faces.images, predictor.samples());
        let batch = match &self.keys {
            Keys::Split => rows_batch(&self.path, &split_rows(images, &probs, s)),
            Keys::Shift {
                corruption,
                severity,
            } => rows_batch(
                &self.path,
                &long_rows(images, &probs, s, |i, image, sample, probs| InferShiftRow {
                    image,
                    corruption: corruption[i].clone(),
                    severity: severity[i],
                    sample,
                    probs,
                }),
            ),
            Keys::Ood { set } => rows_batch(
                &self.path,
                &long_rows(images, &probs, s, |i, image, sample, probs| InferOodRow {
                    set: set[i].clone(),
                    image,
                    sample,
                    probs,
                }),
            ),
        };
        Ok(batch?)
    }
}

/// The long-format rows of `images` with `samples` predictions each (`probs` image-major).
fn long_rows<R>(
    images: &[String],
    probs: &[[f32; NUM_CLASSES]],
    samples: usize,
    row: impl Fn(usize, String, u16, [f32; NUM_CLASSES]) -> R,
) -> Vec<R> {
    images
        .iter()
        .enumerate()
        .flat_map(|(i, image)| {
            let row = &row;
            (0..samples).map(move |t| row(i, image.clone(), t as u16, probs[i * samples + t]))
        })
        .collect()
}

/// The rows of a split table (schema [`ferbayes_core::schema::infer`]).
fn split_rows(images: &[String], probs: &[[f32; NUM_CLASSES]], samples: usize) -> Vec<InferRow> {
    long_rows(images, probs, samples, |_, image, sample, probs| InferRow {
        image,
        sample,
        probs,
    })
}

/// The valid and test tables, and the shift and OOD tables where the profile has them.
fn tables<'a>(
    layout: &Layout,
    settings: &Settings,
    predictor: &Predictor,
    splits: &'a [Faces],
) -> Result<Vec<Table<'a>>> {
    let (arch, method) = (predictor.arch, predictor.method);
    let mut tables: Vec<Table<'a>> = SPLITS
        .iter()
        .zip(splits)
        .map(|(&split, faces)| Table {
            name: split.to_string(),
            split: Some(split),
            faces: Cow::Borrowed(faces),
            path: layout.infer_split(arch, method, split),
            keys: Keys::Split,
        })
        .collect();
    let (shift, ood) = ferbayes_core::plan::extras(layout, settings);
    if shift {
        let (faces, corruption, severity) = load_shift(&layout.ingest_shift())?;
        tables.push(Table {
            name: "shift".into(),
            split: None,
            faces: Cow::Owned(faces),
            path: layout.infer_shift(arch, method),
            keys: Keys::Shift {
                corruption,
                severity,
            },
        });
    }
    if ood {
        let (faces, set) = load_ood(&layout.ingest_ood())?;
        tables.push(Table {
            name: "ood".into(),
            split: None,
            faces: Cow::Owned(faces),
            path: layout.infer_ood(arch, method),
            keys: Keys::Ood { set },
        });
    }
    Ok(tables)
}

/// The corrupted faces of `ingest/shift.parquet` with each face's corruption and severity.
pub fn load_shift(path: &std::path::Path) -> Result<(Faces, Vec<String>, Vec<u8>)> {
    let columns = ["image", "pixels", "corruption", "severity"];
    let rows: Vec<ShiftFaceRow> =
        ferbayes_core::io::read_rows(path, Some(&columns), "just ingest")?;
    let (mut corruption, mut severity) = (Vec::new(), Vec::new());
    let faces = rows
        .into_iter()
        .map(|r| {
            corruption.push(r.corruption);
            severity.push(r.severity);
            (r.image, r.pixels)
        })
        .collect();
    Ok((faces, corruption, severity))
}

/// The images of `ingest/ood.parquet` with each image's set.
pub fn load_ood(path: &std::path::Path) -> Result<(Faces, Vec<String>)> {
    let columns = ["image", "pixels", "set"];
    let rows: Vec<OodImageRow> = ferbayes_core::io::read_rows(path, Some(&columns), "just ingest")?;
    let mut set = Vec::new();
    let faces = rows
        .into_iter()
        .map(|r| {
            set.push(r.set);
            (r.image, r.pixels)
        })
        .collect();
    Ok((faces, set))
}

/// Samples every face of a split into one record batch (schema [`ferbayes_core::schema::infer`]).
pub fn infer_split(
    predictor: &Predictor,
    faces: &Faces,
    batch_size: usize,
    task: &str,
) -> Result<RecordBatch> {
    let probs = sample_probs(predictor, faces, batch_size, task)?;
    let rows = split_rows(&faces.images, &probs, predictor.samples());
    Ok(InferRow::to_batch(&rows)?)
}

/// Every sample's probabilities of every face, face after face (`samples` rows per face).
fn sample_probs(
    predictor: &Predictor,
    faces: &Faces,
    batch_size: usize,
    task: &str,
) -> Result<Vec<[f32; NUM_CLASSES]>> {
    let mut probs = Vec::with_capacity(faces.len() * predictor.samples());
    let span = ferbayes_core::cli::progress_span(task, faces.len() as u64);
    let _enter = span.enter();
    for (b, chunk) in faces.pixels.chunks(batch_size * IMAGE_PIXELS).enumerate() {
        probs.extend(predictor.predict(chunk, b as u64)?);
        span.pb_inc((chunk.len() / IMAGE_PIXELS) as u64);
    }
    Ok(probs)
}
