//! Errors of the analyze stage; each names the file it is about and, where a rerun fixes it, the
//! recipe to run.

use std::path::PathBuf;

/// Result alias of the analyze crate.
pub type Result<T, E = AnalyzeError> = std::result::Result<T, E>;

/// Why analyze failed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// Not one `infer/<arch>/<method>/<split>.parquet` of the profile exists.
    #[error(
        "{}: no inference outputs for any of {combinations} (looked for infer/<arch>/<method>/{{valid,test}}.parquet); run `just infer` first",
        dir.display()
    )]
    NoInference { dir: PathBuf, combinations: String },
    /// An infer file is unreadable or inconsistent with the ingest tables.
    #[error("{}: {message} (run `just infer` to rebuild it)", path.display())]
    Inference { path: PathBuf, message: String },
    /// An ingest file is inconsistent.
    #[error("{}: {message} (run `just ingest` to rebuild it)", path.display())]
    Ingest { path: PathBuf, message: String },
    /// Drawing or encoding a figure failed.
    #[error("{}: cannot draw the figure: {message}", path.display())]
    Figure { path: PathBuf, message: String },
    /// The bundled font could not be loaded (`ferbayes_render::RenderError::Font`).
    #[error(transparent)]
    Render(#[from] ferbayes_render::RenderError),
    /// Writing `metrics.parquet` failed.
    #[error("{}: {message}", path.display())]
    Output { path: PathBuf, message: String },
    #[error(transparent)]
    Core(#[from] ferbayes_core::Error),
}
