//! `metrics.parquet` and the console table.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt16Array};
use ferbayes_core::{Split, schema};

use crate::curves::Curve;
use crate::error::{AnalyzeError, Result};
use crate::metrics::Metrics;

fn nullable(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// The rows of `metrics.parquet` (schema [`schema::metrics`]): one per (curve, n), NaN as null.
pub fn metrics_batch(curves: &[Curve], path: &std::path::Path) -> Result<RecordBatch> {
    let rows: usize = curves.iter().map(|c| c.index.len()).sum();
    let mut arch = Vec::with_capacity(rows);
    let mut method = Vec::with_capacity(rows);
    let mut split = Vec::with_capacity(rows);
    let mut n_col = Vec::with_capacity(rows);
    let mut values: Vec<Vec<Option<f64>>> =
        vec![Vec::with_capacity(rows); 2 * Metrics::NAMES.len()];
    for c in curves {
        for (i, (m, s)) in c.index.iter().zip(&c.ordering_std).enumerate() {
            arch.push(c.arch.as_str());
            method.push(c.method.as_str());
            split.push(c.split.name());
            n_col.push(u16::try_from(i + 1).map_err(|_| AnalyzeError::Output {
                path: path.to_owned(),
                message: format!("{} samples do not fit the u16 column `n`", c.samples),
            })?);
            for (j, v) in m.to_array().into_iter().chain(s.to_array()).enumerate() {
                values[j].push(nullable(v));
            }
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(arch)),
        Arc::new(StringArray::from(method)),
        Arc::new(StringArray::from(split)),
        Arc::new(UInt16Array::from(n_col)),
    ];
    columns.extend(
        values
            .into_iter()
            .map(|v| Arc::new(Float64Array::from(v)) as ArrayRef),
    );
    RecordBatch::try_new(schema::metrics(), columns).map_err(|e| AnalyzeError::Output {
        path: path.to_owned(),
        message: e.to_string(),
    })
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
