//! Errors of the train stage.

use std::path::PathBuf;

/// Result alias of the train crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Core(#[from] ferbayes_core::Error),
    #[error(transparent)]
    Model(#[from] ferbayes_models::Error),
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    #[error("{}: {message} (run `just ingest` to rebuild it)", path.display())]
    Data { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    /// The last pass after the shards found members without finished weights (for this run's
    /// settings).
    #[error(
        "{what}: the finishing pass (which trains nothing) found no finished weights for this \
         run's settings at {}: run every shard first, as `just train` does",
        missing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )]
    Unfinished { what: String, missing: Vec<PathBuf> },
}
