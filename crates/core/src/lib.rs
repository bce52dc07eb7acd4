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
