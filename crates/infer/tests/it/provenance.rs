//! Up-to-date skipping of infer, reruns on changed settings or weights, and refused or damaged
//! weights.

use std::path::Path;

use ferbayes_core::plan::{self, Freshness};
use ferbayes_core::{Arch, Layout, Method, PipelineFile, Settings, Split, Stage};
use ferbayes_infer::InferOptions;

fn settings() -> Settings {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml");
    let mut s = PipelineFile::load(&path)
        .expect("pipeline.toml")
        .settings("smoke")
        .expect("smoke");
    s.train.archs = vec![Arch::AlexNet];
    s.train.methods = vec![Method::McDropout];
    s.infer.samples = 3;
    // Only the valid and test tables here (the shift / OOD sets are tested in inference.rs).
    s.ingest.shift.faces = 0;
    s.ingest.ood.faces = 0;
    let a = s.train.arch_mut(Arch::AlexNet);
    a.width = 0.125;
    a.input_size = 48;
    a.epochs = 1;
    s
}

fn trained(root: &Path, profile: &str, s: &Settings) -> Layout {
    let layout = Layout::new(root, profile);
    let ingest = ferbayes_core::IngestSettings {
        max_per_split: Some(16),
        zstd_level: 1,
        ..Default::default()
    };
    ferbayes_ingest::run(&ferbayes_core::test_data_root(), &layout, &ingest).expect("ingest");
    ferbayes_train::run(&layout, s, &ferbayes_train::TrainOptions::default()).expect("train");
    layout
}

fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime")
}

#[test]
fn rerun_skips_until_samples_or_weights_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings();
    let layout = trained(dir.path(), "smoke", &s);
    let test = layout.infer_split(Arch::AlexNet, Method::McDropout, Split::Test);

    let first = ferbayes_infer::run(&layout, &s, &InferOptions::default()).expect("first");
    assert!(!first[0].skipped);
    let m = plan::read_manifest(&layout.infer_dir(Arch::AlexNet, Method::McDropout))
        .expect("read")
        .expect("written");
    let names: Vec<&str> = m.input_hashes.iter().map(|h| h.file.as_str()).collect();
    assert_eq!(
        names,
        [
            "train/alexnet/mc_dropout/member-00.safetensors",
            "ingest/valid.parquet",
            "ingest/test.parquet"
        ]
    );
    let before = mtime(&test);

    let again = ferbayes_infer::run(&layout, &s, &InferOptions::default()).expect("again");
    assert!(again[0].skipped && again[0].splits.is_empty());
    assert_eq!(mtime(&test), before);

    // A changed infer.samples reruns.
    let mut more = s.clone();
    more.infer.samples = 4;
    let changed = ferbayes_infer::run(&layout, &more, &InferOptions::default()).expect("samples");
    assert!(!changed[0].skipped);
    assert_eq!(changed[0].samples, 4);

    // Retrained weights (another learning rate) make infer stale through the weights' hash.
    let mut lr = more.clone();
    lr.train.alexnet.learning_rate *= 0.5;
    ferbayes_train::run(&layout, &lr, &ferbayes_train::TrainOptions::default()).expect("retrain");
    assert_eq!(
        plan::infer(&layout, &lr, Arch::AlexNet, Method::McDropout)
            .check()
            .expect("check")
            .freshness,
        Freshness::Stale("input train/alexnet/mc_dropout/member-00.safetensors changed".into())
    );
    let rerun = ferbayes_infer::run(&layout, &lr, &InferOptions::default()).expect("rerun");
    assert!(!rerun[0].skipped);
}

#[test]
fn weights_of_another_profile_are_refused_and_truncated_weights_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings();
    let layout = trained(dir.path(), "smoke", &s);

    // Truncated member weights: a clear error naming the file and the recipe, no panic.
    let member = layout.member_weights(Arch::AlexNet, Method::McDropout, 0);
    let bytes = std::fs::read(&member).expect("read");
    std::fs::write(&member, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = ferbayes_infer::run(&layout, &s, &InferOptions::default())
        .expect_err("truncated")
        .to_string();
    assert!(
        err.contains(&member.display().to_string())
            && err.contains("just train --arch alexnet --method mc_dropout"),
        "{err}"
    );
    std::fs::write(&member, &bytes).expect("restore");

    // The train folder's manifest says another profile.
    let dir_ = layout.train_dir(Arch::AlexNet, Method::McDropout);
    let mut m = plan::read_manifest(&dir_).expect("read").expect("exists");
    m.profile = "paper".into();
    std::fs::write(
        Layout::manifest_in(&dir_),
        serde_json::to_vec(&m).expect("json"),
    )
    .expect("write");
    let err = ferbayes_infer::run(&layout, &s, &InferOptions::default())
        .expect_err("profile mismatch")
        .to_string();
    assert!(
        err.contains("member-00.safetensors")
            && err.contains("profile `paper`")
            && err.contains("just train"),
        "{err}"
    );
    assert!(
        !layout
            .stage_dir(Stage::Infer)
            .join("alexnet/mc_dropout/test.parquet")
            .exists()
    );
}
