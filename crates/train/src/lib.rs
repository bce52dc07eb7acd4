//! The train stage: every architecture × uncertainty method a profile lists, from ingest's
//! Parquet to `train/<arch>/<method>/member-NN.safetensors` and `history.parquet`.
//!
//! - `mc_dropout` / `mc_dropconnect`: one network (member 00) trained with its stochastic layers
//!   on; `ensemble`: N members, member k seeded with `seed + k` (initial weights, data order,
//!   dropout masks), trained classically.
//! - Batches of `batch_size` faces in an order shuffled each epoch from (member seed, epoch);
//!   masks drawn from a generator seeded from (member seed, epoch). A trailing batch of a single
//!   face is skipped (BatchNorm has no batch variance for it).
//! - After every epoch the member's weights, optimiser state and history are checkpointed to
//!   `.resume/member-NN.safetensors`, so a killed run resumes from its last completed epoch and
//!   ends with the weights of an uninterrupted run. A finished member's weights carry a
//!   fingerprint of everything that determines them; a rerun with the same fingerprint skips it.
//! - Every epoch evaluates the valid split (majority accuracy and NLL, deterministic pass); the
//!   final weights are kept (as the study does) and the best-NLL epoch is recorded.

pub mod data;
pub mod error;
pub mod optim;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Float32Array, Float64Array, RecordBatch, UInt16Array, UInt32Array};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use ferbayes_core::cli::Selection;
use ferbayes_core::manifest::Output;
use ferbayes_core::seed::mix;
use ferbayes_core::{Arch, ArchTrainSettings, LabelMode, Layout, Method, Settings, Split};
use ferbayes_models::{Mode, Model, ModelConfig, Noise, VarRole};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tracing_indicatif::span_ext::IndicatifSpanExt;

pub use data::Dataset;
pub use error::{Result, TrainError};
use optim::Optimizer;

/// Faces per forward pass when evaluating.
const EVAL_BATCH: usize = 256;

/// Which combinations to train and how.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Combinations to train (default: the profile's).
    pub selection: Selection,
    pub device: Device,
    /// Test hook: stop (as if killed) after this many epochs have been checkpointed in this run.
    pub stop_after_epochs: Option<usize>,
    /// Retrain combinations whose manifest key is up to date (members with a matching
    /// fingerprint are still reused).
    pub force: bool,
    /// `(k, n)`: train only every n-th member (counting members over all combinations in
    /// order), starting at member k, and leave each combination's history and manifest to a
    /// final run without a shard. Lets n processes train one profile in parallel.
    pub shard: Option<(usize, usize)>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            selection: Selection::default(),
            device: Device::Cpu,
            stop_after_epochs: None,
            force: false,
            shard: None,
        }
    }
}

/// One epoch of one member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub member: u16,
    pub epoch: u32,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub valid_loss: f64,
    pub valid_accuracy: f64,
    pub learning_rate: f64,
    pub seconds: f64,
}

/// What happened to one combination.
#[derive(Debug, Clone)]
pub struct ComboSummary {
    pub arch: Arch,
    pub method: Method,
    pub members: usize,
    /// Members trained (fully or partly) in this run; the others were already complete.
    pub trained: usize,
    /// Whether the run stopped early (test hook).
    pub interrupted: bool,
    /// The combination was up to date (manifest key and every output) and was not touched.
    pub skipped: bool,
    pub history: Vec<EpochRecord>,
}

