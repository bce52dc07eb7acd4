//! The train stage: every architecture × uncertainty method a profile lists, from ingest's
//! Parquet to `train/<arch>/<method>/member-NN.safetensors` and `history.parquet`.
//!
//! - `mc_dropout` / `mc_dropconnect`: one network (member 00) trained with its stochastic layers
//!   on; `ensemble`: N members, member k seeded with `seed + k` (initial weights, data order,
//!   dropout masks), trained classically.
//! - Members train `train.pack_members` at a time as one packed network (`Model::packed`): the
//!   pack's input is the members' own batches one after the other, each member draws its own
//!   masks and labels, its loss is its own mean NLL (the pack's loss is their sum) and the
//!   optimiser's update is elementwise, so every member's weights are those it gets alone.
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
#[cfg(test)]
mod pack_tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use ferbayes_core::cli::Selection;
use ferbayes_core::runner::StageRun;
use ferbayes_core::schema::rows::HistoryRow;
use ferbayes_core::seed::mix;
use ferbayes_core::{Arch, ArchTrainSettings, LabelMode, Layout, Method, Settings, Split};
use ferbayes_models::{Backend, Mode, Model, ModelConfig, Noise, VarRole};
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
    /// Test hook (feature `testing`): stop (as if killed) after this many pack-epochs have
    /// been checkpointed in this run.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub stop_after_epochs: Option<usize>,
    /// Retrain combinations whose manifest key is up to date (members with a matching
    /// fingerprint are still reused).
    pub force: bool,
    /// `(k, n)`: train only every n-th shard unit (a pack of `train.pack_members` members, see
    /// `ferbayes_core::plan::shard_units`; counted over all combinations in order), starting
    /// at unit k, and leave each combination's history and manifest to a
    /// final run without a shard. Lets n processes train one profile in parallel.
    pub shard: Option<(usize, usize)>,
    /// The kernels the networks run on (default: [`Backend::from_env`]).
    pub kernels: Backend,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            kernels: Backend::from_env(),
            selection: Selection::default(),
            device: Device::Cpu,
            #[cfg(feature = "testing")]
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
    #[cfg(feature = "testing")]
    let mut budget = options.stop_after_epochs;
    #[cfg(not(feature = "testing"))]
    let mut budget = None;
    let mut slot = 0usize;
    let mut out = Vec::new();
    for (_, method) in options.selection.combos(&settings.train) {
        if !Method::STUDY.contains(&method) {
            return Err(TrainError::Invalid(format!(
                "method `{method}` is not supported by train yet"
            )));
        }
    }
    // One writer per member: the members this process trains (a shard's, or all) are locked
    // before anything is checked, so a second `just train` on this root stops at once.
    let _locks = lock_members(layout, settings, options)?;
    // Data are loaded once per distinct input size (the label mode is the profile's).
    let mut cache: HashMap<usize, (Arc<Dataset>, Arc<Dataset>)> = HashMap::new();
    for (arch, method) in options.selection.combos(&settings.train) {
        let plan = ferbayes_core::plan::train(layout, settings, arch, method);
        let check = plan.check()?;
        let members = ferbayes_core::plan::members(settings, method);
        if check.up_to_date()
            && !options.force
            && let Some(history) = finished_history(layout, arch, method, members)
        {
            // Shards count every member, done or not, so that all agree on who trains what.
            slot += ferbayes_core::plan::shard_units(settings, method);
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
        let combo = Combo {
            layout,
            settings,
            arch,
            method,
            data: (&train, &valid),
        };
        let summary = train_combo(combo, options, (&mut budget, &mut slot), (&plan, &check))?;
        let stop = summary.interrupted;
        out.push(summary);
        if stop {
            return Ok(out);
        }
    }
    Ok(out)
}

/// Locks every member this process may write (`Layout::member_lock`), for as long as the
/// returned locks live; fails at once naming the folder, member and holder while another
/// process trains one of them.
fn lock_members(
    layout: &Layout,
    settings: &Settings,
    options: &TrainOptions,
) -> Result<Vec<ferbayes_core::lock::StageLock>> {
    let combos = options.selection.combos(&settings.train);
    let mut locks = Vec::new();
    for (arch, method, member) in
        ferbayes_core::plan::shard_members(settings, &combos, options.shard)
    {
        let what = format!(
            "{} (member {member:02})",
            layout.train_dir(arch, method).display()
        );
        locks.push(ferbayes_core::lock::acquire(
            &layout.member_lock(arch, method, member),
            &what,
        )?);
    }
    Ok(locks)
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

/// One architecture × method to train: where it goes, its settings and its faces.
#[derive(Clone, Copy)]
struct Combo<'a> {
    layout: &'a Layout,
    settings: &'a Settings,
    arch: Arch,
    method: Method,
    /// The train and valid faces at the architecture's input size.
    data: (&'a Dataset, &'a Dataset),
}

