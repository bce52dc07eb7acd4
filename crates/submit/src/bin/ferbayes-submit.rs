//! `ferbayes-submit`: submits the profile's chain as Slurm jobs (`just submit`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ferbayes_core::cli::{CommonArgs, init_tracing};
use ferbayes_submit::{JobEnv, JobKind};

/// Submit the profile's whole chain to Slurm with sbatch: ingest, a train job array (task i
/// runs `ferbayes-train --shard i/K`), the train pass writing histories and manifests, an
/// infer array (one architecture × method per task) and analyze, each afterok on what it
/// reads. Stages already up to date are not submitted. The scripts are written to
/// <ARTIFACTS>/<PROFILE>/slurm/ and kept; settings in the [slurm] tables of pipeline.toml.
#[derive(Debug, Parser)]
#[command(name = "ferbayes-submit", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Write the scripts and print the sbatch commands without submitting.
    #[arg(long)]
    dry_run: bool,
    /// Follow the jobs until all have ended; exit non-zero naming any task that failed.
    #[arg(long)]
    wait: bool,
    /// Seconds between two looks at the queue with --wait.
    #[arg(long, default_value_t = 30.0)]
    poll: f64,
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path)
        .with_context(|| format!("{}: cannot make it absolute", path.display()))
}

/// The paths the jobs use, absolute, and the binaries' folder.
fn job_env(common: &CommonArgs, ctx: &ferbayes_core::cli::RunContext) -> anyhow::Result<JobEnv> {
    let bin_dir = match &ctx.settings.slurm.bin_dir {
        Some(dir) => absolute(dir)?,
        None => std::env::current_exe()
            .context("cannot find the ferbayes-submit executable")?
            .parent()
            .map(Path::to_owned)
            .context("the ferbayes-submit executable has no folder")?,
    };
    Ok(JobEnv {
        profile: ctx.profile.clone(),
        config: absolute(&common.config)?,
        artifacts: absolute(&common.artifacts)?,
        data: common.data.as_deref().map(absolute).transpose()?,
        workdir: std::env::current_dir().context("no working directory")?,
        bin_dir,
    })
}

#[allow(clippy::print_stdout)]
fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    let ctx = args.common.context()?;
    let env = job_env(&args.common, &ctx)?;
    let layout = ferbayes_core::Layout::new(&env.artifacts, &ctx.profile);
    // One submission at a time per profile and root (held until this process ends).
    let _lock = ferbayes_submit::lock(&layout)?;
    let data_root = ctx.data_root()?;
    let jobs = ferbayes_submit::prepare(&env, &layout, &ctx.settings, &data_root)?;
    for job in &jobs {
        let what = if job.narrowed() {
            format!("tasks {:?} of {}", job.tasks, job.array.unwrap_or(1))
        } else if job.submitted() {
            "submit".to_owned()
        } else {
            "skip".to_owned()
        };
        println!("# {:<8} {what}: {}", job.kind.name(), job.reason);
    }
    if args.dry_run {
        let cmds = ferbayes_submit::commands(&layout, &ctx.settings, &jobs, |k: JobKind| {
            format!("${}", k.name())
        });
        for (kind, argv) in cmds {
            println!("{}=$(sbatch {})", kind.name(), argv.join(" "));
        }
        return Ok(());
    }
    let submitted = ferbayes_submit::submit(&layout, &ctx.settings, &jobs)?;
    for (kind, id) in &submitted {
        println!("{} {id}", kind.name());
    }
    if !args.wait || submitted.is_empty() {
        return Ok(());
    }
    let poll = Duration::from_secs_f64(args.poll.max(0.1));
    let failures = ferbayes_submit::wait::follow(&layout, &jobs, &submitted, poll)?;
    if failures.is_empty() {
        println!("all jobs completed");
        return Ok(());
    }
    for f in &failures {
        println!("{f}");
    }
    let own: Vec<String> = failures
        .iter()
        .filter(|f| !f.dependency())
        .map(|f| f.to_string())
        .collect();
    anyhow::bail!("{} task(s) failed: {}", own.len().max(1), own.join("; "))
}
