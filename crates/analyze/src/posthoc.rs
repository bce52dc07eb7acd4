//! Calibration against the crowd beyond `metrics.parquet`: temperature scaling
//! ([`ferbayes_uq::temperature`]) and split-conformal prediction sets ([`ferbayes_uq::conformal`]) for every
//! arch × method × n = 1..T, fitted on the valid split's labelled faces and judged on the test
//! split's; `analyze/temperature.parquet`, `analyze/conformal.parquet`, and the data of the crowd
//! figures (crowd reliability at n = T, set size by crowd-entropy decile at α = `SHOWN_ALPHA`).
//!
//! The faces are those of the other metrics: the ones with a majority label.

use std::path::Path;

use arrow_array::RecordBatch;
use ferbayes_core::schema::{CONFORMAL_ALPHAS, SHOWN_ALPHA, rows};
use ferbayes_core::{Arch, Method, NUM_CLASSES, Split};
use ferbayes_uq::calibration::{self, Bin};
use ferbayes_uq::conformal::{self, SetFace, SetMetrics};
use ferbayes_uq::temperature::{fit_temperature, temper_all};
use ferbayes_uq::{mean_prediction, predict};
use rayon::prelude::*;

use crate::InputView;
use crate::data::{Faces, Samples};
use crate::error::{AnalyzeError, Result};
use crate::metrics::Metrics;

/// Crowd-entropy deciles of the set-size figure.
pub const DECILES: usize = 10;

/// One row of `analyze/temperature.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct TemperatureRow {
    pub arch: Arch,
    pub method: Method,
    pub n: usize,
    /// The fitted T (NaN without labelled valid faces).
    pub temperature: f64,
    /// Test metrics without T, in `schema::TEMPERATURE_METRICS` order.
    pub before: [f64; 5],
    /// Test metrics with T.
    pub after: [f64; 5],
}

/// One row of `analyze/conformal.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConformalRow {
    pub arch: Arch,
    pub method: Method,
    pub n: usize,
    pub alpha: f64,
    pub qhat: f64,
    pub metrics: SetMetrics,
}

/// What the crowd figures of one (arch, method) show, at n = T on the test split.
#[derive(Debug, Clone)]
pub struct CrowdDiagram {
    pub arch: Arch,
    pub method: Method,
    /// Confidence bins with the majority label's hit rate (the usual reliability diagram).
    pub majority: Vec<Bin>,
    /// The same bins with the mean crowd agreement c\[ŷ\] as `accuracy`.
    pub crowd: Vec<Bin>,
    /// (decile 1..10 of the crowd entropy, mean |C| at α = `SHOWN_ALPHA`).
    pub set_size_by_decile: Vec<(f64, f64)>,
}

/// Everything this module computes.
#[derive(Debug, Clone, Default)]
pub struct PostHoc {
    pub temperature: Vec<TemperatureRow>,
    pub conformal: Vec<ConformalRow>,
    pub diagrams: Vec<CrowdDiagram>,
}

fn pick(m: &Metrics) -> [f64; 5] {
    [m.error, m.nll, m.ece, m.crowd_ece, m.jsd]
}

/// The labelled faces of a split: (index, label).
fn labelled(faces: &Faces) -> Vec<(usize, u8)> {
    faces
        .evaluator
        .majority()
        .iter()
        .enumerate()
        .filter_map(|(i, y)| y.map(|y| (i, y)))
        .collect()
}

/// The prediction of the first n samples of `samples`.
fn prediction_at(samples: &Samples, n: usize) -> Vec<[f32; NUM_CLASSES]> {
    let all = samples.all();
    mean_prediction(&all[..n.min(all.len())])
}

