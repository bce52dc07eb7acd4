//! What each stage reads, which settings determine its outputs, and what it writes, for one
//! profile: the one place that decides whether a stage's artifacts are up to date.
//!
//! A [`Plan`] lists a stage's (or one arch × method's) input files, its settings section as JSON
//! and its output files. [`Plan::check`] hashes the inputs (sha256; for the FER+ folders the
//! `label.csv` files plus the count and total size of the PNGs), refuses an upstream artifact whose
//! manifest was made for another profile or schema version, computes the stage's key (sha256 over
//! stage, profile, schema version, ferbayes version, settings and input hashes) and compares it
//! with the manifest already on disk.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{IngestSettings, Settings};
use crate::error::{Error, Result};
use crate::layout::{Layout, Stage};
use crate::manifest::{InputHash, Manifest};
use crate::names::{Arch, Method};
use crate::schema::SCHEMA_VERSION;
use crate::split::Split;

/// Label file of each split folder of the FER+ folder layout.
pub const LABEL_CSV: &str = "label.csv";
/// The original Kaggle pixel file of the CSV layout.
pub const FER2013_CSV: &str = "fer2013.csv";
/// The FER+ vote file of the CSV layout.
pub const FER2013NEW_CSV: &str = "fer2013new.csv";

/// One input of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanInput {
    /// A file hashed whole; `from` is the stage that wrote it (None for raw FER+ files).
    File {
        path: PathBuf,
        /// Name recorded in the manifest (relative to the profile folder or the data root).
        name: String,
        from: Option<Stage>,
    },
    /// A folder of PNGs, summarised by their count and total size.
    Images { dir: PathBuf, name: String },
}

/// Whether a stage's artifacts are current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// The manifest's key equals the fresh one and every output exists.
    UpToDate,
    /// Outputs exist but are out of date (the reason in words).
    Stale(String),
    /// No manifest: the stage has not run (or not finished).
    Missing,
}

impl std::fmt::Display for Freshness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Freshness::UpToDate => f.write_str("up to date"),
            Freshness::Stale(why) => write!(f, "stale ({why})"),
            Freshness::Missing => f.write_str("missing"),
        }
    }
}

/// The result of [`Plan::check`].
#[derive(Debug, Clone)]
pub struct Check {
    pub freshness: Freshness,
    /// The fresh key (None when an input is missing).
    pub key: Option<String>,
    /// The fresh input hashes (empty when an input is missing).
    pub hashes: Vec<InputHash>,
}

impl Check {
    /// Whether the stage can be skipped.
    pub fn up_to_date(&self) -> bool {
        self.freshness == Freshness::UpToDate
    }

    /// The first 8 hex digits of the key, for log lines.
    pub fn short_key(&self) -> &str {
        self.key
            .as_deref()
            .map(|k| &k[..k.len().min(8)])
            .unwrap_or("-")
    }
}

/// Inputs, settings and outputs of one stage (or one arch × method of train / infer).
#[derive(Debug, Clone)]
pub struct Plan {
    pub stage: Stage,
    /// `ingest`, `train alexnet/mc_dropout`, ...
    pub label: String,
    pub profile: String,
    /// The folder holding the outputs and `manifest.json`.
    pub dir: PathBuf,
    /// Every setting that determines the outputs.
    pub settings: serde_json::Value,
    pub inputs: Vec<PlanInput>,
    /// Output files relative to `dir`.
    pub outputs: Vec<String>,
}

/// Members of a combination (its `member-NN.safetensors` files): N for ensembles, one network
/// for every other method (a BatchEnsemble's N members share one network and one file).
pub fn members(settings: &Settings, method: Method) -> usize {
    match method {
        Method::Ensemble => settings.train.ensemble_members,
        Method::McDropout
        | Method::McDropConnect
        | Method::Variational
        | Method::Swag
        | Method::Laplace
        | Method::BatchEnsemble => 1,
    }
}

/// Probability samples per face infer writes for `method`: T stochastic passes for the MC
/// methods and the sampled posteriors (variational, swag, laplace), one per member (N) for
/// ensembles and BatchEnsembles.
pub fn samples(settings: &Settings, method: Method) -> usize {
    match method {
        Method::Ensemble | Method::BatchEnsemble => settings.train.ensemble_members,
        Method::McDropout
        | Method::McDropConnect
        | Method::Variational
        | Method::Swag
        | Method::Laplace => settings.infer.samples,
    }
}

