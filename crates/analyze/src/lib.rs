//! The analyze stage: accuracy, calibration and uncertainty of every architecture × method as a
//! function of the number of samples n, against the FER+ majority labels and crowd distributions;
//! `analyze/metrics.parquet`, the figures, `report.html`/`report.md` and the manifest.
//!
//! For each `infer/<arch>/<method>/<split>.parquet` (valid and test) and n = 1..T, the prediction
//! with n samples is the mean of the probabilities of samples 0..n−1 (kept as running sums, so each
//! n costs one pass over the faces). For ensembles the member order matters at small n: the main
//! columns follow index order, and the `_std` columns are the population standard deviation over
//! `analyze.orderings` random member permutations (ChaCha8, seeded from `seed` and the
//! combination's name; the same permutations on both splits). Their mean goes into the report and
//! the figures' bands. For the MC methods the `_std` columns are 0 (null where the metric itself
//! is undefined, e.g. a correlation over constant values). The metric definitions are
//! `ferbayes_uq`'s; [`metrics`] computes them all in one pass over the faces.
//!
//! Calibration against the crowd, for every n = 1..T (fitted on the valid split's labelled faces,
//! judged on the test split's; [`posthoc`]):
//!
//! - `crowd_ece` and `crowd_cw_ece` in `metrics.parquet`
//!   ([`ferbayes_uq::calibration::crowd_ece`]);
//! - temperature scaling ([`ferbayes_uq::temperature`]): `analyze/temperature.parquet`;
//! - split-conformal prediction sets ([`ferbayes_uq::conformal`]) at α ∈
//!   `schema::CONFORMAL_ALPHAS`:
//!   `analyze/conformal.parquet`;
//! - figures `crowd_reliability_<arch>_<method>` and `set_size_vs_entropy`, and the report's
//!   "Calibration against the crowd" section, whose answers also open the report.
//!
//! Beyond the study (all at n = T, on the test split; the files are exactly
//! [`ferbayes_core::plan::analyze_outputs`], each written even when it has no rows):
//!
//! - **Selective prediction** (always): `analyze/selective.parquet`, per arch × method and score
//!   (`confidence` = maximum mean probability, `mutual_information` = faces ranked by −MI), the
//!   accuracy on the 80 % / 90 % most confident faces, the coverage at 90 % accuracy and the
//!   AURC; figures `risk_coverage_<arch>` ([`selective`]).
//! - **Dataset shift** (when ingest writes `ingest/shift.parquet`): from
//!   `infer/<arch>/<method>/shift.parquet`, per arch × method × corruption × severity (severity 0
//!   = the clean faces, repeated for every corruption) the faces, error, NLL, ECE, mean entropy and
//!   mean mutual information: `analyze/shift.parquet`; figures `shift_error_<arch>`,
//!   `shift_ece_<arch>` (one panel per corruption) ([`shift`]).
//! - **OOD detection** (when ingest writes `ingest/ood.parquet`): each OOD set of
//!   `infer/<arch>/<method>/ood.parquet` against all test faces, under 1 − max probability,
//!   entropy and mutual information: AUROC, AUPR and FPR at 95 % TPR in `analyze/ood.parquet`;
//!   figures `ood_hist_<arch>` (entropy histograms) ([`ood`]).
//! - **Soft-label comparison** (when `train.compare_label_modes` is set): the main run and each
//!   `infer/label-<mode>/` run for `train.compare_archs`: error, NLL, ECE, Brier, JSD, soft
//!   accuracy, entropy correlation in `analyze/labels.parquet`, and which mode is best per
//!   architecture in the report ([`labels`]).
//!
//! Each has a section in the report. A missing input of these analyses is skipped with a warning
//! (and listed in [`AnalyzeSummary::missing`]); an input inconsistent with the ingest tables is an
//! error naming the file.
//!
//! Architecture invariant: reads only ingest and infer Parquet (through `ferbayes_core::io`),
//! writes only under `analyze/`, every file atomically.

pub mod curves;
pub mod data;
pub mod error;
mod extras;
pub mod figures;
pub mod labels;
pub mod metrics;
pub mod ood;
pub mod output;
mod plots;
pub mod posthoc;
mod report;
pub mod selective;
pub mod shift;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use ferbayes_core::runner::{Begin, StageRun};
use ferbayes_core::{Arch, Layout, Method, Settings, Split, Stage, schema};
use rayon::prelude::*;
use tracing_indicatif::span_ext::IndicatifSpanExt;

pub use curves::Curve;
pub use error::{AnalyzeError, Result};
pub use metrics::Metrics;