fn train_combo(
    combo: Combo<'_>,
    options: &TrainOptions,
    (budget, slot): (&mut Option<usize>, &mut usize),
    (plan, check): (&ferbayes_core::plan::Plan, &ferbayes_core::plan::Check),
) -> Result<ComboSummary> {
    let Combo {
        layout,
        settings,
        arch,
        method,
        data,
    } = combo;
    let members = ferbayes_core::plan::members(settings, method);
    let started = Instant::now();
    let mut stage = StageRun::new(plan, check.clone());
    let machine = ferbayes_models::machine(&options.device, options.kernels);
    let machine_line = machine.summary();
    stage.manifest_mut().machine = machine;
    let span = ferbayes_core::cli::progress_span(&format!("{arch}/{method}"), members as u64);
    let _enter = span.enter();
    let mut assigned = assign_members(combo, options, slot)?;
    span.pb_inc((members - assigned.todo.len()) as u64);
    let mut summary = ComboSummary {
        arch,
        method,
        members,
        trained: 0,
        interrupted: false,
        skipped: false,
        history: Vec::new(),
    };
    let pack_size = settings.train.pack_members.max(1);
    for group in group_by_resume(assigned.todo, &options.device) {
        let mut group = group.into_iter().peekable();
        while group.peek().is_some() {
            let pack: Vec<PackEntry> = group.by_ref().take(pack_size).collect();
            let n = pack.len();
            let outcome = train_pack(
                settings,
                (arch, method),
                pack,
                data,
                options,
                (&mut *budget, &machine_line),
            )?;
            span.pb_inc(n as u64);
            match outcome {
                PackOutcome::Complete(done) => {
                    for (member, h) in done {
                        assigned.histories[member] = Some(h);
                        summary.trained += 1;
                    }
                }
                PackOutcome::Interrupted => {
                    summary.trained += n;
                    summary.interrupted = true;
                    summary.history = assigned.histories.into_iter().flatten().flatten().collect();
                    return Ok(summary);
                }
            }
        }
    }
    summary.history = assigned.histories.into_iter().flatten().flatten().collect();
    if !assigned.left_to_others {
        // Without a shard (or once the other shards are done), the history and the manifest.
        finish_combo(
            layout,
            arch,
            method,
            members,
            stage,
            &summary.history,
            started,
        )?;
    }
    Ok(summary)
}

/// The members of a combination this process trains, and what is already there.
struct Assigned {
    /// Each member's history where it is finished (here, by another shard, or as a twin).
    histories: Vec<Option<Vec<EpochRecord>>>,
    /// This process's unfinished members.
    todo: Vec<MemberJob>,
    /// Some members belong to other shards: they write the history and manifest.
    left_to_others: bool,
}

/// This process's members (a shard takes every n-th shard unit, a pack of members, counted
/// over all combinations; see `ferbayes_core::plan::shard_units`), less the finished ones and
/// those copied from their twin.
fn assign_members(combo: Combo<'_>, options: &TrainOptions, slot: &mut usize) -> Result<Assigned> {
    let (settings, arch, method) = (combo.settings, combo.arch, combo.method);
    let members = ferbayes_core::plan::members(settings, method);
    let mut assigned = Assigned {
        histories: vec![None; members],
        todo: Vec::new(),
        left_to_others: false,
    };
    for member in 0..members {
        let unit = *slot + ferbayes_core::plan::shard_unit(settings, member);
        let mine = options.shard.is_none_or(|(k, n)| unit % n == k);
        if !mine {
            assigned.left_to_others = true;
            continue;
        }
        let job = MemberJob::new(combo, member);
        if let Some(history) = finished_member(&job.weights, &job.fingerprint) {
            tracing::info!("{arch}/{method} member {member:02} is up to date; skipping");
            assigned.histories[member] = Some(history);
        } else if let Some(history) = copy_twin(combo, &job)? {
            assigned.histories[member] = Some(history);
        } else {
            assigned.todo.push(job);
        }
    }
    *slot += ferbayes_core::plan::shard_units(settings, method);
    Ok(assigned)
}

