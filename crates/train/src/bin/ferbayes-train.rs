//! `ferbayes-train`: trains the profile's architectures × uncertainty methods.

use anyhow::Context;
use clap::Parser;
use ferbayes_core::cli::{CommonArgs, Selection, init_tracing};

/// Train every architecture × uncertainty method the profile lists (or the ones named) on the
/// ingest Parquet, writing train/<arch>/<method>/member-NN.safetensors and history.parquet.
/// A killed run resumes from its last completed epoch; finished members are not retrained.
#[derive(Debug, Parser)]
#[command(name = "ferbayes-train", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    selection: Selection,
    /// Compute device: cpu, or cuda (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Retrain combinations that are up to date (same settings and ingest tables).
    #[arg(long)]
    force: bool,
}

fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    let ctx = args.common.context()?;
    let options = ferbayes_train::TrainOptions {
        selection: args.selection.clone(),
        device: ferbayes_models::device(&args.device)?,
        stop_after_epochs: None,
        force: args.force,
    };
    let summaries =
        ferbayes_train::run(&ctx.layout, &ctx.settings, &options).context("training failed")?;
    for s in summaries {
        if s.skipped {
            continue;
        }
        let last = s
            .history
            .iter()
            .filter(|r| r.epoch > 0)
            .max_by_key(|r| (r.member, r.epoch));
        tracing::info!(
            "{}/{}: {} member(s), {} trained now; last valid accuracy {}",
            s.arch,
            s.method,
            s.members,
            s.trained,
            last.map(|r| format!("{:.2}%", 100.0 * r.valid_accuracy))
                .unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}
