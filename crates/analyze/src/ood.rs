//! Out-of-distribution detection at n = T: the test faces (in-distribution, the negatives)
//! against each OOD set (the positives), under three scores where higher means "more likely
//! OOD": `max_prob` (1 − the maximum mean probability), `entropy` (predictive entropy) and
//! `mutual_information`. `analyze/ood.parquet` (schema [`ferbayes_core::schema::analyze_ood`]);
//! the metrics are [`ferbayes_uq::detection::ood_scores`].

use std::path::Path;

use arrow_array::RecordBatch;
use ferbayes_core::schema::rows::OodDetectionRow;
use ferbayes_core::{Arch, Method};

use crate::data::{KeyedSamples, OodKey, Samples};
use ferbayes_uq::detection::ood_scores;
use ferbayes_uq::face_splits;

use crate::error::{AnalyzeError, Result};

/// The detection scores, in table order.
pub const SCORES: [&str; 3] = ["max_prob", "entropy", "mutual_information"];

/// The three OOD scores of every image of one prediction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scores {
    /// 1 − maximum mean probability.
    pub max_prob: Vec<f64>,
    /// Predictive entropy, nats.
    pub entropy: Vec<f64>,
    /// Mutual information, nats.
    pub mutual_information: Vec<f64>,
}

impl Scores {
    /// The scores of `samples` (all T samples), every face.
    pub fn of(samples: &Samples) -> Self {
        let u = face_splits(&samples.all());
        Scores {
            max_prob: u.iter().map(|f| 1.0 - f.predicted().1).collect(),
            entropy: u.iter().map(|f| f.entropy).collect(),
            mutual_information: u.iter().map(|f| f.epistemic).collect(),
        }
    }

    /// The score called `name` (one of [`SCORES`]).
    pub fn get(&self, name: &str) -> &[f64] {
        match name {
            "max_prob" => &self.max_prob,
            "entropy" => &self.entropy,
            _ => &self.mutual_information,
        }
    }

    /// The scores of the images at `indices`.
    fn select(&self, indices: &[usize]) -> Self {
        let pick = |v: &[f64]| indices.iter().map(|&i| v[i]).collect();
        Scores {
            max_prob: pick(&self.max_prob),
            entropy: pick(&self.entropy),
            mutual_information: pick(&self.mutual_information),
        }
    }
}

/// One row of `ood.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct OodRow {
    pub arch: Arch,
    pub method: Method,
    pub set: String,
    /// A near-OOD set (from `ingest/ood.parquet`).
    pub near: bool,
    /// One of [`SCORES`].
    pub score: &'static str,
    pub auroc: f64,
    pub aupr: f64,
    pub fpr95: f64,
}

/// OOD detection of one (arch, method): its rows (sets in the order of `sets`, then scores)
/// and the scores themselves (test faces, then each set's), for the figures.
#[derive(Debug, Clone)]
pub struct OodResult {
    pub arch: Arch,
    pub method: Method,
    pub rows: Vec<OodRow>,
    /// The scores of the test faces.
    pub test: Scores,
    /// Each set's scores, in the order of `sets`.
    pub sets: Vec<(String, Scores)>,
}

/// Detection of every set of `sets` (name, near; from `ingest/ood.parquet`) in `ood` against
/// the test faces' predictions `test`. A set of `ood` missing from `sets` is an error (the
/// ingest tables changed since inference); a set of `sets` without predictions is left out.
pub fn ood_rows(
    arch: Arch,
    method: Method,
    test: &Samples,
    ood: &KeyedSamples<OodKey>,
    sets: &[(String, bool)],
) -> Result<OodResult> {
    if let Some(key) = ood.keys.iter().find(|k| !sets.iter().any(|s| s.0 == k.set)) {
        return Err(AnalyzeError::Inference {
            path: ood.samples.path.clone(),
            message: format!(
                "set `{}` is not in ingest/ood.parquet (the ingest tables changed since inference)",
                key.set
            ),
        });
    }
    let test_scores = Scores::of(test);
    let all = Scores::of(&ood.samples);
    let mut rows = Vec::new();
    let mut per_set = Vec::new();
    for (set, near) in sets {
        let indices: Vec<usize> = ood
            .keys
            .iter()
            .enumerate()
            .filter(|(_, k)| &k.set == set)
            .map(|(i, _)| i)
            .collect();
        if indices.is_empty() {
            continue;
        }
        let scores = all.select(&indices);
        for score in SCORES {
            let s = ood_scores(test_scores.get(score), scores.get(score));
            rows.push(OodRow {
                arch,
                method,
                set: set.clone(),
                near: *near,
                score,
                auroc: s.auroc,
                aupr: s.aupr,
                fpr95: s.fpr95,
            });
        }
        per_set.push((set.clone(), scores));
    }
    Ok(OodResult {
        arch,
        method,
        rows,
        test: test_scores,
        sets: per_set,
    })
}

fn nullable(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// The rows of `ood.parquet` (NaN as null).
pub fn ood_batch(rows: &[OodRow], path: &Path) -> Result<RecordBatch> {
    let rows: Vec<OodDetectionRow> = rows
        .iter()
        .map(|r| OodDetectionRow {
            arch: r.arch,
            method: r.method,
            set: r.set.clone(),
            near: r.near,
            score: r.score.to_owned(),
            auroc: nullable(r.auroc),
            aupr: nullable(r.aupr),
            fpr95: nullable(r.fpr95),
        })
        .collect();
    Ok(ferbayes_core::io::rows_batch(path, &rows)?)
}
