//! Errors shared by the stages. Every variant names the file it is about.

use std::path::PathBuf;

/// Result alias of the core crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of the shared pipeline machinery.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("{}: no profile `{profile}` (profiles defined: {known})", path.display())]
    UnknownProfile {
        path: PathBuf,
        profile: String,
        known: String,
    },
    #[error("{}: {message}", path.display())]
    Parquet { path: PathBuf, message: String },
    #[error("{}: {message}{}", path.display(), hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Artifact {
        path: PathBuf,
        message: String,
        hint: Option<String>,
    },
    #[error("FER+ data not found: {message}")]
    DataNotFound { message: String },
    #[error(
        "{what} is being written by another process ({holder}; lock file {}): wait for it to \
         finish or stop it, then run again",
        lock.display()
    )]
    Locked {
        /// The folder (or member) the other process writes.
        what: String,
        lock: PathBuf,
        /// The holder as its lock file names it: program, pid, host and for how long.
        holder: String,
    },
}

impl Error {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