/// The jobs grouped by the epoch they resume from (a pack's members train in step), in order of
/// first appearance.
fn group_by_resume(todo: Vec<MemberJob>, device: &Device) -> Vec<Vec<PackEntry>> {
    let mut groups: Vec<(usize, Vec<PackEntry>)> = Vec::new();
    for job in todo {
        let resume = job.resume(device);
        let epoch = resume.as_ref().map_or(0, |r| r.epochs_done);
        match groups.iter_mut().find(|(e, _)| *e == epoch) {
            Some((_, g)) => g.push((job, resume)),
            None => groups.push((epoch, vec![(job, resume)])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// Writes a finished combination's history and manifest (each member's best epoch, the
/// seconds taken) and removes its resume folder.
fn finish_combo(
    layout: &Layout,
    arch: Arch,
    method: Method,
    members: usize,
    mut stage: StageRun<'_>,
    history: &[EpochRecord],
    started: Instant,
) -> Result<()> {
    for m in 0..members {
        stage.record(&layout.member_weights(arch, method, m), 1)?;
    }
    let path = layout.history(arch, method);
    let batch = ferbayes_core::io::rows_batch(&path, &history_rows(history))?;
    stage.write_table(
        path,
        &ferbayes_core::schema::history(),
        vec![batch],
        ferbayes_core::io::TABLE_ZSTD_LEVEL,
    )?;
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
    stage.note("best_epochs", best);
    stage.note("trained_on", trained_on(layout, arch, method, members));
    stage.note("seconds", started.elapsed().as_secs_f64());
    stage.finish()?;
    let resume = layout.train_dir(arch, method).join(".resume");
    if resume.is_dir() {
        std::fs::remove_dir_all(&resume).map_err(|e| ferbayes_core::Error::io(&resume, e))?;
    }
    Ok(())
}

/// Where the members trained (their `ferbayes.machine` metadata): one entry per machine
/// description with the members trained there, in member order; `not recorded` for members
/// written before it was.
fn trained_on(layout: &Layout, arch: Arch, method: Method, members: usize) -> serde_json::Value {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for m in 0..members {
        let path = layout.member_weights(arch, method, m);
        let machine = header_metadata(&path)
            .and_then(|mut meta| meta.remove(META_MACHINE))
            .unwrap_or_else(|| "not recorded".to_owned());
        match groups.iter_mut().find(|(g, _)| *g == machine) {
            Some((_, list)) => list.push(m),
            None => groups.push((machine, vec![m])),
        }
    }
    groups
        .into_iter()
        .map(|(machine, members)| serde_json::json!({"machine": machine, "members": members}))
        .collect()
}

/// The metadata of a safetensors file, reading only its header (the 8-byte length and the JSON
/// it gives), not the tensors.
fn header_metadata(path: &Path) -> Option<HashMap<String, String>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    // safetensors' own bound on a header: 100 MB.
    let len = usize::try_from(u64::from_le_bytes(len))
        .ok()
        .filter(|&n| n <= 100_000_000)?;
    let mut header = vec![0u8; len];
    file.read_exact(&mut header).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&header).ok()?;
    serde_json::from_value(json.get("__metadata__")?.clone()).ok()
}

/// The MC-Dropout network and ensemble member 0 train identically: the same seed (weights,
/// data order, masks), dropout on the activations in both, the same settings. When one of
/// them is finished, the other is a copy of its weights under its own fingerprint (and its
/// history), not a second training. Returns that history when it copied.
fn copy_twin(combo: Combo<'_>, job: &MemberJob) -> Result<Option<Vec<EpochRecord>>> {
    let (arch, method) = (combo.arch, combo.method);
    let twin = match method {
        _ if job.member != 0 => return Ok(None),
        Method::McDropout => Method::Ensemble,
        Method::Ensemble => Method::McDropout,
        Method::McDropConnect
        | Method::Variational
        | Method::Swag
        | Method::Laplace
        | Method::BatchEnsemble => return Ok(None),
    };
    let other = MemberJob::new(
        Combo {
            method: twin,
            ..combo
        },
        0,
    );
    let Some(history) = finished_member(&other.weights, &other.fingerprint) else {
        return Ok(None);
    };
    let (tensors, other_meta) = read_safetensors(&other.weights, &Device::Cpu)?;
    let mut meta = HashMap::from([
        (META_FINGERPRINT.to_owned(), job.fingerprint.clone()),
        (
            META_HISTORY.to_owned(),
            serde_json::to_string(&history).unwrap_or_default(),
        ),
        (META_COMPLETE.to_owned(), "true".to_owned()),
    ]);
    // The copy's weights were trained where its twin's were.
    if let Some(machine) = other_meta.get(META_MACHINE) {
        meta.insert(META_MACHINE.to_owned(), machine.clone());
    }
    write_safetensors(&job.weights, &tensors, meta)?;
    tracing::info!(
        "{arch}/{method} member 00: the weights of {arch}/{twin} member 00, which trains \
         identically (copied, not retrained)"
    );
    Ok(Some(history))
}

/// One member to train: its seed, fingerprint and files.
#[derive(Debug, Clone)]
struct MemberJob {
    member: usize,
    seed: u64,
    fingerprint: String,
    weights: PathBuf,
    checkpoint: PathBuf,
}

impl MemberJob {
    /// Removes the member's checkpoint once its final weights are written.
    fn remove_checkpoint(&self) -> Result<()> {
        if self.checkpoint.is_file() {
            std::fs::remove_file(&self.checkpoint)
                .map_err(|e| ferbayes_core::Error::io(&self.checkpoint, e))?;
        }
        Ok(())
    }

    fn new(combo: Combo<'_>, member: usize) -> Self {
        let Combo {
            layout,
            settings,
            arch,
            method,
            data: (train, valid),
        } = combo;
        let seed = settings.seed.wrapping_add(member as u64);
        let fingerprint = fingerprint(&FingerprintInput {
            arch,
            method,
            member,
            seed,
            batch_size: settings.train.batch_size,
            label_mode: settings.train.label_mode,
            arch_settings: settings.train.arch(arch),
            train_faces: train.len(),
            valid_faces: valid.len(),
            ferbayes_version: env!("CARGO_PKG_VERSION"),
        });
        MemberJob {
            member,
            seed,
            fingerprint,
            weights: layout.member_weights(arch, method, member),
            checkpoint: layout.member_checkpoint(arch, method, member),
        }
    }

    /// The member's checkpoint, if one made with the same fingerprint is readable.
    fn resume(&self, device: &Device) -> Option<Resume> {
        let path = &self.checkpoint;
        if !path.is_file() {
            return None;
        }
        match read_safetensors(path, device) {
            Ok((tensors, meta)) if meta.get(META_FINGERPRINT) == Some(&self.fingerprint) => {
                let parse = |key: &str| meta.get(key).and_then(|v| v.parse::<u64>().ok());
                let (Some(epochs), Some(step)) = (parse(META_EPOCHS), parse(META_STEP)) else {
                    tracing::warn!("{}: metadata incomplete; starting afresh", path.display());
                    return None;
                };
                let history = meta
                    .get(META_HISTORY)
                    .and_then(|h| serde_json::from_str(h).ok())
                    .unwrap_or_default();
                Some(Resume {
                    tensors,
                    epochs_done: epochs as usize,
                    step,
                    history,
                })
            }
            Ok(_) => {
                tracing::info!(
                    "{}: made with other settings; starting member {:02} afresh",
                    path.display(),
                    self.member
                );
                None
            }
            Err(e) => {
                tracing::warn!("ignoring unreadable checkpoint: {e}");
                None
            }
        }
    }
}

/// A member to train and, when it resumes, its checkpointed state.
type PackEntry = (MemberJob, Option<Resume>);

/// A member's state after its last completed epoch, from its checkpoint.
#[derive(Debug)]
struct Resume {
    /// Weights and optimiser state, under the member's own names.
    tensors: HashMap<String, Tensor>,
    epochs_done: usize,
    step: u64,
    history: Vec<EpochRecord>,
}

enum PackOutcome {
    /// (member, its history) for each member of the pack.
    Complete(Vec<(usize, Vec<EpochRecord>)>),
    Interrupted,
}

/// Metadata keys of member weight and checkpoint files.
const META_FINGERPRINT: &str = "ferbayes.fingerprint";
const META_EPOCHS: &str = "ferbayes.epochs_done";
const META_STEP: &str = "ferbayes.step";
const META_HISTORY: &str = "ferbayes.history";
const META_COMPLETE: &str = "ferbayes.complete";
/// Where a finished member trained (`core::machine::Machine::summary`): shards of one run may
/// train on other machines than the run that writes the combination's manifest.
const META_MACHINE: &str = "ferbayes.machine";

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
        let path = layout.member_weights(arch, method, m);
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
        Self::packed(arch, method, s, device, &[seed])
    }

    /// `seeds.len()` networks packed into one (`Model::packed`), member g drawing its weights
    /// from `seeds[g]` exactly as [`Network::new`] would, with one optimiser over the packed
    /// variables (every update is elementwise, so each member's is its own).
    pub fn packed(
        arch: Arch,
        method: Method,
        s: &ArchTrainSettings,
        device: &Device,
        seeds: &[u64],
    ) -> Result<Self> {
        Self::packed_on(arch, method, s, device, seeds, Backend::from_env())
    }

    /// [`Network::packed`] on the kernels of `kernels`.
    pub fn packed_on(
        arch: Arch,
        method: Method,
        s: &ArchTrainSettings,
        device: &Device,
        seeds: &[u64],
        kernels: Backend,
    ) -> Result<Self> {
        let mut config = ModelConfig::new(arch, method, s.width, s.input_size);
        config.drop_rate = s.drop_rate;
        let varmap = VarMap::new();
        let model = Model::packed(
            &config,
            kernels,
            seeds.len(),
            VarBuilder::from_varmap(&varmap, DType::F32, device),
        )?;
        ferbayes_models::init_packed(&varmap, seeds)?;
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

    /// Networks packed into this one.
    pub fn members(&self) -> usize {
        self.model.members()
    }

    /// Member g's weights (every variable, under the single network's names).
    pub fn member_weights(&self, g: usize) -> Result<HashMap<String, Tensor>> {
        let all: Vec<(String, Tensor)> = self
            .named_vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        Ok(ferbayes_models::unpack_member(
            all.iter().map(|(n, t)| (n, t)),
            self.members(),
            g,
        )?)
    }

    /// Member g's optimiser state (the names [`Optimizer::state`] gives).
    pub fn member_state(&self, g: usize) -> Result<HashMap<String, Tensor>> {
        Ok(self.member_states()?.swap_remove(g))
    }

    /// Every member's optimiser state, in pack order, from one copy of the packed state.
    pub fn member_states(&self) -> Result<Vec<HashMap<String, Tensor>>> {
        let state = self.optimizer.state()?;
        (0..self.members())
            .map(|g| Ok(ferbayes_models::unpack_member(&state, self.members(), g)?))
            .collect()
    }

    /// Restores every member's weights and optimiser state from their checkpoints' tensors
    /// (one map per member, in pack order) and the step count they share.
    fn restore(
        &mut self,
        members: &[&HashMap<String, Tensor>],
        step: u64,
        at: &Path,
    ) -> Result<()> {
        let owned: Vec<HashMap<String, Tensor>> = members.iter().map(|m| (*m).clone()).collect();
        let packed = ferbayes_models::pack_members(&owned).map_err(|e| TrainError::Checkpoint {
            path: at.to_owned(),
            message: e.to_string(),
        })?;
        for (name, var) in &self.named_vars {
            let t = packed.get(name).ok_or_else(|| TrainError::Checkpoint {
                path: at.to_owned(),
                message: format!("lacks weight `{name}`"),
            })?;
            var.set(t)?;
        }
        self.optimizer.restore(&packed, step)
    }
}

/// Trains one pack of members (all resuming from the same epoch) as one packed network,
/// writing each member's checkpoint after every epoch and its weights (recording `machine`,
/// the one-line description of where it trained) after the last.
fn train_pack(
    settings: &Settings,
    (arch, method): (Arch, Method),
    pack: Vec<PackEntry>,
    (train, valid): (&Dataset, &Dataset),
    options: &TrainOptions,
    (budget, machine): (&mut Option<usize>, &str),
) -> Result<PackOutcome> {
    let s = settings.train.arch(arch);
    let device = &options.device;
    let (jobs, resumes): (Vec<MemberJob>, Vec<Option<Resume>>) = pack.into_iter().unzip();
    let seeds: Vec<u64> = jobs.iter().map(|j| j.seed).collect();
    let mut net = Network::packed_on(arch, method, s, device, &seeds, options.kernels)?;
    net.optimizer.set_steps_per_epoch(optim::steps_per_epoch(
        train.len(),
        settings.train.batch_size,
    ));
    let label = pack_label(arch, method, &jobs);
    let mut histories: Vec<Vec<EpochRecord>> = vec![Vec::new(); jobs.len()];
    let first_epoch = resume_pack(&mut net, &jobs, &resumes, &mut histories)?;
    if first_epoch > 0 {
        tracing::info!("{label}: resuming after epoch {first_epoch}");
    }
    let span = ferbayes_core::cli::progress_span(&label, s.epochs as u64);
    span.pb_set_position(first_epoch as u64);
    let _enter = span.enter();
    for epoch in first_epoch..s.epochs {
        let t0 = Instant::now();
        let lr = net.optimizer.learning_rate();
        let train_stats = train_epoch(
            &net.model,
            train,
            settings,
            &mut net.optimizer,
            &seeds,
            epoch,
            device,
        )?;
        let valid_stats = evaluate_packed(&net.model, valid, device)?;
        let seconds = t0.elapsed().as_secs_f64();
        for (g, job) in jobs.iter().enumerate() {
            let record = EpochRecord {
                member: job.member as u16,
                epoch: (epoch + 1) as u32,
                train_loss: train_stats[g].0,
                train_accuracy: train_stats[g].1,
                valid_loss: valid_stats[g].0,
                valid_accuracy: valid_stats[g].1,
                learning_rate: lr,
                seconds,
            };
            log_epoch(arch, method, s.epochs, &record);
            histories[g].push(record);
        }
        span.pb_inc(1);
        span.pb_set_message(&format!(
            "{:.0} member-img/s",
            (jobs.len() * train.len()) as f64 / seconds
        ));
        let last = epoch + 1 == s.epochs;
        save_pack(&net, &jobs, &histories, (epoch, last), machine)?;
        if let Some(left) = budget.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 && !last {
                return Ok(PackOutcome::Interrupted);
            }
        }
    }
    for job in &jobs {
        job.remove_checkpoint()?;
    }
    Ok(PackOutcome::Complete(
        jobs.iter().map(|j| j.member).zip(histories).collect(),
    ))
}

