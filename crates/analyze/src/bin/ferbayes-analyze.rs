//! `ferbayes-analyze`: infer outputs to `artifacts/<profile>/analyze/` (metrics, figures, report).

use anyhow::Context;
use clap::Parser;
use ferbayes_core::cli::{CommonArgs, init_tracing};

/// Evaluate every architecture x method of the profile whose inference outputs exist
/// (infer/<arch>/<method>/{valid,test}.parquet) against the FER+ majority labels and crowd
/// distributions, for n = 1..T samples: error, NLL, ECE, Brier, classwise ECE, AURC, predictive /
/// aleatoric / epistemic entropy, JSD, soft accuracy, KL and the entropy correlation.
///
/// Writes analyze/metrics.parquet (one row per arch, method, split, n), selective.parquet
/// (selective prediction), and, as the profile asks, shift.parquet (dataset shift), ood.parquet
/// (OOD detection) and labels.parquet (soft-label comparison), the figures
/// (analyze/figures/*.png and .svg), analyze/report.html, analyze/report.md and manifest.json,
/// and prints the test split at the `analyze.shown_n` sample counts. Settings come from the
/// `[analyze]` section of pipeline.toml (ece_bins, orderings, top_uncertain, shown_n).
#[derive(Debug, Parser)]
#[command(name = "ferbayes-analyze", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Rerun even when the outputs are up to date (same settings and input tables).
    #[arg(long)]
    force: bool,
}

#[allow(clippy::print_stdout)]
fn print_table(table: &str) {
    print!("{table}");
}

fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    let ctx = args.common.context()?;
    let Some(summary) = ferbayes_analyze::run_checked(&ctx.layout, &ctx.settings, args.force)
        .with_context(|| format!("analyze of profile `{}` failed", ctx.profile))?
    else {
        return Ok(());
    };
    print_table(&summary.console_table());
    tracing::info!(
        rows = summary.rows,
        figures = summary.figures.len(),
        skipped = summary.missing.len(),
        "wrote {} and {}",
        summary.metrics.display(),
        summary.report_html.display()
    );
    Ok(())
}
