//! Errors of the infer stage and of its sampler.

use std::path::PathBuf;

/// Result alias of the infer crate.
pub type Result<T, E = InferError> = std::result::Result<T, E>;

/// Why inference failed.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    Core(#[from] ferbayes_core::Error),
    #[error(transparent)]
    Model(#[from] ferbayes_models::Error),
    #[error("the rows of an infer table: {0}")]
    Rows(#[from] ferbayes_core::schema::RowError),
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{}: no trained weights; run `{recipe}` first", path.display())]
    MissingWeights { path: PathBuf, recipe: String },
    #[error("{}: {message}; rerun `{recipe}`", path.display())]
    Weights {
        path: PathBuf,
        message: String,
        recipe: String,
    },
    #[error("method `{0}` is not supported by infer yet")]
    UnsupportedMethod(ferbayes_core::Method),
}
