//! One face, two front ends, the same numbers: a tiny profile (an AlexNet ensemble of 3 on 32
//! real faces per split) runs ingest, train, infer and analyze; then for test faces
//! `ferbayes predict --json --no-detect` on the face's own FER+ PNG and `ferbayes explore`'s
//! `/api/face` (and `/api/faces`, which carries the prediction set) report bit for bit the same
//! probabilities, predictive entropy, aleatoric and epistemic parts, predicted emotion and
//! prediction set at α = 0.1 (from the run's `analyze/conformal.parquet`, present and up to date
//! here).
//!
//! The ensemble's passes are deterministic, and both sides compute the face's numbers with
//! `ferbayes_uq`; the samples themselves are the same bits although infer ran the faces in one
//! batch of 32 and predict runs each alone, because an inference pass sums every matrix product's
//! entries the same way whatever the batch (the kernels' `sgemm_rows`; before it, a face inferred
//! among others differed from its lone prediction in the last bits, ~1e-8).

use std::collections::HashMap;

use ferbayes_core::schema::rows::FaceRow;
use ferbayes_core::{Layout, Split};
use ferbayes_explore::testing::http;
use serde_json::Value;

use crate::support::{repo, run_chain, spawn_explore};

const AGREE: &str = r#"
[profiles.agree]
[profiles.agree.ingest]
max_per_split = 32
[profiles.agree.ingest.shift]
faces = 0
[profiles.agree.ingest.ood]
faces = 0
[profiles.agree.train]
archs = ["alexnet"]
methods = ["ensemble"]
ensemble_members = 3
[profiles.agree.train.alexnet]
width = 0.125
input_size = 48
epochs = 1
[profiles.agree.infer]
samples = 3
[profiles.agree.analyze]
orderings = 2
shown_n = [1, 2, 3]
"#;

/// The test faces checked.
const FACES: usize = 6;

/// A list of `[name, value]` pairs as (name, bits).
fn pairs(v: &Value) -> Vec<(String, u64)> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            (
                e[0].as_str().expect("name").to_owned(),
                e[1].as_f64().expect("value").to_bits(),
            )
        })
        .collect()
}

fn bits(v: &Value, key: &str) -> u64 {
    v[key].as_f64().expect(key).to_bits()
}

#[test]
fn predict_and_explore_report_one_face_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("pipeline.toml");
    let base = std::fs::read_to_string(repo().join("pipeline.toml")).expect("pipeline.toml");
    std::fs::write(&config, base + AGREE).expect("config");
    let artifacts = dir.path().join("art");
    let layout: Layout = run_chain(&config, &artifacts, "agree");

    let test: Vec<FaceRow> = ferbayes_core::io::read_rows(
        &layout.ingest_split(Split::Test),
        Some(&["image"]),
        "just ingest",
    )
    .expect("ingest test table");
    let images: Vec<&str> = test.iter().take(FACES).map(|r| r.image.as_str()).collect();
    let pngs: Vec<std::path::PathBuf> = images
        .iter()
        .map(|i| ferbayes_core::test_data_root().join("FER2013Test").join(i))
        .collect();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferbayes"))
        .arg("predict")
        .args(&pngs)
        .args([
            "--json",
            "--no-detect",
            "--arch",
            "alexnet",
            "--method",
            "ensemble",
        ])
        .args(["--profile", "agree", "--artifacts"])
        .arg(&artifacts)
        .arg("--config")
        .arg(&config)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("run ferbayes predict");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let predicted: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(predicted.len(), FACES, "one face per PNG");

    let explore = spawn_explore("agree", &artifacts, &config);
    let list = http::get(
        explore.addr,
        "/api/faces?arch=alexnet&method=ensemble&split=test&n=3&per_page=200&page=1",
    )
    .expect("/api/faces")
    .json();
    assert!(
        list["prediction_sets"].is_null(),
        "{}",
        list["prediction_sets"]
    );
    let listed: HashMap<&str, &Value> = list["faces"]
        .as_array()
        .expect("faces")
        .iter()
        .map(|f| (f["image"].as_str().expect("image"), f))
        .collect();

    for (image, p) in images.iter().zip(&predicted) {
        assert_eq!(p["samples"], 3);
        assert!(
            p["warning"].is_null(),
            "{image} is a 48x48 grayscale face: {p}"
        );
        let face = http::get(explore.addr, &format!("/api/face/test/{image}"))
            .expect("/api/face")
            .json();
        let combo = face["combos"]
            .as_array()
            .expect("combos")
            .iter()
            .find(|c| c["arch"] == "alexnet" && c["method"] == "ensemble")
            .expect("alexnet/ensemble");
        let at = &combo["by_n"][2];
        assert_eq!(at["n"], 3);
        let row = listed[image];
        for e in [at, row] {
            assert_eq!(
                pairs(&p["probabilities"]),
                pairs(&e["probabilities"]),
                "{image}"
            );
            for (ours, theirs) in [
                ("predictive_entropy", "predictive_entropy"),
                ("aleatoric", "aleatoric"),
                ("epistemic", "epistemic"),
            ] {
                assert_eq!(bits(p, ours), bits(e, theirs), "{image}: {ours}");
            }
            assert_eq!(p["emotion"], e["predicted"], "{image}");
        }
        assert_eq!(bits(p, "confidence"), bits(row, "confidence"), "{image}");
        // The set: calibrated in both, the same threshold and emotions.
        let (ours, theirs) = (&p["prediction_set"], &row["prediction_set"]);
        assert!(ours.is_object(), "{image}: predict has no set: {p}");
        assert_eq!(ours["alpha"], theirs["alpha"], "{image}");
        assert_eq!(bits(ours, "qhat"), bits(theirs, "qhat"), "{image}");
        assert_eq!(ours["emotions"], theirs["emotions"], "{image}");
    }
}
