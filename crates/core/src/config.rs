//! The typed `pipeline.toml`: defaults plus named profiles that override only what differs.
//!
//! ```toml
//! [defaults]
//! seed = 42
//! [defaults.ingest]
//! zstd_level = 3
//!
//! [profiles.smoke.ingest]
//! max_per_split = 64
//! ```
//!
//! A profile is merged key by key over `[defaults]` (tables recursively, any other value replaced
//! whole), and the result is checked against [`Settings`]. Unknown keys are an error naming the key
//! and the table it sits in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names::{Arch, LabelMode, Method, OptimizerKind};

/// The profile used when neither `--profile` nor `FER_PROFILE` names one.
pub const DEFAULT_PROFILE: &str = "cpu";

/// Every setting of the pipeline, after the profile has been merged over the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Base seed of every random choice (weight init, data order, dropout masks).
    pub seed: u64,
    /// Where the FER+ data lives when neither `--data` nor `FER_DATA` says.
    pub data_dir: PathBuf,
    /// The device train and infer compute on when neither `--device` nor `FER_DEVICE` says
    /// (`just train` and `just infer` build the CUDA binaries for `cuda`). Not part of any
    /// stage's key: the manifests record where a run computed.
    #[serde(default)]
    pub device: ComputeDevice,
    pub ingest: IngestSettings,
    pub train: TrainSettings,
    pub infer: InferSettings,
    pub analyze: AnalyzeSettings,
    /// How `ferbayes-submit` runs the chain as Slurm jobs (no effect on any artifact).
    #[serde(default)]
    pub slurm: SlurmSettings,
}

/// A compute device: the `device` setting, a Slurm job's, and the stage binaries' `--device`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDevice {
    #[default]
    Cpu,
    /// The first NVIDIA GPU (binaries built with `--features cuda`).
    Cuda,
}

impl ComputeDevice {
    /// The value of the stage binaries' `--device` flag.
    pub fn as_str(self) -> &'static str {
        match self {
            ComputeDevice::Cpu => "cpu",
            ComputeDevice::Cuda => "cuda",
        }
    }
}

impl std::fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ComputeDevice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim() {
            "cpu" => Ok(ComputeDevice::Cpu),
            "cuda" => Ok(ComputeDevice::Cuda),
            other => Err(format!("unknown device `{other}` (expected cpu or cuda)")),
        }
    }
}

/// Resources of one kind of Slurm job (`#SBATCH` lines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmJobSettings {
    /// Wall-clock limit, in any form `sbatch --time` takes (`HH:MM:SS`, `D-HH:MM:SS`, ...).
    pub time: String,
    /// `--cpus-per-task`; also the thread count the stage binary uses.
    pub cpus: usize,
    /// `--mem` (e.g. `16G`); absent: the partition's default.
    #[serde(default)]
    pub mem: Option<String>,
    /// `--gres` (e.g. `gpu:1`); absent: none.
    #[serde(default)]
    pub gres: Option<String>,
    /// The device the stage binary computes on (train and infer only).
    #[serde(default)]
    pub device: ComputeDevice,
}

impl SlurmJobSettings {
    fn new(time: &str, cpus: usize) -> Self {
        SlurmJobSettings {
            time: time.to_owned(),
            cpus,
            mem: None,
            gres: None,
            device: ComputeDevice::Cpu,
        }
    }
}

