//! The smoke run every test reads: the whole chain (ingest, train with the soft-label comparison
//! runs, infer, analyze) under the `smoke` profile of the repository's pipeline.toml, on real
//! FER+ faces, built once per test binary; and servers over it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ferbayes_core::{Layout, PipelineFile, Settings};
use ferbayes_explore::{ExploreOptions, Server};

pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `shared/photos` beside the FER+ copy.
pub fn photos() -> PathBuf {
    ferbayes_core::test_data_root().join("../photos")
}

pub fn smoke_settings() -> Settings {
    PipelineFile::load(&repo().join("pipeline.toml"))
        .expect("pipeline.toml")
        .settings("smoke")
        .expect("smoke profile")
}

/// A finished smoke run.
#[derive(Debug)]
pub struct Run {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub layout: Layout,
    pub settings: Settings,
    /// Every file under the profile folder with its size and modification time, right after
    /// the run: the server must leave it so.
    pub files: Vec<(PathBuf, u64, std::time::SystemTime)>,
}

/// Runs the smoke chain into `root`.
pub fn run_chain(root: &Path) -> (Layout, Settings) {
    let settings = smoke_settings();
    let layout = Layout::new(root, "smoke");
    ferbayes_ingest::run(&ferbayes_core::test_data_root(), &layout, &settings.ingest)
        .expect("ingest");
    for (l, s) in ferbayes_core::plan::variants(&layout, &settings) {
        ferbayes_train::run(&l, &s, &ferbayes_train::TrainOptions::default()).expect("train");
    }
    for (l, s) in ferbayes_core::plan::variants(&layout, &settings) {
        ferbayes_infer::run(&l, &s, &ferbayes_infer::InferOptions::default()).expect("infer");
    }
    ferbayes_analyze::run(&layout, &settings).expect("analyze");
    (layout, settings)
}

/// The shared smoke run (built on first use).
pub fn smoke() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("art");
        let started = std::time::Instant::now();
        let (layout, settings) = run_chain(&root);
        eprintln!(
            "smoke run built in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let files = snapshot(&layout.profile_dir());
        Run {
            _dir: dir,
            root,
            layout,
            settings,
            files,
        }
    })
}

/// Every file under `dir`, sorted, with size and modification time.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::metadata(&path).expect("metadata");
            if meta.is_dir() {
                stack.push(path);
            } else {
                out.push((path, meta.len(), meta.modified().expect("mtime")));
            }
        }
    }
    out.sort();
    out
}

/// A server on a free loopback port over `layout`.
pub fn serve(layout: &Layout, settings: &Settings) -> Server {
    let mut options = ExploreOptions::new(
        layout.clone(),
        settings.clone(),
        "127.0.0.1:0".parse().expect("addr"),
    );
    options.data_root = Some(ferbayes_core::test_data_root());
    Server::start(options).expect("server starts")
}

/// A server over the shared smoke run (one per call; they share nothing but the files).
pub fn smoke_server() -> (&'static Run, Server) {
    let run = smoke();
    (run, serve(&run.layout, &run.settings))
}
