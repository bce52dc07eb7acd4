//! The batch scripts: `#SBATCH` lines from `[slurm]`, then the stage binary with the profile's
//! paths. Written under `artifacts/<profile>/slurm/` and kept, for the user to read or edit.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ferbayes_core::{Layout, Settings, SlurmJobSettings};

use crate::chain::{ChainJob, JobKind, infer_combos};

/// Where the jobs find the settings, the data, the artifacts and the binaries (absolute paths,
/// as the compute nodes see them on the shared file system).
#[derive(Debug, Clone)]
pub struct JobEnv {
    pub profile: String,
    pub config: PathBuf,
    pub artifacts: PathBuf,
    /// `--data` as given to submit (None: the settings' `data_dir`, relative to `workdir`).
    pub data: Option<PathBuf>,
    /// The folder the jobs run in (relative paths of pipeline.toml resolve against it).
    pub workdir: PathBuf,
    pub bin_dir: PathBuf,
}

/// A path or word quoted for bash.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=,@%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn quote_path(p: &Path) -> String {
    quote(&p.display().to_string())
}

/// The job's `[slurm.<name>]` table.
pub fn job_settings(settings: &Settings, kind: JobKind) -> &SlurmJobSettings {
    let s = &settings.slurm;
    match kind {
        JobKind::Ingest => &s.ingest,
        JobKind::Train => &s.train,
        JobKind::Finish => &s.finish,
        JobKind::Infer => &s.infer,
        JobKind::Analyze => &s.analyze,
    }
}

/// The `#SBATCH` lines of a job.
fn header(layout: &Layout, settings: &Settings, job: &ChainJob) -> String {
    let slurm = &settings.slurm;
    let res = job_settings(settings, job.kind);
    let name = job.kind.name();
    let mut lines = vec![format!("--job-name=ferbayes-{}-{name}", layout.profile())];
    for (flag, value) in [
        ("partition", &slurm.partition),
        ("account", &slurm.account),
        ("qos", &slurm.qos),
    ] {
        if let Some(v) = value {
            lines.push(format!("--{flag}={v}"));
        }
    }
    lines.push(format!("--time={}", res.time));
    lines.push("--ntasks=1".into());
    lines.push(format!("--cpus-per-task={}", res.cpus));
    if let Some(mem) = &res.mem {
        lines.push(format!("--mem={mem}"));
    }
    if let Some(gres) = &res.gres {
        lines.push(format!("--gres={gres}"));
    }
    let log = match job.array {
        Some(n) => {
            lines.push(format!(
                "--array={}",
                array_spec(&(0..n).collect::<Vec<_>>(), slurm.max_running)
            ));
            layout.slurm_log(name, "%A", Some("%a"))
        }
        None => layout.slurm_log(name, "%j", None),
    };
    lines.push(format!("--output={}", log.display()));
    lines.extend(slurm.extra_sbatch.iter().map(|l| l.trim().to_owned()));
    let mut out = String::from("#!/usr/bin/env bash\n");
    for l in lines {
        let _ = writeln!(out, "#SBATCH {l}");
    }
    out
}

/// `--array` value: ranges of the task ids, then `%max_running` when limited.
pub fn array_spec(tasks: &[usize], max_running: usize) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tasks.len() {
        let mut j = i;
        while j + 1 < tasks.len() && tasks[j + 1] == tasks[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}-{}", tasks[i], tasks[j])
        } else {
            tasks[i].to_string()
        });
        i = j + 1;
    }
    let mut spec = parts.join(",");
    if max_running > 0 {
        let _ = write!(spec, "%{max_running}");
    }
    spec
}

/// The stage command of a job (bash), run after the environment is set.
fn command(env: &JobEnv, settings: &Settings, kind: JobKind, width: usize) -> String {
    let bin = |name: &str| quote_path(&env.bin_dir.join(name));
    let device = job_settings(settings, kind).device.as_str();
    match kind {
        JobKind::Ingest => format!("exec {}", bin("ferbayes-ingest")),
        JobKind::Train => format!(
            "exec {} --shard \"$SLURM_ARRAY_TASK_ID/{width}\" --device {device}",
            bin("ferbayes-train")
        ),
        JobKind::Finish => format!("exec {} --device {device}", bin("ferbayes-train")),
        JobKind::Infer => {
            let combos: Vec<String> = infer_combos(settings)
                .iter()
                .map(|(a, m)| format!("{a}:{m}"))
                .collect();
            format!(
                "combos=({})\ncombo=\"${{combos[$SLURM_ARRAY_TASK_ID]}}\"\n\
                 exec {} --arch \"${{combo%%:*}}\" --method \"${{combo##*:}}\" --device {device}",
                combos.join(" "),
                bin("ferbayes-infer")
            )
        }
        JobKind::Analyze => format!("exec {}", bin("ferbayes-analyze")),
    }
}

/// The whole batch script of a job.
pub fn render(env: &JobEnv, layout: &Layout, settings: &Settings, job: &ChainJob) -> String {
    let mut out = header(layout, settings, job);
    let _ = writeln!(
        out,
        "# Written by ferbayes-submit for profile {}; `just submit` rewrites it.",
        env.profile
    );
    out.push_str("set -euo pipefail\n");
    let _ = writeln!(out, "cd {}", quote_path(&env.workdir));
    let setup = settings.slurm.setup.trim();
    if !setup.is_empty() {
        let _ = writeln!(out, "{setup}");
    }
    let _ = writeln!(out, "export FER_PROFILE={}", quote(&env.profile));
    let _ = writeln!(out, "export FER_CONFIG={}", quote_path(&env.config));
    let _ = writeln!(out, "export FER_ARTIFACTS={}", quote_path(&env.artifacts));
    if let Some(data) = &env.data {
        let _ = writeln!(out, "export FER_DATA={}", quote_path(data));
    }
    out.push_str("export RAYON_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"\n");
    let width = job.array.unwrap_or(1);
    let _ = writeln!(out, "{}", command(env, settings, job.kind, width));
    out
}
