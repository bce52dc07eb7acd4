//! The soft-label comparison: the main run (trained with `train.label_mode`) against the runs of
//! `train.compare_label_modes` (under `infer/label-<mode>/`), for the architectures of
//! `train.compare_archs`, on the test split at n = T. `analyze/labels.parquet` (schema
//! [`ferbayes_core::schema::analyze_labels`]).

use std::path::Path;

use arrow_array::RecordBatch;
use ferbayes_core::schema::rows::LabelsRow;
use ferbayes_core::{Arch, LabelMode, Method, NUM_CLASSES};
use ferbayes_uq::mean_prediction;

use crate::data::Samples;
use crate::error::Result;
use crate::metrics::Evaluator;

/// The metric columns of [`LabelRow`], in table order.
pub const METRICS: [&str; 7] = [
    "error",
    "nll",
    "ece",
    "brier",
    "jsd",
    "soft_accuracy",
    "entropy_corr",
];

/// One row of `labels.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRow {
    pub label_mode: LabelMode,
    pub arch: Arch,
    pub method: Method,
    /// Error, NLL, ECE, Brier against the majority label; JSD (bits), soft accuracy and the
    /// entropy correlation against the crowd.
    pub values: [f64; 7],
}

impl LabelRow {
    /// The metric called `name` (one of [`METRICS`]).
    pub fn get(&self, name: &str) -> Option<f64> {
        METRICS
            .iter()
            .position(|m| *m == name)
            .map(|i| self.values[i])
    }
}

/// The row of one (label mode, arch, method): the prediction of all T `samples` evaluated
/// against the test split's targets.
pub fn label_row(
    label_mode: LabelMode,
    arch: Arch,
    method: Method,
    samples: &Samples,
    test: &Evaluator<NUM_CLASSES>,
) -> LabelRow {
    let pbar = mean_prediction(&samples.all());
    let m = test.evaluate(&pbar, f64::NAN);
    LabelRow {
        label_mode,
        arch,
        method,
        values: [
            m.error,
            m.nll,
            m.ece,
            m.brier,
            m.jsd,
            m.soft_accuracy,
            m.entropy_corr,
        ],
    }
}

/// The label mode with the lowest value of one metric for one architecture ([`best_modes`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BestMode {
    pub arch: Arch,
    /// One of [`METRICS`].
    pub metric: &'static str,
    /// The winning mode and its mean over methods.
    pub mode: LabelMode,
    pub value: f64,
    /// Every mode's mean over methods, modes in order of first appearance.
    pub means: Vec<(LabelMode, f64)>,
}

/// For each architecture (in order of first appearance) and each of `metrics` (lower is better):
/// the label mode with the lowest mean over methods. A mode is compared on the methods all modes
/// of the architecture have, so that a missing run does not skew the mean; NaN values are left
/// out, and a metric NaN for every mode has no winner.
pub fn best_modes(rows: &[LabelRow], metrics: &[&'static str]) -> Vec<BestMode> {
    let mut archs: Vec<Arch> = Vec::new();
    for r in rows {
        if !archs.contains(&r.arch) {
            archs.push(r.arch);
        }
    }
    let mut out = Vec::new();
    for arch in archs {
        let of_arch: Vec<&LabelRow> = rows.iter().filter(|r| r.arch == arch).collect();
        let mut modes: Vec<LabelMode> = Vec::new();
        for r in &of_arch {
            if !modes.contains(&r.label_mode) {
                modes.push(r.label_mode);
            }
        }
        let common: Vec<Method> = of_arch
            .iter()
            .map(|r| r.method)
            .filter(|m| {
                modes.iter().all(|mode| {
                    of_arch
                        .iter()
                        .any(|r| r.label_mode == *mode && r.method == *m)
                })
            })
            .fold(Vec::new(), |mut acc, m| {
                if !acc.contains(&m) {
                    acc.push(m);
                }
                acc
            });
        for &metric in metrics {
            let means: Vec<(LabelMode, f64)> = modes
                .iter()
                .map(|&mode| {
                    let vals: Vec<f64> = of_arch
                        .iter()
                        .filter(|r| r.label_mode == mode && common.contains(&r.method))
                        .filter_map(|r| r.get(metric))
                        .filter(|v| !v.is_nan())
                        .collect();
                    let mean = if vals.is_empty() {
                        f64::NAN
                    } else {
                        vals.iter().sum::<f64>() / vals.len() as f64
                    };
                    (mode, mean)
                })
                .collect();
            let best = means
                .iter()
                .filter(|(_, v)| !v.is_nan())
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some(&(mode, value)) = best {
                out.push(BestMode {
                    arch,
                    metric,
                    mode,
                    value,
                    means: means.clone(),
                });
            }
        }
    }
    out
}

fn nullable(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// The rows of `labels.parquet` (NaN as null).
pub fn labels_batch(rows: &[LabelRow], path: &Path) -> Result<RecordBatch> {
    let rows: Vec<LabelsRow> = rows
        .iter()
        .map(|r| {
            let [error, nll, ece, brier, jsd, soft_accuracy, entropy_corr] = r.values.map(nullable);
            LabelsRow {
                label_mode: r.label_mode,
                arch: r.arch,
                method: r.method,
                error,
                nll,
                ece,
                brier,
                jsd,
                soft_accuracy,
                entropy_corr,
            }
        })
        .collect();
    Ok(ferbayes_core::io::rows_batch(path, &rows)?)
}
