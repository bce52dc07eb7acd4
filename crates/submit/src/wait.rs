//! `--wait`: follows the submitted jobs with `squeue` until every task has ended, prints
//! progress, and names each task that failed with its state and log file.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use ferbayes_core::Layout;

use crate::chain::{ChainJob, JobKind};
use crate::error::Result;
use crate::slurm::{self, TaskState};

/// A task that did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: JobKind,
    pub job: String,
    pub task: Option<usize>,
    /// What the task does (`shard 1/4`, `alexnet/ensemble`), for array tasks.
    pub label: Option<String>,
    pub state: String,
    pub reason: String,
    /// Its log file (`--output`).
    pub log: PathBuf,
}

impl Failure {
    /// Cancelled because a job it depends on failed (not a failure of its own).
    pub fn dependency(&self) -> bool {
        self.reason.contains("Dependency")
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ", self.kind.name())?;
        match (self.task, &self.label) {
            (Some(t), Some(l)) => write!(f, "task {}_{t} ({l})", self.job)?,
            (Some(t), None) => write!(f, "task {}_{t}", self.job)?,
            _ => write!(f, "job {}", self.job)?,
        }
        write!(f, " {} ({})", self.state, self.reason)?;
        if self.dependency() {
            write!(f, ": a job it depends on failed")
        } else {
            write!(f, ", log {}", self.log.display())
        }
    }
}

/// One job being followed.
struct Followed<'a> {
    kind: JobKind,
    id: String,
    job: &'a ChainJob,
    seen: bool,
    last: String,
}

/// The counts of states of one job's tasks, e.g. `2 COMPLETED, 1 RUNNING`.
fn summary(states: &[&TaskState]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in states {
        *counts.entry(s.state.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn failure(layout: &Layout, f: &Followed<'_>, s: &TaskState) -> Failure {
    let name = f.kind.name();
    let log = match s.task {
        Some(t) => layout.slurm_log(name, &f.id, Some(&t.to_string())),
        None => layout.slurm_log(name, &f.id, None),
    };
    Failure {
        kind: f.kind,
        job: f.id.clone(),
        task: s.task,
        label: s.task.and_then(|t| f.job.task_labels.get(t).cloned()),
        state: s.state.clone(),
        reason: s.reason.clone(),
        log,
    }
}

/// Follows `submitted` (from [`crate::submit`]) until every task has ended; returns the tasks
/// that did not complete. When a task fails, the jobs still waiting after it are cancelled
/// (Slurm does so too when dependents of failed jobs are killed).
pub fn follow(
    layout: &Layout,
    jobs: &[ChainJob],
    submitted: &[(JobKind, String)],
    poll: Duration,
) -> Result<Vec<Failure>> {
    let mut followed: Vec<Followed<'_>> = submitted
        .iter()
        .filter_map(|(kind, id)| {
            let job = jobs.iter().find(|j| j.kind == *kind)?;
            Some(Followed {
                kind: *kind,
                id: id.clone(),
                job,
                seen: false,
                last: String::new(),
            })
        })
        .collect();
    let ids: Vec<String> = followed.iter().map(|f| f.id.clone()).collect();
    let mut failures: Vec<Failure> = Vec::new();
    let mut cancelled: HashSet<String> = HashSet::new();
    for polls in 0.. {
        let states = slurm::squeue(&ids)?;
        let mut running = false;
        for (i, f) in followed.iter_mut().enumerate() {
            let mine: Vec<&TaskState> = states.iter().filter(|s| s.job == f.id).collect();
            f.seen |= !mine.is_empty();
            // A job squeue never lists (purged already) counts as ended after a few polls.
            running |= mine.iter().any(|s| !s.ended()) || (!f.seen && polls < 10);
            let now = summary(&mine);
            if now != f.last && !mine.is_empty() {
                tracing::info!("{} (job {}): {now}", f.kind.name(), f.id);
                f.last = now;
            }
            for s in mine.iter().filter(|s| s.ended() && !s.completed()) {
                let mut fail = failure(layout, f, s);
                if s.state == "CANCELLED" && cancelled.contains(&f.id) {
                    fail.reason = "DependencyFailed".into();
                }
                if !failures.contains(&fail) {
                    if !fail.dependency() {
                        tracing::error!("{fail}");
                    }
                    failures.push(fail);
                }
            }
            if failures.iter().any(|x| x.job == f.id && !x.dependency()) {
                cancel_after(&ids[i + 1..], &states, &mut cancelled)?;
            }
        }
        if !running {
            return Ok(failures);
        }
        std::thread::sleep(poll);
    }
    Ok(failures)
}

/// Cancels the jobs among `later` that have not ended (once each).
fn cancel_after(later: &[String], states: &[TaskState], done: &mut HashSet<String>) -> Result<()> {
    let waiting: Vec<String> = later
        .iter()
        .filter(|id| !done.contains(*id))
        .filter(|id| states.iter().any(|s| &s.job == *id && !s.ended()))
        .cloned()
        .collect();
    if !waiting.is_empty() {
        tracing::warn!(
            "cancelling jobs {} (they depend on a failed task)",
            waiting.join(", ")
        );
        slurm::scancel(&waiting)?;
        done.extend(waiting);
    }
    Ok(())
}
