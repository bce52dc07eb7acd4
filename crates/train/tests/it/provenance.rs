//! Up-to-date skipping of whole combinations, staleness after a re-ingest, and refused or
//! damaged ingest inputs.

use ferbayes_core::plan::{self, Freshness};
use ferbayes_core::{Arch, Layout, Method, Split, Stage};
use ferbayes_train::TrainOptions;

use crate::support::{ingested, tiny};

fn only() -> TrainOptions {
    TrainOptions {
        selection: ferbayes_core::cli::Selection::only(Arch::AlexNet, Method::McDropout),
        ..TrainOptions::default()
    }
}

fn mtime(path: &std::path::Path) -> std::time::SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime")
}

#[test]
fn up_to_date_combinations_are_skipped_and_changes_rerun() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = ingested(dir.path(), "skip", 32);
    let settings = tiny(1, 1);
    let first = ferbayes_train::run(&layout, &settings, &only()).expect("first");
    assert!(!first[0].skipped);
    assert_eq!(first[0].trained, 1);
    let manifest = Layout::manifest_in(&layout.train_dir(Arch::AlexNet, Method::McDropout));
    let before = mtime(&manifest);
    let m = plan::read_manifest(&layout.train_dir(Arch::AlexNet, Method::McDropout))
        .expect("read")
        .expect("written");
    let names: Vec<&str> = m.input_hashes.iter().map(|h| h.file.as_str()).collect();
    assert_eq!(names, ["ingest/train.parquet", "ingest/valid.parquet"]);

    let again = ferbayes_train::run(&layout, &settings, &only()).expect("again");
    assert!(again[0].skipped);
    assert_eq!(again[0].trained, 0);
    assert_eq!(again[0].history, first[0].history);
    assert_eq!(
        mtime(&manifest),
        before,
        "an up-to-date combination was rewritten"
    );

    // --force reruns the combination (the member itself is reused by its fingerprint).
    let forced = ferbayes_train::run(
        &layout,
        &settings,
        &TrainOptions {
            force: true,
            ..only()
        },
    )
    .expect("force");
    assert!(!forced[0].skipped);

    // A changed learning rate retrains.
    let mut changed = settings.clone();
    changed.train.alexnet.learning_rate *= 0.5;
    let p = plan::train(&layout, &changed, Arch::AlexNet, Method::McDropout);
    assert!(matches!(
        p.check().expect("check").freshness,
        Freshness::Stale(_)
    ));
    let retrained = ferbayes_train::run(&layout, &changed, &only()).expect("changed");
    assert!(!retrained[0].skipped);
    assert_eq!(retrained[0].trained, 1);

    // A re-ingest with other data makes the combination stale, naming the input.
    let ingest = ferbayes_core::IngestSettings {
        max_per_split: Some(24),
        zstd_level: 1,
        ..Default::default()
    };
    ferbayes_ingest::run(&ferbayes_core::test_data_root(), &layout, &ingest).expect("re-ingest");
    assert_eq!(
        p.check().expect("check").freshness,
        Freshness::Stale("input ingest/train.parquet changed".into())
    );
    let after = ferbayes_train::run(&layout, &changed, &only()).expect("after re-ingest");
    assert!(!after[0].skipped);
}

#[test]
fn ingest_of_another_profile_is_refused_and_truncated_parquet_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cpu = ingested(dir.path(), "cpu", 16);
    let settings = tiny(1, 1);
    // The cpu profile's ingest copied into the smoke profile's folder.
    let smoke = Layout::new(dir.path(), "smoke");
    let (from, to) = (cpu.stage_dir(Stage::Ingest), smoke.stage_dir(Stage::Ingest));
    std::fs::create_dir_all(&to).expect("mkdir");
    for entry in std::fs::read_dir(&from).expect("ls") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
    let err = ferbayes_train::run(&smoke, &settings, &only())
        .expect_err("profile mismatch")
        .to_string();
    assert!(
        err.contains("train.parquet")
            && err.contains("profile `cpu`")
            && err.contains("just ingest"),
        "{err}"
    );

    // A truncated ingest table of the right profile: a clear error naming it, no panic.
    let path = cpu.ingest_split(Split::Train);
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = ferbayes_train::run(&cpu, &settings, &only())
        .expect_err("truncated")
        .to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("just ingest"),
        "{err}"
    );
}