/// Trains every selected combination of the profile.
pub fn run(
    layout: &Layout,
    settings: &Settings,
    options: &TrainOptions,
) -> Result<Vec<ComboSummary>> {
    let mut budget = options.stop_after_epochs;
    let mut slot = 0usize;
    let mut out = Vec::new();
    // Data are loaded once per distinct input size (the label mode is the profile's).
    let mut cache: HashMap<usize, (Arc<Dataset>, Arc<Dataset>)> = HashMap::new();
    for (arch, method) in options.selection.combos(&settings.train) {
        let plan = ferbayes_core::plan::train(layout, settings, arch, method);
        let check = plan.check()?;
        let members = ferbayes_core::plan::members(settings, method);
        if check.up_to_date() && !options.force {
            if let Some(history) = finished_history(layout, arch, method, members) {
                // Shards count every member, done or not, so that all agree on who trains what.
                slot += members;
                tracing::info!(
                    "{}: up to date ({}, key {})",
                    plan.label,
                    plan.dir.display(),
                    check.short_key()
                );
                out.push(ComboSummary {
                    arch,
                    method,
                    members,
                    trained: 0,
                    interrupted: false,
                    skipped: true,
                    history,
                });
                continue;
            }
        }
        let size = settings.train.arch(arch).input_size;
        let (train, valid) = match cache.entry(size) {
            std::collections::hash_map::Entry::Occupied(e) => e.get().clone(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let train = Dataset::load(
                    &layout.ingest_split(Split::Train),
                    settings.train.label_mode,
                    size,
                )?;
                let valid = Dataset::load(
                    &layout.ingest_split(Split::Valid),
                    LabelMode::Majority,
                    size,
                )?;
                tracing::info!(
                    train = train.len(),
                    valid = valid.len(),
                    input_size = size,
                    "loaded faces"
                );
                e.insert((Arc::new(train), Arc::new(valid))).clone()
            }
        };
        let summary = train_combo(
            layout,
            settings,
            arch,
            method,
            (&train, &valid),
            options,
            (&mut budget, &mut slot),
            (&plan, &check),
        )?;
        let stop = summary.interrupted;
        out.push(summary);
        if stop {
            return Ok(out);
        }
    }
    Ok(out)
}

/// Everything that determines a member's final weights, hashed into its fingerprint.
#[derive(Serialize)]
struct FingerprintInput<'a> {
    arch: Arch,
    method: Method,
    member: usize,
    seed: u64,
    batch_size: usize,
    label_mode: LabelMode,
    arch_settings: &'a ferbayes_core::ArchTrainSettings,
    train_faces: usize,
    valid_faces: usize,
    ferbayes_version: &'static str,
}

fn fingerprint(input: &FingerprintInput<'_>) -> String {
    use sha2::Digest;
    let json = serde_json::to_vec(input).unwrap_or_default();
    format!("{:x}", sha2::Sha256::digest(json))
}

#[allow(clippy::too_many_arguments)]
fn train_combo(
    layout: &Layout,
    settings: &Settings,
    arch: Arch,
    method: Method,
    (train, valid): (&Dataset, &Dataset),
    options: &TrainOptions,
    (budget, slot): (&mut Option<usize>, &mut usize),
    (plan, check): (&ferbayes_core::plan::Plan, &ferbayes_core::plan::Check),
) -> Result<ComboSummary> {
    let members = ferbayes_core::plan::members(settings, method);
    let started = Instant::now();
    let mut manifest = plan.manifest(check);
    let mut history = Vec::new();
    let mut trained = 0;
    let span = ferbayes_core::cli::progress_span(&format!("{arch}/{method}"), members as u64);
    let _enter = span.enter();
    let mut left_to_others = false;
    for member in 0..members {
        let mine = options.shard.is_none_or(|(k, n)| *slot % n == k);
        *slot += 1;
        if !mine {
            left_to_others = true;
            span.pb_inc(1);
            continue;
        }
        let outcome = train_member(
            layout, settings, arch, method, member, train, valid, options, budget,
        )?;
        span.pb_inc(1);
        match outcome {
            MemberOutcome::Complete {
                history: h,
                trained: t,
            } => {
                history.extend(h);
                trained += usize::from(t);
            }
            MemberOutcome::Interrupted => {
                return Ok(ComboSummary {
                    arch,
                    method,
                    members,
                    trained: trained + 1,
                    interrupted: true,
                    skipped: false,
                    history,
                });
            }
        }
    }
    if left_to_others {
        // Another shard trains the rest; the final run without a shard writes the history and
        // the manifest once every member is there.
        return Ok(ComboSummary {
            arch,
            method,
            members,
            trained,
            interrupted: false,
            skipped: false,
            history,
        });
    }
    let history_path = layout.history(arch.as_str(), method.as_str());
    ferbayes_core::io::write_parquet(
        &history_path,
        &ferbayes_core::schema::history(),
        [history_batch(&history)],
        3,
    )?
    .commit()?;
    let best: Vec<serde_json::Value> = (0..members)
        .map(|m| {
            let best = history
                .iter()
                .filter(|r| usize::from(r.member) == m)
                .min_by(|a, b| a.valid_loss.total_cmp(&b.valid_loss));
            serde_json::json!({
                "member": m,
                "best_valid_nll_epoch": best.map(|r| r.epoch),
                "best_valid_nll": best.map(|r| r.valid_loss),
            })
        })
        .collect();
    if let serde_json::Value::Object(map) = &mut manifest.settings {
        map.insert("best_epochs".into(), serde_json::Value::Array(best));
        map.insert("seconds".into(), started.elapsed().as_secs_f64().into());
    }
    manifest.outputs = (0..members)
        .map(|m| Output {
            file: format!("member-{m:02}.safetensors"),
            rows: 1,
        })
        .chain(std::iter::once(Output {
            file: "history.parquet".into(),
            rows: history.len() as u64,
        }))
        .collect();
    let dir = layout.train_dir(arch.as_str(), method.as_str());
    manifest.finish(&Layout::manifest_in(&dir))?;
    let resume = dir.join(".resume");
    if resume.is_dir() {
        std::fs::remove_dir_all(&resume).map_err(|e| ferbayes_core::Error::io(&resume, e))?;
    }
    Ok(ComboSummary {
        arch,
        method,
        members,
        trained,
        interrupted: false,
        skipped: false,
        history,
    })
}

