//! Errors of the models crate.

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
    /// An architecture name that is none of `alexnet`, `vgg16`, `densenet121`.
    #[error("unknown architecture {0:?} (expected one of: alexnet, vgg16, densenet121)")]
    UnknownArch(String),
    /// A method name that is none of `mc_dropout`, `mc_dropconnect`, `ensemble`.
    #[error("unknown method {0:?} (expected one of: mc_dropout, mc_dropconnect, ensemble)")]
    UnknownMethod(String),
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
}
