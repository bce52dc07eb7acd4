//! The analyses beyond the study (selective prediction, dataset shift, OOD detection, the
//! soft-label comparison): reading their inputs, their tables and their figures. The numerics
//! are in [`crate::selective`], [`crate::shift`], [`crate::ood`] and [`crate::labels`].

use std::path::PathBuf;

use ferbayes_core::runner::StageRun;
use ferbayes_core::{Arch, Layout, Method, Settings, Split, plan};
use rayon::prelude::*;

use crate::data::{self, Faces};
use crate::error::Result;
use crate::figures::{
    CROWD_COLOR, HistogramSeries, Histograms, LinePanels, PanelLine, SET_COLORS, method_color,
};
use crate::labels::{self, LabelRow};
use crate::ood::{self, OodResult};
use crate::plots::{Job, draw_jobs, job};
use crate::selective::{self, SelectiveRow};
use crate::shift::{self, ShiftRow};
use crate::{FigureEntry, InputView};

/// Bins of the OOD entropy histograms over [0, ln 8].
const HISTOGRAM_BINS: usize = 30;

/// What the extra analyses computed; `None` where an analysis is off for the profile.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    pub selective: Vec<SelectiveRow>,
    pub shift: Option<Vec<ShiftRow>>,
    pub ood: Option<Vec<OodResult>>,
    pub labels: Option<Vec<LabelRow>>,
    /// The figures of each section.
    pub selective_figures: Vec<FigureEntry>,
    pub shift_figures: Vec<FigureEntry>,
    pub ood_figures: Vec<FigureEntry>,
    /// Input files read (for the manifest).
    pub read: Vec<PathBuf>,
    /// Input files that do not exist (skipped with a warning).
    pub missing: Vec<PathBuf>,
}

impl Extras {
    /// Every figure, in report order.
    pub fn figures(&self) -> impl Iterator<Item = &FigureEntry> {
        self.selective_figures
            .iter()
            .chain(&self.shift_figures)
            .chain(&self.ood_figures)
    }
}

/// Whether `path` exists; warns and records it as missing when not.
fn exists(path: &std::path::Path, what: &str, missing: &mut Vec<PathBuf>) -> bool {
    if path.is_file() {
        true
    } else {
        tracing::warn!("{} does not exist; skipping {what}", path.display());
        missing.push(path.to_owned());
        false
    }
}

/// The (arch, method) combinations of the profile, in settings order.
fn combinations(settings: &Settings) -> Vec<(Arch, Method)> {
    settings
        .train
        .archs
        .iter()
        .flat_map(|&a| settings.train.methods.iter().map(move |&m| (a, m)))
        .collect()
}

