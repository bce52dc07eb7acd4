//! The analyze stage end to end: real ingest tables, synthetic inference outputs.

use std::collections::HashMap;
use std::time::Instant;

use ferbayes_core::schema::rows::{ConformalRow, MetricsRow, TemperatureRow};
use ferbayes_core::{Arch, Layout, Method, Split, Stage, io};

use crate::support::{
    ingest, ingest_faces, metric, metric_std, smoke_settings, synthetic_probs, walk, write_infer,
};

const T: usize = 3;

#[test]
fn end_to_end_on_real_ingest_and_synthetic_inference() {
    let dir = tempfile::tempdir().expect("tempdir");
    // FERBAYES_ANALYZE_OUT=<dir> keeps the artifacts for a look at the figures.
    let root = std::env::var_os("FERBAYES_ANALYZE_OUT")
        .map(|d| std::path::PathBuf::from(d).join("e2e"))
        .unwrap_or_else(|| dir.path().to_owned());
    let layout = Layout::new(&root, "smoke");
    ingest(&layout, 100);

    let archs = [Arch::AlexNet, Arch::Vgg16];
    let methods = [Method::McDropout, Method::Ensemble];
    // (labels, probs[t][face]) of every synthetic infer file.
    type Truth = (Vec<Option<u8>>, Vec<Vec<[f32; 8]>>);
    let mut truth: HashMap<(Arch, Method, Split), Truth> = HashMap::new();
    for (a, &arch) in archs.iter().enumerate() {
        for (m, &method) in methods.iter().enumerate() {
            for (s, split) in [Split::Valid, Split::Test].into_iter().enumerate() {
                let (images, labels) = ingest_faces(&layout, split);
                let probs = synthetic_probs(&labels, T, (a * 100 + m * 10 + s) as u64);
                write_infer(&layout, arch, method, split, &images, &probs);
                truth.insert((arch, method, split), (labels, probs));
            }
        }
    }

    let mut settings = smoke_settings();
    assert_eq!(settings.analyze.shown_n, [1, 2, 3]);
    assert_eq!(settings.analyze.orderings, 3);
    settings.train.archs = archs.to_vec();
    // mc_dropconnect has no infer files: skipped with a warning.
    settings.train.methods = vec![Method::McDropout, Method::McDropConnect, Method::Ensemble];
    // The main analyses only (the extra ones have their own tests in `extras`).
    settings.ingest.shift.faces = 0;
    settings.ingest.ood.faces = 0;
    settings.train.compare_label_modes.clear();

    let started = Instant::now();
    let summary = ferbayes_analyze::run(&layout, &settings).expect("analyze runs");
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "analyze took {seconds:.3} s (summary says {:.3} s)",
        summary.seconds
    );
    assert_eq!(
        summary.missing.len(),
        4,
        "2 archs x 2 splits of mc_dropconnect"
    );
    assert!(
        summary
            .missing
            .iter()
            .all(|p| p.to_string_lossy().contains("mc_dropconnect"))
    );

    // metrics.parquet: archs x methods x splits x n rows, in range.
    let rows: Vec<MetricsRow> = io::read_rows(&layout.metrics(), None, "just analyze")
        .expect("metrics.parquet matches the schema");
    assert_eq!(rows.len(), 2 * 2 * 2 * T);
    assert_eq!(summary.rows, rows.len());
    let mut keys = Vec::new();
    let mut error = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        keys.push((row.arch, row.method, row.split, row.n));
        for name in [
            "error",
            "nll",
            "ece",
            "brier",
            "classwise_ece",
            "aurc",
            "entropy",
            "aleatoric",
            "jsd",
            "soft_accuracy",
            "kl_crowd",
            "entropy_corr",
            "crowd_ece",
            "crowd_cw_ece",
        ] {
            assert!(metric(row, name).is_some(), "{name} is null in row {i}");
        }
        let v = |name: &str| metric(row, name).expect("not null");
        let e = v("error");
        error.push(e);
        assert!((0.0..=1.0).contains(&e), "error {e}");
        assert!(e < 0.6, "synthetic predictions agree with most labels: {e}");
        assert!((0.0..=1.0).contains(&v("ece")));
        assert!((0.0..=1.0).contains(&v("jsd")));
        if let Some(epistemic) = metric(row, "epistemic") {
            assert!(epistemic >= -1e-6, "epistemic {epistemic}");
        }
        assert!(v("nll") > 0.0 && (0.0..=2.0).contains(&v("brier")));
        assert!((0.0..=1.0).contains(&v("soft_accuracy")) && (0.0..=1.0).contains(&v("aurc")));
        if row.method == Method::McDropout {
            assert_eq!(
                metric_std(row, "error"),
                Some(0.0),
                "MC methods have zero std"
            );
        }
        if row.method == Method::Ensemble && usize::from(row.n) == T {
            // Every ordering averages the same members at n = T.
            let (error_std, ece_std) = (metric_std(row, "error"), metric_std(row, "ece"));
            assert!(error_std.is_some_and(|s| s < 1e-12), "{error_std:?}");
            assert!(ece_std.is_some_and(|s| s < 1e-9), "{ece_std:?}");
        }
    }
    let mut expected_keys = Vec::new();
    for a in archs {
        for m in methods {
            for s in [Split::Valid, Split::Test] {
                for k in 1..=T as u16 {
                    expected_keys.push((a, m, s, k));
                }
            }
        }
    }
    assert_eq!(
        keys, expected_keys,
        "one row per (arch, method, split, n) in settings order"
    );

    // The error at every n for one combination, recomputed from the synthetic data.
    let (labels, probs) = &truth[&(Arch::Vgg16, Method::Ensemble, Split::Test)];
    for k in 1..=T {
        let (mut wrong, mut total) = (0usize, 0usize);
        for (i, y) in labels.iter().enumerate() {
            let Some(y) = y else { continue };
            let mean: Vec<f64> = (0..8)
                .map(|c| probs[..k].iter().map(|s| f64::from(s[i][c])).sum::<f64>() / k as f64)
                .collect();
            let pred = (0..8).fold(0, |b, c| if mean[c] > mean[b] { c } else { b });
            wrong += usize::from(pred != usize::from(*y));
            total += 1;
        }
        let row = keys
            .iter()
            .position(|key| *key == (Arch::Vgg16, Method::Ensemble, Split::Test, k as u16))
            .expect("row exists");
        let want = wrong as f64 / total as f64;
        assert!(
            (error[row] - want).abs() < 1e-12,
            "n = {k}: error {} vs {want}",
            error[row]
        );
    }
    // Ensembles do have a spread over orderings at n = 1 (3 different single members).
    let ens_n1: f64 = rows
        .iter()
        .filter(|r| r.method == Method::Ensemble && r.n == 1)
        .map(|r| metric_std(r, "error").unwrap_or(0.0) + metric_std(r, "ece").unwrap_or(0.0))
        .sum();
    assert!(ens_n1 > 0.0, "orderings differ at n = 1");

    // Reports mention every arch and method; figures exist as PNG + SVG and decode.
    let html = std::fs::read_to_string(&summary.report_html).expect("report.html");
    let md = std::fs::read_to_string(&summary.report_md).expect("report.md");
    assert_eq!(summary.report_html, layout.report_html());
    for name in ["alexnet", "vgg16", "mc_dropout", "ensemble"] {
        assert!(
            html.contains(name) && md.contains(name),
            "reports mention {name}"
        );
    }
    assert_eq!(
        html.matches("data:image/png;base64,").count(),
        summary.figures.len(),
        "report.html embeds every figure"
    );
    assert!(
        !html.contains("src=\"figures/"),
        "report.html is self-contained"
    );
    let mut stems = vec![
        "error_vs_n".to_owned(),
        "nll_vs_n".to_owned(),
        "ece_vs_n".to_owned(),
    ];
    for a in archs {
        for m in methods {
            stems.push(format!("reliability_{a}_{m}"));
        }
        stems.push(format!("uncertain_{a}"));
        stems.push(format!("crowd_{a}"));
    }
    stems.push("entropy_scatter".to_owned());
    for a in archs {
        for m in methods {
            stems.push(format!("crowd_reliability_{a}_{m}"));
        }
    }
    stems.push("set_size_vs_entropy".to_owned());
    for a in archs {
        stems.push(format!("risk_coverage_{a}"));
    }
    let got: Vec<&str> = summary.figures.iter().map(|f| f.stem.as_str()).collect();
    for stem in &stems {
        assert!(
            got.contains(&stem.as_str()),
            "figure {stem} drawn (got {got:?})"
        );
        let png_path = layout.figure(&format!("{stem}.png"));
        let svg_path = layout.figure(&format!("{stem}.svg"));
        let bytes = std::fs::read(&png_path).expect("png exists");
        assert!(
            bytes.len() <= 150 * 1024,
            "{stem}.png is {} bytes",
            bytes.len()
        );
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().expect("png decodes");
        let info = reader.info();
        assert!(
            info.width >= 400 && info.height >= 300,
            "{stem}: {}x{}",
            info.width,
            info.height
        );
        let svg = std::fs::read_to_string(&svg_path).expect("svg exists");
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{stem}.svg is an SVG"
        );
        // report.html embeds every figure (checked below by count); report.md links them.
        assert!(
            md.contains(&format!("figures/{stem}.png")),
            "report.md shows {stem}"
        );
    }
    // A headless browser decodes every figure of report.html, the crowd figures among them.
    crate::browser::assert_figures_render(&summary.report_html, &stems);
    posthoc_tables_are_consistent(&layout, 2 * 2 * 3);

    // The face figures embed their faces in the SVG.
    let svg = std::fs::read_to_string(layout.figure("uncertain_alexnet.svg")).expect("svg");
    assert_eq!(
        svg.matches("data:image/png;base64,").count(),
        5,
        "top_uncertain = 5 faces"
    );

    // Manifest and no temporary files left behind.
    let analyze_dir = layout.stage_dir(Stage::Analyze);
    let manifest: ferbayes_core::manifest::Manifest = serde_json::from_slice(
        &std::fs::read(Layout::manifest_in(&analyze_dir)).expect("manifest"),
    )
    .expect("manifest parses");
    assert_eq!(manifest.stage, "analyze");
    assert!(
        manifest
            .outputs
            .iter()
            .any(|o| o.file == "metrics.parquet" && o.rows == 24)
    );
    // The tables of this profile: metrics, temperature, conformal and selective; no shift, OOD
    // or labels.
    assert_eq!(
        ferbayes_core::plan::analyze_outputs(&layout, &settings),
        vec![
            layout.metrics(),
            layout.temperature(),
            layout.conformal(),
            layout.analyze_table("selective"),
            layout.report_html(),
            layout.report_md(),
        ]
    );
    assert!(layout.analyze_table("selective").is_file());
    for name in ["shift", "ood", "labels"] {
        assert!(
            !layout.analyze_table(name).exists(),
            "{name}.parquet written"
        );
    }
    assert!(
        manifest
            .outputs
            .iter()
            .any(|o| o.file == "selective.parquet" && o.rows == 2 * 2 * 2),
        "2 archs x 2 methods x 2 scores"
    );
    assert!(md.contains("## Selective prediction (test)"));
    assert!(!md.contains("Dataset shift") && !md.contains("Soft-label comparison"));
    let leftovers: Vec<_> = walk(&root)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let table = summary.console_table();
    assert_eq!(
        table.lines().count(),
        1 + 2 * 2 * 3,
        "header + test rows at n = 1, 2, 3:\n{table}"
    );
}

