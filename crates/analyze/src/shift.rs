//! Dataset shift (Ovadia et al. 2019): accuracy, calibration and uncertainty at n = T on
//! corrupted copies of test faces, per corruption and severity. Severity 0 is the clean faces
//! (corruption `none` in the tables), reported as the severity-0 point of every corruption.
//! Metrics are over the faces with a majority label. `analyze/shift.parquet` (schema
//! [`ferbayes_core::schema::analyze_shift`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use arrow_array::RecordBatch;
use ferbayes_core::schema::rows::ShiftMetricsRow;
use ferbayes_core::{Arch, Method, NUM_CLASSES};
use ferbayes_uq::calibration::{ece, error, nll};
use ferbayes_uq::face_splits;

use crate::data::{KeyedSamples, ShiftKey};
use crate::error::{AnalyzeError, Result};

/// The corruption name of the clean faces (severity 0).
pub const CLEAN: &str = "none";

/// The metrics of one (arch, method, corruption, severity).
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftRow {
    pub arch: Arch,
    pub method: Method,
    pub corruption: String,
    /// 0 (the clean faces) to 5.
    pub severity: u8,
    /// Faces with a majority label in the group.
    pub faces: usize,
    pub error: f64,
    pub nll: f64,
    pub ece: f64,
    /// Mean predictive entropy H[p̄], nats.
    pub entropy: f64,
    /// Mean mutual information, nats.
    pub mutual_information: f64,
}

impl ShiftRow {
    /// The metric called `name` (`error`, `nll`, `ece`, `entropy`, `mutual_information`).
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "error" => Some(self.error),
            "nll" => Some(self.nll),
            "ece" => Some(self.ece),
            "entropy" => Some(self.entropy),
            "mutual_information" => Some(self.mutual_information),
            _ => None,
        }
    }
}

/// The metric columns of [`ShiftRow`], in table order.
pub const METRICS: [&str; 5] = ["error", "nll", "ece", "entropy", "mutual_information"];

/// The rows of one (arch, method): `shift` holds the predictions of
/// `infer/<arch>/<method>/shift.parquet`, `labels` the majority label of every row of
/// `ingest/shift.parquet`. Corruptions in order of first appearance, each with severity 0 (the
/// clean faces, when there are any) and its severities ascending. A row whose key is not in
/// `labels` is an error (the ingest table changed since inference).
pub fn shift_rows(
    arch: Arch,
    method: Method,
    shift: &KeyedSamples<ShiftKey>,
    labels: &HashMap<ShiftKey, Option<u8>>,
    bins: usize,
) -> Result<Vec<ShiftRow>> {
    let u = face_splits(&shift.samples.all());
    let entropy: Vec<f64> = u.iter().map(|f| f.entropy).collect();
    let mutual_information: Vec<f64> = u.iter().map(|f| f.epistemic).collect();
    let mut clean: Vec<usize> = Vec::new();
    let mut order: Vec<&str> = Vec::new();
    let mut groups: HashMap<&str, BTreeMap<u8, Vec<usize>>> = HashMap::new();
    for (i, key) in shift.keys.iter().enumerate() {
        let label = labels.get(key).ok_or_else(|| AnalyzeError::Inference {
            path: shift.samples.path.clone(),
            message: format!(
                "{} ({} {}) is not in ingest/shift.parquet (the ingest tables changed since inference)",
                key.image, key.corruption, key.severity
            ),
        })?;
        if label.is_none() {
            continue;
        }
        if key.severity == 0 {
            clean.push(i);
            continue;
        }
        let c = key.corruption.as_str();
        if !groups.contains_key(c) {
            order.push(c);
        }
        groups
            .entry(c)
            .or_default()
            .entry(key.severity)
            .or_default()
            .push(i);
    }
    let metrics = |corruption: &str, severity: u8, faces: &[usize]| {
        let probs: Vec<[f32; NUM_CLASSES]> = faces.iter().map(|&i| u[i].probs).collect();
        let ys: Vec<u8> = faces
            .iter()
            .filter_map(|&i| labels.get(&shift.keys[i]).copied().flatten())
            .collect();
        let mean = |v: &[f64]| {
            if faces.is_empty() {
                f64::NAN
            } else {
                faces.iter().map(|&i| v[i]).sum::<f64>() / faces.len() as f64
            }
        };
        ShiftRow {
            arch,
            method,
            corruption: corruption.to_owned(),
            severity,
            faces: faces.len(),
            error: error(&probs, &ys),
            nll: nll(&probs, &ys),
            ece: ece(&probs, &ys, bins),
            entropy: mean(&entropy),
            mutual_information: mean(&mutual_information),
        }
    };
    let mut rows = Vec::new();
    for c in order {
        if !clean.is_empty() {
            rows.push(metrics(c, 0, &clean));
        }
        for (&severity, faces) in &groups[c] {
            rows.push(metrics(c, severity, faces));
        }
    }
    Ok(rows)
}

/// The mean over corruptions of each metric, per (arch, method, severity), in row order of the
/// first appearance of each (arch, method) and severity ascending.
pub fn mean_over_corruptions(rows: &[ShiftRow]) -> Vec<(Arch, Method, u8, [f64; 5])> {
    let mut out: Vec<(Arch, Method, u8, [f64; 5])> = Vec::new();
    let mut combos: Vec<(Arch, Method)> = Vec::new();
    for r in rows {
        if !combos.contains(&(r.arch, r.method)) {
            combos.push((r.arch, r.method));
        }
    }
    for (arch, method) in combos {
        let mut by_severity: BTreeMap<u8, Vec<&ShiftRow>> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.arch == arch && r.method == method) {
            by_severity.entry(r.severity).or_default().push(r);
        }
        for (severity, list) in by_severity {
            let means = METRICS.map(|m| {
                let vals: Vec<f64> = list
                    .iter()
                    .filter_map(|r| r.get(m))
                    .filter(|v| !v.is_nan())
                    .collect();
                if vals.is_empty() {
                    f64::NAN
                } else {
                    vals.iter().sum::<f64>() / vals.len() as f64
                }
            });
            out.push((arch, method, severity, means));
        }
    }
    out
}

fn nullable(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// The rows of `shift.parquet` (NaN as null).
pub fn shift_batch(rows: &[ShiftRow], path: &Path) -> Result<RecordBatch> {
    let rows = rows
        .iter()
        .map(|r| {
            Ok(ShiftMetricsRow {
                arch: r.arch,
                method: r.method,
                corruption: r.corruption.clone(),
                severity: r.severity,
                faces: u32::try_from(r.faces).map_err(|e| AnalyzeError::Output {
                    path: path.to_owned(),
                    message: format!("face count does not fit u32: {e}"),
                })?,
                error: nullable(r.error),
                nll: nullable(r.nll),
                ece: nullable(r.ece),
                entropy: nullable(r.entropy),
                mutual_information: nullable(r.mutual_information),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ferbayes_core::io::rows_batch(path, &rows)?)
}
