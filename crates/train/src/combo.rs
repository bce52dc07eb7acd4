//! One architecture × method: its members trained pack by pack, then its history and
//! manifest.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use ferbayes_core::runner::StageRun;
use ferbayes_core::schema::rows::HistoryRow;
use ferbayes_core::{Arch, Layout, Method, Settings};
use tracing_indicatif::span_ext::IndicatifSpanExt;

use crate::checkpoint::{META_MACHINE, header_metadata};
use crate::data::Dataset;
use crate::epoch::{PackEntry, PackOutcome, group_by_resume, train_pack};
use crate::error::Result;
use crate::shard::{assign_members, finished_members};
use crate::{ComboSummary, EpochRecord, TrainOptions};

/// One architecture × method to train: where it goes, its settings and its faces.
#[derive(Clone, Copy)]
pub(crate) struct Combo<'a> {
    pub(crate) layout: &'a Layout,
    pub(crate) settings: &'a Settings,
    pub(crate) arch: Arch,
    pub(crate) method: Method,
    /// The train and valid faces at the architecture's input size.
    pub(crate) data: (&'a Dataset, &'a Dataset),
}

pub(crate) fn train_combo(
    combo: Combo<'_>,
    options: &TrainOptions,
    (budget, slot, trained): (&mut Option<usize>, &mut usize, &mut HashSet<PathBuf>),
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
    let mut summary = ComboSummary {
        arch,
        method,
        members,
        trained: 0,
        interrupted: false,
        skipped: false,
        history: Vec::new(),
    };
    if options.finish {
        // The shards trained every member: only the history and the manifest are left.
        summary.history = finished_members(combo)?;
        finish_combo(
            layout,
            arch,
            method,
            members,
            stage,
            &summary.history,
            started,
        )?;
        return Ok(summary);
    }
    let mut assigned = assign_members(combo, options, slot, trained)?;
    span.pb_inc((members - assigned.todo.len()) as u64);
    let pack_size = settings.train.pack_members.max(1);
    for group in group_by_resume(assigned.todo, &options.device, options.force) {
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
                        trained.insert(layout.member_weights(arch, method, member));
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

/// Writes a finished combination's history and manifest (each member's best epoch, the
/// seconds taken) and removes its resume folder.
pub(crate) fn finish_combo(
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
pub(crate) fn trained_on(
    layout: &Layout,
    arch: Arch,
    method: Method,
    members: usize,
) -> serde_json::Value {
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

/// The rows of `history.parquet` (schema [`ferbayes_core::schema::history`]).
pub(crate) fn history_rows(records: &[EpochRecord]) -> Vec<HistoryRow> {
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