/// Settings of `ferbayes-submit`: the Slurm jobs of a profile's chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSettings {
    /// `--partition`; absent: the cluster's default.
    #[serde(default)]
    pub partition: Option<String>,
    /// `--account`; absent: the user's default.
    #[serde(default)]
    pub account: Option<String>,
    /// `--qos`; absent: the default.
    #[serde(default)]
    pub qos: Option<String>,
    /// Train array width K: task i runs `ferbayes-train --shard i/K` (cut to the number of
    /// shard units, so no task is idle).
    #[serde(default = "default_array_width")]
    pub array_width: usize,
    /// Most tasks of one array running at once (`--array=...%N`); 0: no limit.
    #[serde(default)]
    pub max_running: usize,
    /// Extra `#SBATCH` lines for every job, e.g. `"--constraint=a100"`.
    #[serde(default)]
    pub extra_sbatch: Vec<String>,
    /// Shell lines run before each stage binary, e.g. `module load cuda/12.4`.
    #[serde(default)]
    pub setup: String,
    /// The folder of the ferbayes binaries as the compute nodes see it; absent: the folder of
    /// the running `ferbayes-submit`.
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    #[serde(default = "default_slurm_ingest")]
    pub ingest: SlurmJobSettings,
    /// Each task of the train array.
    #[serde(default = "default_slurm_train")]
    pub train: SlurmJobSettings,
    /// The train pass after the array that writes each combination's history and manifest.
    #[serde(default = "default_slurm_finish")]
    pub finish: SlurmJobSettings,
    /// Each task of the infer array (one architecture × method).
    #[serde(default = "default_slurm_infer")]
    pub infer: SlurmJobSettings,
    #[serde(default = "default_slurm_analyze")]
    pub analyze: SlurmJobSettings,
}

fn default_array_width() -> usize {
    4
}
fn default_slurm_ingest() -> SlurmJobSettings {
    SlurmJobSettings::new("01:00:00", 2)
}
fn default_slurm_train() -> SlurmJobSettings {
    SlurmJobSettings::new("24:00:00", 2)
}
fn default_slurm_finish() -> SlurmJobSettings {
    SlurmJobSettings::new("00:30:00", 1)
}
fn default_slurm_infer() -> SlurmJobSettings {
    SlurmJobSettings::new("04:00:00", 2)
}
fn default_slurm_analyze() -> SlurmJobSettings {
    SlurmJobSettings::new("01:00:00", 2)
}

impl Default for SlurmSettings {
    fn default() -> Self {
        SlurmSettings {
            partition: None,
            account: None,
            qos: None,
            array_width: default_array_width(),
            max_running: 0,
            extra_sbatch: Vec::new(),
            setup: String::new(),
            bin_dir: None,
            ingest: default_slurm_ingest(),
            train: default_slurm_train(),
            finish: default_slurm_finish(),
            infer: default_slurm_infer(),
            analyze: default_slurm_analyze(),
        }
    }
}

impl SlurmSettings {
    /// The job settings by stage name, in chain order.
    pub fn jobs(&self) -> [(&'static str, &SlurmJobSettings); 5] {
        [
            ("ingest", &self.ingest),
            ("train", &self.train),
            ("finish", &self.finish),
            ("infer", &self.infer),
            ("analyze", &self.analyze),
        ]
    }

    /// Checks value ranges serde cannot; the error names the key.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        let bad = |key: String, msg: &str| Err((format!("slurm.{key}"), msg.to_owned()));
        if self.array_width == 0 {
            return bad("array_width".into(), "must be at least 1");
        }
        for (name, job) in self.jobs() {
            if job.time.trim().is_empty() || job.time.contains(char::is_whitespace) {
                return bad(
                    format!("{name}.time"),
                    "must be a Slurm time such as 04:00:00",
                );
            }
            if job.cpus == 0 {
                return bad(format!("{name}.cpus"), "must be at least 1");
            }
            let gpu_stage = matches!(name, "train" | "finish" | "infer");
            if !gpu_stage && job.device != ComputeDevice::Cpu {
                return bad(
                    format!("{name}.device"),
                    "only train, finish and infer take a device",
                );
            }
        }
        if let Some(line) = self
            .extra_sbatch
            .iter()
            .find(|l| !l.trim_start().starts_with('-'))
        {
            return bad(
                "extra_sbatch".into(),
                &format!("`{line}` is not an sbatch option (e.g. \"--constraint=a100\")"),
            );
        }
        Ok(())
    }
}

/// Settings of the dataset-shift evaluation (Ovadia et al. 2019): `faces` test faces (the first
/// ones with a majority label) are corrupted by each of `corruptions` at severities 1..=5.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftSettings {
    /// Test faces corrupted; 0 turns the evaluation off.
    pub faces: usize,
    /// Corruption names (see `ferbayes_ingest::shift::Corruption`).
    pub corruptions: Vec<String>,
    /// Seed of the random corruptions (noise, patch positions, rotation signs), mixed with
    /// each face's row number.
    #[serde(default)]
    pub seed: u64,
}

