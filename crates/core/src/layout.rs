//! The artifact layout: the one place that knows where every stage reads and writes.
//!
//! ```text
//! $FER_ARTIFACTS/<profile>/
//!   ingest/{train,valid,test}.parquet, shift.parquet, ood.parquet, manifest.json
//!   train/<arch>/<method>/member-NN.safetensors, history.parquet, manifest.json
//!   infer/<arch>/<method>/{valid,test,shift,ood}.parquet, manifest.json
//!   analyze/metrics.parquet, {shift,ood,selective}.parquet, report.html, report.md,
//!     figures/, manifest.json
//!   slurm/<job>.sh, slurm/logs/<job>-<id>[_<task>].log   (`ferbayes-submit`)
//! ```
//!
//! Each folder a stage writes also holds its lock file (`.lock`; train: `.lock-member-NN`),
//! see `core::lock`.
//!
//! A *variant* layout ([`Layout::variant`]) nests train and infer one folder deeper, e.g.
//! `train/label-crossentropy/<arch>/<method>/`, for the soft-label comparison runs.

use std::path::{Path, PathBuf};

use crate::names::{Arch, Method};
use crate::split::Split;

/// Default artifact root when neither `--artifacts` nor `FER_ARTIFACTS` says.
pub const DEFAULT_ARTIFACTS: &str = "artifacts";

/// The stages of the pipeline, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Ingest,
    Train,
    Infer,
    Analyze,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Ingest, Stage::Train, Stage::Infer, Stage::Analyze];

    /// The stage's folder name and `just` recipe.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Train => "train",
            Stage::Infer => "infer",
            Stage::Analyze => "analyze",
        }
    }
}

/// Paths of every artifact of one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
    profile: String,
    variant: Option<String>,
}

impl Layout {
    /// The layout of `profile` under the artifact root `root`.
    pub fn new(root: impl Into<PathBuf>, profile: impl Into<String>) -> Self {
        Layout {
            root: root.into(),
            profile: profile.into(),
            variant: None,
        }
    }

    /// The same layout with train and infer outputs under `train/<name>/`, `infer/<name>/`.
    pub fn variant(&self, name: impl Into<String>) -> Layout {
        Layout {
            variant: Some(name.into()),
            ..self.clone()
        }
    }

    /// The variant name, if this is a variant layout.
    pub fn variant_name(&self) -> Option<&str> {
        self.variant.as_deref()
    }

    /// `<stage>/[<variant>/]`.
    fn variant_dir(&self, stage: Stage) -> PathBuf {
        let dir = self.stage_dir(stage);
        match &self.variant {
            Some(v) => dir.join(v),
            None => dir,
        }
    }

    /// The profile this layout belongs to.
    pub fn profile(&self) -> &str {
        &self.profile
    }

    /// `<root>/<profile>`.
    pub fn profile_dir(&self) -> PathBuf {
        self.root.join(&self.profile)
    }

    /// The output folder of a stage.
    pub fn stage_dir(&self, stage: Stage) -> PathBuf {
        self.profile_dir().join(stage.name())
    }

    /// The manifest a stage writes beside its outputs (in `dir`).
    pub fn manifest_in(dir: &Path) -> PathBuf {
        dir.join("manifest.json")
    }

    /// `<dir>/.lock`: the lock a stage holds while it writes the output folder `dir` (see
    /// `core::lock`).
    pub fn lock_in(dir: &Path) -> PathBuf {
        dir.join(".lock")
    }

    /// `train/<arch>/<method>/.lock-member-NN`: the lock of one member, which the train process
    /// training it holds (shards of one run train different members of a folder).
    pub fn member_lock(&self, arch: Arch, method: Method, member: usize) -> PathBuf {
        self.train_dir(arch, method)
            .join(format!(".lock-member-{member:02}"))
    }

    /// `ingest/<split>.parquet`.
    pub fn ingest_split(&self, split: Split) -> PathBuf {
        self.stage_dir(Stage::Ingest)
            .join(format!("{}.parquet", split.name()))
    }

