//! `report.html` and `report.md`: one document model rendered twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferbayes_core::io::write_atomic;
use ferbayes_core::{Layout, Settings, Split};

use crate::curves::Curve;
use crate::data::Faces;
use crate::error::Result;
use crate::extras::Extras;
use crate::output::{fmt4, shown_for};
use crate::posthoc::PostHoc;
use crate::{FigureEntry, InputView};

mod claims;
mod crowd;
mod render;

use render::{html, markdown};

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
    /// The crowd figures (crowd reliability, set size by crowd entropy).
    pub crowd_figures: &'a [FigureEntry],
    /// Temperature scaling and conformal sets.
    pub posthoc: &'a PostHoc,
}

enum Block {
    /// A section heading (its anchor is [`render::anchor`] of the text).
    Heading(String),
    /// A table of contents: links to these headings.
    Contents(Vec<String>),
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
    let mut doc = Vec::new();
    doc.push(Block::Paragraph(format!(
        "Accuracy, calibration and uncertainty of each architecture × uncertainty method as a function of the number of samples n (MC passes or ensemble members), profile `{}`, following Matin & Valdenegro-Toro, \"Hey Human, If your Facial Emotions are Uncertain, You Should Use Bayesian Neural Networks!\", on FER+. Every number here is in `metrics.parquet` (one row per arch, method, split, n).",
        ctx.layout.profile()
    )));

    let test: Vec<&Curve> = ctx
        .curves
        .iter()
        .filter(|c| c.split == Split::Test)
        .collect();
    let claims = claims::claims(&test);
    let answers = crowd::answers(&test, &ctx.posthoc.temperature);
    summary(&test, claims.as_ref(), &answers, &mut doc);

    let mut body = Vec::new();
    test_section(ctx, &test, &mut body);
    orderings_section(ctx, &test, &mut body);
    if let Some(claims) = &claims {
        claims::claims_section(claims, &mut body);
    }
    best_n_section(&test, &mut body);
    figures_section(ctx, &mut body);
    crowd::section(&test, ctx.posthoc, &answers, ctx.crowd_figures, &mut body);
    selective_section(ctx, &mut body);
    shift_section(ctx, &mut body);
    ood_section(ctx, &mut body);
    labels_section(ctx, &mut body);
    definitions(ctx, &mut body);
    body.push(Block::Heading("Appendix: settings".into()));
    settings_table(ctx, &mut body);
    body.push(Block::Heading("Appendix: inputs".into()));
    inputs_list(ctx, &mut body);
    body.push(Block::Heading("Appendix: machines".into()));
    machines_table(ctx, &mut body);

    doc.push(Block::Contents(
        body.iter()
            .filter_map(|b| match b {
                Block::Heading(h) => Some(h.clone()),
                _ => None,
            })
            .collect(),
    ));
    doc.extend(body);
    doc
}

/// The summary the report opens with: the best accuracy, the claims' verdicts and the answers
/// on calibration against the crowd.
fn summary(
    test: &[&Curve],
    claims: Option<&claims::Claims>,
    answers: &crowd::CrowdAnswers,
    doc: &mut Vec<Block>,
) {
    doc.push(Block::Heading("Summary".into()));
    let best = test
        .iter()
        .flat_map(|c| {
            c.index
                .iter()
                .enumerate()
                .map(move |(i, m)| (c, i + 1, m.error))
        })
        .filter(|(_, _, e)| e.is_finite())
        .min_by(|a, b| a.2.total_cmp(&b.2));
    if let Some((c, n, error)) = best {
        doc.push(Block::Paragraph(format!(
            "Best test accuracy: {:.2} % ({}/{} with n = {n} of {}).",
            100.0 * (1.0 - error),
            c.arch,
            c.method,
            c.samples
        )));
    }
    if let Some(claims) = claims {
        doc.push(Block::Table {
            header: strings(["claim", "verdict"]),
            rows: claims
                .rows
                .iter()
                .map(|r| vec![r[0].clone(), r[2].clone()])
                .collect(),
        });
    }
    doc.push(Block::List(vec![
        answers.answer_crowd_like(),
        answers.answer_scaling(),
    ]));
}

/// The settings of the run.
fn settings_table(ctx: &Context<'_>, doc: &mut Vec<Block>) {
    let s = ctx.settings;
    let a = &s.analyze;
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
}

/// The machines that made the artifacts (from the ingest, train and infer manifests, and this
/// analyze run): results are bit for bit the same on one machine, across machines only as far
/// as their arithmetic agrees.
fn machines_table(ctx: &Context<'_>, doc: &mut Vec<Block>) {
    use ferbayes_core::plan;
    let s = ctx.settings;
    // The ingest plan's folder and label do not depend on where FER+ is.
    let mut plans = vec![plan::ingest(ctx.layout, Path::new(""), &s.ingest)];
    let variants = plan::variants(ctx.layout, s);
    for stage in [ferbayes_core::Stage::Train, ferbayes_core::Stage::Infer] {
        for (layout, vs) in &variants {
            for arch in &vs.train.archs {
                for method in &vs.train.methods {
                    plans.push(match stage {
                        ferbayes_core::Stage::Train => plan::train(layout, vs, *arch, *method),
                        _ => plan::infer(layout, vs, *arch, *method),
                    });
                }
            }
        }
    }
    let mut uses = plan::provenance(&plans);
    let here = ferbayes_core::machine::Machine::detect().summary();
    match uses.iter_mut().find(|u| u.machine == here) {
        Some(u) => u.wrote.push("analyze (this report)".into()),
        None => uses.push(plan::MachineUse {
            machine: here,
            wrote: vec!["analyze (this report)".into()],
            trained: Vec::new(),
        }),
    }
    doc.push(Block::Paragraph(
        "Where each artifact was made, from the stages' manifests: CPU model, SIMD extensions and caches, threads, device, and the SIMD paths the kernels took. Results are bit for bit reproducible on one machine (`just verify`); across machines as far as docs/results.md in the repository says (\"Reproducibility across machines\").".into(),
    ));
    let rows = uses
        .into_iter()
        .map(|u| {
            let mut made = Vec::new();
            if !u.wrote.is_empty() {
                made.push(format!("wrote {}", u.wrote.join(", ")));
            }
            if !u.trained.is_empty() {
                made.push(format!("trained {}", u.trained.join("; ")));
            }
            vec![u.machine, made.join("; ")]
        })
        .collect();
    doc.push(Block::Table {
        header: strings(["machine", "made"]),
        rows,
    });
}

