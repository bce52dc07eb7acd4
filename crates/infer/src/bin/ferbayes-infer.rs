//! `ferbayes-infer`: T stochastic passes or N members per face, cached as probability tables.

use anyhow::Context;
use clap::Parser;
use ferbayes_core::cli::{CommonArgs, DeviceArg, KernelArgs, Selection, init_tracing};

/// Run every trained architecture × method of the profile (or the ones named) on the valid and
/// test faces: T = infer.samples stochastic passes for mc_dropout / mc_dropconnect, every member
/// for ensembles. Writes infer/<arch>/<method>/{valid,test}.parquet (one row per face × sample).
#[derive(Debug, Parser)]
#[command(name = "ferbayes-infer", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    selection: Selection,
    #[command(flatten)]
    device: DeviceArg,
    /// Rerun combinations that are up to date (same settings, weights and ingest tables).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    kernels: KernelArgs,
}

fn main() -> anyhow::Result<()> {
    let tuning = ferbayes_models::tune_cpu_process();
    init_tracing();
    tracing::debug!(?tuning, "cpu runtime");
    let args = Args::parse();
    let ctx = args.common.context()?;
    let device = ferbayes_models::device(args.device.resolve(&ctx.settings).as_str())?;
    let options = ferbayes_infer::InferOptions {
        selection: args.selection.clone(),
        device: device.clone(),
        force: args.force,
        kernels: ferbayes_models::install_kernels(&args.kernels, &device),
    };
    // The main run, then each soft-label comparison run (`train.compare_label_modes`),
    // on a worker of the kernels' thread pool.
    let summaries = ferbayes_models::run_in_pool(|| -> anyhow::Result<Vec<_>> {
        let mut summaries = Vec::new();
        for (layout, settings) in ferbayes_core::plan::variants(&ctx.layout, &ctx.settings) {
            // A comparison run has only its compare_archs to infer.
            let Some(selection) =
                ferbayes_core::plan::variant_selection(&layout, &options.selection, &settings)
            else {
                continue;
            };
            let options = ferbayes_infer::InferOptions {
                selection,
                ..options.clone()
            };
            let done = ferbayes_infer::run(&layout, &settings, &options);
            summaries.extend(done.context("inference failed")?);
        }
        Ok(summaries)
    })?;
    for s in summaries {
        for (split, faces, seconds) in &s.splits {
            tracing::info!(
                "{}/{} {split}: {faces} faces × {} samples, {:.0} faces/s",
                s.arch,
                s.method,
                s.samples,
                *faces as f64 / seconds
            );
        }
    }
    Ok(())
}