/// Shard units of a combination: `ferbayes-train --shard k/n` hands out whole units, so a pack
/// of `train.pack_members` ensemble members (the last one may be smaller) is trained by one
/// shard; an MC network is one unit. With `pack_members = 1` a unit is a member.
pub fn shard_units(settings: &Settings, method: Method) -> usize {
    members(settings, method).div_ceil(settings.train.pack_members.max(1))
}

/// The shard unit (counted within its combination) that `member` belongs to.
pub fn shard_unit(settings: &Settings, member: usize) -> usize {
    member / settings.train.pack_members.max(1)
}

/// The members a train process writes, combination by combination: with `shard = Some((k, n))`
/// those of every n-th shard unit from unit k, counted over `combos` in order (done or not, as
/// `ferbayes-train --shard` assigns them), else every member. What its member locks cover.
pub fn shard_members(
    settings: &Settings,
    combos: &[(Arch, Method)],
    shard: Option<(usize, usize)>,
) -> Vec<(Arch, Method, usize)> {
    let mut slot = 0;
    let mut out = Vec::new();
    for &(arch, method) in combos {
        for member in 0..members(settings, method) {
            let unit = slot + shard_unit(settings, member);
            if shard.is_none_or(|(k, n)| unit % n == k) {
                out.push((arch, method, member));
            }
        }
        slot += shard_units(settings, method);
    }
    out
}

/// Shard units of one run (the main one or a soft-label comparison run) over all its
/// combinations: more shards than this leave some idle.
pub fn run_shard_units(settings: &Settings) -> usize {
    let per_arch: usize = settings
        .train
        .methods
        .iter()
        .map(|&m| shard_units(settings, m))
        .sum();
    per_arch * settings.train.archs.len()
}

/// The selection a run of [`variants`] works on: the main run takes `selection` as given; a
/// soft-label comparison run only the part of it that run trains (its `compare_archs`), and
/// nothing (None) when none of it is.
pub fn variant_selection(
    layout: &Layout,
    selection: &crate::cli::Selection,
    settings: &Settings,
) -> Option<crate::cli::Selection> {
    if layout.variant_name().is_none() {
        return Some(selection.clone());
    }
    let t = &settings.train;
    let mut narrowed = crate::cli::Selection::default();
    for (arch, method) in selection.combos(t) {
        if t.archs.contains(&arch) && t.methods.contains(&method) {
            if !narrowed.archs.contains(&arch) {
                narrowed.archs.push(arch);
            }
            if !narrowed.methods.contains(&method) {
                narrowed.methods.push(method);
            }
        }
    }
    (!narrowed.archs.is_empty()).then_some(narrowed)
}

