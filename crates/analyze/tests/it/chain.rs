//! The whole pipeline under the `smoke` profile of pipeline.toml on real FER+ faces: ingest,
//! train (all nine combinations, plus the soft-label comparison runs), infer (with the
//! dataset-shift and OOD sets), analyze; the report must exist and cover everything, every table
//! of `plan::analyze_outputs` must be written, and a second run from scratch must give
//! bit-identical artifacts.

use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_array::RecordBatch;
use ferbayes_core::{Layout, Settings, Split, schema};

use crate::support::{smoke_settings, walk};

/// Every file under `dir` with the given extension, relative to `dir`, sorted.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| p.strip_prefix(dir).expect("prefix").to_owned())
        .collect();
    out.sort();
    out
}

/// Tensor names, dtypes, shapes and data of a safetensors file (its metadata, which holds the
/// wall-clock history, is left out).
fn tensor_bytes(path: &Path) -> Vec<(String, String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).expect("read weights");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                format!("{:?}", view.dtype()),
                view.shape().to_vec(),
                view.data().to_vec(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A history table without its wall-clock `seconds` column.
fn history_without_seconds(path: &Path) -> Vec<RecordBatch> {
    let history = schema::history();
    let columns: Vec<&str> = history
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|&n| n != "seconds")
        .collect();
    ferbayes_core::io::read_parquet(path, &history, Some(&columns), "just train").expect("history")
}

/// Train and infer of the main run and of every soft-label comparison run, as the binaries do.
fn train_and_infer(
    layout: &Layout,
    settings: &Settings,
) -> (
    Vec<ferbayes_train::ComboSummary>,
    Vec<ferbayes_infer::InferSummary>,
) {
    let (mut trained, mut inferred) = (Vec::new(), Vec::new());
    for (l, s) in ferbayes_core::plan::variants(layout, settings) {
        trained.extend(
            ferbayes_train::run(&l, &s, &ferbayes_train::TrainOptions::default()).expect("train"),
        );
    }
    for (l, s) in ferbayes_core::plan::variants(layout, settings) {
        inferred.extend(
            ferbayes_infer::run(&l, &s, &ferbayes_infer::InferOptions::default()).expect("infer"),
        );
    }
    (trained, inferred)
}

#[test]
fn smoke_profile_runs_the_whole_chain_reproducibly() {
    let settings = smoke_settings();
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path().join("a"), "smoke");
    let start = Instant::now();

    ferbayes_ingest::run(&ferbayes_core::test_data_root(), &layout, &settings.ingest)
        .expect("ingest");
    let (trained, inferred) = train_and_infer(&layout, &settings);
    let main = settings.train.archs.len() * settings.train.methods.len();
    assert_eq!(
        trained.len(),
        main + settings.train.compare_label_modes.len()
            * settings.train.compare_archs.len()
            * settings.train.methods.len()
    );
    assert_eq!(inferred.len(), trained.len());
    let summary = ferbayes_analyze::run(&layout, &settings).expect("analyze");

    assert!(summary.missing.is_empty(), "{:?}", summary.missing);
    let rows: usize = trained[..main]
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
    for path in ferbayes_core::plan::analyze_outputs(&layout, &settings) {
        assert!(path.is_file(), "{} missing", path.display());
    }
    let (shift, ood) = ferbayes_core::plan::extras(&layout, &settings);
    let tables: Vec<String> = summary
        .tables
        .iter()
        .map(|(p, rows)| {
            assert!(*rows > 0, "{} is empty", p.display());
            p.file_name().expect("name").to_string_lossy().into_owned()
        })
        .collect();
    assert_eq!(
        tables.len(),
        3 + usize::from(shift)
            + usize::from(ood)
            + usize::from(!settings.train.compare_label_modes.is_empty()),
        "{tables:?}"
    );
    for (report, is_html) in [(&html, true), (&md, false)] {
        // HTML escapes the apostrophe (`&#39;`); Markdown keeps it.
        let study = if is_html {
            "The study&#39;s"
        } else {
            "The study's"
        };
        assert!(report.contains("Selective prediction (test)"));
        assert_eq!(
            shift,
            report.contains("Dataset shift (corrupted test faces)")
        );
        assert_eq!(ood, report.contains("Out-of-distribution detection"));
        assert_eq!(
            !settings.train.compare_label_modes.is_empty(),
            report.contains("Soft-label comparison (test)")
        );
        assert!(report.contains(&format!("{study} claims, as measured here")));
        assert!(report.contains("Error falls as n grows") && report.contains("ECE rises with n"));
        assert!(report.contains("Calibration against the crowd"));
        assert!(
            report.contains("Does ECE rise with n because the predictions become more crowd-like")
        );
        assert!(
            report.contains("figures/set_size_vs_entropy.png") || report.contains("data:image/png")
        );
    }
    for figure in &summary.figures {
        for file in &figure.files {
            assert!(file.is_file(), "{} missing", file.display());
        }
    }
    // The crowd figures are in the report, and a headless browser shows every figure.
    let mut crowd: Vec<String> = vec!["set_size_vs_entropy".to_owned()];
    for arch in &settings.train.archs {
        for method in &settings.train.methods {
            crowd.push(format!("crowd_reliability_{arch}_{method}"));
        }
    }
    crate::browser::assert_figures_render(&summary.report_html, &crowd);
    for (table, schema) in [
        (layout.temperature(), schema::analyze_temperature()),
        (layout.conformal(), schema::analyze_conformal()),
    ] {
        let rows: usize = ferbayes_core::io::read_parquet(&table, &schema, None, "just analyze")
            .expect("table")
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert!(rows > 0, "{} is empty", table.display());
    }
    assert!(
        layout
            .infer_split(
                ferbayes_core::Arch::DenseNet121,
                ferbayes_core::Method::Ensemble,
                Split::Test
            )
            .is_file()
    );
    eprintln!("smoke chain: {:.1} s", start.elapsed().as_secs_f64());

    // Same profile and seed from scratch in another root: bit-identical Parquet (history up to
    // its wall-clock seconds) and bit-identical weights.
    let again = Layout::new(dir.path().join("b"), "smoke");
    ferbayes_ingest::run(&ferbayes_core::test_data_root(), &again, &settings.ingest)
        .expect("ingest again");
    train_and_infer(&again, &settings);
    ferbayes_analyze::run(&again, &settings).expect("analyze again");
    let (a, b) = (layout.profile_dir(), again.profile_dir());
    let parquet = files(&a, "parquet");
    assert_eq!(parquet, files(&b, "parquet"));
    assert!(parquet.len() > 3 + 9 + 18, "{parquet:?}");
    for rel in &parquet {
        if rel.ends_with("history.parquet") {
            assert_eq!(
                history_without_seconds(&a.join(rel)),
                history_without_seconds(&b.join(rel)),
                "{} differs",
                rel.display()
            );
        } else {
            let same =
                std::fs::read(a.join(rel)).expect("a") == std::fs::read(b.join(rel)).expect("b");
            assert!(same, "{} differs between two runs", rel.display());
        }
    }
    let weights = files(&a, "safetensors");
    assert_eq!(weights, files(&b, "safetensors"));
    for rel in &weights {
        assert!(
            tensor_bytes(&a.join(rel)) == tensor_bytes(&b.join(rel)),
            "{} weights differ",
            rel.display()
        );
    }
}
