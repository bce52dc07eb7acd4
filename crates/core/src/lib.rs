//! Shared foundation of the ferbayes pipeline: settings (`pipeline.toml` and its profiles), the
//! artifact layout (the only code that knows artifact paths), Arrow schemas, class names, atomic
//! writes and the command-line pieces every stage binary shares.

pub mod classes;
pub mod cli;
pub mod compare;
pub mod config;
pub mod error;
pub mod io;
pub mod layout;
pub mod lock;
pub mod machine;
pub mod manifest;
pub mod names;
pub mod plan;
pub mod runner;
pub mod schema;
pub mod seed;
pub mod split;

pub use classes::{EMOTIONS, IMAGE_PIXELS, IMAGE_SIDE, NUM_CLASSES, NUM_VOTES, VOTE_COLUMNS};
pub use config::{
    AnalyzeSettings, ArchTrainSettings, ComputeDevice, InferSettings, IngestSettings, LrSchedule,
    OodSettings, PipelineFile, Settings, ShiftSettings, SlurmJobSettings, SlurmSettings,
    TrainSettings,
};
pub use error::{Error, Result};
pub use layout::{Layout, Stage};
pub use names::{Arch, LabelMode, Method, OptimizerKind};
pub use split::Split;

/// The real FER+ copy the tests run on: `FER_DATA` if set, else `../shared/ferplus` beside the
/// workspace. Tests fail with this message when neither exists (feature `testing`, which the
/// other crates enable for their tests only).
#[cfg(feature = "testing")]
pub fn test_data_root() -> std::path::PathBuf {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let given = std::env::var_os("FER_DATA").map(std::path::PathBuf::from);
    // `FER_DATA` is usually relative to the project root, while tests run in their crate folder.
    let path = match given {
        Some(p) if p.is_relative() && !p.exists() => workspace.join(p),
        Some(p) => p,
        None => workspace.join(cli::SHARED_DATA_FALLBACK),
    };
    assert!(
        path.join("FER2013Train").is_dir(),
        "tests need the real FER+ data: set FER_DATA (looked in {})",
        path.display()
    );
    path
}

/// Every file under `dir` but the hidden ones (the stages' lock files, which are not artifacts)
/// with its bytes: what tests compare to show that a refused run wrote nothing (feature
/// `testing`).
#[cfg(feature = "testing")]
pub fn test_snapshot(
    dir: &std::path::Path,
) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("ls").flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            } else if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                out.insert(path, bytes);
            }
        }
    }
    out
}
