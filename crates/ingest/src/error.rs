//! Errors of the ingest stage; each names the file (and line, for CSV rows) it is about.

use std::path::{Path, PathBuf};

/// Result alias of the ingest crate.
pub type Result<T, E = IngestError> = std::result::Result<T, E>;

/// Why ingest failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{}: {message}", root.display())]
    Layout { root: PathBuf, message: String },
    #[error("{}{}: {message}", path.display(), if *line > 0 { format!(", line {line}") } else { String::new() })]
    Csv {
        path: PathBuf,
        /// 1-based line number; 0 when the problem is the file as a whole.
        line: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Image { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An image that `ferbayes-faces` could not read (a FER+ PNG or an OOD folder's image).
    #[error(transparent)]
    Faces(#[from] ferbayes_faces::FacesError),
    #[error(transparent)]
    Core(#[from] ferbayes_core::Error),
}

impl IngestError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        IngestError::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn csv(path: &Path, line: usize, message: impl Into<String>) -> Self {
        IngestError::Csv {
            path: path.to_owned(),
            line,
            message: message.into(),
        }
    }
}
