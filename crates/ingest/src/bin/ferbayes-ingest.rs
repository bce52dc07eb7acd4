//! `ferbayes-ingest`: FER+ to `artifacts/<profile>/ingest/{train,valid,test}.parquet`.

use anyhow::Context;
use clap::Parser;
use ferbayes_core::cli::{CommonArgs, init_tracing};

/// Convert FER+ (the FER2013{Train,Valid,Test} folders with label.csv and PNGs, or fer2013.csv
/// next to fer2013new.csv) into one Parquet file per split with the FER+ majority, crossentropy
/// and multi-target labels and the crowd vote distribution.
#[derive(Debug, Parser)]
#[command(name = "ferbayes-ingest", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Keep only the first N faces of each split (overrides `ingest.max_per_split`).
    #[arg(long, value_name = "N")]
    max_per_split: Option<usize>,
    /// Rerun even when the artifacts are up to date (same settings and inputs).
    #[arg(long)]
    force: bool,
}

fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    let ctx = args.common.context()?;
    let mut settings = ctx.settings.ingest.clone();
    if args.max_per_split.is_some() {
        settings.max_per_split = args.max_per_split;
    }
    let root = ctx.data_root()?;
    let outcome = ferbayes_ingest::run_checked(&root, &ctx.layout, &settings, args.force)
        .with_context(|| format!("ingest of {} failed", root.display()))?;
    for s in outcome.splits {
        tracing::info!(
            split = s.split.name(),
            faces = s.faces,
            majority = s.majority,
            soft = s.soft,
            "wrote {}",
            s.path.display()
        );
    }
    Ok(())
}
