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
//!   fingerprint of everything that determines them; a rerun with the same fingerprint skips it
//!   (`TrainOptions::force` retrains it from scratch). Shards (`TrainOptions::shard`) leave each
//!   combination's history and manifest to a finishing pass (`TrainOptions::finish`), which
//!   trains nothing.
//! - Every epoch evaluates the valid split (majority accuracy and NLL, deterministic pass); the
//!   final weights are kept (as the study does) and the best-NLL epoch is recorded.
//!
//! The rooms: [`run`] (here) walks the combinations; `shard` decides which members this
//! process trains (its locks, shard units, finished members and twin copies); `fingerprint`
//! is a member's identity (seed, fingerprint, files); `combo` trains one combination's packs
//! and writes its history and manifest; `epoch` is the epoch loop of one pack; `step` one
//! training step ([`train_step`], [`step_ops`]); `evaluate` the valid pass;
//! `checkpoint` the resume files and the member weights' safetensors; [`Network`] a seeded
//! network with its optimiser; [`optim`] the optimisers; [`data`] the faces.

mod checkpoint;
mod combo;
pub mod data;
mod epoch;
pub mod error;
mod evaluate;
mod fingerprint;
mod network;
pub mod optim;
#[cfg(test)]
mod pack_tests;
mod shard;
mod step;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use candle_core::Device;
use ferbayes_core::cli::Selection;
use ferbayes_core::{Arch, LabelMode, Layout, Method, Settings, Split};
use ferbayes_models::Backend;
use serde::{Deserialize, Serialize};

pub use data::Dataset;
pub use error::{Result, TrainError};
pub use evaluate::{evaluate, evaluate_packed};
pub use network::Network;
pub use step::{StepTargets, step_ops, train_step};

use crate::checkpoint::finished_history;
use crate::combo::{Combo, train_combo};
use crate::shard::lock_members;

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
    /// Retrain every member this run covers (all of the selection's, or its shard's), from
    /// scratch, even where the combination is up to date or a member's finished weights or
    /// checkpoint match its fingerprint; each once (the MC-Dropout network and ensemble member
    /// 0, which train identically, once and copied once when this run covers both). With
    /// `finish`: rewrite every selected combination's history and manifest.
    pub force: bool,
    /// `(k, n)`: train only every n-th shard unit (a pack of `train.pack_members` members, see
    /// `ferbayes_core::plan::shard_units`; counted over all combinations in order), starting
    /// at unit k, and leave each combination's history and manifest to a
    /// final run with `finish`. Lets n processes train one profile in parallel.
    pub shard: Option<(usize, usize)>,
    /// The last pass after the shards: train nothing, write each combination's history and
    /// manifest from its finished members, and fail naming the members that are not finished.
    /// Takes no `shard`.
    pub finish: bool,
    /// The kernels the networks run on (default: [`Backend::default`], the CPU's; the binary
    /// passes what its knobs say, `ferbayes_models::install_kernels`).
    pub kernels: Backend,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            kernels: Backend::default(),
            selection: Selection::default(),
            device: Device::Cpu,
            #[cfg(feature = "testing")]
            stop_after_epochs: None,
            force: false,
            shard: None,
            finish: false,
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
    if options.finish && options.shard.is_some() {
        return Err(TrainError::Invalid(
            "finishing writes every shard's histories and manifests: it takes no shard".into(),
        ));
    }
    let mut slot = 0usize;
    // The member weights this run trained (under `force`, the only twins it copies).
    let mut trained = HashSet::new();
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
        let summary = train_combo(
            combo,
            options,
            (&mut budget, &mut slot, &mut trained),
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