fn artifact(layout: &Layout, path: PathBuf, from: Stage) -> PlanInput {
    let name = path
        .strip_prefix(layout.profile_dir())
        .unwrap_or(&path)
        .display()
        .to_string();
    PlanInput::File {
        path,
        name,
        from: Some(from),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The ingest stage reading FER+ under `data_root`.
pub fn ingest(layout: &Layout, data_root: &Path, settings: &IngestSettings) -> Plan {
    let folders = Split::ALL
        .iter()
        .any(|s| data_root.join(s.ferplus_folder()).is_dir());
    let mut inputs = Vec::new();
    if folders {
        for split in Split::ALL {
            let dir = data_root.join(split.ferplus_folder());
            inputs.push(PlanInput::File {
                path: dir.join(LABEL_CSV),
                name: format!("{}/{LABEL_CSV}", split.ferplus_folder()),
                from: None,
            });
            inputs.push(PlanInput::Images {
                name: format!("{}/*.png", split.ferplus_folder()),
                dir,
            });
        }
    } else {
        for name in [FER2013_CSV, FER2013NEW_CSV] {
            inputs.push(PlanInput::File {
                path: data_root.join(name),
                name: name.to_owned(),
                from: None,
            });
        }
    }
    let mut outputs: Vec<String> = Split::ALL
        .iter()
        .map(|s| file_name(&layout.ingest_split(*s)))
        .collect();
    if settings.shift.enabled() {
        outputs.push(file_name(&layout.ingest_shift()));
    }
    if settings.ood.enabled() {
        outputs.push(file_name(&layout.ingest_ood()));
        for dir in &settings.ood.folders {
            inputs.push(PlanInput::Images {
                name: format!("{}/*", dir.display()),
                dir: dir.clone(),
            });
        }
    }
    Plan {
        stage: Stage::Ingest,
        label: "ingest".into(),
        profile: layout.profile().to_owned(),
        dir: layout.stage_dir(Stage::Ingest),
        settings: serde_json::to_value(settings).unwrap_or_default(),
        inputs,
        outputs,
    }
}

/// The train stage for one combination.
pub fn train(layout: &Layout, settings: &Settings, arch: Arch, method: Method) -> Plan {
    let members = members(settings, method);
    let (a, m) = (arch, method);
    let mut outputs: Vec<String> = (0..members)
        .map(|k| file_name(&layout.member_weights(a, m, k)))
        .collect();
    outputs.push(file_name(&layout.history(a, m)));
    Plan {
        stage: Stage::Train,
        label: format!("train {}{arch}/{method}", variant_prefix(layout)),
        profile: layout.profile().to_owned(),
        dir: layout.train_dir(a, m),
        settings: train_settings(settings, arch, method),
        inputs: [Split::Train, Split::Valid]
            .into_iter()
            .map(|s| artifact(layout, layout.ingest_split(s), Stage::Ingest))
            .collect(),
        outputs,
    }
}

/// The settings that determine a combination's trained weights (the train manifest's settings).
pub fn train_settings(settings: &Settings, arch: Arch, method: Method) -> serde_json::Value {
    serde_json::json!({
        "arch": arch,
        "method": method,
        "members": members(settings, method),
        "seed": settings.seed,
        "batch_size": settings.train.batch_size,
        "label_mode": settings.train.label_mode,
        "arch_settings": settings.train.arch(arch),
    })
}

/// The infer stage for one combination.
pub fn infer(layout: &Layout, settings: &Settings, arch: Arch, method: Method) -> Plan {
    let (a, m) = (arch, method);
    let members = members(settings, method);
    let samples = samples(settings, method);
    let mut inputs: Vec<PlanInput> = (0..members)
        .map(|k| artifact(layout, layout.member_weights(a, m, k), Stage::Train))
        .collect();
    for split in [Split::Valid, Split::Test] {
        inputs.push(artifact(layout, layout.ingest_split(split), Stage::Ingest));
    }
    let mut outputs: Vec<String> = [Split::Valid, Split::Test]
        .iter()
        .map(|s| file_name(&layout.infer_split(a, m, *s)))
        .collect();
    let (shift, ood) = extras(layout, settings);
    if shift {
        inputs.push(artifact(layout, layout.ingest_shift(), Stage::Ingest));
        outputs.push(file_name(&layout.infer_shift(a, m)));
    }
    if ood {
        inputs.push(artifact(layout, layout.ingest_ood(), Stage::Ingest));
        outputs.push(file_name(&layout.infer_ood(a, m)));
    }
    Plan {
        stage: Stage::Infer,
        label: format!("infer {}{arch}/{method}", variant_prefix(layout)),
        profile: layout.profile().to_owned(),
        dir: layout.infer_dir(a, m),
        settings: serde_json::json!({
            "arch": arch,
            "method": method,
            "samples": samples,
            "batch_size": settings.infer.batch_size,
            "seed": settings.seed,
            "arch_settings": settings.train.arch(arch),
            "label_mode": settings.train.label_mode,
            "shift": shift,
            "ood": ood,
        }),
        inputs,
        outputs,
    }
}

/// Whether the infer stage of `layout` predicts the dataset-shift and the OOD sets (only the
/// main layout does; the soft-label comparison variants are compared on valid and test).
pub fn extras(layout: &Layout, settings: &Settings) -> (bool, bool) {
    let main = layout.variant_name().is_none();
    (
        main && settings.ingest.shift.enabled(),
        main && settings.ingest.ood.enabled(),
    )
}

/// `label-<mode>/` for a variant layout, empty for the main one (for stage labels).
fn variant_prefix(layout: &Layout) -> String {
    layout
        .variant_name()
        .map(|v| format!("{v}/"))
        .unwrap_or_default()
}

/// The main run and each soft-label comparison run of a profile: the layout each writes to and
/// the settings it trains with (`label_mode` replaced, `archs` cut to `compare_archs`).
pub fn variants(layout: &Layout, settings: &Settings) -> Vec<(Layout, Settings)> {
    let mut out = vec![(layout.clone(), settings.clone())];
    for &mode in &settings.train.compare_label_modes {
        let mut s = settings.clone();
        s.train.label_mode = mode;
        s.train.archs = settings.train.compare_archs.clone();
        s.train.compare_label_modes.clear();
        out.push((layout.variant(format!("label-{mode}")), s));
    }
    out
}

/// The analyze stage: the ingest valid/test tables and every infer table of the profile's
/// combinations that exists.
pub fn analyze(layout: &Layout, settings: &Settings) -> Plan {
    let mut inputs: Vec<PlanInput> = [Split::Valid, Split::Test]
        .into_iter()
        .map(|s| artifact(layout, layout.ingest_split(s), Stage::Ingest))
        .collect();
    for (variant, vs) in variants(layout, settings) {
        let (shift, ood) = extras(&variant, &vs);
        for &arch in &vs.train.archs {
            for &method in &vs.train.methods {
                let (a, m) = (arch, method);
                let mut paths: Vec<PathBuf> = [Split::Valid, Split::Test]
                    .into_iter()
                    .map(|split| variant.infer_split(a, m, split))
                    .collect();
                if shift {
                    paths.push(variant.infer_shift(a, m));
                }
                if ood {
                    paths.push(variant.infer_ood(a, m));
                }
                for path in paths {
                    if path.is_file() {
                        inputs.push(artifact(layout, path, Stage::Infer));
                    }
                }
            }
        }
    }
    Plan {
        stage: Stage::Analyze,
        label: "analyze".into(),
        profile: layout.profile().to_owned(),
        dir: layout.stage_dir(Stage::Analyze),
        settings: serde_json::json!({
            "seed": settings.seed,
            "archs": settings.train.archs,
            "methods": settings.train.methods,
            "analyze": settings.analyze,
            "zstd_level": settings.ingest.zstd_level,
            "label_mode": settings.train.label_mode,
            "compare_label_modes": settings.train.compare_label_modes,
            "compare_archs": settings.train.compare_archs,
        }),
        inputs,
        outputs: analyze_outputs(layout, settings)
            .iter()
            .map(|p| file_name(p))
            .collect(),
    }
}

/// The files the analyze stage writes (besides figures).
pub fn analyze_outputs(layout: &Layout, settings: &Settings) -> Vec<PathBuf> {
    let mut out = vec![
        layout.metrics(),
        layout.temperature(),
        layout.conformal(),
        layout.analyze_table("selective"),
    ];
    let (shift, ood) = extras(layout, settings);
    if shift {
        out.push(layout.analyze_table("shift"));
    }
    if ood {
        out.push(layout.analyze_table("ood"));
    }
    if !settings.train.compare_label_modes.is_empty() {
        out.push(layout.analyze_table("labels"));
    }
    out.push(layout.report_html());
    out.push(layout.report_md());
    out
}

/// Every plan of the profile in pipeline order (ingest needs the data root).
pub fn all(layout: &Layout, data_root: &Path, settings: &Settings) -> Vec<Plan> {
    let variants = variants(layout, settings);
    let combos = |s: &Settings| -> Vec<(Arch, Method)> {
        s.train
            .archs
            .iter()
            .flat_map(|&a| s.train.methods.iter().map(move |&m| (a, m)))
            .collect()
    };
    let mut plans = vec![ingest(layout, data_root, &settings.ingest)];
    for (l, s) in &variants {
        plans.extend(combos(s).into_iter().map(|(a, m)| train(l, s, a, m)));
    }
    for (l, s) in &variants {
        plans.extend(combos(s).into_iter().map(|(a, m)| infer(l, s, a, m)));
    }
    plans.push(analyze(layout, settings));
    plans
}

/// One machine the manifests name and what it made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineUse {
    /// [`crate::machine::Machine::summary`] of the machine and process settings.
    pub machine: String,
    /// The plans (labels) whose manifest this machine wrote.
    pub wrote: Vec<String>,
    /// Train members it trained whose combination's manifest may have been written elsewhere
    /// (`just train`'s shards, Slurm array tasks): `train alexnet/ensemble members 00, 01`.
    pub trained: Vec<String>,
}

/// The machines named by the manifests of `plans` (those that exist), in order of first
/// appearance, with what each wrote and, from the train manifests' `trained_on`, trained.
pub fn provenance(plans: &[Plan]) -> Vec<MachineUse> {
    let mut out: Vec<MachineUse> = Vec::new();
    fn entry<'a>(out: &'a mut Vec<MachineUse>, machine: &str) -> &'a mut MachineUse {
        let at = match out.iter().position(|u| u.machine == machine) {
            Some(i) => i,
            None => {
                out.push(MachineUse {
                    machine: machine.to_owned(),
                    wrote: Vec::new(),
                    trained: Vec::new(),
                });
                out.len() - 1
            }
        };
        &mut out[at]
    }
    for plan in plans {
        let Ok(Some(m)) = read_manifest(&plan.dir) else {
            continue;
        };
        entry(&mut out, &m.machine.summary())
            .wrote
            .push(plan.label.clone());
        let Some(groups) = m.settings.get("trained_on").and_then(|v| v.as_array()) else {
            continue;
        };
        for g in groups {
            let (Some(machine), Some(members)) = (
                g.get("machine").and_then(|v| v.as_str()),
                g.get("members").and_then(|v| v.as_array()),
            ) else {
                continue;
            };
            let members: Vec<String> = members
                .iter()
                .filter_map(|v| v.as_u64())
                .map(|k| format!("{k:02}"))
                .collect();
            entry(&mut out, machine).trained.push(format!(
                "{} member{} {}",
                plan.label,
                if members.len() == 1 { "" } else { "s" },
                members.join(", ")
            ));
        }
    }
    out
}

