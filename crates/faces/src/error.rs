//! Errors of reading an image or running the detector; each names the file it is about.

use std::path::{Path, PathBuf};

/// Result alias of the faces crate.
pub type Result<T, E = FacesError> = std::result::Result<T, E>;

/// Why an image could not be read, or the detector not built.
#[derive(Debug, thiserror::Error)]
pub enum FacesError {
    /// The file is not a readable image of the kind expected (or over the size limit).
    #[error("{}: {message}", path.display())]
    Image { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the face detector's embedded model is unreadable: {0}")]
    DetectorModel(String),
}

impl FacesError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        FacesError::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn image(path: &Path, message: impl Into<String>) -> Self {
        FacesError::Image {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}
