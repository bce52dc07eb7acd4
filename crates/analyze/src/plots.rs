//! Which figures the report shows, built from the curves and the test split's samples.

use std::collections::BTreeMap;

use ferbayes_core::{Arch, EMOTIONS, Layout, Method, NUM_CLASSES, Settings, Split};
use ferbayes_uq::calibration::{self, Bin};
use ferbayes_uq::{crowd, entropy, mean_prediction};
use rayon::prelude::*;

use crate::curves::Curve;
use crate::data::Faces;
use crate::error::Result;
use crate::figures::{
    CROWD_COLOR, Cell, FaceGrid, Figure, Line, LinePanels, PanelLine, Reliability,
    ReliabilityPanel, Scatter, ScatterPanel, VsN, class_name, method_color, save,
};
use crate::output::shown_for;
use crate::posthoc::{CrowdDiagram, DECILES, PostHoc};
use crate::{FigureEntry, InputView};
use ferbayes_core::schema::SHOWN_ALPHA;

/// A figure to draw: stem, caption and the drawing (see [`job`]).
pub(crate) type Job<'a> = (
    String,
    String,
    Box<dyn Fn() -> Result<Vec<std::path::PathBuf>> + Send + Sync + 'a>,
);

/// A job drawing `fig` to `figures/<stem>.{png,svg}`.
pub(crate) fn job<'a, F: Figure + Send + Sync + 'a>(
    layout: &'a Layout,
    stem: String,
    caption: String,
    fig: F,
) -> Job<'a> {
    let name = stem.clone();
    (stem, caption, Box::new(move || save(layout, &name, &fig)))
}