/// `alexnet/ensemble members 00,01,02`: a pack in log lines and progress bars.
fn pack_label(arch: Arch, method: Method, jobs: &[MemberJob]) -> String {
    let names: Vec<String> = jobs.iter().map(|j| format!("{:02}", j.member)).collect();
    let plural = if jobs.len() > 1 { "s" } else { "" };
    format!("{arch}/{method} member{plural} {}", names.join(","))
}

/// Restores a pack from its members' checkpoints (all from the same epoch) and their
/// histories so far; returns the epoch to start from (0 for a fresh pack).
fn resume_pack(
    net: &mut Network,
    jobs: &[MemberJob],
    resumes: &[Option<Resume>],
    histories: &mut [Vec<EpochRecord>],
) -> Result<usize> {
    let Some(Some(r0)) = resumes.first() else {
        return Ok(0);
    };
    let states: Vec<&HashMap<String, Tensor>> =
        resumes.iter().flatten().map(|r| &r.tensors).collect();
    net.restore(&states, r0.step, &jobs[0].checkpoint)?;
    for (h, r) in histories.iter_mut().zip(resumes.iter().flatten()) {
        h.clone_from(&r.history);
    }
    Ok(r0.epochs_done)
}

fn log_epoch(arch: Arch, method: Method, epochs: usize, r: &EpochRecord) {
    tracing::info!(
        "{arch}/{method} member {:02} epoch {}/{epochs}: train loss {:.4} acc {:.2}%, valid nll {:.4} acc {:.2}%, {:.1}s",
        r.member,
        r.epoch,
        r.train_loss,
        100.0 * r.train_accuracy,
        r.valid_loss,
        100.0 * r.valid_accuracy,
        r.seconds,
    );
}

