//! Errors of the submit crate.

use std::path::PathBuf;

/// Result alias of the submit crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while submitting or following the jobs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] ferbayes_core::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` could not run: {source} (is Slurm's client installed and on PATH?)")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` printed `{output}`, not a job id")]
    JobId { command: String, output: String },
}
