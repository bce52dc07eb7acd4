//! Shared fixtures: an artifact root with seeded (untrained) smoke-profile weights, and the
//! `ferbayes` binary run against it. Detection, cropping, output formats and errors do not
//! depend on the weights' values.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use ferbayes_core::{Arch, Layout, Method, PipelineFile};

pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `shared/photos` beside the FER+ copy (see its README).
pub fn photos() -> PathBuf {
    ferbayes_core::test_data_root().join("../photos")
}

/// `shared/ood/natural-patches`: 48x48 crops of non-face photos.
pub fn natural_patches() -> PathBuf {
    ferbayes_core::test_data_root().join("../ood/natural-patches")
}

/// The artifact root with seeded weights for AlexNet × {mc_dropout, ensemble}.
pub fn artifacts() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = PipelineFile::load(&repo().join("pipeline.toml")).expect("pipeline.toml");
        let settings = file.settings("smoke").expect("smoke");
        let layout = Layout::new(dir.path(), "smoke");
        for method in [Method::McDropout, Method::Ensemble] {
            ferbayes_models::testing::write_seeded_weights(
                &layout,
                &settings,
                Arch::AlexNet,
                method,
            )
            .expect("seeded weights");
        }
        dir
    })
    .path()
}

/// `ferbayes predict ARGS --arch alexnet --method mc_dropout` on the seeded smoke weights, one
/// thread, to be run.
pub fn predict_command(args: &[&std::ffi::OsStr]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferbayes"));
    command
        .arg("predict")
        .args(args)
        .args([
            "--arch",
            "alexnet",
            "--method",
            "mc_dropout",
            "--profile",
            "smoke",
        ])
        .arg("--artifacts")
        .arg(artifacts())
        .arg("--config")
        .arg(repo().join("pipeline.toml"))
        .env("RAYON_NUM_THREADS", "1");
    command
}

/// Runs [`predict_command`].
pub fn predict(args: &[&std::ffi::OsStr]) -> Output {
    predict_command(args).output().expect("run ferbayes")
}

/// [`predict`] with `--json`, which must succeed; the parsed list of faces.
pub fn predict_json(args: &[&std::ffi::OsStr]) -> Vec<serde_json::Value> {
    let mut all: Vec<&std::ffi::OsStr> = args.to_vec();
    all.push("--json".as_ref());
    let out = predict(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    json.as_array().expect("a list of faces").clone()
}

/// A face's box as (x, y, width, height).
pub fn face_box(face: &serde_json::Value) -> (f64, f64, f64, f64) {
    let b = &face["box"];
    let get = |k: &str| b[k].as_f64().expect("box field");
    (get("x"), get("y"), get("width"), get("height"))
}

/// Runs ingest, train, infer and analyze for profile `profile` of `config` (a pipeline.toml)
/// into `artifacts`, in this process; the run's layout.
pub fn run_chain(config: &Path, artifacts: &Path, profile: &str) -> Layout {
    let settings = PipelineFile::load(config)
        .expect("load")
        .settings(profile)
        .expect("profile");
    let layout = Layout::new(artifacts, profile);
    ferbayes_ingest::run(&ferbayes_core::test_data_root(), &layout, &settings.ingest)
        .expect("ingest");
    ferbayes_train::run(&layout, &settings, &ferbayes_train::TrainOptions::default())
        .expect("train");
    ferbayes_infer::run(&layout, &settings, &ferbayes_infer::InferOptions::default())
        .expect("infer");
    ferbayes_analyze::run(&layout, &settings).expect("analyze");
    layout
}

/// A running `ferbayes explore` (killed when dropped) and the address it printed.
#[derive(Debug)]
pub struct Explore {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
}

impl Drop for Explore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `ferbayes explore --listen 127.0.0.1:0` on profile `profile` of `artifacts` with
/// `config`, one thread, and waits (at most a minute) for the address it prints.
pub fn spawn_explore(profile: &str, artifacts: &Path, config: &Path) -> Explore {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferbayes"))
        .args(["explore", "--listen", "127.0.0.1:0", "--profile", profile])
        .arg("--artifacts")
        .arg(artifacts)
        .arg("--config")
        .arg(config)
        .env("RAYON_NUM_THREADS", "1")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ferbayes explore");
    let stderr = child.stderr.take();
    // Killed and waited for on every path from here, a failed wait below included.
    let mut explore = Explore {
        child,
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr.expect("stderr"))
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("explore prints its address");
        if let Some(at) = line.find("http://") {
            let rest = &line[at + "http://".len()..];
            let end = rest.find('/').expect("a URL");
            explore.addr = rest[..end].parse().expect("address");
            return explore;
        }
    }
}
