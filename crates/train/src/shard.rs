//! Which members this process trains: the locks it takes, its shard units
//! (`ferbayes_core::plan::shard_units`), and what is already finished or copied from its twin.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use candle_core::Device;
use ferbayes_core::{Layout, Method, Settings};

use crate::checkpoint::{
    META_COMPLETE, META_FINGERPRINT, META_HISTORY, META_MACHINE, finished_member, read_safetensors,
    write_safetensors,
};
use crate::combo::Combo;
use crate::error::{Result, TrainError};
use crate::fingerprint::MemberJob;
use crate::{EpochRecord, TrainOptions};

/// Locks every member this process may write (`Layout::member_lock`), for as long as the
/// returned locks live; fails at once naming the folder, member and holder while another
/// process trains one of them.
pub(crate) fn lock_members(
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

/// The members of a combination this process trains, and what is already there.
pub(crate) struct Assigned {
    /// Each member's history where it is finished (here, by another shard, or as a twin).
    pub(crate) histories: Vec<Option<Vec<EpochRecord>>>,
    /// This process's unfinished members.
    pub(crate) todo: Vec<MemberJob>,
    /// Some members belong to other shards: they write the history and manifest.
    pub(crate) left_to_others: bool,
}

/// This process's members (a shard takes every n-th shard unit, a pack of members, counted
/// over all combinations; see `ferbayes_core::plan::shard_units`), less the finished ones and
/// those copied from their twin. Under `force` no member counts as finished, and a twin is
/// copied only if this run trained it (`trained`: the member weights it wrote).
pub(crate) fn assign_members(
    combo: Combo<'_>,
    options: &TrainOptions,
    slot: &mut usize,
    trained: &HashSet<PathBuf>,
) -> Result<Assigned> {
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
        let finished = if options.force {
            None
        } else {
            finished_member(&job.weights, &job.fingerprint)
        };
        if let Some(history) = finished {
            tracing::info!("{arch}/{method} member {member:02} is up to date; skipping");
            assigned.histories[member] = Some(history);
        } else if let Some(history) = copy_twin(combo, &job, options.force.then_some(trained))? {
            assigned.histories[member] = Some(history);
        } else {
            assigned.todo.push(job);
        }
    }
    *slot += ferbayes_core::plan::shard_units(settings, method);
    Ok(assigned)
}

/// The MC-Dropout network and ensemble member 0 train identically: the same seed (weights,
/// data order, masks), dropout on the activations in both, the same settings. When one of
/// them is finished (and, given `only`, one of these weights: those this run trained), the
/// other is a copy of its weights under its own fingerprint (and its history), not a second
/// training. Returns that history when it copied.
pub(crate) fn copy_twin(
    combo: Combo<'_>,
    job: &MemberJob,
    only: Option<&HashSet<PathBuf>>,
) -> Result<Option<Vec<EpochRecord>>> {
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
    if only.is_some_and(|trained| !trained.contains(&other.weights)) {
        return Ok(None);
    }
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

/// Every member's history from its finished weights (those with its fingerprint), for the last
/// pass after the shards (`TrainOptions::finish`); fails naming the members that are not
/// finished.
pub(crate) fn finished_members(combo: Combo<'_>) -> Result<Vec<EpochRecord>> {
    let members = ferbayes_core::plan::members(combo.settings, combo.method);
    let mut history = Vec::new();
    let mut missing = Vec::new();
    for member in 0..members {
        let job = MemberJob::new(combo, member);
        match finished_member(&job.weights, &job.fingerprint) {
            Some(h) => history.extend(h),
            None => missing.push(job.weights),
        }
    }
    if missing.is_empty() {
        return Ok(history);
    }
    Err(TrainError::Unfinished {
        what: format!("{}/{}", combo.arch, combo.method),
        missing,
    })
}