/// The splits analyze reads (the train split is never evaluated).
pub const SPLITS: [Split; 2] = [Split::Valid, Split::Test];

/// One figure of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FigureEntry {
    /// File stem under `analyze/figures/` (`error_vs_n`, `reliability_alexnet_ensemble`, ...).
    pub stem: String,
    /// One-line caption.
    pub caption: String,
    /// The files written: the PNG and the SVG.
    pub files: Vec<PathBuf>,
}

/// What a run of analyze produced.
#[derive(Debug, Clone)]
pub struct AnalyzeSummary {
    /// `analyze/metrics.parquet`.
    pub metrics: PathBuf,
    /// Rows of `metrics.parquet`.
    pub rows: usize,
    /// The other tables written (`temperature.parquet`, `conformal.parquet`, `selective.parquet`
    /// and, as the profile asks, `shift`, `ood`, `labels`), with their rows.
    pub tables: Vec<(PathBuf, usize)>,
    pub report_html: PathBuf,
    pub report_md: PathBuf,
    pub figures: Vec<FigureEntry>,
    /// Every (arch, method, split) analysed, in settings order (valid before test).
    pub curves: Vec<Curve>,
    /// Infer files of the profile's combinations that do not exist (skipped), then the missing
    /// inputs of the extra analyses (shift, OOD, soft-label runs).
    pub missing: Vec<PathBuf>,
    /// `analyze.shown_n`.
    pub shown_n: Vec<usize>,
    /// Wall time of the run.
    pub seconds: f64,
}

impl AnalyzeSummary {
    /// The console table: test split at n ∈ `shown_n` (arch, method, n, error, NLL, ECE, Brier,
    /// JSD, soft accuracy).
    pub fn console_table(&self) -> String {
        output::console_table(&self.curves, &self.shown_n)
    }
}

/// One infer file to analyse.
#[derive(Debug, Clone)]
struct Input {
    arch: Arch,
    method: Method,
    split: Split,
    path: PathBuf,
}

/// Like [`run`], but returns None without doing anything when the manifest's key (settings and
/// the hashes of the ingest and infer tables) is current and every output exists, unless `force`.
pub fn run_checked(
    layout: &Layout,
    settings: &Settings,
    force: bool,
) -> Result<Option<AnalyzeSummary>> {
    let plan = ferbayes_core::plan::analyze(layout, settings);
    match plan.begin(force)? {
        Begin::UpToDate(_) => Ok(None),
        Begin::Run(stage) => run_plan(layout, settings, *stage).map(Some),
    }
}

/// Runs the analyze stage of `settings` on the artifacts of `layout` (always; see
/// [`run_checked`]).
pub fn run(layout: &Layout, settings: &Settings) -> Result<AnalyzeSummary> {
    let plan = ferbayes_core::plan::analyze(layout, settings);
    run_plan(layout, settings, StageRun::locked(&plan)?)
}

/// The stage's work; its tables are committed, after the report and figures, with the manifest.
fn run_plan(
    layout: &Layout,
    settings: &Settings,
    mut stage: StageRun<'_>,
) -> Result<AnalyzeSummary> {
    let started = Instant::now();
    let elapsed = || format!("{:.2}", started.elapsed().as_secs_f64());
    let (inputs, mut missing) = find_inputs(layout, settings)?;
    let (faces, samples) = read_inputs(layout, settings, &inputs)?;
    tracing::info!(files = inputs.len(), seconds = elapsed(), "read the inputs");
    let views = inputs_view(&inputs, &samples);

    let curves = compute_curves(settings, &inputs, &samples, &faces);
    let posthoc = posthoc::compute(
        &views,
        faces.get(&Split::Valid),
        faces.get(&Split::Test),
        settings.analyze.ece_bins,
    );
    tracing::info!(
        curves = curves.len(),
        seconds = elapsed(),
        "computed the metrics"
    );
    let mut tables = write_main_tables(&mut stage, layout, settings, &curves, &posthoc)?;
    let rows = tables[0].1 as usize;

    // The analyses beyond the study and their tables.
    let mut extra = extras::compute(layout, settings, &views, faces.get(&Split::Test))?;
    missing.extend(extra.missing.iter().cloned());
    tables.extend(extras::write_tables(&mut stage, layout, settings, &extra)?);
    tracing::info!(
        tables = tables.len(),
        seconds = elapsed(),
        "computed the extra analyses"
    );

    let (report_html, report_md, figures) = figures_and_report(
        layout, settings, &curves, &posthoc, &views, &faces, &missing, &mut extra,
    )?;
    tracing::info!(
        figures = figures.len(),
        seconds = elapsed(),
        "wrote the report"
    );

    let read: Vec<String> = faces
        .values()
        .map(|f| f.path.display().to_string())
        .chain(inputs.iter().map(|i| i.path.display().to_string()))
        .chain(extra.read.iter().map(|p| p.display().to_string()))
        .collect();
    finish(stage, layout, read, &figures)?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(seconds = format!("{seconds:.2}"), "analyze done");

    Ok(AnalyzeSummary {
        metrics: layout.metrics(),
        rows,
        tables: tables
            .iter()
            .skip(1)
            .map(|(path, rows)| (path.clone(), *rows as usize))
            .collect(),
        report_html,
        report_md,
        figures,
        curves,
        missing,
        shown_n: settings.analyze.shown_n.clone(),
        seconds,
    })
}

