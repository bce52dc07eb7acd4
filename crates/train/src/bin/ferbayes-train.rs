//! `ferbayes-train`: trains the profile's architectures × uncertainty methods.

use anyhow::Context;
use clap::Parser;
use ferbayes_core::cli::{CommonArgs, DeviceArg, KernelArgs, Selection, init_tracing};

/// Train every architecture × uncertainty method the profile lists (or the ones named) on the
/// ingest Parquet, writing train/<arch>/<method>/member-NN.safetensors and history.parquet.
/// A killed run resumes from its last completed epoch; finished members are not retrained
/// (unless --force).
#[derive(Debug, Parser)]
#[command(name = "ferbayes-train", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    selection: Selection,
    #[command(flatten)]
    device: DeviceArg,
    /// Retrain every member this run covers (with --shard, the shard's), from scratch, even
    /// where it is up to date (same settings and ingest tables); with --finish, rewrite every
    /// history and manifest.
    #[arg(long)]
    force: bool,
    /// `K/N`: train only shard units K, K+N, K+2N, ... (a unit is a pack of train.pack_members
    /// members, or one MC network; counted over all combinations), for N processes in
    /// parallel (`just train` does this); a last run with --finish then writes each
    /// combination's history and manifest.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// The last pass after the shards: train nothing, write each combination's history and
    /// manifest from the members the shards finished, and fail naming any member that is not.
    #[arg(long, conflicts_with = "shard")]
    finish: bool,
    #[command(flatten)]
    kernels: KernelArgs,
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (k, n) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}`: expected K/N, e.g. 0/2"))?;
    let k: usize = k
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: K is not a number"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: N is not a number"))?;
    if n == 0 || k >= n {
        return Err(format!("`{s}`: need 0 <= K < N"));
    }
    Ok((k, n))
}

fn main() -> anyhow::Result<()> {
    let tuning = ferbayes_models::tune_cpu_process();
    init_tracing();
    tracing::debug!(?tuning, "cpu runtime");
    let args = Args::parse();
    let ctx = args.common.context()?;
    let device = ferbayes_models::device(args.device.resolve(&ctx.settings).as_str())?;
    // The struct update fills the test hook that exists only with feature `testing`.
    #[allow(clippy::needless_update)]
    let options = ferbayes_train::TrainOptions {
        selection: args.selection.clone(),
        device: device.clone(),
        force: args.force,
        shard: args.shard,
        finish: args.finish,
        kernels: ferbayes_models::install_kernels(&args.kernels, &device),
        ..ferbayes_train::TrainOptions::default()
    };
    // The main run, then each soft-label comparison run (`train.compare_label_modes`),
    // on a worker of the kernels' thread pool.
    let summaries = ferbayes_models::run_in_pool(|| -> anyhow::Result<Vec<_>> {
        let mut summaries = Vec::new();
        for (layout, settings) in ferbayes_core::plan::variants(&ctx.layout, &ctx.settings) {
            // A comparison run trains only its compare_archs: a selection outside them is not
            // its to train.
            let Some(selection) =
                ferbayes_core::plan::variant_selection(&layout, &options.selection, &settings)
            else {
                continue;
            };
            if let Some(v) = layout.variant_name() {
                tracing::info!("soft-label comparison run {v}");
            }
            let options = ferbayes_train::TrainOptions {
                selection,
                ..options.clone()
            };
            let done =
                ferbayes_train::run(&layout, &settings, &options).context("training failed")?;
            let interrupted = done.iter().any(|s| s.interrupted);
            summaries.extend(done);
            if interrupted {
                break;
            }
        }
        Ok(summaries)
    })?;
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
