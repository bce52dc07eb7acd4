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
        JobKind::Finish => format!("exec {} --finish --device {device}", bin("ferbayes-train")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainJob;

    fn paper() -> Settings {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml");
        ferbayes_core::PipelineFile::load(&path)
            .expect("pipeline.toml")
            .settings("paper")
            .expect("paper")
    }

    fn env() -> JobEnv {
        JobEnv {
            profile: "paper".into(),
            config: "/repo/pipeline.toml".into(),
            artifacts: "/scratch/my art".into(),
            data: Some("/shared/ferplus".into()),
            workdir: "/repo".into(),
            bin_dir: "/opt/ferbayes/bin".into(),
        }
    }

    fn job(kind: JobKind, array: Option<usize>) -> ChainJob {
        ChainJob {
            kind,
            array,
            task_labels: Vec::new(),
            tasks: (0..array.unwrap_or(1)).collect(),
            reason: String::new(),
        }
    }

    #[test]
    fn array_specs_and_quoting() {
        assert_eq!(array_spec(&[0, 1, 2, 5, 7, 8], 0), "0-2,5,7-8");
        assert_eq!(array_spec(&[3], 2), "3%2");
        assert_eq!(quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(quote("my art"), "'my art'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn train_script_of_the_paper_profile() {
        let mut s = paper();
        s.slurm.partition = Some("gpu".into());
        s.slurm.max_running = 8;
        s.slurm.extra_sbatch = vec!["--constraint=a100".into()];
        s.slurm.setup = "module load cuda/12.4".into();
        let layout = Layout::new("/scratch/my art", "paper");
        let text = render(&env(), &layout, &s, &job(JobKind::Train, Some(16)));
        for line in [
            "#SBATCH --partition=gpu",
            "#SBATCH --time=2-00:00:00",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --mem=16G",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --array=0-15%8",
            "#SBATCH --output=/scratch/my art/paper/slurm/logs/train-%A_%a.log",
            "#SBATCH --constraint=a100",
            "module load cuda/12.4",
            "export FER_ARTIFACTS='/scratch/my art'",
            "export FER_DATA=/shared/ferplus",
            "exec /opt/ferbayes/bin/ferbayes-train --shard \"$SLURM_ARRAY_TASK_ID/16\" --device cuda",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert!(
            !text.contains("--account"),
            "unset: the user's default\n{text}"
        );
        // Every #SBATCH line comes before the first command (sbatch stops reading there).
        let first_command = text.lines().position(|l| l == "set -euo pipefail");
        let last_directive = text
            .lines()
            .collect::<Vec<_>>()
            .iter()
            .rposition(|l| l.starts_with("#SBATCH"));
        assert!(last_directive < first_command, "{text}");
    }

    #[test]
    fn infer_script_maps_tasks_to_combinations() {
        let s = paper();
        let layout = Layout::new("/a", "paper");
        let text = render(&env(), &layout, &s, &job(JobKind::Infer, Some(9)));
        assert!(text.contains("#SBATCH --array=0-8\n"), "{text}");
        let combos = infer_combos(&s);
        assert_eq!(combos.len(), 9);
        let listed: Vec<String> = combos.iter().map(|(a, m)| format!("{a}:{m}")).collect();
        assert!(
            text.contains(&format!("combos=({})", listed.join(" "))),
            "{text}"
        );
        assert!(text.contains("--device cuda"), "{text}");
        let ingest = render(&env(), &layout, &s, &job(JobKind::Ingest, None));
        assert!(ingest.contains("#SBATCH --output=/a/paper/slurm/logs/ingest-%j.log"));
        assert!(
            ingest.contains("exec /opt/ferbayes/bin/ferbayes-ingest\n"),
            "{ingest}"
        );
        assert!(
            !ingest.contains("--array") && !ingest.contains("--gres"),
            "{ingest}"
        );
    }
}