/// Runs every extra analysis the profile asks for. `inputs` are the analysed infer files of the
/// main run and `test` the test faces (when the test split was analysed).
pub(crate) fn compute(
    layout: &Layout,
    settings: &Settings,
    inputs: &[InputView<'_>],
    test: Option<&Faces>,
) -> Result<Extras> {
    let mut x = Extras::default();
    let tests: Vec<&InputView<'_>> = inputs.iter().filter(|i| i.split == Split::Test).collect();

    // Selective prediction.
    if let Some(faces) = test {
        let majority = faces.evaluator.majority();
        x.selective = tests
            .par_iter()
            .flat_map_iter(|i| selective::selective(i.arch, i.method, i.samples, majority))
            .collect();
    }

    let (shift_on, ood_on) = plan::extras(layout, settings);

    if shift_on {
        x.shift = Some(shift_rows(layout, settings, &mut x)?);
    }
    if ood_on {
        x.ood = Some(ood_results(layout, settings, &tests, &mut x)?);
    }
    if !settings.train.compare_label_modes.is_empty() {
        x.labels = Some(label_rows(layout, settings, &tests, test, &mut x)?);
    }
    Ok(x)
}

/// The dataset-shift rows of every combination with its infer table.
fn shift_rows(layout: &Layout, settings: &Settings, x: &mut Extras) -> Result<Vec<ShiftRow>> {
    let bins = settings.analyze.ece_bins;
    let mut rows = Vec::new();
    let ingest = layout.ingest_shift();
    if exists(&ingest, "the dataset-shift evaluation", &mut x.missing) {
        let labels = data::read_shift_labels(&ingest)?;
        x.read.push(ingest);
        let mut todo = Vec::new();
        for (arch, method) in combinations(settings) {
            let path = layout.infer_shift(arch, method);
            let what = format!("the dataset shift of {arch}/{method}");
            if exists(&path, &what, &mut x.missing) {
                todo.push((arch, method, path));
            }
        }
        let done: Vec<Vec<ShiftRow>> = todo
            .par_iter()
            .map(|(arch, method, path)| {
                let samples = data::read_shift_samples(path)?;
                shift::shift_rows(*arch, *method, &samples, &labels, bins)
            })
            .collect::<Result<_>>()?;
        rows = done.into_iter().flatten().collect();
        x.read.extend(todo.into_iter().map(|t| t.2));
    }
    Ok(rows)
}

/// The OOD detection of every combination with its test and OOD tables.
fn ood_results(
    layout: &Layout,
    settings: &Settings,
    tests: &[&InputView<'_>],
    x: &mut Extras,
) -> Result<Vec<OodResult>> {
    let mut results = Vec::new();
    let ingest = layout.ingest_ood();
    if exists(&ingest, "the OOD evaluation", &mut x.missing) {
        let sets = data::read_ood_sets(&ingest)?;
        x.read.push(ingest);
        let mut todo = Vec::new();
        for (arch, method) in combinations(settings) {
            let Some(test) = tests.iter().find(|i| i.arch == arch && i.method == method) else {
                continue;
            };
            let path = layout.infer_ood(arch, method);
            let what = format!("the OOD detection of {arch}/{method}");
            if exists(&path, &what, &mut x.missing) {
                todo.push((arch, method, path, test.samples));
            }
        }
        results = todo
            .par_iter()
            .map(|(arch, method, path, test)| {
                let samples = data::read_ood_samples(path)?;
                ood::ood_rows(*arch, *method, test, &samples, &sets)
            })
            .collect::<Result<_>>()?;
        x.read.extend(todo.into_iter().map(|t| t.2));
    }
    Ok(results)
}

/// The soft-label comparison: the main run's rows and those of every comparison run.
fn label_rows(
    layout: &Layout,
    settings: &Settings,
    tests: &[&InputView<'_>],
    test: Option<&Faces>,
    x: &mut Extras,
) -> Result<Vec<LabelRow>> {
    let bins = settings.analyze.ece_bins;
    let owned;
    let faces = match test {
        Some(f) => f,
        None => {
            owned = data::read_faces(&layout.ingest_split(Split::Test), false, bins)?;
            &owned
        }
    };
    let compare = &settings.train.compare_archs;
    let mut rows: Vec<LabelRow> = tests
        .iter()
        .filter(|i| compare.contains(&i.arch))
        .map(|i| {
            labels::label_row(
                settings.train.label_mode,
                i.arch,
                i.method,
                i.samples,
                &faces.evaluator,
            )
        })
        .collect();
    let mut todo = Vec::new();
    for (variant, vs) in plan::variants(layout, settings).into_iter().skip(1) {
        for (arch, method) in combinations(&vs) {
            let path = variant.infer_split(arch, method, Split::Test);
            let what = format!("{arch}/{method} trained on {} labels", vs.train.label_mode);
            if exists(&path, &what, &mut x.missing) {
                todo.push((vs.train.label_mode, arch, method, path));
            }
        }
    }
    let variant_rows: Vec<LabelRow> = todo
        .par_iter()
        .map(|(mode, arch, method, path)| {
            let samples = data::read_samples(path, faces)?;
            Ok(labels::label_row(
                *mode,
                *arch,
                *method,
                &samples,
                &faces.evaluator,
            ))
        })
        .collect::<Result<_>>()?;
    rows.extend(variant_rows);
    x.read.extend(todo.into_iter().map(|t| t.3));
    Ok(rows)
}

/// Writes every table of [`plan::analyze_outputs`] besides `metrics.parquet` (each atomically,
/// possibly with zero rows); returns their paths and row counts.
pub(crate) fn write_tables(
    stage: &mut StageRun<'_>,
    layout: &Layout,
    settings: &Settings,
    x: &Extras,
) -> Result<Vec<(PathBuf, u64)>> {
    let level = settings.ingest.zstd_level;
    let mut out = Vec::new();
    let mut push = |name: &str, batch: arrow_array::RecordBatch, schema| -> Result<()> {
        let path = layout.analyze_table(name);
        let rows = stage.write_table(&path, &schema, vec![batch], level)?;
        out.push((path, rows));
        Ok(())
    };
    let path = layout.analyze_table("selective");
    push(
        "selective",
        selective::selective_batch(&x.selective, &path)?,
        ferbayes_core::schema::analyze_selective(),
    )?;
    if let Some(rows) = &x.shift {
        let path = layout.analyze_table("shift");
        push(
            "shift",
            shift::shift_batch(rows, &path)?,
            ferbayes_core::schema::analyze_shift(),
        )?;
    }
    if let Some(results) = &x.ood {
        let path = layout.analyze_table("ood");
        let rows: Vec<ood::OodRow> = results.iter().flat_map(|r| r.rows.clone()).collect();
        push(
            "ood",
            ood::ood_batch(&rows, &path)?,
            ferbayes_core::schema::analyze_ood(),
        )?;
    }
    if let Some(rows) = &x.labels {
        let path = layout.analyze_table("labels");
        push(
            "labels",
            labels::labels_batch(rows, &path)?,
            ferbayes_core::schema::analyze_labels(),
        )?;
    }
    Ok(out)
}

/// The architectures of `archs` in settings order.
fn in_order(settings: &Settings, mut archs: Vec<Arch>) -> Vec<Arch> {
    archs.sort_by_key(|a| {
        settings
            .train
            .archs
            .iter()
            .position(|b| b == a)
            .unwrap_or(usize::MAX)
    });
    archs.dedup();
    archs
}

/// The risk–coverage figures, one per architecture.
fn selective_jobs<'a>(layout: &'a Layout, settings: &Settings, x: &Extras) -> Vec<Job<'a>> {
    let mut selective_jobs: Vec<Job<'a>> = Vec::new();
    let archs = in_order(settings, x.selective.iter().map(|r| r.arch).collect());
    for arch in archs {
        let mut lines = Vec::new();
        for r in x.selective.iter().filter(|r| r.arch == arch) {
            let dashed = r.score != "confidence";
            lines.push(PanelLine {
                label: format!(
                    "{} ({})",
                    r.method,
                    if dashed { "MI" } else { "confidence" }
                ),
                color: method_color(r.method),
                dashed,
                markers: false,
                points: r.curve.clone(),
            });
        }
        let fig = LinePanels {
            title: format!("{arch}: risk–coverage on the test split (n = T)"),
            x_label: "coverage".into(),
            y_label: "risk (error on the faces kept)".into(),
            x_range: (0.0, 1.0),
            integer_x: false,
            columns: 1,
            panels: vec![(
                "solid: ranked by confidence, dashed: by mutual information".into(),
                lines,
            )],
        };
        let caption = format!(
            "{arch}: selective risk (error on the most confident faces) against coverage on the test split with all T samples, one colour per method; solid lines rank the faces by the maximum mean probability, dashed lines by the mutual information (lowest first)."
        );
        selective_jobs.push(job(layout, format!("risk_coverage_{arch}"), caption, fig));
    }
    selective_jobs
}

/// The dataset-shift figures: error and ECE per architecture, a panel per corruption.
fn shift_jobs<'a>(layout: &'a Layout, settings: &Settings, x: &Extras) -> Vec<Job<'a>> {
    let mut shift_jobs: Vec<Job<'a>> = Vec::new();
    if let Some(rows) = &x.shift {
        let archs = in_order(settings, rows.iter().map(|r| r.arch).collect());
        for arch in archs {
            let of_arch: Vec<&ShiftRow> = rows.iter().filter(|r| r.arch == arch).collect();
            let mut corruptions: Vec<&str> = Vec::new();
            let mut methods: Vec<Method> = Vec::new();
            for r in &of_arch {
                if !corruptions.contains(&r.corruption.as_str()) {
                    corruptions.push(&r.corruption);
                }
                if !methods.contains(&r.method) {
                    methods.push(r.method);
                }
            }
            let max_severity = of_arch.iter().map(|r| r.severity).max().unwrap_or(5).max(1);
            for (metric, name, label) in
                [("error", "error", "test error"), ("ece", "ECE", "test ECE")]
            {
                let panels = corruptions
                    .iter()
                    .map(|&c| {
                        let lines = methods
                            .iter()
                            .map(|&m| PanelLine {
                                label: m.to_string(),
                                color: method_color(m),
                                dashed: false,
                                markers: true,
                                points: of_arch
                                    .iter()
                                    .filter(|r| r.corruption == c && r.method == m)
                                    .map(|r| {
                                        (f64::from(r.severity), r.get(metric).unwrap_or(f64::NAN))
                                    })
                                    .collect(),
                            })
                            .collect();
                        (c.to_owned(), lines)
                    })
                    .collect();
                let fig = LinePanels {
                    title: format!("{arch}: {name} under dataset shift (n = T)"),
                    x_label: "severity".into(),
                    y_label: label.into(),
                    x_range: (-0.2, f64::from(max_severity) + 0.2),
                    integer_x: true,
                    columns: 4,
                    panels,
                };
                let caption = format!(
                    "{arch}: {name} on corrupted copies of test faces against the corruption severity (0 = the clean faces), one panel per corruption, one line per method, all T samples."
                );
                shift_jobs.push(job(layout, format!("shift_{metric}_{arch}"), caption, fig));
            }
        }
    }
    shift_jobs
}

