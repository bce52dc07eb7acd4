//! Split-conformal prediction sets for `ferbayes predict`, from the analyze stage's
//! `analyze/conformal.parquet`: the threshold q̂ calibrated on the valid split for the model's
//! arch, method and sample count at α = [`SHOWN_ALPHA`]. The set itself is
//! [`ferbayes_uq::conformal::prediction_set`], the rule analyze evaluates on the test split,
//! C(x) = {k : 1 − p̄\[k\] ≤ q̂}, which holds the majority label for at least 1 − α of faces
//! exchangeable with the calibration faces ([`crate::FacePrediction::with_set`]).

use ferbayes_core::plan::{self, Plan};
use ferbayes_core::schema::SHOWN_ALPHA;
use ferbayes_core::schema::rows::ConformalRow;
use ferbayes_core::{Arch, Layout, Method, Settings};
use serde::Serialize;

use crate::Result;

/// A face's prediction set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictionSet {
    /// The miscoverage level: the set misses the majority label of at most this share of faces.
    pub alpha: f64,
    /// The threshold on 1 − p̄\[k\] (calibrated on the valid split).
    pub qhat: f64,
    /// The emotions in the set, in FER+ order.
    pub emotions: Vec<String>,
}

/// Where a face's prediction set comes from: the calibrated threshold, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum SetThreshold {
    Calibrated {
        alpha: f64,
        qhat: f64,
    },
    /// No up-to-date calibration: the sentence says why and how to get one.
    Unavailable(String),
}

/// The threshold for `arch`/`method` at `n` samples and α = [`SHOWN_ALPHA`], read from the
/// profile's `analyze/conformal.parquet` when the analyze stage is up to date.
pub fn threshold(
    layout: &Layout,
    settings: &Settings,
    (arch, method): (Arch, Method),
    n: usize,
) -> Result<SetThreshold> {
    let how = format!(
        "run `just all` (or `just analyze` once infer is done) for profile `{}` to calibrate them",
        layout.profile()
    );
    let path = layout.conformal();
    if !path.exists() {
        return Ok(SetThreshold::Unavailable(format!(
            "no prediction sets: {} does not exist; {how}",
            path.display()
        )));
    }
    let analyze: Plan = plan::analyze(layout, settings);
    let fresh = analyze.check().map(|c| c.up_to_date()).unwrap_or(false);
    if !fresh {
        return Ok(SetThreshold::Unavailable(format!(
            "no prediction sets: the analyze tables of profile `{}` are not up to date with the model; {how}",
            layout.profile()
        )));
    }
    match read_qhat(&path, (arch, method), n)? {
        Some(qhat) => Ok(SetThreshold::Calibrated {
            alpha: SHOWN_ALPHA,
            qhat,
        }),
        None => Ok(SetThreshold::Unavailable(format!(
            "no prediction sets: {} has no row for {arch}/{method} at n = {n}, α = {SHOWN_ALPHA}; {how}",
            path.display()
        ))),
    }
}

/// `qhat` of the row (arch, method, n, α = [`SHOWN_ALPHA`]) of a conformal table.
fn read_qhat(
    path: &std::path::Path,
    (arch, method): (Arch, Method),
    n: usize,
) -> Result<Option<f64>> {
    let columns = ["arch", "method", "n", "alpha", "qhat"];
    let rows: Vec<ConformalRow> = ferbayes_core::io::read_rows(
        path,
        Some(&columns),
        &plan::recipe(ferbayes_core::layout::Stage::Analyze),
    )?;
    Ok(rows
        .iter()
        .find(|r| {
            r.arch == arch
                && r.method == method
                && usize::from(r.n) == n
                && (r.alpha - SHOWN_ALPHA).abs() < 1e-12
        })
        .map(|r| r.qhat))
}

#[cfg(test)]
mod tests {
    use ferbayes_core::schema;

    use super::*;