/// The test faces of [`conformal::set_metrics`] under threshold `qhat`.
fn set_faces(
    test: &Faces,
    labelled: &[(usize, u8)],
    pbar: &[[f32; NUM_CLASSES]],
    qhat: f64,
) -> Vec<SetFace> {
    let entropy = test.evaluator.crowd_entropy();
    labelled
        .iter()
        .map(|&(i, y)| SetFace {
            set: conformal::prediction_set(&pbar[i], qhat),
            label: usize::from(y),
            crowd_set: test.multi_target.get(i).copied().unwrap_or(0),
            crowd_entropy: entropy[i].map_or(f64::NAN, f64::from),
        })
        .collect()
}

/// Mean set size per decile of the crowd entropy (faces sorted by entropy, split into ten
/// near-equal groups; deciles without faces are left out).
pub fn set_size_by_decile(faces: &[SetFace]) -> Vec<(f64, f64)> {
    let mut known: Vec<&SetFace> = faces.iter().filter(|f| !f.crowd_entropy.is_nan()).collect();
    known.sort_by(|a, b| a.crowd_entropy.total_cmp(&b.crowd_entropy));
    let len = known.len();
    (0..DECILES)
        .filter_map(|d| {
            let group = &known[d * len / DECILES..(d + 1) * len / DECILES];
            (!group.is_empty()).then(|| {
                let sum: f64 = group.iter().map(|f| f64::from(f.set.count_ones())).sum();
                ((d + 1) as f64, sum / group.len() as f64)
            })
        })
        .collect()
}

/// One (arch, method) with both splits.
struct Pair<'a> {
    arch: Arch,
    method: Method,
    valid: &'a Samples,
    test: &'a Samples,
}

/// The rows of one (arch, method) at one n.
fn at_n(
    pair: &Pair<'_>,
    n: usize,
    valid_labelled: &[(usize, u8)],
    test: (&Faces, &[(usize, u8)]),
) -> (TemperatureRow, Vec<ConformalRow>, Vec<SetFace>) {
    let (test_faces, test_labelled) = test;
    let vp = prediction_at(pair.valid, n);
    let tp = prediction_at(pair.test, n);
    let cal: Vec<[f32; NUM_CLASSES]> = valid_labelled.iter().map(|&(i, _)| vp[i]).collect();
    let cal_labels: Vec<u8> = valid_labelled.iter().map(|&(_, y)| y).collect();
    let t = fit_temperature(&cal, &cal_labels);
    let ev = &test_faces.evaluator;
    let before = pick(&ev.evaluate(&tp, f64::NAN));
    let after = if t.is_nan() {
        [f64::NAN; 5]
    } else {
        pick(&ev.evaluate(&temper_all(&tp, t), f64::NAN))
    };
    let scores: Vec<f64> = cal
        .iter()
        .zip(&cal_labels)
        .map(|(p, &y)| conformal::score(p, usize::from(y)))
        .collect();
    let mut shown = Vec::new();
    let conformal_rows = CONFORMAL_ALPHAS
        .iter()
        .map(|&alpha| {
            let qhat = conformal::qhat(&scores, alpha);
            let faces = set_faces(test_faces, test_labelled, &tp, qhat);
            let metrics = conformal::set_metrics(&faces);
            if alpha == SHOWN_ALPHA {
                shown = faces;
            }
            ConformalRow {
                arch: pair.arch,
                method: pair.method,
                n,
                alpha,
                qhat,
                metrics,
            }
        })
        .collect();
    let temperature = TemperatureRow {
        arch: pair.arch,
        method: pair.method,
        n,
        temperature: t,
        before,
        after,
    };
    (temperature, conformal_rows, shown)
}

/// The crowd diagram of a prediction on the test faces.
fn diagram(
    pair: &Pair<'_>,
    test: &Faces,
    pbar: &[[f32; NUM_CLASSES]],
    shown: &[SetFace],
    bins: usize,
) -> CrowdDiagram {
    let ev = &test.evaluator;
    let (mut conf, mut agree, mut probs, mut labels) = (vec![], vec![], vec![], vec![]);
    for (i, p) in pbar.iter().enumerate() {
        let (Some(y), Some(c)) = (ev.majority()[i], ev.crowd()[i]) else {
            continue;
        };
        let (pred, confidence) = predict(p);
        conf.push(confidence);
        agree.push(f64::from(c[pred]));
        probs.push(*p);
        labels.push(y);
    }
    CrowdDiagram {
        arch: pair.arch,
        method: pair.method,
        majority: calibration::reliability(&probs, &labels, bins),
        crowd: calibration::crowd_reliability(&conf, &agree, bins),
        set_size_by_decile: set_size_by_decile(shown),
    }
}