impl ShiftSettings {
    /// Whether the evaluation runs.
    pub fn enabled(&self) -> bool {
        self.faces > 0 && !self.corruptions.is_empty()
    }
}

/// Settings of the out-of-distribution evaluation: generated non-face sets and image folders,
/// told apart from the (in-distribution) test faces.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OodSettings {
    /// Images per set (generated sets have exactly this many; folders are cut to it, in file
    /// name order); the in-distribution side uses as many test faces. 0 turns the evaluation off.
    pub faces: usize,
    /// Generated sets (see `ferbayes_ingest::shift::GeneratedOod`).
    pub generated: Vec<String>,
    /// Folders of PNG/JPEG images, each one OOD set named after the folder; relative paths
    /// are relative to the working directory.
    pub folders: Vec<PathBuf>,
    /// Seed of the generated sets, mixed with each image's index.
    #[serde(default)]
    pub seed: u64,
}

impl OodSettings {
    /// Whether the evaluation runs.
    pub fn enabled(&self) -> bool {
        self.faces > 0 && !(self.generated.is_empty() && self.folders.is_empty())
    }
}

/// Settings of the infer stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferSettings {
    /// Stochastic passes T for the MC methods (ensembles use all their N members).
    pub samples: usize,
    /// Faces per forward pass.
    pub batch_size: usize,
}

/// Settings of the analyze stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeSettings {
    /// Equal-width confidence bins of ECE and the reliability diagrams.
    pub ece_bins: usize,
    /// Random ensemble member orderings for the mean ± std curves.
    pub orderings: usize,
    /// How many most-uncertain test faces the figures show.
    pub top_uncertain: usize,
    /// Sample counts n at which those faces' predictions are shown (and the console table).
    pub shown_n: Vec<usize>,
}

impl Settings {
    /// Checks value ranges serde cannot; the error names the key.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        let t = &self.train;
        let bad = |key: &str, msg: &str| Err((key.to_owned(), msg.to_owned()));
        if t.archs.is_empty() {
            return bad(
                "train.archs",
                "is empty: name at least one architecture (alexnet, vgg16, densenet121)",
            );
        }
        if t.methods.is_empty() {
            return bad(
                "train.methods",
                "is empty: name at least one method (mc_dropout, mc_dropconnect, ensemble)",
            );
        }
        if t.batch_size == 0 {
            return bad("train.batch_size", "must be at least 1");
        }
        if self.infer.samples == 0 || self.infer.samples > usize::from(u16::MAX) {
            return bad("infer.samples", "must be in 1..=65535");
        }
        if self.infer.batch_size == 0 {
            return bad("infer.batch_size", "must be at least 1");
        }
        self.slurm.validate()?;
        if self.analyze.ece_bins == 0 {
            return bad("analyze.ece_bins", "must be at least 1");
        }
        if self.analyze.shown_n.contains(&0) {
            return bad("analyze.shown_n", "sample counts start at 1");
        }
        if t.compare_label_modes.contains(&t.label_mode) {
            return bad(
                "train.compare_label_modes",
                "must not repeat train.label_mode (that run is the main one)",
            );
        }
        if !t.compare_label_modes.is_empty() && t.compare_archs.is_empty() {
            return bad(
                "train.compare_archs",
                "names no architecture although compare_label_modes is set",
            );
        }
        if t.ensemble_members == 0 {
            return bad("train.ensemble_members", "must be at least 1");
        }
        for arch in Arch::ALL {
            let a = t.arch(arch);
            let key = |k: &str| format!("train.{arch}.{k}");
            if a.width.is_nan() || a.width <= 0.0 || a.width > 4.0 {
                return bad(&key("width"), "must be in (0, 4]");
            }
            if a.input_size < 32 || a.input_size > 256 {
                return bad(&key("input_size"), "must be in 32..=256");
            }
            if a.epochs == 0 {
                return bad(&key("epochs"), "must be at least 1");
            }
            if a.learning_rate <= 0.0 || a.learning_rate.is_nan() {
                return bad(&key("learning_rate"), "must be positive");
            }
            if !(0.0..1.0).contains(&a.drop_rate) {
                return bad(&key("drop_rate"), "must be in [0, 1)");
            }
            if !(0.0..1.0).contains(&a.momentum) {
                return bad(&key("momentum"), "must be in [0, 1)");
            }
            if a.lr_decay < 0.0 || a.weight_decay < 0.0 {
                return bad(&key("lr_decay"), "lr_decay and weight_decay must be >= 0");
            }
            if !(0.0..=a.epochs as f64).contains(&a.warmup_epochs) {
                return bad(&key("warmup_epochs"), "must be in [0, epochs]");
            }
        }
        Ok(())
    }
}

