//! The ingest stage: FER+ (either accepted layout) to one Parquet file per split, with the FER+
//! majority, crossentropy and multi-target labels and the plain crowd distribution.
//!
//! Architecture invariant: this is the only crate that reads the FER+ label and CSV files, and
//! the only stage that reads raw images (decoded by `ferbayes-faces`: FER+'s face PNGs and the
//! OOD image folders); every later stage reads the Parquet written here.

pub mod error;
pub mod extra;
pub mod labels;
pub mod shift;
pub mod source;

use std::path::{Path, PathBuf};
use std::time::Instant;

use ferbayes_core::io::rows_batch;
use ferbayes_core::runner::{Begin, StageRun};
use ferbayes_core::schema::rows::FaceRow;
use ferbayes_core::{IngestSettings, Layout, Split, schema};

pub use error::{IngestError, Result};
pub use labels::Labels;
pub use source::{Face, SourceLayout};

/// What one split's Parquet file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSummary {
    pub split: Split,
    pub path: PathBuf,
    pub faces: usize,
    /// Faces with a majority label.
    pub majority: usize,
    /// Faces with a crossentropy (soft) target.
    pub soft: usize,
}

/// What a checked run of ingest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestRun {
    /// The artifacts were up to date and nothing was written.
    pub skipped: bool,
    /// The stage's key (see `ferbayes_core::plan`).
    pub key: String,
    /// What was written (empty when skipped).
    pub splits: Vec<SplitSummary>,
}

/// Like [`run`], but first compares the manifest's key with the fresh one (settings and the
/// hashes of the label files and image folders) and does nothing when they match and every
/// output exists, unless `force`.
pub fn run_checked(
    data_root: &Path,
    layout: &Layout,
    settings: &IngestSettings,
    force: bool,
) -> Result<IngestRun> {
    let plan = ferbayes_core::plan::ingest(layout, data_root, settings);
    match plan.begin(force)? {
        Begin::UpToDate(check) => Ok(IngestRun {
            skipped: true,
            key: check.key.unwrap_or_default(),
            splits: Vec::new(),
        }),
        Begin::Run(stage) => {
            let key = stage.check().key.clone().unwrap_or_default();
            let splits = write(data_root, layout, settings, *stage)?;
            Ok(IngestRun {
                skipped: false,
                key,
                splits,
            })
        }
    }
}

/// Reads FER+ under `data_root` and writes `ingest/{train,valid,test}.parquet` and the manifest
/// (always; [`run_checked`] skips up-to-date artifacts).
///
/// Everything is read and checked before anything is written, and the three files are renamed
/// into place only once all three are complete, so a failed run leaves an earlier run's
/// artifacts untouched.
pub fn run(
    data_root: &Path,
    layout: &Layout,
    settings: &IngestSettings,
) -> Result<Vec<SplitSummary>> {
    let plan = ferbayes_core::plan::ingest(layout, data_root, settings);
    write(data_root, layout, settings, StageRun::locked(&plan)?)
}

fn write(
    data_root: &Path,
    layout: &Layout,
    settings: &IngestSettings,
    mut stage: StageRun<'_>,
) -> Result<Vec<SplitSummary>> {
    let started = Instant::now();
    // Bad extra-set settings (an empty OOD folder, say) are refused before FER+ is read.
    extra::check_settings(settings)?;
    let source_layout = source::detect(data_root)?;
    tracing::info!(root = %data_root.display(), layout = ?source_layout, "reading FER+");
    let splits = source::read_all(data_root, source_layout, settings.max_per_split)?;
    tracing::info!(
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "read {} faces",
        splits.iter().map(|(_, f)| f.len()).sum::<usize>()
    );
    stage.manifest_mut().inputs.insert(
        0,
        format!("{} ({source_layout:?} layout)", data_root.display()),
    );
    let mut summaries = Vec::new();
    for (split, faces) in &splits {
        let rows = face_rows(*split, faces);
        let summary = SplitSummary {
            split: *split,
            path: layout.ingest_split(*split),
            faces: faces.len(),
            majority: rows.iter().filter(|r| r.majority.is_some()).count(),
            soft: rows.iter().filter(|r| r.soft.is_some()).count(),
        };
        let batch = rows_batch(&summary.path, &rows)?;
        stage.write_table(
            &summary.path,
            &schema::ingest(),
            vec![batch],
            settings.zstd_level,
        )?;
        summaries.push(summary);
    }
    let test: &[Face] = splits
        .iter()
        .find(|(s, _)| *s == Split::Test)
        .map(|(_, f)| f.as_slice())
        .unwrap_or_default();
    if settings.shift.enabled() {
        let batch = rows_batch(
            &layout.ingest_shift(),
            &extra::shift_rows(test, &settings.shift)?,
        )?;
        tracing::info!(
            rows = batch.num_rows(),
            "dataset shift: {} corrupted copies",
            batch.num_rows()
        );
        stage.write_table(
            layout.ingest_shift(),
            &schema::ingest_shift(),
            vec![batch],
            settings.zstd_level,
        )?;
    }
    if settings.ood.enabled() {
        let batch = rows_batch(&layout.ingest_ood(), &extra::ood_rows(test, &settings.ood)?)?;
        tracing::info!(rows = batch.num_rows(), "out-of-distribution images");
        stage.write_table(
            layout.ingest_ood(),
            &schema::ingest_ood(),
            vec![batch],
            settings.zstd_level,
        )?;
    }
    stage.finish()?;
    tracing::info!(
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "ingest done"
    );
    Ok(summaries)
}

/// The rows of one split's ingest table (schema [`schema::ingest`]), faces in order.
pub fn face_rows(split: Split, faces: &[Face]) -> Vec<FaceRow> {
    faces
        .iter()
        .map(|face| {
            let labels = Labels::from_votes(&face.votes);
            FaceRow {
                image: face.image.clone(),
                row: face.row,
                split,
                pixels: face.pixels.clone(),
                votes: face.votes,
                majority: labels.majority,
                soft: labels.soft,
                multi_target: labels.multi_target,
                crowd: labels.crowd,
                crowd_entropy: labels.crowd_entropy,
            }
        })
        .collect()
}