    /// `ingest/shift.parquet`: corrupted copies of test faces.
    pub fn ingest_shift(&self) -> PathBuf {
        self.stage_dir(Stage::Ingest).join("shift.parquet")
    }

    /// `ingest/ood.parquet`: the out-of-distribution sets.
    pub fn ingest_ood(&self) -> PathBuf {
        self.stage_dir(Stage::Ingest).join("ood.parquet")
    }

    /// `train/[<variant>/]<arch>/<method>/`.
    pub fn train_dir(&self, arch: Arch, method: Method) -> PathBuf {
        self.variant_dir(Stage::Train)
            .join(arch.as_str())
            .join(method.as_str())
    }

    /// `train/<arch>/<method>/member-NN.safetensors`.
    pub fn member_weights(&self, arch: Arch, method: Method, member: usize) -> PathBuf {
        self.train_dir(arch, method)
            .join(format!("member-{member:02}.safetensors"))
    }

    /// `train/<arch>/<method>/.resume/member-NN.safetensors`: the checkpoint of an unfinished
    /// member (weights, optimiser state, history so far), replaced after every epoch.
    pub fn member_checkpoint(&self, arch: Arch, method: Method, member: usize) -> PathBuf {
        self.train_dir(arch, method)
            .join(".resume")
            .join(format!("member-{member:02}.safetensors"))
    }

    /// `train/<arch>/<method>/history.parquet`.
    pub fn history(&self, arch: Arch, method: Method) -> PathBuf {
        self.train_dir(arch, method).join("history.parquet")
    }

    /// `infer/[<variant>/]<arch>/<method>/`.
    pub fn infer_dir(&self, arch: Arch, method: Method) -> PathBuf {
        self.variant_dir(Stage::Infer)
            .join(arch.as_str())
            .join(method.as_str())
    }

    /// `infer/<arch>/<method>/shift.parquet`.
    pub fn infer_shift(&self, arch: Arch, method: Method) -> PathBuf {
        self.infer_dir(arch, method).join("shift.parquet")
    }

    /// `infer/<arch>/<method>/ood.parquet`.
    pub fn infer_ood(&self, arch: Arch, method: Method) -> PathBuf {
        self.infer_dir(arch, method).join("ood.parquet")
    }

    /// `analyze/<name>.parquet`, a table of the analyze stage (`shift`, `ood`, `selective`,
    /// `labels`).
    pub fn analyze_table(&self, name: &str) -> PathBuf {
        self.stage_dir(Stage::Analyze)
            .join(format!("{name}.parquet"))
    }

    /// `infer/<arch>/<method>/<split>.parquet`.
    pub fn infer_split(&self, arch: Arch, method: Method, split: Split) -> PathBuf {
        self.infer_dir(arch, method)
            .join(format!("{}.parquet", split.name()))
    }

    /// `analyze/metrics.parquet`.
    pub fn metrics(&self) -> PathBuf {
        self.stage_dir(Stage::Analyze).join("metrics.parquet")
    }

    /// `analyze/temperature.parquet` (temperature scaling per arch, method, n).
    pub fn temperature(&self) -> PathBuf {
        self.analyze_table("temperature")
    }

    /// `analyze/conformal.parquet` (split-conformal prediction sets per arch, method, n, alpha).
    pub fn conformal(&self) -> PathBuf {
        self.analyze_table("conformal")
    }

    /// `analyze/report.html`.
    pub fn report_html(&self) -> PathBuf {
        self.stage_dir(Stage::Analyze).join("report.html")
    }

    /// `analyze/report.md`.
    pub fn report_md(&self) -> PathBuf {
        self.stage_dir(Stage::Analyze).join("report.md")
    }

    /// `slurm/`: the batch scripts `ferbayes-submit` writes, and their logs.
    pub fn slurm_dir(&self) -> PathBuf {
        self.profile_dir().join("slurm")
    }

    /// `slurm/<job>.sh`: the batch script of one job (`ingest`, `train`, ...).
    pub fn slurm_script(&self, job: &str) -> PathBuf {
        self.slurm_dir().join(format!("{job}.sh"))
    }

