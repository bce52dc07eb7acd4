//! Errors of the models crate.

use std::path::PathBuf;

/// Result alias of the models crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why building or running a model failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed inside candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The model configuration is not usable (names the offending field).
    #[error("invalid model config: {0}")]
    Config(String),
    /// The input tensor does not have the shape the model was built for.
    #[error(
        "input of shape {got:?} does not match the model, expected (B, 1, {size}, {size}){extra}"
    )]
    InputShape {
        got: Vec<usize>,
        size: usize,
        /// Extra explanation (empty when the shape itself is wrong).
        extra: String,
    },
    /// A keep probability outside (0, 1].
    #[error("keep probability {0} is outside (0, 1]")]
    KeepProbability(f64),
    /// An artifact path or file operation (core's error names the file).
    #[error(transparent)]
    Core(#[from] ferbayes_core::Error),
    /// A [`crate::Predictor`] found no weights file where the train stage writes it.
    #[error("{}: no trained weights; run `{recipe}` first", path.display())]
    MissingWeights { path: PathBuf, recipe: String },
    /// A method the [`crate::Predictor`] cannot sample yet.
    #[error("method `{0}` is not supported by infer yet")]
    UnsupportedMethod(ferbayes_core::Method),
    /// A [`crate::Predictor`] found a weights file it cannot use.
    #[error("{}: {message}; rerun `{recipe}`", path.display())]
    Weights {
        path: PathBuf,
        message: String,
        recipe: String,
    },
}
