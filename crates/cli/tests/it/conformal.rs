//! Prediction sets end to end: a tiny profile (AlexNet ensemble of 3 on 128 real faces per
//! split) runs ingest, train, infer and analyze, and `ferbayes predict` then prints each face's
//! set at α = 0.1 from that run's `analyze/conformal.parquet`: the classes k with
//! 1 − p̄[k] ≤ q̂ of the table's row for the model and its sample count.

use std::path::Path;
use std::process::{Command, Output};

use ferbayes_core::Layout;
use ferbayes_core::schema::SHOWN_ALPHA;
use ferbayes_core::schema::rows::ConformalRow;

use crate::support::{photos, repo, run_chain};

const TINY: &str = r#"
[profiles.tiny]
[profiles.tiny.ingest]
max_per_split = 128
[profiles.tiny.ingest.shift]
faces = 0
[profiles.tiny.ingest.ood]
faces = 0
[profiles.tiny.train]
archs = ["alexnet"]
methods = ["ensemble"]
ensemble_members = 3
[profiles.tiny.train.alexnet]
width = 0.125
input_size = 48
epochs = 1
[profiles.tiny.infer]
samples = 3
[profiles.tiny.analyze]
orderings = 2
shown_n = [1, 2, 3]
"#;

/// The `qhat` of (alexnet, ensemble, n = 3, α = 0.1) in the run's conformal table.
fn qhat(layout: &Layout) -> f64 {
    let rows: Vec<ConformalRow> =
        ferbayes_core::io::read_rows(&layout.conformal(), None, "just analyze")
            .expect("conformal.parquet");
    let found = rows
        .iter()
        .rfind(|r| r.n == 3 && (r.alpha - SHOWN_ALPHA).abs() < 1e-12)
        .map(|r| r.qhat);
    found.expect("a row for n = 3, α = 0.1")
}

/// `ferbayes predict PHOTO --arch alexnet --method ensemble` on the tiny profile of `dir`.
fn predict(dir: &Path, photo: &str, json: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferbayes"));
    cmd.arg("predict")
        .arg(photos().join(photo))
        .args([
            "--arch",
            "alexnet",
            "--method",
            "ensemble",
            "--profile",
            "tiny",
        ])
        .arg("--artifacts")
        .arg(dir.join("art"))
        .arg("--config")
        .arg(dir.join("pipeline.toml"))
        .env("RAYON_NUM_THREADS", "1");
    if json {
        cmd.arg("--json");
    }
    cmd.output().expect("run ferbayes")
}

#[test]
fn predict_prints_the_calibrated_set_of_a_finished_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("pipeline.toml");
    let base = std::fs::read_to_string(repo().join("pipeline.toml")).expect("pipeline.toml");
    std::fs::write(&config, base + TINY).expect("config");
    let layout = run_chain(&config, &dir.path().join("art"), "tiny");
    let q = qhat(&layout);

    let out = predict(dir.path(), "group.jpg", true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let faces: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(faces.len(), 4, "group.jpg holds four faces");
    for face in &faces {
        let set = &face["prediction_set"];
        assert_eq!(set["alpha"], SHOWN_ALPHA);
        assert_eq!(set["qhat"].as_f64(), Some(q));
        let want: Vec<String> = face["probabilities"]
            .as_array()
            .expect("probabilities")
            .iter()
            .filter(|e| 1.0 - e[1].as_f64().expect("p") <= q)
            .map(|e| e[0].as_str().expect("name").to_owned())
            .collect();
        let got: Vec<String> = set["emotions"]
            .as_array()
            .expect("emotions")
            .iter()
            .map(|e| e.as_str().expect("name").to_owned())
            .collect();
        assert_eq!(got, want, "{face}");
    }

    // The text output prints the set too; after a setting changes, the tables are stale and
    // predict says how to refresh them instead of using them.
    let text = predict(dir.path(), "astronaut.png", false);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("prediction set (α = 0.1"), "{stdout}");
    let changed = std::fs::read_to_string(&config)
        .expect("config")
        .replace("orderings = 2", "orderings = 3");
    std::fs::write(&config, changed).expect("config");
    let stale = predict(dir.path(), "astronaut.png", false);
    let stdout = String::from_utf8_lossy(&stale.stdout);
    assert!(!stdout.contains("prediction set (α"), "{stdout}");
    assert!(
        stdout.contains("not up to date") && stdout.contains("just all"),
        "{stdout}"
    );
}