/// Temperature scaling and conformal sets of every (arch, method) analysed on both splits.
pub(crate) fn compute(
    inputs: &[InputView<'_>],
    valid: Option<&Faces>,
    test: Option<&Faces>,
    bins: usize,
) -> PostHoc {
    let (Some(valid), Some(test)) = (valid, test) else {
        return PostHoc::default();
    };
    let pairs: Vec<Pair<'_>> = inputs
        .iter()
        .filter(|i| i.split == Split::Test)
        .filter_map(|t| {
            let v = inputs
                .iter()
                .find(|v| v.split == Split::Valid && v.arch == t.arch && v.method == t.method)?;
            Some(Pair {
                arch: t.arch,
                method: t.method,
                valid: v.samples,
                test: t.samples,
            })
        })
        .collect();
    let (vl, tl) = (labelled(valid), labelled(test));
    let tasks: Vec<(usize, usize)> = pairs
        .iter()
        .enumerate()
        .flat_map(|(p, pair)| (1..=pair.test.count.min(pair.valid.count)).map(move |n| (p, n)))
        .collect();
    let done: Vec<_> = tasks
        .par_iter()
        .map(|&(p, n)| at_n(&pairs[p], n, &vl, (test, &tl)))
        .collect();
    let mut out = PostHoc::default();
    for (&(p, n), (t, c, shown)) in tasks.iter().zip(done) {
        let pair = &pairs[p];
        if n == pair.test.count.min(pair.valid.count) {
            let pbar = prediction_at(pair.test, n);
            out.diagrams.push(diagram(pair, test, &pbar, &shown, bins));
        }
        out.temperature.push(t);
        out.conformal.extend(c);
    }
    out
}

fn nullable(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

fn n_u16(n: usize, path: &Path) -> Result<u16> {
    u16::try_from(n).map_err(|_| AnalyzeError::Output {
        path: path.to_owned(),
        message: format!("{n} samples do not fit the u16 column `n`"),
    })
}

/// The rows of `temperature.parquet` (schema
/// [`ferbayes_core::schema::analyze_temperature`]), NaN as null.
pub fn temperature_batch(rows: &[TemperatureRow], path: &Path) -> Result<RecordBatch> {
    let rows = rows
        .iter()
        .map(|r| {
            Ok(rows::TemperatureRow {
                arch: r.arch,
                method: r.method,
                n: n_u16(r.n, path)?,
                temperature: nullable(r.temperature),
                before: r.before.map(nullable),
                after: r.after.map(nullable),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ferbayes_core::io::rows_batch(path, &rows)?)
}

/// The rows of `conformal.parquet` (schema [`ferbayes_core::schema::analyze_conformal`]), NaN
/// as null.
pub fn conformal_batch(rows: &[ConformalRow], path: &Path) -> Result<RecordBatch> {
    let rows = rows
        .iter()
        .map(|r| {
            let m = &r.metrics;
            Ok(rows::ConformalRow {
                arch: r.arch,
                method: r.method,
                n: n_u16(r.n, path)?,
                alpha: r.alpha,
                qhat: r.qhat,
                coverage: nullable(m.coverage),
                set_size: nullable(m.set_size),
                crowd_recall: nullable(m.crowd_recall),
                crowd_precision: nullable(m.crowd_precision),
                crowd_exact: nullable(m.crowd_exact),
                size_entropy_spearman: nullable(m.size_entropy_spearman),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ferbayes_core::io::rows_batch(path, &rows)?)
}