/// An architecture with its test curves and their inputs.
type ArchCurves<'c, 'i> = (Arch, Vec<(&'c Curve, &'c InputView<'i>)>);

/// The mean prediction of samples 0..n−1 of an input, for every face.
fn prediction(input: &InputView<'_>, n: usize) -> Vec<[f32; NUM_CLASSES]> {
    let slices: Vec<&[[f32; NUM_CLASSES]]> = (0..n.min(input.samples.count))
        .map(|t| input.samples.sample(t))
        .collect();
    mean_prediction(&slices)
}

/// Draws every figure (in parallel) and returns them in report order.
pub fn draw_all(
    layout: &Layout,
    settings: &Settings,
    curves: &[Curve],
    inputs: &[InputView<'_>],
    test_faces: Option<&Faces>,
) -> Result<Vec<FigureEntry>> {
    let Some(faces) = test_faces else {
        tracing::warn!("no test split was analysed; drawing no figures");
        return Ok(Vec::new());
    };
    let test: Vec<(&Curve, &InputView<'_>)> = curves
        .iter()
        .zip(inputs)
        .filter(|(c, _)| c.split == Split::Test)
        .collect();
    let mut by_arch: BTreeMap<usize, ArchCurves<'_, '_>> = BTreeMap::new();
    for &(c, i) in &test {
        let pos = settings
            .train
            .archs
            .iter()
            .position(|a| *a == c.arch)
            .unwrap_or(usize::MAX);
        by_arch
            .entry(pos)
            .or_insert_with(|| (c.arch, Vec::new()))
            .1
            .push((c, i));
    }
    let archs: Vec<ArchCurves<'_, '_>> = by_arch.into_values().collect();
    let mut jobs: Vec<Job<'_>> = Vec::new();
    vs_n_jobs(layout, settings, &archs, &mut jobs);
    reliability_jobs(layout, settings, faces, &archs, &mut jobs);
    face_jobs(layout, settings, faces, &archs, &mut jobs);
    draw_jobs(jobs)
}

/// Fig. 1–3: error, NLL and ECE against n, one panel per architecture.
fn vs_n_jobs<'a>(
    layout: &'a Layout,
    settings: &Settings,
    archs: &[ArchCurves<'_, '_>],
    jobs: &mut Vec<Job<'a>>,
) {
    let orderings = settings.analyze.orderings;
    // Fig. 1–3.
    for (stem, metric, label, what) in [
        (
            "error_vs_n",
            "error",
            "test error",
            "Test classification error",
        ),
        (
            "nll_vs_n",
            "nll",
            "test NLL",
            "Test negative log-likelihood",
        ),
        (
            "ece_vs_n",
            "ece",
            "test ECE",
            "Test expected calibration error",
        ),
    ] {
        let panels = archs
            .iter()
            .map(|(arch, list)| {
                let lines = list
                    .iter()
                    .map(|(c, _)| Line {
                        method: c.method,
                        points: c
                            .index
                            .iter()
                            .enumerate()
                            .map(|(i, m)| ((i + 1) as f64, m.get(metric).unwrap_or(f64::NAN)))
                            .collect(),
                        band: if c.orderings > 0 {
                            c.ordering_mean
                                .iter()
                                .zip(&c.ordering_std)
                                .enumerate()
                                .map(|(i, (m, s))| {
                                    (
                                        (i + 1) as f64,
                                        m.get(metric).unwrap_or(f64::NAN),
                                        s.get(metric).unwrap_or(f64::NAN),
                                    )
                                })
                                .collect()
                        } else {
                            Vec::new()
                        },
                    })
                    .collect();
                (arch.to_string(), lines)
            })
            .collect();
        let caption = format!(
            "{what} vs the number of samples n, one panel per architecture; ensemble lines follow member index order, the shaded band is the mean ± std over {orderings} random member orderings (dashed: their mean)."
        );
        jobs.push(job(
            layout,
            stem.to_owned(),
            caption,
            VsN {
                y_label: label.to_owned(),
                panels,
            },
        ));
    }
}

/// Fig. 5: reliability diagrams at the best-accuracy and the best-ECE n.
fn reliability_jobs<'a>(
    layout: &'a Layout,
    settings: &Settings,
    faces: &Faces,
    archs: &[ArchCurves<'_, '_>],
    jobs: &mut Vec<Job<'a>>,
) {
    let labelled: Vec<usize> = (0..faces.len())
        .filter(|&i| faces.evaluator.majority()[i].is_some())
        .collect();
    let labels: Vec<u8> = labelled
        .iter()
        .filter_map(|&i| faces.evaluator.majority()[i])
        .collect();
    let bins = settings.analyze.ece_bins;
    for (_, list) in archs {
        for (c, input) in list {
            let (n_acc, n_ece) = (c.best_accuracy_n(), c.best_ece_n());
            let choices: Vec<(usize, String)> = if n_acc == n_ece {
                vec![(n_acc, format!("n = {n_acc}: best accuracy and lowest ECE"))]
            } else {
                vec![
                    (n_acc, format!("n = {n_acc}: best accuracy")),
                    (n_ece, format!("n = {n_ece}: lowest ECE")),
                ]
            };
            let panels = choices
                .into_iter()
                .map(|(n, title)| {
                    let pbar = prediction(input, n);
                    let probs: Vec<[f32; NUM_CLASSES]> =
                        labelled.iter().map(|&i| pbar[i]).collect();
                    let bins = calibration::reliability(&probs, &labels, bins);
                    ReliabilityPanel {
                        title,
                        y_label: "accuracy".into(),
                        ece_name: "ECE".into(),
                        ece: calibration::ece_of_bins(&bins),
                        error: calibration::error(&probs, &labels),
                        bins,
                    }
                })
                .collect();
            let fig = Reliability {
                title: format!("{} / {}: reliability on the test split", c.arch, c.method),
                color: method_color(c.method),
                panels,
            };
            let caption = format!(
                "{} / {}: accuracy per confidence bin (bars), gap to the diagonal (red) and the confidence histogram, at n = {n_acc} (best test accuracy) and n = {n_ece} (lowest test ECE).",
                c.arch, c.method
            );
            jobs.push(job(
                layout,
                format!("reliability_{}_{}", c.arch, c.method),
                caption,
                fig,
            ));
        }
    }
}

/// Fig. 4/6/7 and the crowd comparison, per architecture.
fn face_jobs<'a>(
    layout: &'a Layout,
    settings: &Settings,
    faces: &Faces,
    archs: &[ArchCurves<'_, '_>],
    jobs: &mut Vec<Job<'a>>,
) {
    let k = settings.analyze.top_uncertain;
    let mut scatter = Vec::new();
    for (arch, list) in archs {
        let ensemble = list.iter().find(|(c, _)| c.method == Method::Ensemble);
        // The best method: lowest test JSD at its largest n.
        let best = list
            .iter()
            .filter(|(c, _)| c.last().is_some_and(|m| m.jsd.is_finite()))
            .min_by(|a, b| {
                let (x, y) = (
                    a.0.last().map_or(f64::NAN, |m| m.jsd),
                    b.0.last().map_or(f64::NAN, |m| m.jsd),
                );
                x.total_cmp(&y)
            })
            .or(list.first());
        let chosen = ensemble.or(best);
        let Some((chosen_curve, chosen_input)) = chosen else {
            continue;
        };
        let top = most_uncertain(faces, &prediction(chosen_input, chosen_curve.samples), k);

        if let Some((c, input)) = ensemble {
            jobs.push(uncertain_job(
                layout,
                settings,
                faces,
                *arch,
                (c, input),
                &top,
            ));
        }
        if let Some((c, input)) = best {
            let (job, panel) = crowd_job(layout, faces, *arch, (c, input), &top);
            jobs.push(job);
            scatter.push(panel);
        }
    }
    if !scatter.is_empty() {
        let caption = "Predictive entropy vs crowd-vote entropy per test face, one panel per architecture under its best method (lowest test JSD); r is the Pearson correlation.".to_owned();
        jobs.push(job(
            layout,
            "entropy_scatter".to_owned(),
            caption,
            Scatter { panels: scatter },
        ));
    }
}

/// Fig. 4: the most uncertain test faces under an ensemble with n ∈ `shown_n` members.
fn uncertain_job<'a>(
    layout: &'a Layout,
    settings: &Settings,
    faces: &Faces,
    arch: Arch,
    (c, input): (&Curve, &InputView<'_>),
    top: &[(usize, f64)],
) -> Job<'a> {
    let ns = shown_for(&settings.analyze.shown_n, c.samples);
    let preds: Vec<(usize, Vec<[f32; NUM_CLASSES]>)> =
        ns.iter().map(|&n| (n, prediction(input, n))).collect();
    let color = method_color(c.method);
    let rows = top
        .iter()
        .map(|&(i, h)| {
            let mut row = vec![face_cell(faces, i, h), crowd_cell(faces, i)];
            for (n, p) in &preds {
                row.push(Cell::Bars {
                    caption: format!("{n} member{}", if *n == 1 { "" } else { "s" }),
                    series: vec![(p[i], color)],
                    footer: vec![(class_name(&p[i]).to_owned(), color)],
                });
            }
            row
        })
        .collect();
    let mut widths = vec![180, 200];
    widths.extend(std::iter::repeat_n(200, preds.len()));
    let fig = FaceGrid {
        title: format!(
            "{arch} ensemble: the {} test faces with the highest predictive entropy (n = {})",
            top.len(),
            c.samples
        ),
        column_widths: widths,
        row_height: 190,
        rows,
    };
    let caption = format!(
        "{arch} ensemble: the {} most uncertain test faces (predictive entropy with all {} members), their crowd votes, and the prediction with n ∈ {{{}}} members (predicted class under each).",
        top.len(),
        c.samples,
        ns.iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    job(layout, format!("uncertain_{arch}"), caption, fig)
}

/// The crowd against the best method's prediction on the same faces, and that method's
/// entropy-scatter panel.
fn crowd_job<'a>(
    layout: &'a Layout,
    faces: &Faces,
    arch: Arch,
    (c, input): (&Curve, &InputView<'_>),
    top: &[(usize, f64)],
) -> (Job<'a>, ScatterPanel) {
    let p = prediction(input, c.samples);
    let color = method_color(c.method);
    let rows = top
        .iter()
        .map(|&(i, h)| {
            let crowd = faces.evaluator.crowd()[i].unwrap_or([0.0; NUM_CLASSES]);
            let jsd = crowd::jsd(&crowd, &p[i]);
            vec![
                face_cell(faces, i, h),
                Cell::Bars {
                    caption: format!("crowd (grey) vs {} with n = {}", c.method, c.samples),
                    series: vec![(crowd, CROWD_COLOR), (p[i], color)],
                    footer: vec![
                        (format!("crowd: {}", class_name(&crowd)), CROWD_COLOR),
                        (
                            format!("{}: {}   (JSD {jsd:.3} bits)", c.method, class_name(&p[i])),
                            color,
                        ),
                    ],
                },
            ]
        })
        .collect();
    let fig = FaceGrid {
        title: format!(
            "{arch}: crowd vs predicted distribution ({}, lowest test JSD)",
            c.method
        ),
        column_widths: vec![180, 420],
        row_height: 200,
        rows,
    };
    let caption = format!(
        "{arch}: crowd vote distribution vs the prediction of {} (lowest test JSD at n = {}) on the same faces as the uncertainty figure.",
        c.method, c.samples
    );
    let crowd_job = job(layout, format!("crowd_{arch}"), caption, fig);

    let h: Vec<f64> = p.iter().map(|row| entropy(row)).collect();
    let points: Vec<(f64, f64)> = faces
        .evaluator
        .crowd_entropy()
        .iter()
        .zip(&h)
        .filter_map(|(ch, &h)| ch.map(|ch| (f64::from(ch), h)))
        .collect();
    let r = c.last().map_or(f64::NAN, |m| m.entropy_corr);
    let panel = ScatterPanel {
        title: format!("{arch} / {} (n = {}), r = {r:.3}", c.method, c.samples),
        points,
        color,
    };
    (crowd_job, panel)
}

/// Draws the jobs in parallel; the figures in job order.
pub(crate) fn draw_jobs(jobs: Vec<Job<'_>>) -> Result<Vec<FigureEntry>> {
    let files: Vec<Vec<std::path::PathBuf>> = jobs
        .par_iter()
        .map(|(_, _, draw)| draw())
        .collect::<Result<_>>()?;
    Ok(jobs
        .into_iter()
        .zip(files)
        .map(|((stem, caption, _), files)| FigureEntry {
            stem,
            caption,
            files,
        })
        .collect())
}

/// The `k` faces with a crowd distribution and the highest entropy of `pbar`, most uncertain
/// first (ties in face order).
fn most_uncertain(faces: &Faces, pbar: &[[f32; NUM_CLASSES]], k: usize) -> Vec<(usize, f64)> {
    let mut scored: Vec<(usize, f64)> = pbar
        .iter()
        .enumerate()
        .filter(|(i, _)| faces.evaluator.crowd().get(*i).is_some_and(Option::is_some))
        .map(|(i, p)| (i, entropy(p)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(k);
    scored
}

fn face_cell(faces: &Faces, i: usize, h: f64) -> Cell {
    let label = faces.evaluator.majority()[i]
        .and_then(|y| EMOTIONS.get(usize::from(y)))
        .map_or_else(|| "majority: none".to_owned(), |n| format!("majority: {n}"));
    Cell::Face {
        pixels: faces
            .face_pixels(i)
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|| vec![0; 48 * 48]),
        lines: vec![
            faces.images[i].clone(),
            label,
            format!("entropy {h:.3} nats"),
        ],
    }
}

fn crowd_cell(faces: &Faces, i: usize) -> Cell {
    let crowd = faces.evaluator.crowd()[i].unwrap_or([0.0; NUM_CLASSES]);
    Cell::Bars {
        caption: "crowd votes".to_owned(),
        series: vec![(crowd, CROWD_COLOR)],
        footer: vec![(class_name(&crowd).to_owned(), CROWD_COLOR)],
    }
}

/// The crowd figures: a crowd reliability diagram per arch × method at n = T (the majority
/// label's accuracy beside the crowd's vote share on the predicted class), and the mean
/// conformal set size per crowd-entropy decile, one panel per architecture, one line per method.
pub(crate) fn draw_crowd(
    layout: &Layout,
    settings: &Settings,
    posthoc: &PostHoc,
) -> Result<Vec<FigureEntry>> {
    let mut jobs: Vec<Job<'_>> = Vec::new();
    for d in &posthoc.diagrams {
        let n = posthoc
            .temperature
            .iter()
            .filter(|r| r.arch == d.arch && r.method == d.method)
            .map(|r| r.n)
            .max()
            .unwrap_or(0);
        jobs.push(crowd_reliability_job(layout, d, n));
    }
    if let Some(job) = set_size_job(layout, settings, posthoc) {
        jobs.push(job);
    }
    draw_jobs(jobs)
}

/// The error of the faces of reliability bins (1 − their pooled accuracy).
fn error_of_bins(bins: &[Bin]) -> f64 {
    let (hits, count) = bins
        .iter()
        .filter(|b| b.count > 0)
        .fold((0.0, 0usize), |(h, c), b| {
            (h + b.accuracy * b.count as f64, c + b.count)
        });
    1.0 - hits / count.max(1) as f64
}

/// `crowd_reliability_<arch>_<method>`: the label's and the crowd's reliability side by side.
fn crowd_reliability_job<'a>(layout: &'a Layout, d: &CrowdDiagram, n: usize) -> Job<'a> {
    let error = error_of_bins(&d.majority);
    let panel = |title: &str, y_label: &str, ece_name: &str, bins: &[Bin]| ReliabilityPanel {
        title: title.to_owned(),
        y_label: y_label.to_owned(),
        ece_name: ece_name.to_owned(),
        ece: calibration::ece_of_bins(bins),
        error,
        bins: bins.to_vec(),
    };
    let fig = Reliability {
        title: format!(
            "{} / {}: calibration against the label and the crowd (n = {n})",
            d.arch, d.method
        ),
        color: method_color(d.method),
        panels: vec![
            panel("majority label", "accuracy", "ECE", &d.majority),
            panel("crowd", "crowd vote share on ŷ", "crowd ECE", &d.crowd),
        ],
    };
    let caption = format!(
        "{} / {}: with all {n} samples on the test split, the majority label's accuracy per confidence bin (left) beside the mean share of the crowd's votes on the predicted class (right); the gap to the diagonal on the right is what crowd ECE sums.",
        d.arch, d.method
    );
    let stem = format!("crowd_reliability_{}_{}", d.arch, d.method);
    job(layout, stem, caption, fig)
}

