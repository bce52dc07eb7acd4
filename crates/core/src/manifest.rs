//! The manifest each stage writes beside its outputs: what made them, from what, and when.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::machine::Machine;
use crate::schema::SCHEMA_VERSION;

/// One output file of a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    /// File name relative to the manifest's folder.
    pub file: String,
    /// Number of rows (Parquet) or entries.
    pub rows: u64,
}

/// The content hash of one input a stage read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputHash {
    /// The file, relative to the profile folder (artifacts) or the data root (FER+ files); a PNG
    /// folder is summarised as `FER2013Train/*.png (N files)`.
    pub file: String,
    /// Hex sha256 of the file (of "N files, B bytes" for a PNG folder).
    pub sha256: String,
    /// Size in bytes (total for a PNG folder).
    pub bytes: u64,
}

/// The git commit the running build was made from (`abc123`, `abc123-dirty` or `unknown`).
pub const GIT_COMMIT: &str = env!("FERBAYES_GIT_COMMIT");

/// `manifest.json` of one stage's output folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub stage: String,
    pub profile: String,
    pub schema_version: u32,
    pub ferbayes_version: String,
    /// The settings the stage used (its section of `pipeline.toml`, merged for the profile).
    pub settings: serde_json::Value,
    /// Where the inputs came from (a data root, upstream artifacts).
    pub inputs: Vec<String>,
    pub outputs: Vec<Output>,
    /// sha256 of every input artifact file read (see `core::plan`).
    #[serde(default)]
    pub input_hashes: Vec<InputHash>,
    /// The git commit of the build that wrote it.
    #[serde(default)]
    pub git_commit: String,
    /// sha256 over stage, profile, schema version, ferbayes version, settings and input hashes:
    /// equal keys mean equal outputs (see `core::plan`).
    #[serde(default)]
    pub key: String,
    /// The machine that wrote it: CPU, SIMD paths, threads, device (provenance; not part of
    /// the key). Manifests written before it was recorded read as unknown.
    #[serde(default)]
    pub machine: Machine,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub finished: u64,
}

impl Manifest {
    /// A manifest for `stage` of `profile`, started now.
    pub fn start(stage: &str, profile: &str, settings: serde_json::Value) -> Self {
        let now = unix_now();
        Manifest {
            stage: stage.to_owned(),
            profile: profile.to_owned(),
            schema_version: SCHEMA_VERSION,
            ferbayes_version: env!("CARGO_PKG_VERSION").to_owned(),
            settings,
            inputs: Vec::new(),
            outputs: Vec::new(),
            input_hashes: Vec::new(),
            git_commit: GIT_COMMIT.to_owned(),
            key: String::new(),
            machine: Machine::detect(),
            started: now,
            finished: now,
        }
    }

    /// Stamps the finish time and writes the manifest atomically to `path`.
    pub fn finish(mut self, path: &Path) -> Result<PathBuf> {
        self.finished = unix_now();
        let json = serde_json::to_vec_pretty(&self).map_err(|e| Error::Artifact {
            path: path.to_owned(),
            message: e.to_string(),
            hint: None,
        })?;
        crate::io::write_atomic(path, &json)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
