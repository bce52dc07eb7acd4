//! The study's claims against this run's numbers.

use crate::curves::Curve;

use super::{Block, strings};

/// How one test combination changes from n = 1 to n = T (index order).
struct Change {
    name: String,
    arch: ferbayes_core::Arch,
    method: ferbayes_core::Method,
    d_error: f64,
    best_gain: f64,
    d_ece: f64,
    d_jsd: f64,
    d_soft: f64,
}

/// The study's claims as measured on the test split: rows of (claim, measured, verdict), and
/// the per-combination changes behind them.
pub(super) struct Claims {
    pub rows: Vec<Vec<String>>,
    changes: Vec<Change>,
}

fn pp(x: f64) -> String {
    format!("{:+.2} pp", 100.0 * x)
}

/// The claims of the curves of more than one sample; None when there are none.
pub(super) fn claims(test: &[&Curve]) -> Option<Claims> {
    let changes: Vec<Change> = test
        .iter()
        .filter(|c| c.samples > 1)
        .filter_map(|c| {
            let (first, last) = (c.at(1)?, c.at(c.samples)?);
            let best = c.at(c.best_accuracy_n())?;
            Some(Change {
                name: format!("{}/{}", c.arch, c.method),
                arch: c.arch,
                method: c.method,
                d_error: last.error - first.error,
                best_gain: first.error - best.error,
                d_ece: last.ece - first.ece,
                d_jsd: last.jsd - first.jsd,
                d_soft: last.soft_accuracy - first.soft_accuracy,
            })
        })
        .collect();
    if changes.is_empty() {
        return None;
    }
    Some(Claims {
        rows: claim_rows(&changes),
        changes,
    })
}

/// The verdict of each claim over `changes`.
fn claim_rows(changes: &[Change]) -> Vec<Vec<String>> {
    let count = |f: &dyn Fn(&Change) -> bool| changes.iter().filter(|c| f(c)).count();
    let total = changes.len();
    let verdict = |k: usize| {
        if 2 * k > total {
            format!("supported ({k} of {total} combinations)")
        } else if k > 0 {
            format!("not supported ({k} of {total} combinations agree)")
        } else {
            format!("not supported (0 of {total})")
        }
    };
    let largest = changes
        .iter()
        .min_by(|a, b| a.d_error.total_cmp(&b.d_error))
        .map(|c| (c.name.clone(), c.arch, c.method, c.d_error));
    let mut rows = Vec::new();
    let falls = count(&|c| c.d_error < 0.0);
    rows.push(vec![
        "Error falls as n grows".to_owned(),
        format!(
            "error(n = T) − error(n = 1) < 0 for {falls} of {total}; mean {}",
            pp(changes.iter().map(|c| c.d_error).sum::<f64>() / total as f64)
        ),
        verdict(falls),
    ]);
    if let Some((name, arch, method, d)) = largest {
        let is_dense_ensemble =
            arch == ferbayes_core::Arch::DenseNet121 && method == ferbayes_core::Method::Ensemble;
        rows.push(vec![
            "… most for DenseNet ensembles".to_owned(),
            format!("largest fall: {name} ({})", pp(d)),
            if is_dense_ensemble {
                "supported".into()
            } else {
                "not supported".into()
            },
        ]);
    }
    let rises = count(&|c| c.d_ece > 0.0);
    rows.push(vec![
        "ECE rises with n".to_owned(),
        format!(
            "ECE(n = T) − ECE(n = 1) > 0 for {rises} of {total}; mean {:+.4}",
            changes.iter().map(|c| c.d_ece).sum::<f64>() / total as f64
        ),
        verdict(rises),
    ]);
    let gains = count(&|c| c.best_gain >= 0.02);
    rows.push(vec![
        "+2–4 % accuracy over a single member / pass".to_owned(),
        format!(
            "gain at the best n ≥ 2 pp for {gains} of {total}; range {} to {}",
            pp(changes
                .iter()
                .map(|c| c.best_gain)
                .fold(f64::INFINITY, f64::min)),
            pp(changes
                .iter()
                .map(|c| c.best_gain)
                .fold(f64::NEG_INFINITY, f64::max))
        ),
        verdict(gains),
    ]);
    let closer = count(&|c| c.d_jsd < 0.0);
    rows.push(vec![
        "Probabilities closer to what humans vote (never measured by the study)".to_owned(),
        format!(
            "JSD to the crowd falls from n = 1 to n = T for {closer} of {total}; mean ΔJSD {:+.4} bits, mean Δ soft accuracy {}",
            changes.iter().map(|c| c.d_jsd).sum::<f64>() / total as f64,
            pp(changes.iter().map(|c| c.d_soft).sum::<f64>() / total as f64)
        ),
        verdict(closer),
    ]);
    rows
}

/// The claims section: the verdicts and the per-combination changes.
pub(super) fn claims_section(claims: &Claims, doc: &mut Vec<Block>) {
    doc.push(Block::Heading(
        "The study's claims, as measured here (test)".into(),
    ));
    doc.push(Block::Paragraph(
        "Each claim compared between one sample (n = 1) and all T samples, per architecture × method, in member index order; a claim counts as supported when more than half of the combinations agree. A claim that does not reproduce is a result too.".into(),
    ));
    doc.push(Block::Table {
        header: strings(["claim", "measured", "verdict"]),
        rows: claims.rows.clone(),
    });
    doc.push(Block::Table {
        header: strings([
            "arch/method",
            "Δ error (n=T − n=1)",
            "gain at best n",
            "Δ ECE",
            "Δ JSD (bits)",
            "Δ soft acc",
        ]),
        rows: claims
            .changes
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    pp(c.d_error),
                    pp(c.best_gain),
                    format!("{:+.4}", c.d_ece),
                    format!("{:+.4}", c.d_jsd),
                    pp(c.d_soft),
                ]
            })
            .collect(),
    });
}
