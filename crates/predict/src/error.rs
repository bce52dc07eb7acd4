//! Errors of `ferbayes predict`; each names the file it is about.

use std::path::PathBuf;

/// Result alias of the predict crate.
pub type Result<T, E = PredictError> = std::result::Result<T, E>;

/// Why a prediction failed.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Core(#[from] ferbayes_core::Error),
    /// A photo `ferbayes-faces` could not read, or its detector's model.
    #[error(transparent)]
    Faces(#[from] ferbayes_faces::FacesError),
    #[error(transparent)]
    Model(#[from] ferbayes_models::Error),
    #[error(
        "no face found in {}; if the image is already a face crop, use --no-detect",
        path.display()
    )]
    NoFace { path: PathBuf },
    #[error("{}: {message}", path.display())]
    Output { path: PathBuf, message: String },
    #[error(
        "{}: no PNG or JPEG files in this folder or its subfolders; nothing to predict, nothing written",
        dir.display()
    )]
    NoImages { dir: PathBuf },
}
