//! `ferbayes-train`: trains the profile's architectures × uncertainty methods.

use anyhow::Context;
use clap::Parser;
use ferbayes_core::cli::{CommonArgs, init_tracing};
use ferbayes_core::{Arch, Method};

/// Train every architecture × uncertainty method the profile lists (or the ones named) on the
/// ingest Parquet, writing train/<arch>/<method>/member-NN.safetensors and history.parquet.
/// A killed run resumes from its last completed epoch; finished members are not retrained.
#[derive(Debug, Parser)]
#[command(name = "ferbayes-train", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Train only these architectures (alexnet, vgg16, densenet121; comma-separated).
    #[arg(long, value_delimiter = ',')]
    arch: Vec<Arch>,
    /// Train only these methods (mc_dropout, mc_dropconnect, ensemble; comma-separated).
    #[arg(long, value_delimiter = ',')]
    method: Vec<Method>,
    /// Compute device: cpu, or cuda (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    let ctx = args.common.context()?;
    let options = ferbayes_train::TrainOptions {
        archs: (!args.arch.is_empty()).then(|| args.arch.clone()),
        methods: (!args.method.is_empty()).then(|| args.method.clone()),
        device: ferbayes_models::device(&args.device)?,
        stop_after_epochs: None,
    };
    let summaries =
        ferbayes_train::run(&ctx.layout, &ctx.settings, &options).context("training failed")?;
    for s in summaries {
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