    /// `slurm/logs/`: the jobs' logs.
    pub fn slurm_logs_dir(&self) -> PathBuf {
        self.slurm_dir().join("logs")
    }

    /// `slurm/logs/<job>-<id>.log`, or `<job>-<id>_<task>.log` for an array task. Given Slurm's
    /// placeholders (`"%j"`, or `"%A"` and `"%a"`) it is the `--output` pattern of the job.
    pub fn slurm_log(&self, job: &str, id: &str, task: Option<&str>) -> PathBuf {
        let name = match task {
            Some(t) => format!("{job}-{id}_{t}.log"),
            None => format!("{job}-{id}.log"),
        };
        self.slurm_logs_dir().join(name)
    }

    /// `analyze/figures/`: the analyze stage's figures.
    pub fn figures_dir(&self) -> PathBuf {
        self.stage_dir(Stage::Analyze).join("figures")
    }

    /// `analyze/figures/<name>` (a figure's PNG or SVG file).
    pub fn figure(&self, name: &str) -> PathBuf {
        self.figures_dir().join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_contract() {
        let l = Layout::new("art", "smoke");
        assert_eq!(
            l.ingest_split(Split::Valid),
            Path::new("art/smoke/ingest/valid.parquet")
        );
        assert_eq!(
            l.member_weights(Arch::Vgg16, Method::Ensemble, 3),
            Path::new("art/smoke/train/vgg16/ensemble/member-03.safetensors")
        );
        assert_eq!(
            l.history(Arch::AlexNet, Method::McDropout),
            Path::new("art/smoke/train/alexnet/mc_dropout/history.parquet")
        );
        assert_eq!(
            l.infer_split(Arch::DenseNet121, Method::McDropConnect, Split::Test),
            Path::new("art/smoke/infer/densenet121/mc_dropconnect/test.parquet")
        );
        assert_eq!(l.metrics(), Path::new("art/smoke/analyze/metrics.parquet"));
        assert_eq!(
            l.figure("error_vs_n.png"),
            l.figures_dir().join("error_vs_n.png")
        );
        assert_eq!(l.figures_dir(), Path::new("art/smoke/analyze/figures"));
        assert_eq!(
            l.temperature(),
            Path::new("art/smoke/analyze/temperature.parquet")
        );
        assert_eq!(
            l.conformal(),
            Path::new("art/smoke/analyze/conformal.parquet")
        );
        let v = l.variant("label-crossentropy");
        assert_eq!(
            v.member_weights(Arch::AlexNet, Method::Ensemble, 0),
            Path::new("art/smoke/train/label-crossentropy/alexnet/ensemble/member-00.safetensors")
        );
        assert_eq!(
            v.infer_split(Arch::AlexNet, Method::McDropout, Split::Test),
            Path::new("art/smoke/infer/label-crossentropy/alexnet/mc_dropout/test.parquet")
        );
        assert_eq!(
            v.ingest_shift(),
            Path::new("art/smoke/ingest/shift.parquet")
        );
        assert_eq!(
            l.infer_ood(Arch::Vgg16, Method::Ensemble),
            Path::new("art/smoke/infer/vgg16/ensemble/ood.parquet")
        );
        assert_eq!(
            l.slurm_script("train"),
            Path::new("art/smoke/slurm/train.sh")
        );
        assert_eq!(
            l.slurm_log("train", "%A", Some("%a")),
            Path::new("art/smoke/slurm/logs/train-%A_%a.log")
        );
        assert_eq!(
            l.slurm_log("ingest", "17", None),
            Path::new("art/smoke/slurm/logs/ingest-17.log")
        );
        assert_eq!(
            Layout::manifest_in(&l.stage_dir(Stage::Ingest)),
            Path::new("art/smoke/ingest/manifest.json")
        );
        assert_eq!(
            Layout::lock_in(&l.stage_dir(Stage::Analyze)),
            Path::new("art/smoke/analyze/.lock")
        );
        assert_eq!(
            l.member_lock(Arch::AlexNet, Method::Ensemble, 4),
            Path::new("art/smoke/train/alexnet/ensemble/.lock-member-04")
        );
    }
}