/// Every input file read, and the missing ones.
fn inputs_list(ctx: &Context<'_>, doc: &mut Vec<Block>) {
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
}

/// The main table: the test split at the shown n.
fn test_section(ctx: &Context<'_>, test: &[&Curve], doc: &mut Vec<Block>) {
    let a = &ctx.settings.analyze;
    doc.push(Block::Heading("Test split".into()));
    doc.push(Block::Paragraph(
        "Error, NLL, ECE, Brier and the uncertainties are over the faces with a majority label; JSD (bits), soft accuracy and the entropy correlation (Pearson r between predictive entropy and crowd-vote entropy) against the crowd distribution. Entropy = predictive entropy H[p̄], aleatoric = mean entropy of the samples, epistemic = their difference (mutual information), all in nats. Ensembles in member index order.".into(),
    ));
    let mut rows = Vec::new();
    for c in test {
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
}

/// Mean ± std over random ensemble member orderings.
fn orderings_section(ctx: &Context<'_>, test: &[&Curve], doc: &mut Vec<Block>) {
    let a = &ctx.settings.analyze;
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
}

/// The n of the best accuracy and of the lowest ECE per combination.
fn best_n_section(test: &[&Curve], doc: &mut Vec<Block>) {
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
}

/// The study's figures.
fn figures_section(ctx: &Context<'_>, doc: &mut Vec<Block>) {
    if !ctx.figures.is_empty() {
        doc.push(Block::Heading("Figures".into()));
        for f in ctx.figures {
            doc.push(Block::Figure {
                src: format!("figures/{}.png", f.stem),
                caption: f.caption.clone(),
            });
        }
    }
}

/// The definitions of the metrics.
fn definitions(ctx: &Context<'_>, doc: &mut Vec<Block>) {
    let a = &ctx.settings.analyze;
    doc.push(Block::Heading("Definitions".into()));
    doc.push(Block::List(vec![
        format!("ECE: {} equal-width confidence bins (lo, hi], weighted by bin size; classwise ECE: the same over each class's probability, averaged over the 8 classes.", a.ece_bins),
        "NLL: −mean log p[y] with p clamped at 1e-12; Brier: mean of Σ_k (p_k − onehot_k)².".into(),
        "AURC: area under the risk–coverage curve, faces ranked by maximum probability.".into(),
        "JSD: Jensen–Shannon divergence in bits between crowd and prediction; KL(crowd ‖ prediction) in nats; soft accuracy: Σ_k min(crowd_k, p_k).".into(),
        "Ensemble `_std`: population std over random member orderings; 0 for the MC methods (null where the metric is undefined).".into(),
        "Selective prediction: faces ranked by a confidence score, accuracy at coverage c on the ⌈c·n⌉ most confident faces; coverage at 90 % accuracy: the largest fraction of most confident faces whose accuracy is still ≥ 0.9; AURC: mean risk over all coverages k/n. Mutual information = predictive entropy − mean entropy of the samples (nats).".into(),
        "Crowd ECE: the ECE bins, each bin's mean confidence against the mean share of the crowd's votes on the predicted class; crowd classwise ECE: every class's probability binned, its mean against the crowd's mean share of that class, averaged over the 8 classes.".into(),
        "Temperature scaling: p_T = softmax(log(max(p̄, 1e-12)) / T) with one T per arch, method and n, minimising the valid split's NLL (golden-section search on log T over [0.05, 20] to 1e-3 relative).".into(),
        "Split conformal: score 1 − p̄[y] on the valid split's m labelled faces, q̂ = the ⌈(m+1)(1−α)⌉-th smallest (+∞ when that exceeds m), set C = {k : 1 − p̄[k] ≤ q̂}; M = the FER+ `multi_target` classes; Spearman with average ranks for ties.".into(),
        "OOD detection: scores where higher means more likely out-of-distribution (1 − maximum probability, predictive entropy, mutual information); AUROC = P(OOD score > test-face score), ties counting ½; AUPR = average precision with OOD as the positive class; FPR95 = fraction of test faces flagged at the highest threshold that flags ≥ 95 % of the OOD images.".into(),
    ]));
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

/// One line per architecture: which label mode gives the lowest NLL, ECE and JSD.
fn best_mode_items(rows: &[crate::labels::LabelRow]) -> Vec<String> {
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
    items
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
    let items = best_mode_items(rows);
    if !items.is_empty() {
        doc.push(Block::Paragraph(
            "Which label mode gives the lowest NLL, ECE and JSD, per architecture (mean over the methods every mode has):".into(),
        ));
        doc.push(Block::List(items));
    }
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
