//! The Slurm client commands: `sbatch` to submit, `squeue` to follow, `scancel` to cancel.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};

/// Runs a client command and returns its standard output.
fn run(program: &str, args: &[String]) -> Result<String> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `sbatch` arguments of a job: `--parsable`, its `afterok` dependencies (dependents of
/// a failed job are cancelled, not left pending), an `--array` that overrides the script's
/// when only some tasks are submitted, and the script.
pub fn sbatch_args(dependencies: &[String], array: Option<&str>, script: &Path) -> Vec<String> {
    let mut args = vec!["--parsable".to_owned()];
    if !dependencies.is_empty() {
        args.push(format!("--dependency=afterok:{}", dependencies.join(":")));
        args.push("--kill-on-invalid-dep=yes".to_owned());
    }
    if let Some(spec) = array {
        args.push(format!("--array={spec}"));
    }
    args.push(script.display().to_string());
    args
}

/// Submits with `sbatch` and returns the job id.
pub fn sbatch(args: &[String]) -> Result<String> {
    let out = run("sbatch", args)?;
    let id = out.trim().split(';').next().unwrap_or("").to_owned();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::JobId {
            command: format!("sbatch {}", args.join(" ")),
            output: out.trim().to_owned(),
        });
    }
    Ok(id)
}

/// One line of `squeue -o '%i %T %r'`: a job or array task, its state and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// The job id (of the whole array for an array task).
    pub job: String,
    /// The array task; None for a single job or a still-pending rest of an array (`12_[3-7]`).
    pub task: Option<usize>,
    pub state: String,
    pub reason: String,
}

impl TaskState {
    /// Whether the task has ended (any way).
    pub fn ended(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "SUSPENDED"
                | "REQUEUED"
                | "REQUEUE_HOLD"
                | "REQUEUE_FED"
                | "RESIZING"
                | "SIGNALING"
                | "STAGE_OUT"
                | "STOPPED"
                | "RESV_DEL_HOLD"
        )
    }

    /// Whether it ended successfully.
    pub fn completed(&self) -> bool {
        self.state == "COMPLETED"
    }
}

/// Parses `squeue -h -o '%i %T %r'` output.
pub fn parse_squeue(text: &str) -> Vec<TaskState> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let id = words.next()?;
            let state = words.next()?.to_owned();
            let reason = words.collect::<Vec<_>>().join(" ");
            let (job, task) = match id.split_once('_') {
                Some((job, task)) => (job, task.parse().ok()),
                None => (id, None),
            };
            Some(TaskState {
                job: job.to_owned(),
                task,
                state,
                reason,
            })
        })
        .collect()
}

/// Every task of the jobs Slurm still knows, ended ones included.
pub fn squeue(jobs: &[String]) -> Result<Vec<TaskState>> {
    let args = [
        "-h".to_owned(),
        "-t".to_owned(),
        "all".to_owned(),
        "-j".to_owned(),
        jobs.join(","),
        "-o".to_owned(),
        "%i %T %r".to_owned(),
    ];
    Ok(parse_squeue(&run("squeue", &args)?))
}

/// Cancels jobs (whole arrays).
pub fn scancel(jobs: &[String]) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    run("scancel", jobs).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_parse() {
        let got = parse_squeue(
            "12_3 FAILED NonZeroExitCode\n12_[4-7] PENDING JobArrayTaskLimit\n13 CANCELLED DependencyNeverSatisfied\n14 RUNNING None\n",
        );
        assert_eq!(got.len(), 4);
        assert_eq!((got[0].job.as_str(), got[0].task), ("12", Some(3)));
        assert!(got[0].ended() && !got[0].completed());
        assert_eq!((got[1].job.as_str(), got[1].task), ("12", None));
        assert!(!got[1].ended());
        assert_eq!(got[2].reason, "DependencyNeverSatisfied");
        assert!(got[2].ended());
        assert!(!got[3].ended());
    }

    #[test]
    fn sbatch_arguments() {
        let args = sbatch_args(&["7".into(), "8".into()], Some("1,3"), Path::new("a/b.sh"));
        assert_eq!(
            args,
            [
                "--parsable",
                "--dependency=afterok:7:8",
                "--kill-on-invalid-dep=yes",
                "--array=1,3",
                "a/b.sh"
            ]
        );
        assert_eq!(
            sbatch_args(&[], None, Path::new("x.sh")),
            ["--parsable", "x.sh"]
        );
    }
}
