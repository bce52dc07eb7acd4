//! What every stage binary shares: the common flags, settings loading and logging set-up.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::ProgressStyle;
use tracing_indicatif::IndicatifLayer;
use tracing_indicatif::span_ext::IndicatifSpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{ComputeDevice, DEFAULT_PROFILE, PipelineFile, Settings, TrainSettings};
use crate::error::{Error, Result};
use crate::layout::{DEFAULT_ARTIFACTS, Layout};
use crate::names::{Arch, Method};

/// Where CI and the developers keep the read-only FER+ copy, relative to the project root; tried
/// when the configured data folder does not exist.
pub const SHARED_DATA_FALLBACK: &str = "../shared/ferplus";

/// Flags every stage binary takes (flatten into the binary's `clap` parser).
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Settings profile of pipeline.toml (cpu, paper, smoke, ...).
    #[arg(long, env = "FER_PROFILE", default_value = DEFAULT_PROFILE)]
    pub profile: String,
    /// FER+ data root [default: `data_dir` of pipeline.toml, i.e. data/ferplus].
    #[arg(long, env = "FER_DATA")]
    pub data: Option<PathBuf>,
    /// Artifact root; outputs go to <ARTIFACTS>/<PROFILE>/<stage>/.
    #[arg(long, env = "FER_ARTIFACTS", default_value = DEFAULT_ARTIFACTS)]
    pub artifacts: PathBuf,
    /// The settings file.
    #[arg(long, env = "FER_CONFIG", default_value = "pipeline.toml")]
    pub config: PathBuf,
}

/// The compute device of train and infer (flatten into a binary's parser).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DeviceArg {
    /// Compute device: cpu, or cuda (needs binaries built with `--features cuda`)
    /// [default: the profile's `device` setting].
    #[arg(long, env = "FER_DEVICE")]
    pub device: Option<ComputeDevice>,
}

impl DeviceArg {
    /// The flag (or `FER_DEVICE`) when given, else the profile's `device` setting.
    pub fn resolve(&self, settings: &Settings) -> ComputeDevice {
        self.device.unwrap_or(settings.device)
    }
}

/// Which architecture × method combinations a stage works on (flatten into a binary's parser);
/// empty lists mean the profile's `train.archs` / `train.methods`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Selection {
    /// Only these architectures (alexnet, vgg16, densenet121; comma-separated)
    /// [default: the profile's train.archs].
    #[arg(long = "arch", value_delimiter = ',')]
    pub archs: Vec<Arch>,
    /// Only these methods (mc_dropout, mc_dropconnect, ensemble; comma-separated)
    /// [default: the profile's train.methods].
    #[arg(long = "method", value_delimiter = ',')]
    pub methods: Vec<Method>,
}

impl Selection {
    /// Only `arch` × `method`.
    pub fn only(arch: Arch, method: Method) -> Self {
        Selection {
            archs: vec![arch],
            methods: vec![method],
        }
    }

    /// The selected combinations, architecture-major.
    pub fn combos(&self, train: &TrainSettings) -> Vec<(Arch, Method)> {
        let archs = if self.archs.is_empty() {
            &train.archs
        } else {
            &self.archs
        };
        let methods = if self.methods.is_empty() {
            &train.methods
        } else {
            &self.methods
        };
        archs
            .iter()
            .flat_map(|&a| methods.iter().map(move |&m| (a, m)))
            .collect()
    }
}

/// Settings and paths of one run of a stage.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub profile: String,
    pub settings: Settings,
    pub layout: Layout,
    /// The FER+ data root as given (not checked for existence; see [`resolve_data_root`]).
    pub data: Option<PathBuf>,
}

impl CommonArgs {
    /// Loads the settings file and the profile's settings.
    pub fn context(&self) -> Result<RunContext> {
        let file = PipelineFile::load(&self.config)?;
        let settings = file.settings(&self.profile)?;
        Ok(RunContext {
            profile: self.profile.clone(),
            layout: Layout::new(&self.artifacts, &self.profile),
            data: self.data.clone(),
            settings,
        })
    }
}

impl RunContext {
    /// The FER+ data root: `--data`/`FER_DATA` if given (it must exist), else the settings'
    /// `data_dir`, else [`SHARED_DATA_FALLBACK`].
    pub fn data_root(&self) -> Result<PathBuf> {
        resolve_data_root(self.data.as_deref(), &self.settings.data_dir)
    }
}

/// See [`RunContext::data_root`].
pub fn resolve_data_root(explicit: Option<&Path>, configured: &Path) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return if dir.is_dir() {
            Ok(dir.to_owned())
        } else {
            Err(Error::DataNotFound {
                message: format!("{} (from --data / FER_DATA) is not a folder", dir.display()),
            })
        };
    }
    if configured.is_dir() {
        return Ok(configured.to_owned());
    }
    let shared = Path::new(SHARED_DATA_FALLBACK);
    if shared.is_dir() {
        tracing::info!(
            "{} does not exist; using {}",
            configured.display(),
            shared.display()
        );
        return Ok(shared.to_owned());
    }
    Err(Error::DataNotFound {
        message: format!(
            "neither {} nor {} exists; put FER+ there (see data/README.md) or point --data / FER_DATA at your copy",
            configured.display(),
            SHARED_DATA_FALLBACK
        ),
    })
}

/// Logs to stderr through `tracing` (filter from `RUST_LOG`, default `info`), with progress bars
/// drawn by `indicatif` below the scrolling log lines. ANSI colours only on a terminal.
pub fn init_tracing() {
    let indicatif = IndicatifLayer::new();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(indicatif.get_stderr_writer())
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(indicatif)
        .try_init();
}

/// A span that shows a progress bar of `len` steps while entered (`span.pb_inc(1)` advances it).
pub fn progress_span(task: &str, len: u64) -> tracing::Span {
    let span = tracing::info_span!("progress", task);
    let style = ProgressStyle::with_template(
        "{span_child_prefix}{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    span.pb_set_style(&style);
    span.pb_set_length(len);
    span.pb_set_message(task);
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_data_root_must_exist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let got = resolve_data_root(Some(dir.path()), Path::new("nowhere")).expect("exists");
        assert_eq!(got, dir.path());
        let missing = dir.path().join("missing");
        let err = resolve_data_root(Some(&missing), Path::new("nowhere"))
            .expect_err("missing")
            .to_string();
        assert!(err.contains("missing") && err.contains("FER_DATA"), "{err}");
        let got = resolve_data_root(None, dir.path()).expect("configured exists");
        assert_eq!(got, dir.path());
    }
}