/// Settings of the train stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    /// Architectures `just train` trains.
    pub archs: Vec<Arch>,
    /// Uncertainty methods `just train` trains for each architecture.
    pub methods: Vec<Method>,
    /// Members of a deep ensemble (N).
    pub ensemble_members: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Training target.
    pub label_mode: LabelMode,
    /// Soft-label comparison: each of these label modes is also trained (every method) for the
    /// architectures in `compare_archs`, under `train/label-<mode>/`. Empty: no comparison.
    #[serde(default)]
    pub compare_label_modes: Vec<LabelMode>,
    /// The architectures of the soft-label comparison.
    #[serde(default)]
    pub compare_archs: Vec<Arch>,
    /// Ensemble members trained (and sampled by infer) together as one packed network: each
    /// op does the members' work in one call, and every member's weights are exactly those of
    /// the member trained alone. Bounds the pack's memory (members × one network's batch);
    /// 1 trains one member at a time. Not part of any fingerprint or stage key.
    #[serde(default = "default_pack_members")]
    pub pack_members: usize,
    pub alexnet: ArchTrainSettings,
    pub vgg16: ArchTrainSettings,
    pub densenet121: ArchTrainSettings,
}

fn default_pack_members() -> usize {
    1
}

impl TrainSettings {
    /// The per-architecture settings of `arch`.
    pub fn arch(&self, arch: Arch) -> &ArchTrainSettings {
        match arch {
            Arch::AlexNet => &self.alexnet,
            Arch::Vgg16 => &self.vgg16,
            Arch::DenseNet121 => &self.densenet121,
        }
    }

    /// Mutable access to the settings of `arch`.
    pub fn arch_mut(&mut self, arch: Arch) -> &mut ArchTrainSettings {
        match arch {
            Arch::AlexNet => &mut self.alexnet,
            Arch::Vgg16 => &mut self.vgg16,
            Arch::DenseNet121 => &mut self.densenet121,
        }
    }
}

/// Network size and optimisation of one architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchTrainSettings {
    /// Channel multiplier (1.0 = the study's network).
    pub width: f64,
    /// Side of the (square) network input; faces are resized bilinearly from 48.
    pub input_size: usize,
    pub epochs: usize,
    pub optimizer: OptimizerKind,
    pub learning_rate: f64,
    /// Inverse-time decay per step: lr_t = learning_rate / (1 + lr_decay * t) (Keras style).
    pub lr_decay: f64,
    /// Budget-aware schedule multiplied onto the decayed rate (`constant` when absent); the
    /// formulas are in `ferbayes_train::optim`. Left out of the serialised settings (and so of
    /// fingerprints and stage keys) while `constant`, so older artifacts stay up to date.
    #[serde(default, skip_serializing_if = "LrSchedule::is_constant")]
    pub lr_schedule: LrSchedule,
    /// Linear warm-up length in epochs (0 when absent); fractions allowed (0.5 = half an
    /// epoch's steps, rounded to whole steps). Must be in [0, epochs]. For `onecycle`, 0 means
    /// the default warm-up of 30 % of all steps. Left out of the serialised settings while 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warmup_epochs: f64,
    /// SGD momentum (ignored by Adam).
    pub momentum: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Dropout / DropConnect rate.
    pub drop_rate: f64,
}