/// Writes each member's checkpoint after an epoch (weights, optimiser state copied once for the
/// whole pack, history, epoch and step), or its final weights after the last epoch.
fn save_pack(
    net: &Network,
    jobs: &[MemberJob],
    histories: &[Vec<EpochRecord>],
    (epoch, last): (usize, bool),
    machine: &str,
) -> Result<()> {
    let mut states = if last {
        Vec::new()
    } else {
        net.member_states()?
    }
    .into_iter();
    for (g, job) in jobs.iter().enumerate() {
        let mut tensors = net.member_weights(g)?;
        let mut meta = HashMap::from([
            (META_FINGERPRINT.to_owned(), job.fingerprint.clone()),
            (
                META_HISTORY.to_owned(),
                serde_json::to_string(&histories[g]).unwrap_or_default(),
            ),
        ]);
        if last {
            meta.insert(META_COMPLETE.to_owned(), "true".to_owned());
            meta.insert(META_MACHINE.to_owned(), machine.to_owned());
            write_safetensors(&job.weights, &tensors, meta)?;
        } else {
            tensors.extend(states.next().unwrap_or_default());
            meta.insert(META_EPOCHS.to_owned(), (epoch + 1).to_string());
            meta.insert(META_STEP.to_owned(), net.optimizer.step.to_string());
            write_safetensors(&job.checkpoint, &tensors, meta)?;
        }
    }
    Ok(())
}