#[test]
fn missing_inference_outputs_name_just_infer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path(), "smoke");
    let err = ferbayes_analyze::run(&layout, &smoke_settings()).expect_err("nothing to analyse");
    let msg = err.to_string();
    assert!(msg.contains("just infer"), "{msg}");
    assert!(msg.contains("alexnet/mc_dropout"), "{msg}");
    assert!(!layout.metrics().exists());
}

#[test]
fn inference_not_matching_ingest_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path(), "smoke");
    ingest(&layout, 20);
    let (mut images, labels) = ingest_faces(&layout, Split::Test);
    images[3] = "not-a-face.png".to_owned();
    let path = write_infer(
        &layout,
        Arch::AlexNet,
        Method::McDropout,
        Split::Test,
        &images,
        &synthetic_probs(&labels, 2, 1),
    );
    let mut settings = smoke_settings();
    settings.train.archs = vec![Arch::AlexNet];
    settings.train.methods = vec![Method::McDropout];
    let msg = ferbayes_analyze::run(&layout, &settings)
        .expect_err("unknown face")
        .to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("not-a-face.png") && msg.contains("just infer"),
        "{msg}"
    );

    // A face without its samples is reported too.
    let (images, labels) = ingest_faces(&layout, Split::Test);
    let probs = synthetic_probs(&labels, 2, 1);
    write_infer(
        &layout,
        Arch::AlexNet,
        Method::McDropout,
        Split::Test,
        &images[1..],
        &probs[..]
            .iter()
            .map(|s| s[1..].to_vec())
            .collect::<Vec<_>>(),
    );
    let msg = ferbayes_analyze::run(&layout, &settings)
        .expect_err("missing rows")
        .to_string();
    assert!(
        msg.contains("expected") && msg.contains("just infer"),
        "{msg}"
    );
}

