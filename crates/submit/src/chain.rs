//! Which Slurm jobs a profile's chain needs: the same up-to-date checks as the stages (and
//! `ferbayes-status`), so a second submission skips what is complete.

use ferbayes_core::plan::{self, Plan};
use ferbayes_core::{Arch, Layout, Method, Settings};

use crate::error::Result;

/// The jobs of the chain, in submission order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// `ferbayes-ingest`.
    Ingest,
    /// The train array: task i runs `ferbayes-train --shard i/K`.
    Train,
    /// `ferbayes-train --finish` (no shard): each combination's history and manifest.
    Finish,
    /// The infer array: task i runs one architecture × method.
    Infer,
    /// `ferbayes-analyze`.
    Analyze,
}

impl JobKind {
    pub const ALL: [JobKind; 5] = [
        JobKind::Ingest,
        JobKind::Train,
        JobKind::Finish,
        JobKind::Infer,
        JobKind::Analyze,
    ];

    /// The job's name: its script `slurm/<name>.sh`, its logs and its `[slurm.<name>]` table.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Ingest => "ingest",
            JobKind::Train => "train",
            JobKind::Finish => "finish",
            JobKind::Infer => "infer",
            JobKind::Analyze => "analyze",
        }
    }

    /// The jobs whose outputs this one reads (it starts `afterok` on those submitted).
    pub fn reads(self) -> &'static [JobKind] {
        match self {
            JobKind::Ingest => &[],
            JobKind::Train => &[JobKind::Ingest],
            JobKind::Finish => &[JobKind::Train, JobKind::Ingest],
            JobKind::Infer => &[JobKind::Finish, JobKind::Ingest],
            JobKind::Analyze => &[JobKind::Infer, JobKind::Ingest],
        }
    }
}

/// One job of the chain and whether it is submitted.
#[derive(Debug, Clone)]
pub struct ChainJob {
    pub kind: JobKind,
    /// Tasks of the full array (None: a single job). Train: K shards; infer: the
    /// architecture × method combinations.
    pub array: Option<usize>,
    /// What each array task does, for messages (`shard 0/4`, `alexnet/ensemble`).
    pub task_labels: Vec<String>,
    /// The tasks to submit (all of the array, or the combinations not up to date); empty:
    /// the job is skipped.
    pub tasks: Vec<usize>,
    /// Why the job is (or is not) submitted.
    pub reason: String,
}

impl ChainJob {
    /// Whether the job is submitted.
    pub fn submitted(&self) -> bool {
        !self.tasks.is_empty()
    }

    /// Whether only part of the array is submitted (but some of it is).
    pub fn narrowed(&self) -> bool {
        self.submitted() && self.array.is_some_and(|n| self.tasks.len() < n)
    }
}

/// The architecture × method combinations of the infer array (the main run's; a task also
/// infers the soft-label comparison runs of its combination).
pub fn infer_combos(settings: &Settings) -> Vec<(Arch, Method)> {
    settings
        .train
        .archs
        .iter()
        .flat_map(|&a| settings.train.methods.iter().map(move |&m| (a, m)))
        .collect()
}

/// The train array width: `slurm.array_width`, cut to the shard units of the largest run.
pub fn train_width(settings: &Settings) -> usize {
    let units = plan::variants(&Layout::new("", ""), settings)
        .iter()
        .map(|(_, s)| plan::run_shard_units(s))
        .max()
        .unwrap_or(1);
    settings.slurm.array_width.min(units).max(1)
}

/// The first plan that is not up to date, as `label: state`.
fn first_stale(plans: &[Plan]) -> Result<Option<String>> {
    for p in plans {
        let check = p.check()?;
        if !check.up_to_date() {
            return Ok(Some(format!("{}: {}", p.label, check.freshness)));
        }
    }
    Ok(None)
}

/// A job that runs whole or not at all.
fn single(
    kind: JobKind,
    run: Option<String>,
    array: Option<usize>,
    labels: Vec<String>,
) -> ChainJob {
    let n = array.unwrap_or(1);
    ChainJob {
        kind,
        array,
        task_labels: labels,
        tasks: if run.is_some() {
            (0..n).collect()
        } else {
            Vec::new()
        },
        reason: run.unwrap_or_else(|| "up to date".into()),
    }
}