/// The faces of several index lists one after the other: a packed model's input
/// ((G·B, 1, S, S) for G lists of B indices).
fn gather_packed(data: &Dataset, lists: &[&[usize]], device: &Device) -> Result<Tensor> {
    let n = data.face_len();
    let total: usize = lists.iter().map(|l| l.len()).sum();
    let mut values = Vec::with_capacity(total * n);
    for &i in lists.iter().flat_map(|l| l.iter()) {
        values.extend_from_slice(&data.inputs[i * n..(i + 1) * n]);
    }
    Ok(Tensor::from_vec(
        values,
        (total, 1, data.input_size, data.input_size),
        device,
    )?)
}

/// One epoch of a packed model, member g seeded by `seeds[g]` (its data order, label draws
/// and masks exactly as if trained alone); per member, the mean training loss and accuracy
/// (against the target served).
///
/// Nothing is read back from the device inside the step loop: each step leaves its members'
/// losses and correct counts as a small tensor on the device, and the epoch reads them all once
/// at its end and sums them on the host in step order (the sums of a loop that read every step).
fn train_epoch(
    model: &Model,
    data: &Dataset,
    settings: &Settings,
    optimizer: &mut Optimizer,
    seeds: &[u64],
    epoch: usize,
    device: &Device,
) -> Result<Vec<(f64, f64)>> {
    let g_count = seeds.len();
    let mut rngs: Vec<ChaCha8Rng> = Vec::with_capacity(g_count);
    let mut orders: Vec<Vec<usize>> = Vec::with_capacity(g_count);
    let mut noise: Vec<Noise> = Vec::with_capacity(g_count);
    for &seed in seeds {
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, 2 * epoch as u64));
        order.shuffle(&mut rng);
        orders.push(order);
        rngs.push(rng);
        noise.push(Noise::new(mix(seed, 2 * epoch as u64 + 1)));
    }
    let mode = settings.train.label_mode;
    let b = settings.train.batch_size;
    // Per step: its batch size and a (2, G) device tensor of the members' losses and correct
    // counts, read once after the loop.
    let mut steps: Vec<(usize, Tensor)> = Vec::new();
    let batches = data.len().div_ceil(b.max(1));
    for j in 0..batches {
        let lists: Vec<&[usize]> = orders
            .iter()
            .map(|o| &o[j * b..((j + 1) * b).min(o.len())])
            .collect();
        let n = lists[0].len();
        if n < 2 {
            continue;
        }
        let xs = gather_packed(data, &lists, device)?;
        let (targets, served) = step_targets(data, &lists, mode, &mut rngs, device)?;
        let tally = train_step(model, optimizer, &xs, &targets, &served, &mut noise)?;
        steps.push((n, tally));
    }
    let mut sums = vec![(0.0f64, 0usize); g_count];
    if !steps.is_empty() {
        let tallies: Vec<&Tensor> = steps.iter().map(|(_, t)| t).collect();
        // One read per epoch: (steps, 2, G) as f32 (counts are small integers, exact in f32).
        let values: Vec<f32> = Tensor::stack(&tallies, 0)?.flatten_all()?.to_vec1()?;
        for ((n, _), step) in steps.iter().zip(values.chunks(2 * g_count)) {
            let (loss, correct) = step.split_at(g_count);
            for (g, sum) in sums.iter_mut().enumerate() {
                sum.0 += f64::from(loss[g]) * *n as f64;
                sum.1 += correct[g] as usize;
            }
        }
    }
    let seen = steps.iter().map(|(n, _)| n).sum::<usize>().max(1) as f64;
    Ok(sums
        .into_iter()
        .map(|(loss, correct)| (loss / seen, correct as f64 / seen))
        .collect())
}