/// `set_size_vs_entropy`: mean conformal set size per crowd-entropy decile; None without data.
fn set_size_job<'a>(layout: &'a Layout, settings: &Settings, posthoc: &PostHoc) -> Option<Job<'a>> {
    let mut panels: Vec<(String, Vec<PanelLine>)> = Vec::new();
    for &arch in &settings.train.archs {
        let lines: Vec<PanelLine> = posthoc
            .diagrams
            .iter()
            .filter(|d| d.arch == arch && !d.set_size_by_decile.is_empty())
            .map(|d| PanelLine {
                label: d.method.to_string(),
                color: method_color(d.method),
                dashed: false,
                markers: true,
                points: d.set_size_by_decile.clone(),
            })
            .collect();
        if !lines.is_empty() {
            panels.push((arch.to_string(), lines));
        }
    }
    if panels.is_empty() {
        return None;
    }
    let fig = LinePanels {
        title: format!("Conformal set size by crowd-entropy decile (α = {SHOWN_ALPHA}, n = T)"),
        x_label: "crowd-entropy decile (1 = most agreed)".into(),
        y_label: "mean set size |C|".into(),
        x_range: (0.5, DECILES as f64 + 0.5),
        integer_x: true,
        columns: panels.len().min(3),
        panels,
    };
    let caption = format!(
        "Mean size of the split-conformal prediction sets (α = {SHOWN_ALPHA}, calibrated on the valid split, all T samples) of the test faces in each decile of the crowd's vote entropy, one panel per architecture, one line per method; rising lines mean that faces the crowd disagrees on get bigger sets."
    );
    Some(job(layout, "set_size_vs_entropy".to_owned(), caption, fig))
}
