//! `ferbayes-submit`: the profile's chain as Slurm jobs. Ingest, a train array (task i runs
//! `ferbayes-train --shard i/K`), the train pass that writes histories and manifests, an infer
//! array (one architecture × method per task) and analyze, each `afterok` on the jobs whose
//! outputs it reads. Stages that are up to date are not submitted; the stage binaries keep
//! their own checks, atomic writes and resumption, so a failed or pre-empted task leaves
//! nothing torn and a second submission picks up where the first stopped.

pub mod chain;
pub mod error;
pub mod script;
pub mod slurm;
pub mod wait;

use std::collections::HashMap;
use std::path::Path;

use ferbayes_core::{Layout, Settings};

pub use chain::{ChainJob, JobKind};
pub use error::{Error, Result};
pub use script::JobEnv;

/// The lock of `slurm/` that a submission holds while it writes the scripts, submits and (with
/// `--wait`) follows the jobs, so a second `just submit` of the profile on this artifact root
/// stops at once. The jobs themselves take each stage's own lock when they run.
pub fn lock(layout: &Layout) -> Result<ferbayes_core::lock::StageLock> {
    let dir = layout.slurm_dir();
    Ok(ferbayes_core::lock::acquire(
        &Layout::lock_in(&dir),
        &dir.display().to_string(),
    )?)
}

/// Decides which jobs are needed and writes every job's script under `slurm/` (skipped ones
/// too, so the folder always holds the whole chain).
pub fn prepare(
    env: &JobEnv,
    layout: &Layout,
    settings: &Settings,
    data_root: &Path,
) -> Result<Vec<ChainJob>> {
    let jobs = chain::decide(layout, data_root, settings)?;
    let logs = layout.slurm_logs_dir();
    std::fs::create_dir_all(&logs).map_err(|source| Error::Io {
        path: logs.clone(),
        source,
    })?;
    for job in &jobs {
        let text = script::render(env, layout, settings, job);
        let path = layout.slurm_script(job.kind.name());
        ferbayes_core::io::write_atomic(&path, text.as_bytes())?;
    }
    Ok(jobs)
}

/// The `sbatch` arguments of each submitted job, with each dependency written by `id` (the
/// real job id, or a shell variable for `--dry-run`).
pub fn commands(
    layout: &Layout,
    settings: &Settings,
    jobs: &[ChainJob],
    id: impl Fn(JobKind) -> String,
) -> Vec<(JobKind, Vec<String>)> {
    let submitted: Vec<JobKind> = jobs
        .iter()
        .filter(|j| j.submitted())
        .map(|j| j.kind)
        .collect();
    jobs.iter()
        .filter(|j| j.submitted())
        .map(|job| {
            let deps: Vec<String> = job
                .kind
                .reads()
                .iter()
                .filter(|k| submitted.contains(k))
                .map(|&k| id(k))
                .collect();
            let array = job
                .narrowed()
                .then(|| script::array_spec(&job.tasks, settings.slurm.max_running));
            let path = layout.slurm_script(job.kind.name());
            (job.kind, slurm::sbatch_args(&deps, array.as_deref(), &path))
        })
        .collect()
}

/// Submits the jobs in chain order; returns each submitted job's id.
pub fn submit(
    layout: &Layout,
    settings: &Settings,
    jobs: &[ChainJob],
) -> Result<Vec<(JobKind, String)>> {
    let mut ids: HashMap<JobKind, String> = HashMap::new();
    let mut out = Vec::new();
    // Each command's dependencies are submitted before it, so their ids are known.
    for kind in chain::JobKind::ALL {
        let cmds = commands(layout, settings, jobs, |k| {
            ids.get(&k).cloned().unwrap_or_default()
        });
        let Some((_, args)) = cmds.into_iter().find(|(k, _)| *k == kind) else {
            continue;
        };
        let id = slurm::sbatch(&args)?;
        tracing::info!("submitted {} as job {id}", kind.name());
        ids.insert(kind, id.clone());
        out.push((kind, id));
    }
    Ok(out)
}
