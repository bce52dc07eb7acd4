//! `ferbayes`: commands for people with their own images.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferbayes_core::cli::{CommonArgs, init_tracing};
use ferbayes_core::{Arch, Method};

/// ferbayes: facial-emotion classifiers that know when a face is ambiguous.
#[derive(Debug, Parser)]
#[command(name = "ferbayes", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Predict the emotion of face photos (PNG/JPEG) with a trained model, with its uncertainty.
    ///
    /// Each image is converted to a 48x48 grayscale face (centre crop to a square, resize); a
    /// cropped, roughly frontal face is expected. Prints, per image, the mean probability of each
    /// emotion, the predicted emotion, the predictive entropy split into aleatoric (ambiguity of
    /// the face) and epistemic (disagreement of the model's samples) parts, and a verdict.
    Predict {
        /// Images to classify.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Architecture whose weights to use.
        #[arg(long, default_value = "densenet121")]
        arch: Arch,
        /// Uncertainty method whose weights to use.
        #[arg(long, default_value = "ensemble")]
        method: Method,
        /// Stochastic passes T for the MC methods [default: infer.samples of the profile].
        #[arg(long)]
        samples: Option<usize>,
        /// Print JSON instead of the terminal chart.
        #[arg(long)]
        json: bool,
        /// Compute device: cpu, or cuda (needs a build with `--features cuda`).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// CPU kernels: winograd, im2col or reference (candle's ops); FER_REFERENCE_OPS=1 and
        /// FER_WINOGRAD=0 override it.
        #[arg(long, default_value = "winograd")]
        kernels: ferbayes_models::Backend,
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[allow(clippy::print_stdout)]
fn main() -> anyhow::Result<()> {
    let tuning = ferbayes_models::tune_cpu_process();
    init_tracing();
    tracing::debug!(?tuning, "cpu runtime");
    match Args::parse().command {
        Command::Predict {
            images,
            arch,
            method,
            samples,
            json,
            device,
            kernels,
            common,
        } => {
            let ctx = common.context()?;
            let mut settings = ctx.settings.clone();
            if let Some(t) = samples {
                anyhow::ensure!(t >= 1, "--samples must be at least 1");
                settings.infer.samples = t;
            }
            let device = ferbayes_models::device(&device)?;
            let kernels = kernels.with_env_overrides();
            let predictor = ferbayes_infer::Predictor::load_on(
                &ctx.layout,
                &settings,
                arch,
                method,
                &device,
                kernels,
            )
            .with_context(|| {
                format!(
                    "loading the {arch}/{method} model of profile `{}`",
                    ctx.profile
                )
            })?;
            let predictions = ferbayes_infer::predict::predict_images(&predictor, &images)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&predictions)?);
            } else {
                for p in &predictions {
                    if let Some(w) = &p.warning {
                        tracing::warn!("{}: {w}", p.image.display());
                    }
                    print!("{}", ferbayes_infer::predict::render(p));
                }
            }
        }
    }
    Ok(())
}
