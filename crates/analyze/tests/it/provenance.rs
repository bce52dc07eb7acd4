//! Reruns across the chain: nothing changed does no work, a changed setting reruns its stage and
//! (through the input hashes) everything downstream, a re-ingest makes every later stage stale.

use std::path::Path;

use ferbayes_core::plan::{self, Freshness};
use ferbayes_core::{Arch, Layout, Method, Settings};

use crate::support::smoke_settings;

fn settings() -> Settings {
    let mut s = smoke_settings();
    s.train.archs = vec![Arch::AlexNet];
    s.train.methods = vec![Method::McDropout];
    s.infer.samples = 3;
    // Reruns of the main chain only: no dataset shift, OOD sets or soft-label runs.
    s.ingest.shift.faces = 0;
    s.ingest.ood.faces = 0;
    s.train.compare_label_modes.clear();
    let a = s.train.arch_mut(Arch::AlexNet);
    a.width = 0.125;
    a.input_size = 48;
    a.epochs = 1;
    s
}

fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime")
}

fn ingest(layout: &Layout, faces: usize) {
    let s = ferbayes_core::IngestSettings {
        max_per_split: Some(faces),
        zstd_level: 1,
        ..Default::default()
    };
    ferbayes_ingest::run(&ferbayes_core::test_data_root(), layout, &s).expect("ingest");
}

fn freshness(layout: &Layout, s: &Settings) -> Vec<(String, Freshness)> {
    plan::all(layout, &ferbayes_core::test_data_root(), s)
        .into_iter()
        .skip(1)
        .map(|p| (p.label.clone(), p.check().expect("check").freshness))
        .collect()
}

#[test]
fn chain_reruns_only_what_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path(), "smoke");
    let s = settings();
    ingest(&layout, 16);
    ferbayes_train::run(&layout, &s, &Default::default()).expect("train");
    ferbayes_infer::run(&layout, &s, &Default::default()).expect("infer");
    let first = ferbayes_analyze::run_checked(&layout, &s, false).expect("analyze");
    assert!(first.is_some());
    assert!(
        freshness(&layout, &s)
            .iter()
            .all(|(_, f)| *f == Freshness::UpToDate)
    );
    let metrics = layout.metrics();
    let before = mtime(&metrics);

    // Nothing changed: analyze does nothing.
    assert!(
        ferbayes_analyze::run_checked(&layout, &s, false)
            .expect("again")
            .is_none()
    );
    assert_eq!(mtime(&metrics), before);
    assert!(
        ferbayes_analyze::run_checked(&layout, &s, true)
            .expect("force")
            .is_some()
    );

    // analyze.ece_bins: only analyze reruns.
    let mut bins = s.clone();
    bins.analyze.ece_bins += 5;
    let states = freshness(&layout, &bins);
    assert_eq!(states[0].1, Freshness::UpToDate, "{states:?}");
    assert_eq!(states[1].1, Freshness::UpToDate, "{states:?}");
    assert!(matches!(states[2].1, Freshness::Stale(_)), "{states:?}");
    assert!(
        ferbayes_analyze::run_checked(&layout, &bins, false)
            .expect("bins")
            .is_some()
    );
    assert!(
        ferbayes_analyze::run_checked(&layout, &bins, false)
            .expect("bins")
            .is_none()
    );

    // infer.samples: infer reruns, and analyze is stale through the infer tables' hashes.
    let mut samples = bins.clone();
    samples.infer.samples = 4;
    let inferred = ferbayes_infer::run(&layout, &samples, &Default::default()).expect("infer");
    assert!(!inferred[0].skipped);
    assert!(
        matches!(&freshness(&layout, &samples)[2].1, Freshness::Stale(why) if why.contains("infer/alexnet/mc_dropout/")),
        "{:?}",
        freshness(&layout, &samples)
    );
    assert!(
        ferbayes_analyze::run_checked(&layout, &samples, false)
            .expect("n")
            .is_some()
    );

    // A re-ingest with other data: train, infer and analyze are all stale.
    ingest(&layout, 12);
    for (label, state) in freshness(&layout, &samples) {
        assert!(
            matches!(&state, Freshness::Stale(why) if why.contains("ingest/")),
            "{label}: {state:?}"
        );
    }
    let trained = ferbayes_train::run(&layout, &samples, &Default::default()).expect("retrain");
    assert!(!trained[0].skipped);
}
