//! Selective prediction on the test split at n = T: the classifier abstains on its least
//! confident faces, ranked by the maximum mean probability (`confidence`) or by the mutual
//! information (`mutual_information`, lowest first). Over the faces with a majority label.
//! `analyze/selective.parquet` (schema [`ferbayes_core::schema::analyze_selective`]).

use std::path::Path;

use arrow_array::RecordBatch;
use ferbayes_core::schema::rows;
use ferbayes_core::{Arch, Method};

use ferbayes_uq::detection::{
    accuracy_at_coverage, coverage_at_accuracy, downsample, risk_coverage,
};
use ferbayes_uq::face_splits;

use crate::data::Samples;
use crate::error::Result;

/// The ranking scores, in table order.
pub const SCORES: [&str; 2] = ["confidence", "mutual_information"];

/// Points of a risk–coverage curve kept for the figures.
pub const CURVE_POINTS: usize = 200;

/// Selective prediction of one (arch, method) under one score.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectiveRow {
    pub arch: Arch,
    pub method: Method,
    /// One of [`SCORES`].
    pub score: &'static str,
    /// Accuracy on the 80 % most confident faces.
    pub accuracy_at_80: f64,
    /// Accuracy on the 90 % most confident faces.
    pub accuracy_at_90: f64,
    /// The largest coverage whose accuracy is ≥ 0.9 (0 when none).
    pub coverage_at_90_accuracy: f64,
    /// Area under the risk–coverage curve (the mean risk over all coverages k/n).
    pub aurc: f64,
    /// The risk–coverage curve (coverage, risk), downsampled to ≤ [`CURVE_POINTS`] points.
    pub curve: Vec<(f64, f64)>,
}

/// Both scores' rows of one (arch, method): `samples` are all T samples over the test faces,
/// `majority[i]` face i's label (faces without one are left out).
pub fn selective(
    arch: Arch,
    method: Method,
    samples: &Samples,
    majority: &[Option<u8>],
) -> Vec<SelectiveRow> {
    let u = face_splits(&samples.all());
    let (mut confidence, mut neg_mi, mut correct) = (Vec::new(), Vec::new(), Vec::new());
    for (y, face) in majority.iter().zip(&u) {
        let Some(y) = y else {
            continue;
        };
        let (pred, conf) = face.predicted();
        confidence.push(conf);
        neg_mi.push(-face.epistemic);
        correct.push(pred == usize::from(*y));
    }
    SCORES
        .iter()
        .zip([&confidence, &neg_mi])
        .map(|(&score, ranking)| {
            let curve = risk_coverage(ranking, &correct);
            let aurc = if curve.is_empty() {
                f64::NAN
            } else {
                curve.iter().map(|p| p.1).sum::<f64>() / curve.len() as f64
            };
            SelectiveRow {
                arch,
                method,
                score,
                accuracy_at_80: accuracy_at_coverage(ranking, &correct, 0.8),
                accuracy_at_90: accuracy_at_coverage(ranking, &correct, 0.9),
                coverage_at_90_accuracy: coverage_at_accuracy(ranking, &correct, 0.9),
                aurc,
                curve: downsample(&curve, CURVE_POINTS),
            }
        })
        .collect()
}

fn nullable(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// The rows of `selective.parquet` (NaN as null).
pub fn selective_batch(rows: &[SelectiveRow], path: &Path) -> Result<RecordBatch> {
    let rows: Vec<rows::SelectiveRow> = rows
        .iter()
        .map(|r| rows::SelectiveRow {
            arch: r.arch,
            method: r.method,
            score: r.score.to_owned(),
            accuracy_at_80: nullable(r.accuracy_at_80),
            accuracy_at_90: nullable(r.accuracy_at_90),
            coverage_at_90_accuracy: nullable(r.coverage_at_90_accuracy),
            aurc: nullable(r.aurc),
        })
        .collect();
    Ok(ferbayes_core::io::rows_batch(path, &rows)?)
}