/// Decides the chain: a job is submitted when its stage is not up to date, or when a job it
/// reads from is submitted. The infer array is cut to the combinations not up to date.
pub fn decide(
    layout: &Layout,
    data_root: &std::path::Path,
    settings: &Settings,
) -> Result<Vec<ChainJob>> {
    let runs = plan::variants(layout, settings);
    let ingest = first_stale(&[plan::ingest(layout, data_root, &settings.ingest)])?;
    let train_plans: Vec<Plan> = runs
        .iter()
        .flat_map(|(l, s)| {
            infer_combos(s)
                .into_iter()
                .map(move |(a, m)| plan::train(l, s, a, m))
        })
        .collect();
    let train = match &ingest {
        Some(_) => Some("ingest is submitted".to_owned()),
        None => first_stale(&train_plans)?,
    };
    let k = train_width(settings);
    let shards = (0..k).map(|i| format!("shard {i}/{k}")).collect();
    let mut jobs = vec![
        single(JobKind::Ingest, ingest, None, Vec::new()),
        single(JobKind::Train, train.clone(), Some(k), shards),
        single(JobKind::Finish, train.clone(), None, Vec::new()),
    ];
    jobs.push(decide_infer(&runs, settings, train.is_some())?);
    let analyze = if jobs[3].submitted() {
        Some("infer is submitted".to_owned())
    } else {
        first_stale(&[plan::analyze(layout, settings)])?
    };
    jobs.push(single(JobKind::Analyze, analyze, None, Vec::new()));
    Ok(jobs)
}

/// The infer array: every combination when train is submitted, else those with a run whose
/// infer plan is not up to date.
fn decide_infer(runs: &[(Layout, Settings)], settings: &Settings, train: bool) -> Result<ChainJob> {
    let combos = infer_combos(settings);
    let mut tasks = Vec::new();
    let mut reasons = Vec::new();
    for (i, &(arch, method)) in combos.iter().enumerate() {
        if train {
            tasks.push(i);
            continue;
        }
        let plans: Vec<Plan> = runs
            .iter()
            .filter(|(_, s)| s.train.archs.contains(&arch) && s.train.methods.contains(&method))
            .map(|(l, s)| plan::infer(l, s, arch, method))
            .collect();
        if let Some(why) = first_stale(&plans)? {
            tasks.push(i);
            reasons.push(why);
        }
    }
    let reason = if train {
        "train is submitted".to_owned()
    } else if reasons.is_empty() {
        "up to date".to_owned()
    } else {
        reasons.join("; ")
    };
    Ok(ChainJob {
        kind: JobKind::Infer,
        array: Some(combos.len()),
        task_labels: combos.iter().map(|(a, m)| format!("{a}/{m}")).collect(),
        tasks,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(profile: &str) -> Settings {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml");
        ferbayes_core::PipelineFile::load(&path)
            .expect("pipeline.toml")
            .settings(profile)
            .expect(profile)
    }

    #[test]
    fn train_width_is_cut_to_the_shard_units() {
        let mut s = settings("paper");
        assert_eq!(train_width(&s), 16);
        // 3 architectures × (MC-Dropout, MC-DropConnect, 15 members) = 51 units.
        s.slurm.array_width = 100;
        assert_eq!(train_width(&s), 51);
        // Packs of 5: 3 × (1 + 1 + 3) = 15 units.
        s.train.pack_members = 5;
        assert_eq!(train_width(&s), 15);
    }

    #[test]
    fn fresh_artifacts_submit_everything_in_order() {
        let s = settings("smoke");
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path(), "smoke");
        let data = ferbayes_core::test_data_root();
        let jobs = decide(&layout, &data, &s).expect("decide");
        let kinds: Vec<JobKind> = jobs.iter().map(|j| j.kind).collect();
        assert_eq!(kinds, JobKind::ALL);
        assert!(jobs.iter().all(|j| j.submitted() && !j.narrowed()));
        assert_eq!(jobs[1].tasks, (0..4).collect::<Vec<_>>());
        assert_eq!(jobs[3].task_labels[2], "alexnet/ensemble");
        assert_eq!(jobs[0].reason, "ingest: missing");
    }
}