/// What each member's loss compares its rows of the logits with in one step.
#[derive(Debug, Clone)]
pub enum StepTargets {
    /// One class per row, (G·n,) u32: the NLL (label modes `majority` and `probability`).
    Classes(Tensor),
    /// A distribution over the classes per row, (G·n, 8) f32: the cross-entropy against it
    /// (label mode `crossentropy`).
    Soft(Tensor),
}

/// One training step of a packed network (one member: a plain network) on `xs`, G members'
/// batches of n faces one after the other: the forward pass in [`Mode::TRAIN`] (member g's masks
/// from `noise[g]`), each member's mean loss on its own rows as it alone computes it, the
/// backward pass of their sum (whose gradient reaches each member's logits exactly as its own
/// loss's would) and one optimiser step.
///
/// Reads nothing back from the device: returns the step's (2, G) tally there, row 0 the
/// members' losses and row 1 how many of each member's predictions (argmax of its logits) equal
/// `served` ((G·n,) u32, the labels the members were served).
pub fn train_step(
    model: &Model,
    optimizer: &mut Optimizer,
    xs: &Tensor,
    targets: &StepTargets,
    served: &Tensor,
    noise: &mut [Noise],
) -> Result<Tensor> {
    let g_count = model.members();
    let n = xs.dim(0)? / g_count;
    let logits = model.forward_packed(xs, Mode::TRAIN, noise)?;
    let mut losses: Vec<Tensor> = Vec::with_capacity(g_count);
    if model.backend().device_ops(&[&logits]) {
        // One op each way (`ferbayes_kernels::device::cross_entropy`), the same loss.
        use ferbayes_models::device_ops::{Target, cross_entropy};
        for g in 0..g_count {
            let rows = logits.narrow(0, g * n, n)?;
            losses.push(match targets {
                StepTargets::Classes(t) => {
                    cross_entropy(&rows, &t.narrow(0, g * n, n)?, Target::Classes)?
                }
                StepTargets::Soft(t) => {
                    cross_entropy(&rows, &t.narrow(0, g * n, n)?, Target::Soft)?
                }
            });
        }
    } else {
        let log_probs = candle_nn::ops::log_softmax(&logits, 1)?;
        for g in 0..g_count {
            let lp = log_probs.narrow(0, g * n, n)?;
            losses.push(match targets {
                StepTargets::Classes(t) => candle_nn::loss::nll(&lp, &t.narrow(0, g * n, n)?)?,
                StepTargets::Soft(t) => (t.narrow(0, g * n, n)? * lp)?.sum(1)?.mean(0)?.neg()?,
            });
        }
    }
    let mut total = losses[0].clone();
    for l in &losses[1..] {
        total = (total + l)?;
    }
    let grads = total.backward()?;
    optimizer.step(&grads)?;
    let correct = logits
        .argmax(1)?
        .eq(served)?
        .to_dtype(DType::F32)?
        .reshape((g_count, n))?
        .sum(1)?;
    let losses = Tensor::stack(&losses, 0)?.reshape(g_count)?;
    // Detached: kept until the epoch ends, the tally must not hold the step's graph (every
    // activation) alive.
    Ok(Tensor::stack(&[losses, correct], 0)?.detach())
}

/// The ops one [`train_step`] of `arch` runs on `backend`'s kernels (MC-Dropout, one network, a
/// batch of `batch` faces of the settings' size, after one warm-up step), counted by
/// [`ferbayes_models::ops_of`]: each a kernel launch on a GPU at most (views launch nothing).
/// The count depends on the network's structure and optimiser settings, not on its width, input
/// size or `batch`. On [`Backend::Reference`] the optimiser runs as a chain of candle ops per
/// variable, as a GPU ran it before the device ops. The counters are the process's: nothing
/// else may create tensors meanwhile.
pub fn step_ops(
    arch: Arch,
    s: &ArchTrainSettings,
    device: &Device,
    backend: Backend,
    batch: usize,
) -> Result<usize> {
    let Network {
        model,
        mut optimizer,
        ..
    } = Network::packed_on(arch, Method::McDropout, s, device, &[7], backend)?;
    // A FER+ epoch's steps, which the learning-rate schedules need.
    optimizer.set_steps_per_epoch(optim::steps_per_epoch(25_045, batch));
    if backend == Backend::Reference {
        optimizer.force_candle_chain();
    }
    let size = s.input_size;
    let pixels: Vec<f32> = (0..batch * size * size)
        .map(|i| (i % 251) as f32 / 251.0)
        .collect();
    let xs = Tensor::from_vec(pixels, (batch, 1, size, size), device)?;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 8).collect();
    let served = Tensor::new(labels.as_slice(), device)?;
    let targets = StepTargets::Classes(served.clone());
    let mut noise = [Noise::new(11)];
    train_step(&model, &mut optimizer, &xs, &targets, &served, &mut noise)?;
    let mut failed = None;
    let ops = ferbayes_models::ops_of(|| {
        failed = train_step(&model, &mut optimizer, &xs, &targets, &served, &mut noise).err();
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(ops),
    }
}

