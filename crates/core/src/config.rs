//! The typed `pipeline.toml`: defaults plus named profiles that override only what differs.
//!
//! ```toml
//! [defaults]
//! seed = 42
//! [defaults.ingest]
//! zstd_level = 3
//!
//! [profiles.smoke.ingest]
//! max_per_split = 64
//! ```
//!
//! A profile is merged key by key over `[defaults]` (tables recursively, any other value replaced
//! whole), and the result is checked against [`Settings`]. Unknown keys are an error naming the key
//! and the table it sits in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The profile used when neither `--profile` nor `FER_PROFILE` names one.
pub const DEFAULT_PROFILE: &str = "cpu";

/// Every setting of the pipeline, after the profile has been merged over the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Base seed of every random choice (weight init, data order, dropout masks).
    pub seed: u64,
    /// Where the FER+ data lives when neither `--data` nor `FER_DATA` says.
    pub data_dir: PathBuf,
    pub ingest: IngestSettings,
}

/// Settings of the ingest stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Keep only the first N faces of each split (in label-file order); absent means all.
    #[serde(default)]
    pub max_per_split: Option<usize>,
    /// zstd level of the Parquet files (1..=22).
    pub zstd_level: i32,
}

/// A parsed `pipeline.toml`: the defaults table and the raw profile tables.
#[derive(Debug, Clone)]
pub struct PipelineFile {
    path: PathBuf,
    defaults: toml::Table,
    profiles: BTreeMap<String, toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    defaults: toml::Table,
    #[serde(default)]
    profiles: BTreeMap<String, toml::Table>,
}

impl PipelineFile {
    /// Reads and parses `path`; checks that `[defaults]` alone is a complete, valid [`Settings`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses settings text; `path` is only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let raw: RawFile = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let file = PipelineFile {
            path: path.to_owned(),
            defaults: raw.defaults,
            profiles: raw.profiles,
        };
        file.check(&file.defaults, "[defaults]")?;
        for (name, table) in &file.profiles {
            let merged = merge(file.defaults.clone(), table.clone());
            file.check(
                &merged,
                &format!("[profiles.{name}] (merged over [defaults])"),
            )?;
        }
        Ok(file)
    }

    /// The names of the profiles the file defines.
    pub fn profile_names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    /// The settings of `profile`: its table merged over `[defaults]`.
    pub fn settings(&self, profile: &str) -> Result<Settings> {
        let table = self
            .profiles
            .get(profile)
            .ok_or_else(|| Error::UnknownProfile {
                path: self.path.clone(),
                profile: profile.to_owned(),
                known: self.profiles.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
        let merged = merge(self.defaults.clone(), table.clone());
        self.check(&merged, &format!("[profiles.{profile}]"))
    }

    fn check(&self, table: &toml::Table, place: &str) -> Result<Settings> {
        let value = toml::Value::Table(table.clone());
        serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            Error::Config {
                path: self.path.clone(),
                message: if key == "." {
                    format!("in {place}: {}", e.inner())
                } else {
                    format!("in {place}, key `{key}`: {}", e.inner())
                },
            }
        })
    }
}

/// Recursively merges `overlay` over `base`: tables merge key by key, other values are replaced.
fn merge(mut base: toml::Table, overlay: toml::Table) -> toml::Table {
    for (key, value) in overlay {
        match (base.remove(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => {
                base.insert(key, toml::Value::Table(merge(b, o)));
            }
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[defaults]
seed = 7
data_dir = "data/ferplus"
[defaults.ingest]
zstd_level = 3

[profiles.cpu]
[profiles.smoke]
seed = 9
[profiles.smoke.ingest]
max_per_split = 10
"#;

    fn parse(text: &str) -> Result<PipelineFile> {
        PipelineFile::parse(Path::new("pipeline.toml"), text)
    }

    #[test]
    fn profile_overrides_only_what_differs() {
        let file = parse(BASE).expect("valid file");
        let cpu = file.settings("cpu").expect("cpu");
        assert_eq!(cpu.seed, 7);
        assert_eq!(cpu.ingest.max_per_split, None);
        let smoke = file.settings("smoke").expect("smoke");
        assert_eq!(smoke.seed, 9);
        assert_eq!(smoke.ingest.max_per_split, Some(10));
        assert_eq!(smoke.ingest.zstd_level, 3, "kept from defaults");
        assert_eq!(file.profile_names().collect::<Vec<_>>(), ["cpu", "smoke"]);
    }

    #[test]
    fn unknown_key_is_named() {
        let text = BASE.replace("max_per_split = 10", "max_per_splt = 10");
        let err = parse(&text).expect_err("typo must be rejected").to_string();
        assert!(err.contains("profiles.smoke"), "{err}");
        assert!(err.contains("max_per_splt"), "{err}");
        assert!(err.contains("ingest"), "{err}");

        let text = BASE.replace("zstd_level = 3", "zstd_level = 3\ncolour = 1");
        let err = parse(&text).expect_err("unknown default key").to_string();
        assert!(
            err.contains("[defaults]") && err.contains("colour"),
            "{err}"
        );

        let text = format!("{BASE}\n[extra]\nx = 1\n");
        let err = parse(&text)
            .expect_err("unknown top-level table")
            .to_string();
        assert!(err.contains("extra"), "{err}");
    }

    #[test]
    fn wrong_type_and_unknown_profile() {
        let text = BASE.replace("seed = 9", "seed = \"nine\"");
        let err = parse(&text).expect_err("wrong type").to_string();
        assert!(err.contains("seed"), "{err}");

        let file = parse(BASE).expect("valid file");
        let err = file.settings("gpu").expect_err("unknown").to_string();
        assert!(err.contains("gpu") && err.contains("cpu, smoke"), "{err}");
    }

    #[test]
    fn repository_pipeline_toml_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml");
        let file = PipelineFile::load(&path).expect("pipeline.toml parses");
        for profile in ["cpu", "paper", "smoke"] {
            file.settings(profile).expect(profile);
        }
    }
}