/// The OOD entropy histograms, one per architecture.
fn ood_jobs<'a>(layout: &'a Layout, settings: &Settings, x: &Extras) -> Vec<Job<'a>> {
    let mut ood_jobs: Vec<Job<'a>> = Vec::new();
    if let Some(results) = &x.ood {
        let archs = in_order(settings, results.iter().map(|r| r.arch).collect());
        for arch in archs {
            let panels: Vec<(String, Vec<HistogramSeries>)> = results
                .iter()
                .filter(|r| r.arch == arch)
                .map(|r| {
                    let mut series = vec![HistogramSeries {
                        label: "test faces".into(),
                        color: CROWD_COLOR,
                        values: r.test.entropy.clone(),
                    }];
                    for (k, (set, scores)) in r.sets.iter().enumerate() {
                        series.push(HistogramSeries {
                            label: set.clone(),
                            color: SET_COLORS[k % SET_COLORS.len()],
                            values: scores.entropy.clone(),
                        });
                    }
                    (r.method.to_string(), series)
                })
                .collect();
            if panels.is_empty() {
                continue;
            }
            let fig = Histograms {
                title: format!("{arch}: predictive entropy, test faces vs OOD sets (n = T)"),
                x_label: "predictive entropy (nats)".into(),
                range: (0.0, (ferbayes_core::NUM_CLASSES as f64).ln()),
                bins: HISTOGRAM_BINS,
                panels,
            };
            let caption = format!(
                "{arch}: normalised histograms of the predictive entropy of the test faces (grey) and of each OOD set, one panel per method, all T samples; the legend gives each set's size."
            );
            ood_jobs.push(job(layout, format!("ood_hist_{arch}"), caption, fig));
        }
    }
    ood_jobs
}

/// Draws the figures of the extra sections into `x`.
pub(crate) fn draw(layout: &Layout, settings: &Settings, x: &mut Extras) -> Result<()> {
    let selective_jobs = selective_jobs(layout, settings, x);
    let shift_jobs = shift_jobs(layout, settings, x);
    let ood_jobs = ood_jobs(layout, settings, x);
    let (ns, nh) = (selective_jobs.len(), shift_jobs.len());
    let mut all = selective_jobs;
    all.extend(shift_jobs);
    all.extend(ood_jobs);
    let mut figures = draw_jobs(all)?;
    let ood_figures = figures.split_off(ns + nh);
    let shift_figures = figures.split_off(ns);
    x.selective_figures = figures;
    x.shift_figures = shift_figures;
    x.ood_figures = ood_figures;
    Ok(())
}
