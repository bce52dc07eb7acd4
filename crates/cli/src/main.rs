//! `ferbayes`: commands for people with their own images and for looking at a run.
//!
//! Thin: each subcommand parses its flags and calls its library (`ferbayes-predict`,
//! `ferbayes-explore`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferbayes_core::cli::init_tracing;

mod explore;
mod predict;

/// ferbayes: facial-emotion classifiers that know when a face is ambiguous.
#[derive(Debug, Parser)]
#[command(name = "ferbayes", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Find the faces in photos (PNG/JPEG) and predict each one's emotion with its uncertainty.
    ///
    /// Each face is found by a frontal face detector, cropped with FER2013's margin and converted
    /// to a 48x48 grayscale face. Prints, per face, its box, the mean probability of each
    /// emotion, the predicted emotion, the predictive entropy split into aleatoric (ambiguity of
    /// the face) and epistemic (disagreement of the model's samples) parts, and a verdict. An
    /// image without a face is an error (exit status 3). A single folder argument writes one
    /// Parquet table for all the photos in it.
    Predict(predict::PredictArgs),
    /// Serve a local web page over the profile's artifacts (read-only): the test and valid faces
    /// with the model's and the crowd's answers, one face across every arch × method and n, your
    /// photos, and the run's report and status.
    ///
    /// Binds to 127.0.0.1 unless --listen says otherwise; a rerun of a stage is picked up without
    /// a restart.
    Explore(explore::ExploreArgs),
}

fn main() -> ExitCode {
    let tuning = ferbayes_models::tune_cpu_process();
    init_tracing();
    tracing::debug!(?tuning, "cpu runtime");
    let result = match Args::parse().command {
        Command::Predict(args) => predict::run(&args),
        Command::Explore(args) => explore::run(&args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
