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
}