/// The learning-rate schedule of an architecture over its whole training budget (Budgeted
/// Training, Li, Yumer & Ramanan, ICLR 2020: decaying to zero with the budget beats step
/// schedules at small budgets). Definitions in `ferbayes_train::optim`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LrSchedule {
    /// The (Keras-decayed) learning rate unchanged, after the optional warm-up.
    #[default]
    #[serde(rename = "constant")]
    Constant,
    /// Linear decay to zero at the last step.
    #[serde(rename = "linear")]
    Linear,
    /// Cosine anneal to zero at the last step.
    #[serde(rename = "cosine")]
    Cosine,
    /// Linear warm-up (30 % of the steps unless `warmup_epochs` says), then cosine to zero.
    #[serde(rename = "onecycle")]
    OneCycle,
}

impl LrSchedule {
    /// Every value, in canonical order.
    pub const ALL: [LrSchedule; 4] = [
        LrSchedule::Constant,
        LrSchedule::Linear,
        LrSchedule::Cosine,
        LrSchedule::OneCycle,
    ];

    /// The name used in `pipeline.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            LrSchedule::Constant => "constant",
            LrSchedule::Linear => "linear",
            LrSchedule::Cosine => "cosine",
            LrSchedule::OneCycle => "onecycle",
        }
    }

    /// Whether this is the default, [`LrSchedule::Constant`].
    pub fn is_constant(&self) -> bool {
        *self == LrSchedule::Constant
    }
}

impl std::fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// Settings of the ingest stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Keep only the first N faces of each split (in label-file order); absent means all.
    #[serde(default)]
    pub max_per_split: Option<usize>,
    /// zstd level of the Parquet files (1..=22).
    pub zstd_level: i32,
    /// Dataset shift: corrupted copies of test faces (off when absent).
    #[serde(default)]
    pub shift: ShiftSettings,
    /// Out-of-distribution sets (off when absent).
    #[serde(default)]
    pub ood: OodSettings,
}

/// A parsed `pipeline.toml`: the defaults table and the raw profile tables.
#[derive(Debug, Clone)]
pub struct PipelineFile {
    path: PathBuf,
    defaults: toml::Table,
    profiles: BTreeMap<String, toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    defaults: toml::Table,
    #[serde(default)]
    profiles: BTreeMap<String, toml::Table>,
}

impl PipelineFile {
    /// Reads and parses `path`; checks that `[defaults]` alone is a complete, valid [`Settings`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses settings text; `path` is only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let raw: RawFile = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let file = PipelineFile {
            path: path.to_owned(),
            defaults: raw.defaults,
            profiles: raw.profiles,
        };
        file.check(&file.defaults, "[defaults]")?;
        for (name, table) in &file.profiles {
            let merged = merge(file.defaults.clone(), table.clone());
            file.check(
                &merged,
                &format!("[profiles.{name}] (merged over [defaults])"),
            )?;
        }
        Ok(file)
    }

    /// The names of the profiles the file defines.
    pub fn profile_names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    /// The settings of `profile`: its table merged over `[defaults]`.
    pub fn settings(&self, profile: &str) -> Result<Settings> {
        let table = self
            .profiles
            .get(profile)
            .ok_or_else(|| Error::UnknownProfile {
                path: self.path.clone(),
                profile: profile.to_owned(),
                known: self.profiles.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
        let merged = merge(self.defaults.clone(), table.clone());
        self.check(&merged, &format!("[profiles.{profile}]"))
    }

    fn check(&self, table: &toml::Table, place: &str) -> Result<Settings> {
        let value = toml::Value::Table(table.clone());
        let settings: Settings = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            Error::Config {
                path: self.path.clone(),
                message: if key == "." {
                    format!("in {place}: {}", e.inner())
                } else {
                    format!("in {place}, key `{key}`: {}", e.inner())
                },
            }
        })?;
        settings
            .validate()
            .map_err(|(key, message)| Error::Config {
                path: self.path.clone(),
                message: format!("in {place}, key `{key}`: {message}"),
            })?;
        Ok(settings)
    }
}