/// Draws every figure and writes the report; returns the report's paths and the figures in
/// report order.
#[allow(clippy::too_many_arguments)]
fn figures_and_report(
    layout: &Layout,
    settings: &Settings,
    curves: &[Curve],
    posthoc: &posthoc::PostHoc,
    views: &[InputView<'_>],
    faces: &BTreeMap<Split, data::Faces>,
    missing: &[PathBuf],
    extra: &mut extras::Extras,
) -> Result<(PathBuf, PathBuf, Vec<FigureEntry>)> {
    let mut figures = plots::draw_all(layout, settings, curves, views, faces.get(&Split::Test))?;
    let crowd_figures = plots::draw_crowd(layout, settings, posthoc)?;
    extras::draw(layout, settings, extra)?;
    let context = report::Context {
        layout,
        settings,
        curves,
        figures: &figures,
        crowd_figures: &crowd_figures,
        posthoc,
        missing,
        faces,
        inputs: views,
        extras: extra,
    };
    let (report_html, report_md) = report::write(&context)?;
    figures.extend(crowd_figures);
    figures.extend(extra.figures().cloned());
    Ok((report_html, report_md, figures))
}

/// The infer files of the profile that exist, and those that do not (warned about); an error
/// when none exists.
fn find_inputs(layout: &Layout, settings: &Settings) -> Result<(Vec<Input>, Vec<PathBuf>)> {
    let mut inputs = Vec::new();
    let mut missing = Vec::new();
    for &arch in &settings.train.archs {
        for &method in &settings.train.methods {
            for split in SPLITS {
                let path = layout.infer_split(arch, method, split);
                if path.is_file() {
                    inputs.push(Input {
                        arch,
                        method,
                        split,
                        path,
                    });
                } else {
                    tracing::warn!(
                        "{} does not exist; skipping {arch}/{method} on {split}",
                        path.display()
                    );
                    missing.push(path);
                }
            }
        }
    }
    if inputs.is_empty() {
        let combinations: Vec<String> = settings
            .train
            .archs
            .iter()
            .flat_map(|a| {
                settings
                    .train
                    .methods
                    .iter()
                    .map(move |m| format!("{a}/{m}"))
            })
            .collect();
        return Err(AnalyzeError::NoInference {
            dir: layout.stage_dir(Stage::Infer),
            combinations: if combinations.is_empty() {
                "(none configured)".to_owned()
            } else {
                combinations.join(", ")
            },
        });
    }
    Ok((inputs, missing))
}

/// The faces of each split used (test with pixels, for the figures), then the samples.
fn read_inputs(
    layout: &Layout,
    settings: &Settings,
    inputs: &[Input],
) -> Result<(BTreeMap<Split, data::Faces>, Vec<data::Samples>)> {
    let splits: Vec<Split> = SPLITS
        .into_iter()
        .filter(|s| inputs.iter().any(|i| i.split == *s))
        .collect();
    let faces: BTreeMap<Split, data::Faces> = splits
        .par_iter()
        .map(|&split| {
            let path = layout.ingest_split(split);
            data::read_faces(&path, split == Split::Test, settings.analyze.ece_bins)
                .map(|f| (split, f))
        })
        .collect::<Result<_>>()?;
    let samples: Vec<data::Samples> = inputs
        .par_iter()
        .map(|input| data::read_samples(&input.path, &faces[&input.split]))
        .collect::<Result<_>>()?;
    Ok((faces, samples))
}

/// Writes `metrics.parquet`, `temperature.parquet` and `conformal.parquet` (in that order);
/// returns their paths and rows.
fn write_main_tables(
    stage: &mut StageRun<'_>,
    layout: &Layout,
    settings: &Settings,
    curves: &[Curve],
    posthoc: &posthoc::PostHoc,
) -> Result<Vec<(PathBuf, u64)>> {
    let level = settings.ingest.zstd_level;
    let tables = [
        (
            layout.metrics(),
            schema::metrics(),
            output::metrics_batch(curves, &layout.metrics())?,
        ),
        (
            layout.temperature(),
            schema::analyze_temperature(),
            posthoc::temperature_batch(&posthoc.temperature, &layout.temperature())?,
        ),
        (
            layout.conformal(),
            schema::analyze_conformal(),
            posthoc::conformal_batch(&posthoc.conformal, &layout.conformal())?,
        ),
    ];
    let mut out = Vec::new();
    for (path, schema, batch) in tables {
        let rows = stage.write_table(&path, &schema, vec![batch], level)?;
        out.push((path, rows));
    }
    Ok(out)
}

/// Names the report and every figure file in the manifest (the tables are named as written),
/// then commits the tables and writes the manifest.
fn finish(
    mut stage: StageRun<'_>,
    layout: &Layout,
    read: Vec<String>,
    figures: &[FigureEntry],
) -> Result<()> {
    stage.manifest_mut().inputs = read;
    stage.record(&layout.report_html(), 1)?;
    stage.record(&layout.report_md(), 1)?;
    for fig in figures {
        for file in &fig.files {
            stage.record_file(file, 1)?;
        }
    }
    stage.finish()?;
    Ok(())
}

/// An analysed infer file with its samples, as the figures and the report see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InputView<'a> {
    pub arch: Arch,
    pub method: Method,
    pub split: Split,
    pub path: &'a std::path::Path,
    pub samples: &'a data::Samples,
}

