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

/// The kernels a network runs on, by name: `ferbayes_kernels::Backend`'s choices (this crate
/// links no kernels; `ferbayes_models::install_kernels` converts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelChoice {
    /// candle's own ops.
    Reference,
    /// The CPU's fused kernels, every convolution as im2col + gemm.
    Im2col,
    /// The CPU's fused kernels with Winograd for the wide 3x3 / 5x5 'same' convolutions.
    Winograd,
    /// One fused op per layer (what a GPU runs).
    Device,
}

impl KernelChoice {
    /// The name `--kernels` takes and the manifests record.
    pub fn as_str(self) -> &'static str {
        match self {
            KernelChoice::Reference => "reference",
            KernelChoice::Im2col => "im2col",
            KernelChoice::Winograd => "winograd",
            KernelChoice::Device => "device",
        }
    }

    /// The kernels of `device` when none are chosen: winograd on the CPU, device on a GPU (as
    /// `ferbayes_kernels::Backend::for_device`).
    pub fn default_for(device: ComputeDevice) -> KernelChoice {
        match device {
            ComputeDevice::Cpu => KernelChoice::Winograd,
            ComputeDevice::Cuda => KernelChoice::Device,
        }
    }
}

impl std::str::FromStr for KernelChoice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        const ALL: [KernelChoice; 4] = [
            KernelChoice::Reference,
            KernelChoice::Im2col,
            KernelChoice::Winograd,
            KernelChoice::Device,
        ];
        ALL.into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown kernels `{s}` (one of {})", names.join(", "))
            })
    }
}

impl std::fmt::Display for KernelChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SIMD level of the kernels' hand-vectorised loops (`ferbayes_kernels::SimdLevel`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum SimdChoice {
    /// AVX2+FMA where the CPU has it.
    #[default]
    Auto,
    /// Their scalar code (the same bits, slower).
    Scalar,
}

/// The knobs that choose the networks' kernels, for every binary that runs networks (train,
/// infer, `ferbayes predict` and `explore`; flatten into its parser; a bench takes
/// `KernelArgs::default()`, the environment alone). Each flag falls back on its `FER_*`
/// variable, read here, at the edge, once: the binaries pass the result down
/// (`ferbayes_models::install_kernels`) and no library reads the environment for them. What
/// ran is provenance, like the machine: the manifests record it, no stage key holds it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KernelArgs {
    /// Kernels: winograd, im2col (the CPU's fused kernels), device (one fused op per layer,
    /// what a GPU runs) or reference (candle's ops) [default: winograd on the CPU, device on a
    /// GPU; without the flag FER_REFERENCE_OPS=1 picks reference, and FER_WINOGRAD=0 im2col
    /// where the default is winograd].
    #[arg(long, value_name = "KERNELS")]
    pub kernels: Option<KernelChoice>,
    /// The pooling and BatchNorm loops: auto (AVX2+FMA where the CPU has it) or scalar (their
    /// scalar code, the same bits) [default: scalar if FER_SIMD=scalar, else auto].
    #[arg(long, value_name = "LEVEL")]
    pub simd: Option<SimdChoice>,
    /// Let cuDNN's convolutions (GPU) use TF32 tensor cores: faster, but results differ from
    /// f32 [default: on if FER_TF32=1].
    #[arg(long)]
    pub tf32: bool,
}

impl KernelArgs {
    /// `--kernels`; else `reference` when `FER_REFERENCE_OPS=1`; else `default` (the device's,
    /// [`KernelChoice::default_for`]), which `FER_WINOGRAD=0` turns from winograd into im2col.
    pub fn kernels_or(&self, default: KernelChoice) -> KernelChoice {
        if let Some(k) = self.kernels {
            return k;
        }
        if env_is("FER_REFERENCE_OPS", "1") {
            return KernelChoice::Reference;
        }
        if default == KernelChoice::Winograd && env_is("FER_WINOGRAD", "0") {
            return KernelChoice::Im2col;
        }
        default
    }

    /// `--simd`; else scalar when `FER_SIMD` says `scalar` (any case), else auto.
    pub fn simd(&self) -> SimdChoice {
        self.simd.unwrap_or_else(|| {
            let scalar =
                std::env::var("FER_SIMD").is_ok_and(|v| v.trim().eq_ignore_ascii_case("scalar"));
            if scalar {
                SimdChoice::Scalar
            } else {
                SimdChoice::Auto
            }
        })
    }

    /// `--tf32`, or `FER_TF32=1`.
    pub fn tf32(&self) -> bool {
        self.tf32 || env_is("FER_TF32", "1")
    }
}

/// Whether the environment variable `name` is set to `value` (surrounding spaces ignored).
fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim() == value)
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

    #[test]
    fn kernel_choices_parse_their_names_and_refuse_others_naming_the_choices() {
        for k in [
            KernelChoice::Reference,
            KernelChoice::Im2col,
            KernelChoice::Winograd,
            KernelChoice::Device,
        ] {
            assert_eq!(k.as_str().parse::<KernelChoice>(), Ok(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        let err = "fastest".parse::<KernelChoice>().expect_err("unknown");
        assert_eq!(
            err,
            "unknown kernels `fastest` (one of reference, im2col, winograd, device)"
        );
        assert_eq!(
            KernelChoice::default_for(ComputeDevice::Cpu),
            KernelChoice::Winograd
        );
        assert_eq!(
            KernelChoice::default_for(ComputeDevice::Cuda),
            KernelChoice::Device
        );
    }
}
