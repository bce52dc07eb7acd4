//! "Calibration against the crowd": does ECE rise with n because the predictions become more
//! crowd-like, and does the rise survive temperature scaling? Answered from the test curves and
//! `temperature.parquet`, with the tables of the crowd metrics and the conformal sets.

use ferbayes_core::schema::SHOWN_ALPHA;
use ferbayes_core::{Arch, Method};

use crate::FigureEntry;
use crate::curves::Curve;
use crate::output::fmt4;
use crate::posthoc::{ConformalRow, PostHoc, TemperatureRow};

use super::{Block, figures_of, strings};

/// One test combination between n = 1 and n = T.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CrowdChange {
    pub arch: Arch,
    pub method: Method,
    /// ECE(T) − ECE(1).
    pub d_ece: f64,
    /// crowd ECE(T) − crowd ECE(1).
    pub d_crowd_ece: f64,
    /// ECE after temperature scaling, T(n) fitted per n: ECE_T(T) − ECE_T(1) (NaN without
    /// temperature rows).
    pub d_ece_scaled: f64,
}

/// The answers to the two questions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CrowdAnswers {
    pub changes: Vec<CrowdChange>,
    /// Combinations whose ECE rises.
    pub ece_rises: usize,
    /// Of those, the ones whose crowd ECE falls.
    pub crowd_falls_when_ece_rises: usize,
    /// Combinations whose ECE rises after temperature scaling (of those with temperature rows).
    pub scaled_rises: usize,
    /// Combinations with temperature rows.
    pub scaled_total: usize,
}

fn temperature_at(
    rows: &[TemperatureRow],
    arch: Arch,
    method: Method,
    n: usize,
) -> Option<&TemperatureRow> {
    rows.iter()
        .find(|r| r.arch == arch && r.method == method && r.n == n)
}

/// The answers from the test curves (more than one sample) and the temperature rows.
pub(crate) fn answers(test: &[&Curve], temperature: &[TemperatureRow]) -> CrowdAnswers {
    let changes: Vec<CrowdChange> = test
        .iter()
        .filter(|c| c.samples > 1)
        .filter_map(|c| {
            let (first, last) = (c.at(1)?, c.at(c.samples)?);
            let scaled = |n| temperature_at(temperature, c.arch, c.method, n).map(|r| r.after[2]);
            let d_ece_scaled = match (scaled(1), scaled(c.samples)) {
                (Some(a), Some(b)) => b - a,
                _ => f64::NAN,
            };
            Some(CrowdChange {
                arch: c.arch,
                method: c.method,
                d_ece: last.ece - first.ece,
                d_crowd_ece: last.crowd_ece - first.crowd_ece,
                d_ece_scaled,
            })
        })
        .collect();
    let rising: Vec<&CrowdChange> = changes.iter().filter(|c| c.d_ece > 0.0).collect();
    let scaled: Vec<&CrowdChange> = changes
        .iter()
        .filter(|c| !c.d_ece_scaled.is_nan())
        .collect();
    CrowdAnswers {
        ece_rises: rising.len(),
        crowd_falls_when_ece_rises: rising.iter().filter(|c| c.d_crowd_ece < 0.0).count(),
        scaled_rises: scaled.iter().filter(|c| c.d_ece_scaled > 0.0).count(),
        scaled_total: scaled.len(),
        changes,
    }
}

impl CrowdAnswers {
    /// (a): whether ECE rises because the predictions get more crowd-like.
    pub fn answer_crowd_like(&self) -> String {
        let total = self.changes.len();
        let (k, j) = (self.ece_rises, self.crowd_falls_when_ece_rises);
        let mean = |f: fn(&CrowdChange) -> f64| {
            self.changes.iter().map(f).sum::<f64>() / total.max(1) as f64
        };
        let verdict = if k == 0 {
            "no: ECE does not rise here"
        } else if 2 * j > k {
            "yes, mostly"
        } else {
            "no, mostly not"
        };
        format!(
            "Does ECE rise with n because the predictions become more crowd-like (crowd ECE falls)? {verdict}: ECE rises from n = 1 to n = T for {k} of {total} combinations, and crowd ECE falls for {j} of those {k}; mean ΔECE {:+.4}, mean Δ crowd ECE {:+.4}.",
            mean(|c| c.d_ece),
            mean(|c| c.d_crowd_ece)
        )
    }

    /// (b): whether the rise survives temperature scaling.
    pub fn answer_scaling(&self) -> String {
        let (k, total) = (self.scaled_rises, self.scaled_total);
        if total == 0 {
            return "Does the rise of ECE with n survive temperature scaling? Not measured: no combination has both splits.".into();
        }
        let verdict = if 2 * k > total { "yes" } else { "no" };
        let mean = self
            .changes
            .iter()
            .filter(|c| !c.d_ece_scaled.is_nan())
            .map(|c| c.d_ece_scaled)
            .sum::<f64>()
            / total as f64;
        format!(
            "Does the rise of ECE with n survive temperature scaling (one T per n, fitted on valid)? {verdict}: after scaling, ECE still rises from n = 1 to n = T for {k} of {total} combinations (before: {} of {}); mean ΔECE after scaling {mean:+.4}.",
            self.ece_rises,
            self.changes.len()
        )
    }
}