/// The study's size: every FER+ valid/test face, 3 archs x 3 methods, T = 15, 20 orderings.
/// Prints the analyze wall time; set `FERBAYES_ANALYZE_OUT=<dir>` to keep the artifacts.
/// Run: `cargo test --release -p ferbayes-analyze -- --ignored --nocapture full_size`.
#[test]
#[ignore = "ingests all of FER+ and writes 945k inference rows; run by hand to time analyze at full size"]
fn full_size_runtime() {
    let kept = std::env::var_os("FERBAYES_ANALYZE_OUT").map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = kept.clone().unwrap_or_else(|| tmp.path().to_owned());
    let layout = Layout::new(&root, "paper");
    let started = Instant::now();
    if !layout.ingest_split(Split::Test).exists() {
        let settings = ferbayes_core::IngestSettings {
            max_per_split: None,
            zstd_level: 3,
            ..Default::default()
        };
        ferbayes_ingest::run(&ferbayes_core::test_data_root(), &layout, &settings).expect("ingest");
    }
    eprintln!("ingest: {:.1} s", started.elapsed().as_secs_f64());
    let mut settings = smoke_settings();
    settings.analyze.orderings = 20;
    settings.analyze.shown_n = vec![1, 5, 10, 15];
    settings.train.archs = Arch::ALL.to_vec();
    settings.train.methods = Method::STUDY.to_vec();
    let started = Instant::now();
    for (a, &arch) in Arch::ALL.iter().enumerate() {
        for (m, &method) in Method::STUDY.iter().enumerate() {
            for (s, split) in [Split::Valid, Split::Test].into_iter().enumerate() {
                let (images, labels) = ingest_faces(&layout, split);
                let probs = synthetic_probs(&labels, 15, (a * 100 + m * 10 + s) as u64);
                write_infer(&layout, arch, method, split, &images, &probs);
            }
        }
    }
    eprintln!(
        "synthetic infer files: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let summary = ferbayes_analyze::run(&layout, &settings).expect("analyze");
    eprintln!(
        "analyze: {:.2} s, {} rows, {} figures",
        started.elapsed().as_secs_f64(),
        summary.rows,
        summary.figures.len()
    );
    eprint!("{}", summary.console_table());
    assert_eq!(summary.rows, 9 * 2 * 15);
}

/// `temperature.parquet` has one row per (arch, method, n) with T in the searched range and the
/// error unchanged by it; `conformal.parquet` one per (arch, method, n, α) with coverage and set
/// sizes in range and a finite q̂ wherever the valid split is large enough.
fn posthoc_tables_are_consistent(layout: &Layout, combinations_n: usize) {
    let t: Vec<TemperatureRow> = io::read_rows(&layout.temperature(), None, "just analyze")
        .expect("temperature.parquet parses");
    assert_eq!(t.len(), combinations_n);
    let error = ferbayes_core::schema::TEMPERATURE_METRICS
        .iter()
        .position(|m| *m == "error")
        .expect("error is a temperature metric");
    for row in &t {
        let temperature = row.temperature.expect("T");
        assert!((0.05..=20.0).contains(&temperature), "T = {temperature}");
        assert_eq!(
            row.before[error], row.after[error],
            "temperature scaling changed the error"
        );
    }
    let c: Vec<ConformalRow> =
        io::read_rows(&layout.conformal(), None, "just analyze").expect("conformal.parquet parses");
    assert_eq!(
        c.len(),
        combinations_n * ferbayes_core::schema::CONFORMAL_ALPHAS.len()
    );
    for row in &c {
        assert!(
            row.qhat.is_finite(),
            "hundreds of valid faces give a finite q̂"
        );
        assert!(row.coverage.is_some_and(|v| (0.0..=1.0).contains(&v)));
        assert!(row.set_size.is_some_and(|v| (0.0..=8.0).contains(&v)));
    }
}