/// What tells the current kernel setting from the one that made a plan's outputs: the backend
/// (`kernels` of `--kernels` and its fallbacks) and, for the device ops on a GPU, whether cuDNN
/// may use TF32. Provenance, like the machine: never part of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSetting {
    pub kernels: crate::cli::KernelChoice,
    pub tf32: bool,
}

/// When the kernels that made a train or infer plan's outputs differ from `current`, one line
/// saying so, e.g. `made with kernels im2col, the current setting is winograd: results can differ
/// at rounding level`; None when they agree, for other stages, and where no manifest records
/// its kernels. Train reads the machines its members trained on (`trained_on`, as shards may
/// run elsewhere than the pass writing the manifest), infer its manifest's machine.
pub fn kernels_note(plan: &Plan, current: KernelSetting) -> Option<String> {
    if !matches!(plan.stage, Stage::Train | Stage::Infer) {
        return None;
    }
    let m = read_manifest(&plan.dir).ok()??;
    // (backend, TF32 where the device ops on a GPU recorded it) of each machine that made them.
    let mut made: Vec<(String, Option<bool>)> = Vec::new();
    let trained_on = m
        .settings
        .get("trained_on")
        .and_then(|v| v.as_array())
        .map(|groups| {
            groups
                .iter()
                .filter_map(|g| g.get("machine").and_then(|v| v.as_str()))
                .filter_map(|summary| {
                    let backend = summary.split("backend: ").nth(1)?;
                    let backend = backend.split([' ', ';']).next()?.to_owned();
                    Some((backend, tf32_of(summary)))
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if trained_on.is_empty() {
        let backend = m.machine.kernels.get("backend")?;
        let backend = backend.split(' ').next()?.to_owned();
        let tf32 = m.machine.kernels.get("gpu").and_then(|g| tf32_of(g));
        made.push((backend, tf32));
    } else {
        made = trained_on;
    }
    made.dedup();
    let mut backends: Vec<&str> = made.iter().map(|(b, _)| b.as_str()).collect();
    backends.dedup();
    let now = current.kernels.as_str();
    if backends.iter().any(|b| *b != now) {
        return Some(format!(
            "made with kernels {}, the current setting is {now}: results can differ at rounding \
             level",
            backends.join(" and ")
        ));
    }
    // The same kernels: on a GPU's device ops, TF32 changes the convolutions' arithmetic.
    let mut tf32: Vec<bool> = made.iter().filter_map(|(_, t)| *t).collect();
    tf32.dedup();
    if tf32.iter().any(|&t| t != current.tf32) {
        let on = |t: bool| if t { "on" } else { "off" };
        let was: Vec<&str> = tf32.iter().map(|&t| on(t)).collect();
        return Some(format!(
            "made with TF32 {}, the current setting is TF32 {}: results can differ (TF32 rounds \
             the convolutions' inputs to 10-bit mantissas)",
            was.join(" and "),
            on(current.tf32)
        ));
    }
    None
}

/// Whether a machine record's GPU line (or summary) allows TF32: `TF32 on` / `TF32 off`.
fn tf32_of(text: &str) -> Option<bool> {
    if text.contains("TF32 on") {
        Some(true)
    } else if text.contains("TF32 off") {
        Some(false)
    } else {
        None
    }
}

#[derive(Serialize)]
struct KeyInput<'a> {
    stage: &'a str,
    profile: &'a str,
    schema_version: u32,
    ferbayes_version: &'a str,
    settings: &'a serde_json::Value,
    inputs: &'a [InputHash],
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((format!("{:x}", hasher.finalize()), total))
}

/// Count and total size of the images (PNG, JPEG) of a folder, as an [`InputHash`].
fn hash_images(dir: &Path, name: &str) -> Result<InputHash> {
    let (mut count, mut bytes) = (0u64, 0u64);
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| {
            ["png", "jpg", "jpeg"]
                .iter()
                .any(|x| e.eq_ignore_ascii_case(x))
        }) {
            count += 1;
            bytes += entry.metadata().map_err(|e| Error::io(&path, e))?.len();
        }
    }
    let digest = Sha256::digest(format!("{count} files, {bytes} bytes"));
    Ok(InputHash {
        file: format!("{name} ({count} files)"),
        sha256: format!("{digest:x}"),
        bytes,
    })
}

/// Reads and parses a manifest, None when absent.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>> {
    let path = Layout::manifest_in(dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Artifact {
                path,
                message: format!("unreadable manifest: {e}"),
                hint: None,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// `just <stage>`: the recipe that rebuilds a stage's artifacts.
pub fn recipe(stage: Stage) -> String {
    format!("just {}", stage.name())
}

impl Plan {
    /// Refuses an upstream artifact whose manifest was made for another profile or schema
    /// version; the error names the file and the recipe that rebuilds it.
    pub fn check_upstream(&self) -> Result<()> {
        for input in &self.inputs {
            let PlanInput::File {
                path,
                from: Some(from),
                ..
            } = input
            else {
                continue;
            };
            let Some(dir) = path.parent() else { continue };
            let hint = || Some(format!("run `{}` to rebuild it", recipe(*from)));
            let manifest = match read_manifest(dir) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    return Err(Error::Artifact {
                        path: path.clone(),
                        message: e.to_string(),
                        hint: hint(),
                    });
                }
            };
            if manifest.profile != self.profile {
                return Err(Error::Artifact {
                    path: path.clone(),
                    message: format!(
                        "was made for profile `{}`, not `{}` (per {})",
                        manifest.profile,
                        self.profile,
                        Layout::manifest_in(dir).display()
                    ),
                    hint: hint(),
                });
            }
            if manifest.schema_version != SCHEMA_VERSION {
                return Err(Error::Artifact {
                    path: path.clone(),
                    message: format!(
                        "was made with schema version {}, this build reads version {SCHEMA_VERSION} (per {})",
                        manifest.schema_version,
                        Layout::manifest_in(dir).display()
                    ),
                    hint: hint(),
                });
            }
        }
        Ok(())
    }

    /// The input hashes, or the first missing input.
    fn hash_inputs(&self) -> Result<std::result::Result<Vec<InputHash>, String>> {
        let mut out = Vec::with_capacity(self.inputs.len());
        for input in &self.inputs {
            match input {
                PlanInput::File { path, name, .. } => {
                    if !path.is_file() {
                        return Ok(Err(name.clone()));
                    }
                    let (sha256, bytes) = sha256_file(path)?;
                    out.push(InputHash {
                        file: name.clone(),
                        sha256,
                        bytes,
                    });
                }
                PlanInput::Images { dir, name } => {
                    if !dir.is_dir() {
                        return Ok(Err(name.clone()));
                    }
                    out.push(hash_images(dir, name)?);
                }
            }
        }
        Ok(Ok(out))
    }

    /// The key of these settings and input hashes.
    pub fn key(&self, hashes: &[InputHash]) -> String {
        let input = KeyInput {
            stage: self.stage.name(),
            profile: &self.profile,
            schema_version: SCHEMA_VERSION,
            ferbayes_version: env!("CARGO_PKG_VERSION"),
            settings: &self.settings,
            inputs: hashes,
        };
        let json = serde_json::to_vec(&input).unwrap_or_default();
        format!("{:x}", Sha256::digest(json))
    }

    /// Checks the upstream manifests, hashes the inputs and compares the key with the manifest
    /// on disk.
    pub fn check(&self) -> Result<Check> {
        self.check_upstream()?;
        let hashes = match self.hash_inputs()? {
            Ok(h) => h,
            Err(missing) => {
                let freshness = if Layout::manifest_in(&self.dir).is_file() {
                    Freshness::Stale(format!("input {missing} missing"))
                } else {
                    Freshness::Missing
                };
                return Ok(Check {
                    freshness,
                    key: None,
                    hashes: Vec::new(),
                });
            }
        };
        let key = self.key(&hashes);
        let freshness = self.compare(&key, &hashes);
        Ok(Check {
            freshness,
            key: Some(key),
            hashes,
        })
    }

    fn compare(&self, key: &str, hashes: &[InputHash]) -> Freshness {
        let old = match read_manifest(&self.dir) {
            Ok(Some(m)) => m,
            Ok(None) => return Freshness::Missing,
            Err(_) => return Freshness::Stale("manifest unreadable".into()),
        };
        if old.key != key {
            if old.key.is_empty() {
                return Freshness::Stale("manifest has no key".into());
            }
            for new in hashes {
                match old.input_hashes.iter().find(|o| o.file == new.file) {
                    Some(o) if o.sha256 == new.sha256 => {}
                    Some(_) => return Freshness::Stale(format!("input {} changed", new.file)),
                    None => return Freshness::Stale(format!("new input {}", new.file)),
                }
            }
            if old.input_hashes.len() != hashes.len() {
                return Freshness::Stale("inputs changed".into());
            }
            return Freshness::Stale("settings or version changed".into());
        }
        let listed = old.outputs.iter().map(|o| o.file.as_str());
        for file in self.outputs.iter().map(String::as_str).chain(listed) {
            if !self.dir.join(file).is_file() {
                return Freshness::Stale(format!("output {file} missing"));
            }
        }
        Freshness::UpToDate
    }

    /// The manifest entry of a file the stage wrote at `path` (a path [`Layout`] gave it):
    /// its name relative to the plan's folder, which must be one of the plan's outputs, so a
    /// stage never spells an output's name and a layout that disagrees with the plan is an
    /// error naming the file.
    pub fn output(&self, path: &Path, rows: u64) -> crate::Result<crate::manifest::Output> {
        let entry = self.file_entry(path, rows)?;
        if !self.outputs.contains(&entry.file) {
            return Err(crate::Error::Artifact {
                path: path.to_owned(),
                message: format!(
                    "is not among the outputs of {} ({})",
                    self.label,
                    self.outputs.join(", ")
                ),
                hint: None,
            });
        }
        Ok(entry)
    }

    /// The manifest entry of a file the stage wrote in its folder that the plan does not list
    /// one by one (analyze's figures): its name relative to the plan's folder.
    pub fn file_entry(&self, path: &Path, rows: u64) -> crate::Result<crate::manifest::Output> {
        let file = path
            .strip_prefix(&self.dir)
            .map_err(|_| crate::Error::Artifact {
                path: path.to_owned(),
                message: format!("lies outside {} of {}", self.dir.display(), self.label),
                hint: None,
            })?;
        Ok(crate::manifest::Output {
            file: file.to_string_lossy().into_owned(),
            rows,
        })
    }

    /// A manifest for this plan, started now, recording the input hashes, the key and the git
    /// commit of the build.
    pub fn manifest(&self, check: &Check) -> Manifest {
        let mut m = Manifest::start(self.stage.name(), &self.profile, self.settings.clone());
        m.inputs = self
            .inputs
            .iter()
            .map(|i| match i {
                PlanInput::File { path, .. } => path.display().to_string(),
                PlanInput::Images { dir, .. } => format!("{}/*.png", dir.display()),
            })
            .collect();
        m.input_hashes = check.hashes.clone();
        m.key = check.key.clone().unwrap_or_default();
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Selection;

    fn smoke() -> Settings {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml");
        crate::PipelineFile::load(&path)
            .expect("pipeline.toml")
            .settings("smoke")
            .expect("smoke")
    }

    #[test]
    fn shard_units_are_packs() {
        let mut s = smoke();
        s.train.ensemble_members = 5;
        s.train.methods = vec![Method::McDropout, Method::Ensemble];
        s.train.archs = vec![Arch::AlexNet, Arch::Vgg16];
        s.train.pack_members = 1;
        assert_eq!(shard_units(&s, Method::Ensemble), 5);
        assert_eq!(shard_units(&s, Method::McDropout), 1);
        assert_eq!(
            (0..5).map(|m| shard_unit(&s, m)).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert_eq!(run_shard_units(&s), 2 * (1 + 5));
        s.train.pack_members = 2;
        // Members 0,1 | 2,3 | 4: three packs, the last one short.
        assert_eq!(shard_units(&s, Method::Ensemble), 3);
        assert_eq!(
            (0..5).map(|m| shard_unit(&s, m)).collect::<Vec<_>>(),
            [0, 0, 1, 1, 2]
        );
        assert_eq!(run_shard_units(&s), 2 * (1 + 3));

        // Shards of two split the units (alexnet/mc_dropout, its ensemble's packs {0,1},
        // {2,3}, {4}, then vgg16's) between them; together they cover every member once.
        let combos = Selection::default().combos(&s.train);
        let zero = shard_members(&s, &combos, Some((0, 2)));
        let one = shard_members(&s, &combos, Some((1, 2)));
        use Arch::{AlexNet, Vgg16};
        use Method::{Ensemble, McDropout};
        assert_eq!(
            zero,
            [
                (AlexNet, McDropout, 0),
                (AlexNet, Ensemble, 2),
                (AlexNet, Ensemble, 3),
                (Vgg16, McDropout, 0),
                (Vgg16, Ensemble, 2),
                (Vgg16, Ensemble, 3),
            ]
        );
        let mut all = [zero, one].concat();
        all.sort_by_key(|&(a, m, k)| (a.as_str(), m.as_str(), k));
        let mut lone = shard_members(&s, &combos, None);
        lone.sort_by_key(|&(a, m, k)| (a.as_str(), m.as_str(), k));
        assert_eq!(all, lone);
        assert_eq!(lone.len(), 2 * (1 + 5));
    }

    #[test]
    fn comparison_runs_take_only_what_they_train() {
        let s = smoke();
        let layout = Layout::new("art", "smoke");
        let runs = variants(&layout, &s);
        let (variant, vs) = &runs[1];
        assert_eq!(vs.train.archs, [Arch::AlexNet]);
        let vgg = Selection::only(Arch::Vgg16, Method::McDropout);
        let main = variant_selection(&layout, &vgg, &s).expect("main run");
        assert_eq!(main.combos(&s.train), [(Arch::Vgg16, Method::McDropout)]);
        assert!(variant_selection(variant, &vgg, vs).is_none());
        let alex = Selection {
            archs: vec![Arch::AlexNet, Arch::Vgg16],
            methods: vec![Method::Ensemble],
        };
        let got = variant_selection(variant, &alex, vs).expect("alexnet is compared");
        assert_eq!(got.combos(&vs.train), [(Arch::AlexNet, Method::Ensemble)]);
        let all = variant_selection(variant, &Selection::default(), vs).expect("all");
        assert_eq!(
            all.combos(&vs.train),
            Selection::default().combos(&vs.train)
        );
    }
}
