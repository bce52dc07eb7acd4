//! The whole pipeline under the `smoke` profile of pipeline.toml on real FER+ faces: ingest,
//! train (all nine combinations), infer, analyze; the report must exist and cover everything.

use std::time::Instant;

use ferbayes_core::{Layout, Split};

use crate::support::smoke_settings;

#[test]
fn smoke_profile_runs_the_whole_chain() {
    let settings = smoke_settings();
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path(), "smoke");
    let start = Instant::now();

    ferbayes_ingest::run(&ferbayes_core::test_data_root(), &layout, &settings.ingest)
        .expect("ingest");
    let trained = ferbayes_train::run(&layout, &settings, &ferbayes_train::TrainOptions::default())
        .expect("train");
    assert_eq!(
        trained.len(),
        settings.train.archs.len() * settings.train.methods.len()
    );
    let inferred =
        ferbayes_infer::run(&layout, &settings, &ferbayes_infer::InferOptions::default())
            .expect("infer");
    assert_eq!(inferred.len(), trained.len());
    let summary = ferbayes_analyze::run(&layout, &settings).expect("analyze");

    assert!(summary.missing.is_empty(), "{:?}", summary.missing);
    let rows: usize = trained
        .iter()
        .map(|c| {
            2 * if c.method == ferbayes_core::Method::Ensemble {
                c.members
            } else {
                settings.infer.samples
            }
        })
        .sum();
    assert_eq!(
        summary.rows, rows,
        "one metrics row per (arch, method, split, n)"
    );
    let html = std::fs::read_to_string(&summary.report_html).expect("report.html");
    let md = std::fs::read_to_string(&summary.report_md).expect("report.md");
    for arch in &settings.train.archs {
        for method in &settings.train.methods {
            let name = format!("{arch} | {method}");
            assert!(md.contains(&name), "report.md lacks {name}");
            assert!(html.contains(arch.as_str()) && html.contains(method.as_str()));
        }
    }
    // Self-contained page: every figure inline, none referenced by path.
    assert_eq!(
        html.matches("data:image/png;base64,").count(),
        summary.figures.len()
    );
    assert!(!html.contains("src=\"figures/"));
    for report in [&html, &md] {
        assert!(report.contains("The study's claims, as measured here"));
        assert!(report.contains("Error falls as n grows") && report.contains("ECE rises with n"));
    }
    for figure in &summary.figures {
        for file in &figure.files {
            assert!(file.is_file(), "{} missing", file.display());
        }
    }
    assert!(
        layout
            .infer_split("densenet121", "ensemble", Split::Test)
            .is_file()
    );
    eprintln!("smoke chain: {:.1} s", start.elapsed().as_secs_f64());
}