    /// A conformal table with rows for (alexnet, ensemble, n = 1..3) at every α; qhat encodes
    /// its row so the test can tell which one was read.
    fn table(dir: &std::path::Path) -> std::path::PathBuf {
        let mut rows = Vec::new();
        for n in 1..=3u16 {
            for alpha in schema::CONFORMAL_ALPHAS {
                rows.push(ConformalRow {
                    arch: Arch::AlexNet,
                    method: Method::Ensemble,
                    n,
                    alpha,
                    qhat: f64::from(n) / 10.0 + alpha,
                    ..ConformalRow::default()
                });
            }
        }
        let path = dir.join("conformal.parquet");
        let batch = ferbayes_core::io::rows_batch(&path, &rows).expect("batch");
        ferbayes_core::io::write_parquet(&path, &schema::analyze_conformal(), [batch], 3)
            .expect("write")
            .commit()
            .expect("commit")
    }

    #[test]
    fn the_threshold_is_the_row_of_the_model_its_sample_count_and_the_shown_alpha() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = table(dir.path());
        let q = read_qhat(&path, (Arch::AlexNet, Method::Ensemble), 2).expect("read");
        assert_eq!(q, Some(0.2 + SHOWN_ALPHA));
        assert_eq!(
            read_qhat(&path, (Arch::AlexNet, Method::McDropout), 2).expect("read"),
            None
        );
        assert_eq!(
            read_qhat(&path, (Arch::AlexNet, Method::Ensemble), 4).expect("read"),
            None
        );
    }

    #[test]
    fn a_damaged_table_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("conformal.parquet");
        std::fs::write(&path, b"not parquet").expect("write");
        let err = read_qhat(&path, (Arch::AlexNet, Method::Ensemble), 1).expect_err("damaged");
        assert!(err.to_string().contains("conformal.parquet"), "{err}");
    }

    #[test]
    fn a_profile_without_analyze_tables_says_how_to_get_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = ferbayes_core::PipelineFile::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml"),
        )
        .expect("pipeline.toml");
        let settings = file.settings("smoke").expect("smoke");
        let layout = Layout::new(dir.path(), "smoke");
        let got =
            threshold(&layout, &settings, (Arch::AlexNet, Method::Ensemble), 3).expect("threshold");
        let SetThreshold::Unavailable(why) = got else {
            panic!("no table, yet calibrated: {got:?}");
        };
        assert!(
            why.contains("just all") && why.contains("conformal.parquet"),
            "{why}"
        );
        // A table that the analyze manifest does not vouch for is not used either.
        std::fs::create_dir_all(layout.conformal().parent().expect("dir")).expect("mkdir");
        table(layout.conformal().parent().expect("dir"));
        let got =
            threshold(&layout, &settings, (Arch::AlexNet, Method::Ensemble), 3).expect("threshold");
        let SetThreshold::Unavailable(why) = got else {
            panic!("stale table used: {got:?}");
        };
        assert!(why.contains("not up to date"), "{why}");
    }

    #[test]
    fn a_face_gets_the_emotions_of_its_set() {
        let source = crate::summary::FaceSource {
            image: std::path::Path::new("x.png"),
            face: 0,
            bbox: crate::FaceBox {
                x: 0,
                y: 0,
                width: 48,
                height: 48,
                score: None,
            },
            warning: None,
        };
        let p = crate::summary::summarise(source, &[[0.5, 0.3, 0.1, 0.0, 0.0, 0.0, 0.05, 0.05]]);
        // 1 − p̄ = (0.5, 0.7, 0.9, ...): q̂ = 0.75 keeps neutral and happiness.
        let with = p.clone().with_set(&SetThreshold::Calibrated {
            alpha: 0.1,
            qhat: 0.75,
        });
        let set = with.prediction_set.clone().expect("a set");
        assert_eq!(set.emotions, vec!["neutral", "happiness"]);
        let text = crate::summary::render(&with);
        assert!(text.contains("prediction set (α = 0.1"), "{text}");
        assert!(text.contains("{neutral, happiness}"), "{text}");
        let json = serde_json::to_value(&with).expect("json");
        assert_eq!(json["prediction_set"]["emotions"][1], "happiness");
        let without = p.with_set(&SetThreshold::Unavailable("why".into()));
        assert!(without.prediction_set.is_none());
        assert!(!crate::summary::render(&without).contains("prediction set"));
    }
}
