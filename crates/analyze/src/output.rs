//! `metrics.parquet` and the console table.

use std::fmt::Write as _;

use arrow_array::RecordBatch;
use ferbayes_core::Split;
use ferbayes_core::schema::rows::MetricsRow;

use crate::curves::Curve;
use crate::error::{AnalyzeError, Result};

fn nullable(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// The rows of `metrics.parquet` (schema [`ferbayes_core::schema::metrics`]): one per
/// (curve, n), NaN as null.
pub fn metrics_batch(curves: &[Curve], path: &std::path::Path) -> Result<RecordBatch> {
    let mut rows = Vec::with_capacity(curves.iter().map(|c| c.index.len()).sum());
    for c in curves {
        for (i, (m, s)) in c.index.iter().zip(&c.ordering_std).enumerate() {
            rows.push(MetricsRow {
                arch: c.arch,
                method: c.method,
                split: c.split,
                n: u16::try_from(i + 1).map_err(|_| AnalyzeError::Output {
                    path: path.to_owned(),
                    message: format!("{} samples do not fit the u16 column `n`", c.samples),
                })?,
                values: m.to_array().map(nullable),
                stds: s.to_array().map(nullable),
            });
        }
    }
    Ok(ferbayes_core::io::rows_batch(path, &rows)?)
}

/// Formats a metric with 4 decimals, `-` when undefined.
pub fn fmt4(v: f64) -> String {
    if v.is_nan() {
        "-".to_owned()
    } else {
        format!("{v:.4}")
    }
}

/// The sample counts of `shown` that a curve of `samples` samples has, plus T if none does.
pub fn shown_for(shown: &[usize], samples: usize) -> Vec<usize> {
    let mut ns: Vec<usize> = shown
        .iter()
        .copied()
        .filter(|&n| n >= 1 && n <= samples)
        .collect();
    ns.sort_unstable();
    ns.dedup();
    if ns.is_empty() {
        ns.push(samples);
    }
    ns
}

/// The console table: the test split at n ∈ `shown`, one line per (arch, method, n).
pub fn console_table(curves: &[Curve], shown: &[usize]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<15} {:>3}  {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}",
        "arch", "method", "n", "error", "NLL", "ECE", "Brier", "JSD", "soft acc"
    );
    for c in curves.iter().filter(|c| c.split == Split::Test) {
        for n in shown_for(shown, c.samples) {
            let Some(m) = c.at(n) else { continue };
            let _ = writeln!(
                out,
                "{:<12} {:<15} {:>3}  {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}",
                c.arch.as_str(),
                c.method.as_str(),
                n,
                fmt4(m.error),
                fmt4(m.nll),
                fmt4(m.ece),
                fmt4(m.brier),
                fmt4(m.jsd),
                fmt4(m.soft_accuracy)
            );
        }
    }
    out
}