fn inputs_view<'a>(inputs: &'a [Input], samples: &'a [data::Samples]) -> Vec<InputView<'a>> {
    inputs
        .iter()
        .zip(samples)
        .map(|(i, s)| InputView {
            arch: i.arch,
            method: i.method,
            split: i.split,
            path: &i.path,
            samples: s,
        })
        .collect()
}

/// The sample orders of every input: index order, then (ensembles) the random orderings.
fn member_orders(
    settings: &Settings,
    inputs: &[Input],
    samples: &[data::Samples],
) -> Vec<Vec<Vec<usize>>> {
    inputs
        .iter()
        .zip(samples)
        .map(|(input, s)| {
            let mut all = vec![(0..s.count).collect::<Vec<_>>()];
            if input.method == Method::Ensemble {
                all.extend(curves::orderings(
                    settings.seed,
                    input.arch,
                    input.method,
                    s.count,
                    settings.analyze.orderings,
                ));
            }
            all
        })
        .collect()
}

/// The curves of every input: the index-order curve and, for ensembles, the random orderings,
/// all (input, ordering) pairs in parallel.
fn compute_curves(
    settings: &Settings,
    inputs: &[Input],
    samples: &[data::Samples],
    faces: &BTreeMap<Split, data::Faces>,
) -> Vec<Curve> {
    let entropies: Vec<Vec<f64>> = inputs
        .par_iter()
        .zip(samples)
        .map(|(input, s)| {
            let ev = &faces[&input.split].evaluator;
            (0..s.count)
                .map(|t| ev.labelled_entropy(s.sample(t)))
                .collect()
        })
        .collect();
    let orders = member_orders(settings, inputs, samples);
    let tasks: Vec<(usize, usize)> = orders
        .iter()
        .enumerate()
        .flat_map(|(i, o)| (0..o.len()).map(move |r| (i, r)))
        .collect();
    let span = ferbayes_core::cli::progress_span("metrics", tasks.len() as u64);
    let results: Vec<Vec<Metrics>> = {
        let _entered = span.enter();
        tasks
            .par_iter()
            .map(|&(i, r)| {
                let ev = &faces[&inputs[i].split].evaluator;
                let out = curves::curve(&samples[i], ev, &entropies[i], &orders[i][r]);
                span.pb_inc(1);
                out
            })
            .collect()
    };
    let mut results = results.into_iter();
    inputs
        .iter()
        .zip(samples)
        .zip(&orders)
        .map(|((input, s), o)| {
            let mut runs: Vec<Vec<Metrics>> = results.by_ref().take(o.len()).collect();
            let index = if runs.is_empty() {
                Vec::new()
            } else {
                runs.remove(0)
            };
            let (ordering_mean, ordering_std) = if runs.is_empty() {
                (index.clone(), curves::zero_std(&index))
            } else {
                curves::spread(&runs)
            };
            Curve {
                arch: input.arch,
                method: input.method,
                split: input.split,
                samples: s.count,
                orderings: runs.len(),
                index,
                ordering_mean,
                ordering_std,
            }
        })
        .collect()
}