/// The targets and served labels of one step: member g's batch `lists[g]`, its label draws
/// (label mode `probability`) from `rngs[g]`, members in order.
fn step_targets(
    data: &Dataset,
    lists: &[&[usize]],
    mode: LabelMode,
    rngs: &mut [ChaCha8Rng],
    device: &Device,
) -> Result<(StepTargets, Tensor)> {
    let rows: usize = lists.iter().map(|l| l.len()).sum();
    let mut served: Vec<u32> = Vec::with_capacity(rows);
    for (list, rng) in lists.iter().zip(rngs.iter_mut()) {
        served.extend(list.iter().map(|&i| match mode {
            LabelMode::Majority => u32::from(data.majority[i]),
            LabelMode::Probability => sample_class(&data.soft[i], rng),
            LabelMode::CrossEntropy => argmax(&data.soft[i]) as u32,
        }));
    }
    let served = Tensor::from_vec(served, rows, device)?;
    let targets = match mode {
        LabelMode::Majority | LabelMode::Probability => StepTargets::Classes(served.clone()),
        LabelMode::CrossEntropy => {
            let soft: Vec<f32> = lists
                .iter()
                .flat_map(|l| l.iter())
                .flat_map(|&i| data.soft[i])
                .collect();
            StepTargets::Soft(Tensor::from_vec(
                soft,
                (rows, ferbayes_core::NUM_CLASSES),
                device,
            )?)
        }
    };
    Ok((targets, served))
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
    Ok(evaluate_packed(model, data, device)?[0])
}

/// [`evaluate`] for every member of a packed model: each sees all of `data`.
///
/// Each pass leaves every face's log-probability of its label and whether the argmax hit it on
/// the device; they are read once at the end and summed on the host in face order.
pub fn evaluate_packed(model: &Model, data: &Dataset, device: &Device) -> Result<Vec<(f64, f64)>> {
    let members = model.members();
    let mut noise: Vec<Noise> = (0..members).map(|_| Noise::new(0)).collect();
    let indices: Vec<usize> = (0..data.len()).collect();
    // About EVAL_BATCH faces per pass whatever the pack size (bounded memory).
    let per_member = EVAL_BATCH.div_ceil(members).max(16);
    let mut passes: Vec<(usize, Tensor)> = Vec::new();
    for batch in indices.chunks(per_member) {
        let lists = vec![batch; members];
        let xs = gather_packed(data, &lists, device)?;
        let logits = model.forward_packed(&xs, Mode::EVAL, &mut noise)?;
        let log_probs = candle_nn::ops::log_softmax(&logits, 1)?;
        let labels: Vec<u32> = (0..members)
            .flat_map(|_| batch.iter().map(|&i| u32::from(data.majority[i])))
            .collect();
        let labels = Tensor::from_slice(&labels, labels.len(), device)?;
        let picked = log_probs.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?;
        let hit = log_probs.argmax(1)?.eq(&labels)?.to_dtype(DType::F32)?;
        passes.push((batch.len(), Tensor::stack(&[picked, hit], 0)?.detach()));
    }
    let mut sums = vec![(0.0f64, 0usize); members];
    if !passes.is_empty() {
        let all: Vec<&Tensor> = passes.iter().map(|(_, t)| t).collect();
        let values: Vec<f32> = Tensor::cat(&all, 1)?.flatten_all()?.to_vec1()?;
        let width = values.len() / 2;
        let (picked, hit) = values.split_at(width);
        let mut at = 0;
        for (len, _) in &passes {
            for (g, sum) in sums.iter_mut().enumerate() {
                for k in at + g * len..at + (g + 1) * len {
                    sum.0 -= f64::from(picked[k]);
                    sum.1 += usize::from(hit[k] > 0.0);
                }
            }
            at += members * len;
        }
    }
    let n = data.len() as f64;
    Ok(sums
        .into_iter()
        .map(|(nll, correct)| (nll / n, correct as f64 / n))
        .collect())
}

/// The rows of `history.parquet` (schema [`ferbayes_core::schema::history`]).
fn history_rows(records: &[EpochRecord]) -> Vec<HistoryRow> {
    records
        .iter()
        .map(|r| HistoryRow {
            member: r.member,
            epoch: r.epoch,
            train_loss: r.train_loss,
            train_accuracy: r.train_accuracy,
            valid_loss: r.valid_loss,
            valid_accuracy: r.valid_accuracy,
            learning_rate: r.learning_rate,
            seconds: r.seconds as f32,
        })
        .collect()
}
