//! `report.html` and `report.md`: one document model rendered twice.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ferbayes_core::io::write_atomic;
use ferbayes_core::{Layout, Settings, Split};

use crate::curves::Curve;
use crate::data::Faces;
use crate::error::Result;
use crate::extras::Extras;
use crate::output::{fmt4, shown_for};
use crate::{FigureEntry, InputView};

/// What the report is made of.
pub struct Context<'a> {
    pub layout: &'a Layout,
    pub settings: &'a Settings,
    pub curves: &'a [Curve],
    pub figures: &'a [FigureEntry],
    pub missing: &'a [PathBuf],
    pub faces: &'a BTreeMap<Split, Faces>,
    pub inputs: &'a [InputView<'a>],
    /// The analyses beyond the study (selective prediction, shift, OOD, soft labels).
    pub extras: &'a Extras,
}

enum Block {
    Heading(String),
    Paragraph(String),
    List(Vec<String>),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    Figure {
        src: String,
        caption: String,
    },
}

fn strings<const N: usize>(items: [&str; N]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn list_of<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn relative(layout: &Layout, path: &Path) -> String {
    path.strip_prefix(layout.profile_dir())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn document(ctx: &Context<'_>) -> Vec<Block> {
    let s = ctx.settings;
    let a = &s.analyze;
    let mut doc = Vec::new();

    doc.push(Block::Paragraph(format!(
        "Accuracy, calibration and uncertainty of each architecture × uncertainty method as a function of the number of samples n (MC passes or ensemble members), profile `{}`, following Matin & Valdenegro-Toro, \"Hey Human, If your Facial Emotions are Uncertain, You Should Use Bayesian Neural Networks!\", on FER+. Every number here is in `metrics.parquet` (one row per arch, method, split, n).",
        ctx.layout.profile()
    )));

    doc.push(Block::Heading("Settings".into()));
    let max_per_split = s
        .ingest
        .max_per_split
        .map_or_else(|| "all faces".to_owned(), |n| n.to_string());
    let mut rows = vec![
        vec!["profile".into(), ctx.layout.profile().to_owned()],
        vec!["seed".into(), s.seed.to_string()],
        vec!["architectures".into(), list_of(&s.train.archs)],
        vec!["methods".into(), list_of(&s.train.methods)],
        vec![
            "MC samples T (infer.samples)".into(),
            s.infer.samples.to_string(),
        ],
        vec![
            "ensemble members N".into(),
            s.train.ensemble_members.to_string(),
        ],
        vec!["label mode".into(), s.train.label_mode.to_string()],
        vec!["ingest max_per_split".into(), max_per_split],
        vec!["ECE bins".into(), a.ece_bins.to_string()],
        vec!["ensemble orderings".into(), a.orderings.to_string()],
        vec![
            "most uncertain faces shown".into(),
            a.top_uncertain.to_string(),
        ],
        vec!["n shown".into(), list_of(&a.shown_n)],
    ];
    for (split, faces) in ctx.faces {
        let ev = &faces.evaluator;
        let labelled = ev.majority().iter().filter(|y| y.is_some()).count();
        let crowd = ev.crowd().iter().filter(|c| c.is_some()).count();
        rows.push(vec![
            format!("{split} faces"),
            format!(
                "{} ({labelled} with a majority label, {crowd} with a crowd distribution)",
                faces.len()
            ),
        ]);
    }
    doc.push(Block::Table {
        header: strings(["setting", "value"]),
        rows,
    });

    doc.push(Block::Heading("Inputs".into()));
    let mut items: Vec<String> = ctx
        .inputs
        .iter()
        .map(|i| {
            format!(
                "`{}`: {}/{} on {}, T = {}",
                relative(ctx.layout, i.path),
                i.arch,
                i.method,
                i.split,
                i.samples.count
            )
        })
        .collect();
    items.extend(
        ctx.extras
            .read
            .iter()
            .map(|p| format!("`{}`: beyond the study", relative(ctx.layout, p))),
    );
    let ingest = ctx.layout.stage_dir(ferbayes_core::Stage::Ingest);
    items.extend(ctx.missing.iter().map(|p| {
        format!(
            "`{}`: missing, skipped (run `just {}`)",
            relative(ctx.layout, p),
            if p.starts_with(&ingest) {
                "ingest"
            } else {
                "infer"
            }
        )
    }));
    doc.push(Block::List(items));

    let test: Vec<&Curve> = ctx
        .curves
        .iter()
        .filter(|c| c.split == Split::Test)
        .collect();
    doc.push(Block::Heading("Test split".into()));
    doc.push(Block::Paragraph(
        "Error, NLL, ECE, Brier and the uncertainties are over the faces with a majority label; JSD (bits), soft accuracy and the entropy correlation (Pearson r between predictive entropy and crowd-vote entropy) against the crowd distribution. Entropy = predictive entropy H[p̄], aleatoric = mean entropy of the samples, epistemic = their difference (mutual information), all in nats. Ensembles in member index order.".into(),
    ));
    let mut rows = Vec::new();
    for c in &test {
        for n in shown_for(&a.shown_n, c.samples) {
            if let Some(m) = c.at(n) {
                rows.push(vec![
                    c.arch.to_string(),
                    c.method.to_string(),
                    n.to_string(),
                    fmt4(m.error),
                    fmt4(m.nll),
                    fmt4(m.ece),
                    fmt4(m.brier),
                    fmt4(m.jsd),
                    fmt4(m.soft_accuracy),
                    fmt4(m.entropy),
                    fmt4(m.aleatoric),
                    fmt4(m.epistemic),
                    fmt4(m.entropy_corr),
                ]);
            }
        }
    }
    doc.push(Block::Table {
        header: strings([
            "arch",
            "method",
            "n",
            "error",
            "NLL",
            "ECE",
            "Brier",
            "JSD",
            "soft acc",
            "entropy",
            "aleatoric",
            "epistemic",
            "entropy corr",
        ]),
        rows,
    });

    let ensembles: Vec<&&Curve> = test.iter().filter(|c| c.orderings > 0).collect();
    if !ensembles.is_empty() {
        doc.push(Block::Heading("Ensemble member orderings (test)".into()));
        doc.push(Block::Paragraph(format!(
            "Mean ± standard deviation over {} random member orderings (the `_std` columns of metrics.parquet hold the std; at n = N every ordering averages the same members).",
            a.orderings
        )));
        let pm = |m: f64, s: f64| format!("{} ± {}", fmt4(m), fmt4(s));
        let mut rows = Vec::new();
        for c in ensembles {
            for n in shown_for(&a.shown_n, c.samples) {
                let (Some(m), Some(sd)) = (c.ordering_mean.get(n - 1), c.ordering_std.get(n - 1))
                else {
                    continue;
                };
                rows.push(vec![
                    c.arch.to_string(),
                    n.to_string(),
                    pm(m.error, sd.error),
                    pm(m.nll, sd.nll),
                    pm(m.ece, sd.ece),
                    pm(m.brier, sd.brier),
                    pm(m.jsd, sd.jsd),
                    pm(m.soft_accuracy, sd.soft_accuracy),
                ]);
            }
        }
        doc.push(Block::Table {
            header: strings([
                "arch", "n", "error", "NLL", "ECE", "Brier", "JSD", "soft acc",
            ]),
            rows,
        });
    }

    claims(&test, &mut doc);

    doc.push(Block::Heading("Best n per combination (test)".into()));
    let rows = test
        .iter()
        .map(|c| {
            let (na, ne) = (c.best_accuracy_n(), c.best_ece_n());
            let at = |n: usize| c.at(n).copied().unwrap_or_default();
            vec![
                c.arch.to_string(),
                c.method.to_string(),
                c.samples.to_string(),
                na.to_string(),
                fmt4(at(na).error),
                fmt4(at(na).ece),
                ne.to_string(),
                fmt4(at(ne).error),
                fmt4(at(ne).ece),
            ]
        })
        .collect();
    doc.push(Block::Table {
        header: strings([
            "arch",
            "method",
            "T",
            "best-accuracy n",
            "error",
            "ECE",
            "best-ECE n",
            "error",
            "ECE",
        ]),
        rows,
    });

    if !ctx.figures.is_empty() {
        doc.push(Block::Heading("Figures".into()));
        for f in ctx.figures {
            doc.push(Block::Figure {
                src: format!("figures/{}.png", f.stem),
                caption: f.caption.clone(),
            });
        }
    }

    selective_section(ctx, &mut doc);
    shift_section(ctx, &mut doc);
    ood_section(ctx, &mut doc);
    labels_section(ctx, &mut doc);

    doc.push(Block::Heading("Definitions".into()));
    doc.push(Block::List(vec![
        format!("ECE: {} equal-width confidence bins (lo, hi], weighted by bin size; classwise ECE: the same over each class's probability, averaged over the 8 classes.", a.ece_bins),
        "NLL: −mean log p[y] with p clamped at 1e-12; Brier: mean of Σ_k (p_k − onehot_k)².".into(),
        "AURC: area under the risk–coverage curve, faces ranked by maximum probability.".into(),
        "JSD: Jensen–Shannon divergence in bits between crowd and prediction; KL(crowd ‖ prediction) in nats; soft accuracy: Σ_k min(crowd_k, p_k).".into(),
        "Ensemble `_std`: population std over random member orderings; 0 for the MC methods (null where the metric is undefined).".into(),
        "Selective prediction: faces ranked by a confidence score, accuracy at coverage c on the ⌈c·n⌉ most confident faces; coverage at 90 % accuracy: the largest fraction of most confident faces whose accuracy is still ≥ 0.9; AURC: mean risk over all coverages k/n. Mutual information = predictive entropy − mean entropy of the samples (nats).".into(),
        "OOD detection: scores where higher means more likely out-of-distribution (1 − maximum probability, predictive entropy, mutual information); AUROC = P(OOD score > test-face score), ties counting ½; AUPR = average precision with OOD as the positive class; FPR95 = fraction of test faces flagged at the highest threshold that flags ≥ 95 % of the OOD images.".into(),
    ]));
    doc
}

fn figures_of(entries: &[FigureEntry], doc: &mut Vec<Block>) {
    for f in entries {
        doc.push(Block::Figure {
            src: format!("figures/{}.png", f.stem),
            caption: f.caption.clone(),
        });
    }
}

/// Selective prediction: the table of `selective.parquet` and the risk–coverage figures.
fn selective_section(ctx: &Context<'_>, doc: &mut Vec<Block>) {
    let x = ctx.extras;
    doc.push(Block::Heading("Selective prediction (test)".into()));
    if x.selective.is_empty() {
        doc.push(Block::Paragraph(
            "No test-split predictions were analysed, so there is nothing to rank.".into(),
        ));
        return;
    }
    doc.push(Block::Paragraph(
        "The classifier abstains on its least confident test faces (with all T samples, over the faces with a majority label). `confidence` ranks them by the maximum mean probability, `mutual_information` by the epistemic uncertainty (lowest first). Accuracy on the 80 % and 90 % most confident faces, the largest coverage with ≥ 90 % accuracy and the AURC (lower is better); every number is in `selective.parquet`.".into(),
    ));
    doc.push(Block::Table {
        header: strings([
            "arch",
            "method",
            "score",
            "accuracy at 80 %",
            "accuracy at 90 %",
            "coverage at 90 % accuracy",
            "AURC",
        ]),
        rows: x
            .selective
            .iter()
            .map(|r| {
                vec![
                    r.arch.to_string(),
                    r.method.to_string(),
                    r.score.to_owned(),
                    fmt4(r.accuracy_at_80),
                    fmt4(r.accuracy_at_90),
                    fmt4(r.coverage_at_90_accuracy),
                    fmt4(r.aurc),
                ]
            })
            .collect(),
    });
    figures_of(&x.selective_figures, doc);
}

/// Dataset shift: the mean over corruptions per severity and the per-corruption figures.
fn shift_section(ctx: &Context<'_>, doc: &mut Vec<Block>) {
    let Some(rows) = &ctx.extras.shift else {
        return;
    };
    doc.push(Block::Heading(
        "Dataset shift (corrupted test faces)".into(),
    ));
    if rows.is_empty() {
        doc.push(Block::Paragraph(
            "No dataset-shift predictions were found (run `just ingest` and `just infer`); `shift.parquet` is empty.".into(),
        ));
        return;
    }
    let corruptions: Vec<&str> = rows.iter().fold(Vec::new(), |mut acc, r| {
        if !acc.contains(&r.corruption.as_str()) {
            acc.push(r.corruption.as_str());
        }
        acc
    });
    doc.push(Block::Paragraph(format!(
        "Copies of test faces corrupted by each of {} corruptions ({}) at severities 1–5, severity 0 being the clean faces, predicted with all T samples. The table gives the mean over the corruptions at each severity; `shift.parquet` has every (corruption, severity), with the number of faces. Entropy and MI (mutual information) in nats.",
        corruptions.len(),
        corruptions.join(", ")
    )));
    doc.push(Block::Table {
        header: strings([
            "arch", "method", "severity", "error", "NLL", "ECE", "entropy", "MI",
        ]),
        rows: crate::shift::mean_over_corruptions(rows)
            .into_iter()
            .map(|(arch, method, severity, m)| {
                let mut row = vec![arch.to_string(), method.to_string(), severity.to_string()];
                row.extend(m.iter().map(|v| fmt4(*v)));
                row
            })
            .collect(),
    });
    figures_of(&ctx.extras.shift_figures, doc);
}

/// OOD detection: AUROC of each score per (arch, method, set) and the entropy histograms.
fn ood_section(ctx: &Context<'_>, doc: &mut Vec<Block>) {
    let Some(results) = &ctx.extras.ood else {
        return;
    };
    doc.push(Block::Heading("Out-of-distribution detection".into()));
    if results.iter().all(|r| r.rows.is_empty()) {
        doc.push(Block::Paragraph(
            "No OOD predictions were found (run `just ingest` and `just infer`); `ood.parquet` is empty.".into(),
        ));
        return;
    }
    doc.push(Block::Paragraph(
        "Each OOD set (the positives) against all test faces (the negatives), predicted with all T samples. The table gives the AUROC of each score (0.5 is chance, 1 perfect); `ood.parquet` also has the AUPR (OOD positive) and the FPR at 95 % TPR. Near-OOD sets are marked.".into(),
    ));
    let mut rows = Vec::new();
    for r in results {
        let mut sets: Vec<(&str, bool)> = Vec::new();
        for row in &r.rows {
            if !sets.iter().any(|s| s.0 == row.set) {
                sets.push((row.set.as_str(), row.near));
            }
        }
        for (set, near) in sets {
            let mut line = vec![
                r.arch.to_string(),
                r.method.to_string(),
                set.to_owned(),
                if near { "near" } else { "far" }.to_owned(),
            ];
            for score in crate::ood::SCORES {
                let v = r
                    .rows
                    .iter()
                    .find(|row| row.set == set && row.score == score)
                    .map_or(f64::NAN, |row| row.auroc);
                line.push(fmt4(v));
            }
            rows.push(line);
        }
    }
    doc.push(Block::Table {
        header: strings([
            "arch",
            "method",
            "set",
            "near / far",
            "AUROC 1 − max prob",
            "AUROC entropy",
            "AUROC MI",
        ]),
        rows,
    });
    figures_of(&ctx.extras.ood_figures, doc);
}

/// The soft-label comparison: the table of `labels.parquet` and which mode wins per arch.
fn labels_section(ctx: &Context<'_>, doc: &mut Vec<Block>) {
    let Some(rows) = &ctx.extras.labels else {
        return;
    };
    let s = ctx.settings;
    doc.push(Block::Heading("Soft-label comparison (test)".into()));
    let mut modes = vec![s.train.label_mode];
    modes.extend(s.train.compare_label_modes.iter().copied());
    doc.push(Block::Paragraph(format!(
        "The same architectures ({}) and methods trained on each label mode ({}; the main run uses `{}`), evaluated on the test split with all T samples: error, NLL, ECE and Brier against the majority label, JSD (bits), soft accuracy and the entropy correlation against the crowd. Every number is in `labels.parquet`.",
        list_of(&s.train.compare_archs),
        list_of(&modes),
        s.train.label_mode
    )));
    if rows.is_empty() {
        doc.push(Block::Paragraph(
            "No predictions of the compared runs were found (run `just train` and `just infer`)."
                .into(),
        ));
        return;
    }
    doc.push(Block::Table {
        header: strings([
            "label mode",
            "arch",
            "method",
            "error",
            "NLL",
            "ECE",
            "Brier",
            "JSD",
            "soft acc",
            "entropy corr",
        ]),
        rows: rows
            .iter()
            .map(|r| {
                let mut row = vec![
                    r.label_mode.to_string(),
                    r.arch.to_string(),
                    r.method.to_string(),
                ];
                row.extend(r.values.iter().map(|v| fmt4(*v)));
                row
            })
            .collect(),
    });
    let names = [("nll", "NLL"), ("ece", "ECE"), ("jsd", "JSD")];
    let best = crate::labels::best_modes(rows, &["nll", "ece", "jsd"]);
    let mut archs: Vec<ferbayes_core::Arch> = Vec::new();
    for b in &best {
        if !archs.contains(&b.arch) {
            archs.push(b.arch);
        }
    }
    let mut items = Vec::new();
    for arch in archs {
        let parts: Vec<String> = best
            .iter()
            .filter(|b| b.arch == arch)
            .map(|b| {
                let name = names
                    .iter()
                    .find(|n| n.0 == b.metric)
                    .map_or(b.metric, |n| n.1);
                let others: Vec<String> = b
                    .means
                    .iter()
                    .filter(|(m, _)| *m != b.mode)
                    .map(|(m, v)| format!("{m} {}", fmt4(*v)))
                    .collect();
                if others.is_empty() {
                    format!("lowest {name} with `{}` ({})", b.mode, fmt4(b.value))
                } else {
                    format!(
                        "lowest {name} with `{}` ({}; {})",
                        b.mode,
                        fmt4(b.value),
                        others.join(", ")
                    )
                }
            })
            .collect();
        items.push(format!("{arch}: {}.", parts.join("; ")));
    }
    if !items.is_empty() {
        doc.push(Block::Paragraph(
            "Which label mode gives the lowest NLL, ECE and JSD, per architecture (mean over the methods every mode has):".into(),
        ));
        doc.push(Block::List(items));
    }
}

/// The study's claims, each with what this run measured on the test split (n = 1 against
/// n = T, index order) and a verdict.
fn claims(test: &[&Curve], doc: &mut Vec<Block>) {
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
        return;
    }
    let pp = |x: f64| format!("{:+.2} pp", 100.0 * x);
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
    doc.push(Block::Heading(
        "The study's claims, as measured here (test)".into(),
    ));
    doc.push(Block::Paragraph(
        "Each claim compared between one sample (n = 1) and all T samples, per architecture × method, in member index order; a claim counts as supported when more than half of the combinations agree. A claim that does not reproduce is a result too.".into(),
    ));
    doc.push(Block::Table {
        header: strings(["claim", "measured", "verdict"]),
        rows,
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
        rows: changes
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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Inline `code` spans to HTML.
fn inline_html(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in escape(s).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

const CSS: &str = "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
th{background:#f2f2f2}td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){text-align:left}\
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.9em}\
code{background:#f4f4f4;padding:0 .2em}";

/// The HTML page; figures are embedded as base64 PNG (read from `base`) so the page is
/// self-contained, with the relative path as a fallback if a figure cannot be read.
fn html(title: &str, doc: &[Block], base: &Path) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(title),
        escape(title)
    );
    for block in doc {
        match block {
            Block::Heading(h) => {
                let _ = writeln!(out, "<h2>{}</h2>", inline_html(h));
            }
            Block::Paragraph(p) => {
                let _ = writeln!(out, "<p>{}</p>", inline_html(p));
            }
            Block::List(items) => {
                out.push_str("<ul>\n");
                for i in items {
                    let _ = writeln!(out, "<li>{}</li>", inline_html(i));
                }
                out.push_str("</ul>\n");
            }
            Block::Table { header, rows } => {
                out.push_str("<table>\n<tr>");
                for h in header {
                    let _ = write!(out, "<th>{}</th>", escape(h));
                }
                out.push_str("</tr>\n");
                for row in rows {
                    out.push_str("<tr>");
                    for cell in row {
                        let _ = write!(out, "<td>{}</td>", inline_html(cell));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</table>\n");
            }
            Block::Figure { src, caption } => {
                let data = std::fs::read(base.join(src)).map_or_else(
                    |_| escape(src),
                    |png| format!("data:image/png;base64,{}", crate::figures::base64(&png)),
                );
                let _ = writeln!(
                    out,
                    "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
                    data,
                    escape(caption),
                    inline_html(caption)
                );
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn markdown(title: &str, doc: &[Block]) -> String {
    let mut out = format!("# {title}\n\n");
    for block in doc {
        match block {
            Block::Heading(h) => {
                let _ = writeln!(out, "## {h}\n");
            }
            Block::Paragraph(p) => {
                let _ = writeln!(out, "{p}\n");
            }
            Block::List(items) => {
                for i in items {
                    let _ = writeln!(out, "- {i}");
                }
                out.push('\n');
            }
            Block::Table { header, rows } => {
                let _ = writeln!(
                    out,
                    "| {} |",
                    header
                        .iter()
                        .map(|h| md_cell(h))
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
                let align: Vec<&str> = (0..header.len())
                    .map(|i| if i < 2 { ":--" } else { "--:" })
                    .collect();
                let _ = writeln!(out, "| {} |", align.join(" | "));
                for row in rows {
                    let _ = writeln!(
                        out,
                        "| {} |",
                        row.iter()
                            .map(|c| md_cell(c))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    );
                }
                out.push('\n');
            }
            Block::Figure { src, caption } => {
                let _ = writeln!(
                    out,
                    "![{}]({src})\n\n*{caption}*\n",
                    md_cell(caption).replace(['[', ']'], "")
                );
            }
        }
    }
    out
}

/// Writes both reports atomically; returns (html, md) paths.
pub fn write(ctx: &Context<'_>) -> Result<(PathBuf, PathBuf)> {
    let doc = document(ctx);
    let title = format!("ferbayes analysis: profile {}", ctx.layout.profile());
    let base = ctx.layout.stage_dir(ferbayes_core::Stage::Analyze);
    let html_path = write_atomic(
        ctx.layout.report_html(),
        html(&title, &doc, &base).as_bytes(),
    )?;
    let md_path = write_atomic(ctx.layout.report_md(), markdown(&title, &doc).as_bytes())?;
    Ok((html_path, md_path))
}