/// Recursively merges `overlay` over `base`: tables merge key by key, other values are replaced.
fn merge(mut base: toml::Table, overlay: toml::Table) -> toml::Table {
    for (key, value) in overlay {
        match (base.remove(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => {
                base.insert(key, toml::Value::Table(merge(b, o)));
            }
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[defaults]
seed = 7
data_dir = "data/ferplus"
[defaults.ingest]
zstd_level = 3
[defaults.train]
archs = ["alexnet"]
methods = ["mc_dropout", "ensemble"]
ensemble_members = 3
batch_size = 32
label_mode = "majority"
[defaults.train.alexnet]
width = 1.0
input_size = 64
epochs = 2
optimizer = "adam"
learning_rate = 1e-3
lr_decay = 0.0
momentum = 0.9
weight_decay = 0.0
drop_rate = 0.5
[defaults.train.vgg16]
width = 1.0
input_size = 64
epochs = 2
optimizer = "sgd"
learning_rate = 1e-2
lr_decay = 1e-4
momentum = 0.9
weight_decay = 0.0
drop_rate = 0.2
[defaults.train.densenet121]
width = 1.0
input_size = 64
epochs = 2
optimizer = "adam"
learning_rate = 1e-3
lr_decay = 0.0
momentum = 0.9
weight_decay = 0.0
drop_rate = 0.2

[defaults.infer]
samples = 15
batch_size = 256
[defaults.analyze]
ece_bins = 15
orderings = 20
top_uncertain = 5
shown_n = [1, 5, 10, 15]

[profiles.cpu]
[profiles.smoke]
seed = 9
[profiles.smoke.ingest]
max_per_split = 10
"#;

    fn parse(text: &str) -> Result<PipelineFile> {
        PipelineFile::parse(Path::new("pipeline.toml"), text)
    }

    #[test]
    fn profile_overrides_only_what_differs() {
        let file = parse(BASE).expect("valid file");
        let cpu = file.settings("cpu").expect("cpu");
        assert_eq!(cpu.seed, 7);
        assert_eq!(cpu.ingest.max_per_split, None);
        let smoke = file.settings("smoke").expect("smoke");
        assert_eq!(smoke.seed, 9);
        assert_eq!(smoke.ingest.max_per_split, Some(10));
        assert_eq!(smoke.ingest.zstd_level, 3, "kept from defaults");
        assert_eq!(file.profile_names().collect::<Vec<_>>(), ["cpu", "smoke"]);
    }

    #[test]
    fn unknown_key_is_named() {
        let text = BASE.replace("max_per_split = 10", "max_per_splt = 10");
        let err = parse(&text).expect_err("typo must be rejected").to_string();
        assert!(err.contains("profiles.smoke"), "{err}");
        assert!(err.contains("max_per_splt"), "{err}");
        assert!(err.contains("ingest"), "{err}");

        let text = BASE.replace("zstd_level = 3", "zstd_level = 3\ncolour = 1");
        let err = parse(&text).expect_err("unknown default key").to_string();
        assert!(
            err.contains("[defaults]") && err.contains("colour"),
            "{err}"
        );

        let text = format!("{BASE}\n[extra]\nx = 1\n");
        let err = parse(&text)
            .expect_err("unknown top-level table")
            .to_string();
        assert!(err.contains("extra"), "{err}");
    }

    #[test]
    fn enum_values_and_ranges_are_checked() {
        let text = BASE.replace(r#"archs = ["alexnet"]"#, r#"archs = ["alexnet", "resnet"]"#);
        let err = parse(&text).expect_err("unknown arch").to_string();
        assert!(
            err.contains("train.archs") && err.contains("resnet"),
            "{err}"
        );

        let text = format!("{BASE}\n[profiles.bad.train.vgg16]\ndrop_rate = 1.5\n");
        let err = parse(&text)
            .expect_err("drop rate out of range")
            .to_string();
        assert!(
            err.contains("profiles.bad") && err.contains("train.vgg16.drop_rate"),
            "{err}"
        );

        // Empty lists would make every stage a silent no-op: refused, naming the key.
        for key in ["archs", "methods"] {
            let text = format!("{BASE}\n[profiles.empty.train]\n{key} = []\n");
            let err = parse(&text).expect_err("empty list").to_string();
            assert!(
                err.contains("profiles.empty")
                    && err.contains(&format!("train.{key}"))
                    && err.contains("is empty"),
                "{err}"
            );
        }

        let file = parse(BASE).expect("valid");
        let smoke = file.settings("smoke").expect("smoke");
        assert_eq!(smoke.train.arch(Arch::Vgg16).optimizer, OptimizerKind::Sgd);
        assert_eq!(smoke.train.label_mode, LabelMode::Majority);
    }

    #[test]
    fn lr_schedule_defaults_parses_and_rejects_unknown_names() {
        let file = parse(BASE).expect("valid");
        let cpu = file.settings("cpu").expect("cpu");
        let a = cpu.train.arch(Arch::AlexNet);
        assert_eq!(
            (a.lr_schedule, a.warmup_epochs),
            (LrSchedule::Constant, 0.0)
        );
        // Defaults are left out of the serialised settings (fingerprints and stage keys).
        let json = serde_json::to_string(a).expect("json");
        assert!(
            !json.contains("lr_schedule") && !json.contains("warmup_epochs"),
            "{json}"
        );

        let text = format!(
            "{BASE}\n[profiles.budget.train.vgg16]\nlr_schedule = \"onecycle\"\nwarmup_epochs = 0.5\n"
        );
        let file = parse(&text).expect("valid");
        let v = file.settings("budget").expect("budget");
        let v = v.train.arch(Arch::Vgg16);
        assert_eq!(
            (v.lr_schedule, v.warmup_epochs),
            (LrSchedule::OneCycle, 0.5)
        );
        let json = serde_json::to_string(v).expect("json");
        assert!(
            json.contains(r#""lr_schedule":"onecycle""#) && json.contains(r#""warmup_epochs":0.5"#),
            "{json}"
        );
        for name in LrSchedule::ALL {
            let text = format!("{BASE}\n[profiles.s.train.alexnet]\nlr_schedule = \"{name}\"\n");
            let file = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let s = file.settings("s").expect("s");
            assert_eq!(s.train.arch(Arch::AlexNet).lr_schedule, name);
        }

        let text = format!("{BASE}\n[profiles.bad.train.densenet121]\nlr_schedule = \"step\"\n");
        let err = parse(&text).expect_err("unknown schedule").to_string();
        assert!(
            err.contains("profiles.bad")
                && err.contains("train.densenet121.lr_schedule")
                && err.contains("step")
                && err.contains("onecycle"),
            "{err}"
        );

        let text = format!("{BASE}\n[profiles.bad.train.alexnet]\nwarmup_epochs = 3.0\n");
        let err = parse(&text)
            .expect_err("warm-up past the budget")
            .to_string();
        assert!(err.contains("train.alexnet.warmup_epochs"), "{err}");
        let text = format!("{BASE}\n[profiles.bad.train.alexnet]\nwarmup_epochs = -0.5\n");
        let err = parse(&text).expect_err("negative warm-up").to_string();
        assert!(err.contains("train.alexnet.warmup_epochs"), "{err}");
        let text = format!("{BASE}\n[profiles.whole.train.alexnet]\nwarmup_epochs = 1\n");
        let file = parse(&text).expect("a whole number of epochs may be written as an integer");
        let s = file.settings("whole").expect("integer warm-up");
        assert_eq!(s.train.arch(Arch::AlexNet).warmup_epochs, 1.0);
    }

    #[test]
    fn slurm_settings_default_override_and_refuse_unknown_keys() {
        let file = parse(BASE).expect("valid");
        let cpu = file.settings("cpu").expect("cpu");
        assert_eq!(
            cpu.slurm,
            SlurmSettings::default(),
            "absent section: defaults"
        );

        let text = format!(
            "{BASE}\n[defaults.slurm]\npartition = \"batch\"\narray_width = 8\n\
             [defaults.slurm.train]\ntime = \"2-00:00:00\"\ncpus = 4\n\
             [profiles.gpu.slurm]\npartition = \"gpu\"\n\
             [profiles.gpu.slurm.train]\ngres = \"gpu:1\"\ndevice = \"cuda\"\n"
        );
        let file = parse(&text).expect("valid");
        let cpu = file.settings("cpu").expect("cpu");
        assert_eq!(cpu.slurm.partition.as_deref(), Some("batch"));
        assert_eq!((cpu.slurm.array_width, cpu.slurm.train.cpus), (8, 4));
        assert_eq!(cpu.slurm.train.device, ComputeDevice::Cpu);
        assert_eq!(cpu.slurm.infer, SlurmSettings::default().infer);
        let gpu = file.settings("gpu").expect("gpu");
        assert_eq!(gpu.slurm.partition.as_deref(), Some("gpu"));
        let t = &gpu.slurm.train;
        assert_eq!(
            (t.time.as_str(), t.cpus, t.gres.as_deref(), t.device),
            ("2-00:00:00", 4, Some("gpu:1"), ComputeDevice::Cuda),
            "the profile's keys merge over the defaults' table"
        );

        let text = format!("{BASE}\n[profiles.bad.slurm.train]\ngpus = 1\n");
        let err = parse(&text).expect_err("unknown key").to_string();
        assert!(
            err.contains("profiles.bad") && err.contains("gpus"),
            "{err}"
        );
        let text = format!("{BASE}\n[profiles.bad.slurm]\nparition = \"gpu\"\n");
        let err = parse(&text).expect_err("typo").to_string();
        assert!(err.contains("parition"), "{err}");
        let text = format!("{BASE}\n[profiles.bad.slurm]\narray_width = 0\n");
        let err = parse(&text).expect_err("zero width").to_string();
        assert!(err.contains("slurm.array_width"), "{err}");
        let text = format!(
            "{BASE}\n[profiles.bad.slurm.ingest]\ntime = \"1:00:00\"\ncpus = 1\ndevice = \"cuda\"\n"
        );
        let err = parse(&text).expect_err("ingest on cuda").to_string();
        assert!(err.contains("slurm.ingest.device"), "{err}");
        let text = format!("{BASE}\n[profiles.bad.slurm]\nextra_sbatch = [\"#SBATCH -C a100\"]\n");
        let err = parse(&text).expect_err("not an option").to_string();
        assert!(err.contains("slurm.extra_sbatch"), "{err}");
    }

    #[test]
    fn wrong_type_and_unknown_profile() {
        let text = BASE.replace("seed = 9", "seed = \"nine\"");
        let err = parse(&text).expect_err("wrong type").to_string();
        assert!(err.contains("seed"), "{err}");

        let file = parse(BASE).expect("valid file");
        let err = file.settings("gpu").expect_err("unknown").to_string();
        assert!(err.contains("gpu") && err.contains("cpu, smoke"), "{err}");
    }

    #[test]
    fn repository_pipeline_toml_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml");
        let file = PipelineFile::load(&path).expect("pipeline.toml parses");
        for profile in ["cpu", "paper", "smoke"] {
            file.settings(profile).expect(profile);
        }
    }

    /// `device` defaults to the CPU, a profile sets it, a value other than cpu / cuda is refused
    /// naming the key, and the repository's `paper` profile computes on the GPU.
    #[test]
    fn device_setting() {
        let file = parse(BASE).expect("valid");
        assert_eq!(
            file.settings("cpu").expect("cpu").device,
            ComputeDevice::Cpu
        );
        let gpu = parse(&format!("{BASE}\n[profiles.gpu]\ndevice = \"cuda\"\n")).expect("valid");
        assert_eq!(
            gpu.settings("gpu").expect("gpu").device,
            ComputeDevice::Cuda
        );
        let bad = parse(&format!("{BASE}\n[profiles.gpu]\ndevice = \"tpu\"\n"));
        let err = bad.expect_err("tpu").to_string();
        assert!(err.contains("device") && err.contains("tpu"), "{err}");
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml");
        let repo = PipelineFile::load(&path).expect("pipeline.toml parses");
        for (profile, device) in [("cpu", ComputeDevice::Cpu), ("paper", ComputeDevice::Cuda)] {
            assert_eq!(
                repo.settings(profile).expect(profile).device,
                device,
                "{profile}"
            );
        }
        let flag = crate::cli::DeviceArg {
            device: Some(ComputeDevice::Cpu),
        };
        let paper = repo.settings("paper").expect("paper");
        assert_eq!(flag.resolve(&paper), ComputeDevice::Cpu, "the flag wins");
        assert_eq!(
            crate::cli::DeviceArg::default().resolve(&paper),
            ComputeDevice::Cuda
        );
    }
}