enum MemberOutcome {
    Complete {
        history: Vec<EpochRecord>,
        trained: bool,
    },
    Interrupted,
}

/// Metadata keys of member weight and checkpoint files.
const META_FINGERPRINT: &str = "ferbayes.fingerprint";
const META_EPOCHS: &str = "ferbayes.epochs_done";
const META_STEP: &str = "ferbayes.step";
const META_HISTORY: &str = "ferbayes.history";
const META_COMPLETE: &str = "ferbayes.complete";

/// A safetensors file's tensors and metadata.
fn read_safetensors(
    path: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| ferbayes_core::Error::io(path, e))?;
    let bad = |message: String| TrainError::Checkpoint {
        path: path.to_owned(),
        message,
    };
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
    Ok((tensors, metadata))
}

/// Writes tensors with metadata atomically.
fn write_safetensors(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let mut named: Vec<(&String, &Tensor)> = tensors.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    let bytes =
        safetensors::serialize(named, Some(metadata)).map_err(|e| TrainError::Checkpoint {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    ferbayes_core::io::write_atomic(path, &bytes)?;
    Ok(())
}

/// The histories recorded in every member of an up-to-date combination (None if one is
/// unreadable, and the combination is then trained as usual).
fn finished_history(
    layout: &Layout,
    arch: Arch,
    method: Method,
    members: usize,
) -> Option<Vec<EpochRecord>> {
    let mut history = Vec::new();
    for m in 0..members {
        let path = layout.member_weights(arch.as_str(), method.as_str(), m);
        let bytes = std::fs::read(&path).ok()?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
        let meta = meta.metadata().clone()?;
        if meta.get(META_COMPLETE).map(String::as_str) != Some("true") {
            return None;
        }
        let h: Vec<EpochRecord> = serde_json::from_str(meta.get(META_HISTORY)?).ok()?;
        history.extend(h);
    }
    Some(history)
}

/// Loads a finished member's weights file if its fingerprint matches, returning its history.
fn finished_member(path: &Path, fingerprint: &str) -> Option<Vec<EpochRecord>> {
    if !path.is_file() {
        return None;
    }
    let (_, meta) = read_safetensors(path, &Device::Cpu).ok()?;
    if meta.get(META_FINGERPRINT).map(String::as_str) != Some(fingerprint)
        || meta.get(META_COMPLETE).map(String::as_str) != Some("true")
    {
        return None;
    }
    serde_json::from_str(meta.get(META_HISTORY)?).ok()
}

/// A freshly initialised network of one architecture × method at the settings' size,
/// with the optimiser over its trainable variables: what the train stage trains (and
/// the train bench measures).
pub struct Network {
    /// The network's configuration (also what builds it again from saved weights).
    pub config: ModelConfig,
    pub model: Model,
    /// Every variable, BatchNorm running stats included, sorted by name: the tensors
    /// of a weights file.
    pub named_vars: Vec<(String, Var)>,
    pub optimizer: Optimizer,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("config", &self.config)
            .field("variables", &self.named_vars.len())
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Builds the network and draws its weights from `seed`.
    pub fn new(
        arch: Arch,
        method: Method,
        s: &ArchTrainSettings,
        device: &Device,
        seed: u64,
    ) -> Result<Self> {
        let mut config = ModelConfig::new(arch, method, s.width, s.input_size);
        config.drop_rate = s.drop_rate;
        let varmap = VarMap::new();
        let model = Model::new(
            &config,
            VarBuilder::from_varmap(&varmap, DType::F32, device),
        )?;
        ferbayes_models::init_seeded(&varmap, seed)?;
        let named_vars = ferbayes_models::sorted_vars(&varmap);
        let trainable: Vec<_> = named_vars
            .iter()
            .filter(|(name, var)| VarRole::of(name, var.rank()).is_trainable())
            .cloned()
            .collect();
        let optimizer = Optimizer::new(trainable, s)?;
        Ok(Self {
            config,
            model,
            named_vars,
            optimizer,
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn train_member(
    layout: &Layout,
    settings: &Settings,
    arch: Arch,
    method: Method,
    member: usize,
    train: &Dataset,
    valid: &Dataset,
    options: &TrainOptions,
    budget: &mut Option<usize>,
) -> Result<MemberOutcome> {
    let s = settings.train.arch(arch);
    let seed = settings.seed.wrapping_add(member as u64);
    let fp = fingerprint(&FingerprintInput {
        arch,
        method,
        member,
        seed,
        batch_size: settings.train.batch_size,
        label_mode: settings.train.label_mode,
        arch_settings: s,
        train_faces: train.len(),
        valid_faces: valid.len(),
        ferbayes_version: env!("CARGO_PKG_VERSION"),
    });
    let weights_path = layout.member_weights(arch.as_str(), method.as_str(), member);
    if let Some(history) = finished_member(&weights_path, &fp) {
        tracing::info!("{arch}/{method} member {member:02} is up to date; skipping");
        return Ok(MemberOutcome::Complete {
            history,
            trained: false,
        });
    }

    let device = &options.device;
    let Network {
        model,
        named_vars,
        mut optimizer,
        ..
    } = Network::new(arch, method, s, device, seed)?;
    optimizer.set_steps_per_epoch(optim::steps_per_epoch(
        train.len(),
        settings.train.batch_size,
    ));
    let mut history: Vec<EpochRecord> = Vec::new();
    let mut first_epoch = 0;

    let checkpoint = layout.member_checkpoint(arch.as_str(), method.as_str(), member);
    if checkpoint.is_file() {
        match read_safetensors(&checkpoint, device) {
            Ok((tensors, meta)) if meta.get(META_FINGERPRINT) == Some(&fp) => {
                for (name, var) in &named_vars {
                    let t = tensors.get(name).ok_or_else(|| TrainError::Checkpoint {
                        path: checkpoint.clone(),
                        message: format!("lacks weight `{name}`"),
                    })?;
                    var.set(t)?;
                }
                let parse = |key: &str| -> Result<u64> {
                    meta.get(key).and_then(|v| v.parse().ok()).ok_or_else(|| {
                        TrainError::Checkpoint {
                            path: checkpoint.clone(),
                            message: format!("metadata `{key}` missing or invalid"),
                        }
                    })
                };
                first_epoch = parse(META_EPOCHS)? as usize;
                optimizer.restore(&tensors, parse(META_STEP)?)?;
                history = meta
                    .get(META_HISTORY)
                    .and_then(|h| serde_json::from_str(h).ok())
                    .unwrap_or_default();
                tracing::info!(
                    "{arch}/{method} member {member:02}: resuming after epoch {first_epoch}"
                );
            }
            Ok(_) => tracing::info!(
                "{}: made with other settings; starting member {member:02} afresh",
                checkpoint.display()
            ),
            Err(e) => tracing::warn!("ignoring unreadable checkpoint: {e}"),
        }
    }

    let span = ferbayes_core::cli::progress_span(&format!("member {member:02}"), s.epochs as u64);
    span.pb_set_position(first_epoch as u64);
    let _enter = span.enter();
    for epoch in first_epoch..s.epochs {
        let t0 = Instant::now();
        let lr = optimizer.learning_rate();
        let (train_loss, train_accuracy) =
            train_epoch(&model, train, settings, &mut optimizer, seed, epoch, device)?;
        let (valid_loss, valid_accuracy) = evaluate(&model, valid, device)?;
        let seconds = t0.elapsed().as_secs_f64();
        let record = EpochRecord {
            member: member as u16,
            epoch: (epoch + 1) as u32,
            train_loss,
            train_accuracy,
            valid_loss,
            valid_accuracy,
            learning_rate: lr,
            seconds,
        };
        span.pb_inc(1);
        span.pb_set_message(&format!(
            "member {member:02} loss {train_loss:.3} acc {:.1}% val {:.1}% {:.0} img/s",
            100.0 * train_accuracy,
            100.0 * valid_accuracy,
            train.len() as f64 / seconds
        ));
        tracing::info!(
            "{arch}/{method} member {member:02} epoch {}/{}: train loss {train_loss:.4} acc {:.2}%, valid nll {valid_loss:.4} acc {:.2}%, {seconds:.1}s",
            epoch + 1,
            s.epochs,
            100.0 * train_accuracy,
            100.0 * valid_accuracy,
        );
        history.push(record);

        let mut tensors: HashMap<String, Tensor> = named_vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let mut meta = HashMap::from([
            (META_FINGERPRINT.to_owned(), fp.clone()),
            (
                META_HISTORY.to_owned(),
                serde_json::to_string(&history).unwrap_or_default(),
            ),
        ]);
        if epoch + 1 == s.epochs {
            meta.insert(META_COMPLETE.to_owned(), "true".to_owned());
            write_safetensors(&weights_path, &tensors, meta)?;
        } else {
            tensors.extend(optimizer.state()?);
            meta.insert(META_EPOCHS.to_owned(), (epoch + 1).to_string());
            meta.insert(META_STEP.to_owned(), optimizer.step.to_string());
            write_safetensors(&checkpoint, &tensors, meta)?;
        }
        if let Some(left) = budget.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 && epoch + 1 < s.epochs {
                return Ok(MemberOutcome::Interrupted);
            }
        }
    }
    if checkpoint.is_file() {
        std::fs::remove_file(&checkpoint).map_err(|e| ferbayes_core::Error::io(&checkpoint, e))?;
    }
    Ok(MemberOutcome::Complete {
        history,
        trained: true,
    })
}

/// A (B, 1, S, S) tensor of the faces at `indices`.
fn gather(data: &Dataset, indices: &[usize], device: &Device) -> Result<Tensor> {
    let n = data.face_len();
    let mut values = Vec::with_capacity(indices.len() * n);
    for &i in indices {
        values.extend_from_slice(&data.inputs[i * n..(i + 1) * n]);
    }
    Ok(Tensor::from_vec(
        values,
        (indices.len(), 1, data.input_size, data.input_size),
        device,
    )?)
}

/// One epoch; returns mean training loss and accuracy (against the target served).
fn train_epoch(
    model: &Model,
    data: &Dataset,
    settings: &Settings,
    optimizer: &mut Optimizer,
    seed: u64,
    epoch: usize,
    device: &Device,
) -> Result<(f64, f64)> {
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, 2 * epoch as u64));
    order.shuffle(&mut rng);
    let mut noise = Noise::new(mix(seed, 2 * epoch as u64 + 1));
    let mode = settings.train.label_mode;
    let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
    for batch in order.chunks(settings.train.batch_size) {
        if batch.len() < 2 {
            continue;
        }
        let xs = gather(data, batch, device)?;
        let logits = model.forward(&xs, Mode::TRAIN, &mut noise)?;
        let log_probs = candle_nn::ops::log_softmax(&logits, 1)?;
        let (loss, served): (Tensor, Vec<u32>) = match mode {
            LabelMode::Majority | LabelMode::Probability => {
                let labels: Vec<u32> = batch
                    .iter()
                    .map(|&i| match mode {
                        LabelMode::Probability => sample_class(&data.soft[i], &mut rng),
                        _ => u32::from(data.majority[i]),
                    })
                    .collect();
                let target = Tensor::new(labels.as_slice(), device)?;
                (candle_nn::loss::nll(&log_probs, &target)?, labels)
            }
            LabelMode::CrossEntropy => {
                let soft: Vec<f32> = batch.iter().flat_map(|&i| data.soft[i]).collect();
                let target =
                    Tensor::from_vec(soft, (batch.len(), ferbayes_core::NUM_CLASSES), device)?;
                let loss = (target * &log_probs)?.sum(1)?.mean(0)?.neg()?;
                let labels = batch
                    .iter()
                    .map(|&i| argmax(&data.soft[i]) as u32)
                    .collect();
                (loss, labels)
            }
        };
        let grads = loss.backward()?;
        optimizer.step(&grads)?;
        let predicted: Vec<u32> = logits.argmax(1)?.to_vec1()?;
        correct += predicted
            .iter()
            .zip(&served)
            .filter(|(p, t)| p == t)
            .count();
        loss_sum += f64::from(loss.to_scalar::<f32>()?) * batch.len() as f64;
        seen += batch.len();
    }
    let seen = seen.max(1) as f64;
    Ok((loss_sum / seen, correct as f64 / seen))
}

fn sample_class(p: &[f32; ferbayes_core::NUM_CLASSES], rng: &mut ChaCha8Rng) -> u32 {
    let u: f32 = rng.random();
    let mut acc = 0.0;
    for (k, &pk) in p.iter().enumerate() {
        acc += pk;
        if u < acc {
            return k as u32;
        }
    }
    argmax(p) as u32
}

fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

/// Majority-label NLL and accuracy of the deterministic network on `data`.
pub fn evaluate(model: &Model, data: &Dataset, device: &Device) -> Result<(f64, f64)> {
    let mut noise = Noise::new(0);
    let (mut nll, mut correct) = (0.0, 0usize);
    let indices: Vec<usize> = (0..data.len()).collect();
    for batch in indices.chunks(EVAL_BATCH) {
        let xs = gather(data, batch, device)?;
        let logits = model.forward(&xs, Mode::EVAL, &mut noise)?;
        let log_probs: Vec<Vec<f32>> = candle_nn::ops::log_softmax(&logits, 1)?.to_vec2()?;
        for (row, &i) in log_probs.iter().zip(batch) {
            let y = usize::from(data.majority[i]);
            nll -= f64::from(row[y]);
            correct += usize::from(argmax(row) == y);
        }
    }
    let n = data.len() as f64;
    Ok((nll / n, correct as f64 / n))
}

fn history_batch(rows: &[EpochRecord]) -> RecordBatch {
    let col = |f: fn(&EpochRecord) -> f64| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Float64Array>())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.member).collect::<UInt16Array>()),
        Arc::new(rows.iter().map(|r| r.epoch).collect::<UInt32Array>()),
        col(|r| r.train_loss),
        col(|r| r.train_accuracy),
        col(|r| r.valid_loss),
        col(|r| r.valid_accuracy),
        col(|r| r.learning_rate),
        Arc::new(
            rows.iter()
                .map(|r| r.seconds as f32)
                .collect::<Float32Array>(),
        ),
    ];
    RecordBatch::try_new(ferbayes_core::schema::history(), columns)
        .expect("columns match the history schema")
}
