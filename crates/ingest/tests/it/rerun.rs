//! Up-to-date skipping and provenance of ingest: a rerun with nothing changed writes nothing, a
//! changed setting or label file reruns, `--force` reruns.

use std::path::Path;
use std::time::SystemTime;

use ferbayes_core::plan::{self, Freshness};
use ferbayes_core::{Layout, Split, Stage};

use crate::support::{settings, small_copy};

fn mtimes(layout: &Layout) -> Vec<SystemTime> {
    Split::ALL
        .iter()
        .map(|s| layout.ingest_split(*s))
        .chain([Layout::manifest_in(&layout.stage_dir(Stage::Ingest))])
        .map(|p| {
            std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .expect("mtime")
        })
        .collect()
}

fn bytes(layout: &Layout, split: Split) -> Vec<u8> {
    std::fs::read(layout.ingest_split(split)).expect("read")
}

#[test]
fn rerun_skips_unless_settings_data_or_force_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = small_copy(&dir.path().join("data"), 12);
    let layout = Layout::new(dir.path().join("art"), "rerun");
    let s = settings(None);

    let first = ferbayes_ingest::run_checked(&data, &layout, &s, false).expect("first");
    assert!(!first.skipped);
    assert_eq!(first.splits.len(), 3);
    let manifest = plan::read_manifest(&layout.stage_dir(Stage::Ingest))
        .expect("read")
        .expect("written");
    assert_eq!(manifest.key, first.key);
    assert!(
        manifest
            .input_hashes
            .iter()
            .any(|h| h.file == "FER2013Train/*.png (12 files)"),
        "{:?}",
        manifest.input_hashes
    );
    let before = mtimes(&layout);
    std::thread::sleep(std::time::Duration::from_millis(20));

    let again = ferbayes_ingest::run_checked(&data, &layout, &s, false).expect("again");
    assert!(again.skipped && again.splits.is_empty());
    assert_eq!(again.key, first.key);
    assert_eq!(mtimes(&layout), before, "an up-to-date rerun wrote files");

    // The rest of the pipeline has not run.
    let mut pipeline = crate_settings();
    pipeline.ingest = s.clone();
    let all = plan::all(&layout, &data, &pipeline);
    assert_eq!(
        all[0].check().expect("check").freshness,
        Freshness::UpToDate
    );
    for p in &all[1..] {
        assert_eq!(
            p.check().expect("check").freshness,
            Freshness::Missing,
            "{}",
            p.label
        );
    }

    // A changed setting reruns.
    let mut level = s.clone();
    level.zstd_level = 9;
    let changed = ferbayes_ingest::run_checked(&data, &layout, &level, false).expect("zstd");
    assert!(!changed.skipped);
    assert_ne!(changed.key, first.key);
    let capped = ferbayes_ingest::run_checked(&data, &layout, &settings(Some(5)), false)
        .expect("max_per_split");
    assert!(!capped.skipped);
    assert_eq!(capped.splits[0].faces, 5);

    // Changed data reruns: a label file edited in place.
    let s = settings(Some(5));
    assert!(
        ferbayes_ingest::run_checked(&data, &layout, &s, false)
            .expect("same")
            .skipped
    );
    let label = data.join("FER2013Test/label.csv");
    let text = std::fs::read_to_string(&label).expect("label.csv");
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&label, lines[1..].join("\n") + "\n").expect("drop a face");
    let old_test = bytes(&layout, Split::Test);
    let edited = ferbayes_ingest::run_checked(&data, &layout, &s, false).expect("edited");
    assert!(!edited.skipped);
    assert_ne!(bytes(&layout, Split::Test), old_test);

    // A deleted output reruns; --force reruns.
    std::fs::remove_file(layout.ingest_split(Split::Valid)).expect("rm");
    assert!(
        !ferbayes_ingest::run_checked(&data, &layout, &s, false)
            .expect("rm")
            .skipped
    );
    assert!(
        ferbayes_ingest::run_checked(&data, &layout, &s, false)
            .expect("x")
            .skipped
    );
    assert!(
        !ferbayes_ingest::run_checked(&data, &layout, &s, true)
            .expect("force")
            .skipped
    );
}

fn crate_settings() -> ferbayes_core::Settings {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml");
    ferbayes_core::PipelineFile::load(&path)
        .expect("pipeline.toml")
        .settings("smoke")
        .expect("smoke")
}