fn row_at(rows: &[ConformalRow], arch: Arch, method: Method, n: usize) -> Option<&ConformalRow> {
    rows.iter().find(|r| {
        r.arch == arch && r.method == method && r.n == n && (r.alpha - SHOWN_ALPHA).abs() < 1e-12
    })
}

/// The section: the answers, the crowd metrics, temperature scaling, conformal sets, figures.
pub(crate) fn section(
    test: &[&Curve],
    posthoc: &PostHoc,
    answers: &CrowdAnswers,
    figures: &[FigureEntry],
    doc: &mut Vec<Block>,
) {
    doc.push(Block::Heading("Calibration against the crowd".into()));
    doc.push(Block::Paragraph(
        "ECE asks whether a confidence of 0.7 is right 70 % of the time against the majority label. Crowd ECE asks instead whether it matches the crowd: per confidence bin, the mean confidence against the mean share of the ten FER+ votes on the predicted class; crowd classwise ECE does the same for every class's probability against the crowd's share of that class. Both over the test faces with a majority label, with the ECE bins.".into(),
    ));
    doc.push(Block::List(vec![
        answers.answer_crowd_like(),
        answers.answer_scaling(),
    ]));
    let mut rows = Vec::new();
    for (c, ch) in test.iter().filter(|c| c.samples > 1).zip(&answers.changes) {
        let (Some(first), Some(last)) = (c.at(1), c.at(c.samples)) else {
            continue;
        };
        rows.push(vec![
            format!("{}/{}", c.arch, c.method),
            fmt4(first.ece),
            fmt4(last.ece),
            fmt4(first.crowd_ece),
            fmt4(last.crowd_ece),
            fmt4(last.crowd_cw_ece),
            if ch.d_ece_scaled.is_nan() {
                "-".to_owned()
            } else {
                format!("{:+.4}", ch.d_ece_scaled)
            },
        ]);
    }
    doc.push(Block::Table {
        header: strings([
            "arch/method",
            "ECE n=1",
            "ECE n=T",
            "crowd ECE n=1",
            "crowd ECE n=T",
            "crowd cw-ECE n=T",
            "Δ ECE after scaling",
        ]),
        rows,
    });
    temperature_table(test, &posthoc.temperature, doc);
    conformal_table(test, &posthoc.conformal, doc);
    figures_of(figures, doc);
}

fn temperature_table(test: &[&Curve], rows: &[TemperatureRow], doc: &mut Vec<Block>) {
    doc.push(Block::Paragraph(
        "Temperature scaling at n = T (`temperature.parquet` has every n): T fitted on the valid split by minimum NLL, the test metrics before → after. The error cannot change (dividing log-probabilities by T keeps their order).".into(),
    ));
    let ba = |r: &TemperatureRow, j: usize| format!("{} → {}", fmt4(r.before[j]), fmt4(r.after[j]));
    let table = test
        .iter()
        .filter_map(|c| temperature_at(rows, c.arch, c.method, c.samples))
        .map(|r| {
            vec![
                format!("{}/{}", r.arch, r.method),
                fmt4(r.temperature),
                fmt4(r.before[0]),
                ba(r, 1),
                ba(r, 2),
                ba(r, 3),
                ba(r, 4),
            ]
        })
        .collect();
    doc.push(Block::Table {
        header: strings([
            "arch/method",
            "T",
            "error",
            "NLL",
            "ECE",
            "crowd ECE",
            "JSD (bits)",
        ]),
        rows: table,
    });
}

fn conformal_table(test: &[&Curve], rows: &[ConformalRow], doc: &mut Vec<Block>) {
    doc.push(Block::Paragraph(format!(
        "Split-conformal prediction sets at α = {SHOWN_ALPHA} and n = T (`conformal.parquet` has α ∈ {{0.05, 0.1, 0.2}} and every n): score 1 − p̄[y] calibrated on the valid split, set C = {{k : 1 − p̄[k] ≤ q̂}}. Coverage of the majority label, mean |C|, and against the crowd's label set M (FER+ `multi_target`): recall |C ∩ M| / |M|, precision |C ∩ M| / |C|, exact match C = M, and the Spearman correlation of |C| with the crowd's vote entropy."
    )));
    let table = test
        .iter()
        .filter_map(|c| row_at(rows, c.arch, c.method, c.samples))
        .map(|r| {
            let m = &r.metrics;
            vec![
                format!("{}/{}", r.arch, r.method),
                fmt4(r.qhat),
                fmt4(m.coverage),
                fmt4(m.set_size),
                fmt4(m.crowd_recall),
                fmt4(m.crowd_precision),
                fmt4(m.crowd_exact),
                fmt4(m.size_entropy_spearman),
            ]
        })
        .collect();
    doc.push(Block::Table {
        header: strings([
            "arch/method",
            "q̂",
            "coverage",
            "set size",
            "crowd recall",
            "crowd precision",
            "exact match",
            "Spearman(|C|, crowd H)",
        ]),
        rows: table,
    });
}
