//! A small real-data ingest shared by the tests, and settings for tiny runs.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ferbayes_core::{Arch, Layout, PipelineFile, Settings};

/// Ingest of the first `faces` faces of each real split into a fresh artifact root.
pub fn ingested(root: &Path, profile: &str, faces: usize) -> Layout {
    let layout = Layout::new(root, profile);
    let settings = ferbayes_core::IngestSettings {
        max_per_split: Some(faces),
        zstd_level: 1,
        ..Default::default()
    };
    ferbayes_ingest::run(&ferbayes_core::test_data_root(), &layout, &settings).expect("ingest");
    layout
}

fn pipeline() -> &'static PipelineFile {
    static FILE: OnceLock<PipelineFile> = OnceLock::new();
    FILE.get_or_init(|| {
        let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml");
        PipelineFile::load(&path).expect("pipeline.toml")
    })
}

/// The smoke profile with every architecture at width 0.125, input 48, `epochs` epochs.
pub fn tiny(epochs: usize, members: usize) -> Settings {
    let mut s = pipeline().settings("smoke").expect("smoke profile");
    s.train.ensemble_members = members;
    for arch in Arch::ALL {
        let a = s.train.arch_mut(arch);
        a.width = 0.125;
        a.input_size = 48;
        a.epochs = epochs;
    }
    s
}
