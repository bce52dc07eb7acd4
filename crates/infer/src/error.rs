//! Errors of the infer stage (its sampler's, `ferbayes_models::Predictor`'s, come as
//! [`InferError::Model`]).

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
}
