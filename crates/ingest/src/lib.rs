//! The ingest stage: FER+ (either accepted layout) to one Parquet file per split, with the FER+
//! majority, crossentropy and multi-target labels and the plain crowd distribution.
//!
//! Architecture invariant: this is the only crate that reads raw images or the FER+ CSV files;
//! every later stage reads the Parquet written here.

pub mod error;
pub mod extra;
pub mod labels;
pub mod photo;
pub mod shift;
pub mod source;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{StringBuilder, UInt8Builder, UInt32Builder};
use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, UInt8Array};
use arrow_buffer::NullBuffer;
use arrow_schema::Field;
use ferbayes_core::runner::{Begin, StageRun};
use ferbayes_core::{IngestSettings, Layout, NUM_CLASSES, Split, schema};

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
    let check = plan.check()?;
    write(data_root, layout, settings, StageRun::new(&plan, check))
}

fn write(
    data_root: &Path,
    layout: &Layout,
    settings: &IngestSettings,
    mut stage: StageRun<'_>,
) -> Result<Vec<SplitSummary>> {
    let started = Instant::now();
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
        let batch = to_batch(*split, faces);
        let labelled = |column: &str| {
            let c = batch
                .column_by_name(column)
                .expect("the ingest schema has it");
            c.len() - c.null_count()
        };
        let summary = SplitSummary {
            split: *split,
            path: layout.ingest_split(*split),
            faces: faces.len(),
            majority: labelled("majority"),
            soft: labelled("soft"),
        };
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
        let batch = extra::shift_batch(test, &settings.shift)?;
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
        let batch = extra::ood_batch(test, &settings.ood)?;
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

/// Builds the ingest record batch of one split (schema [`schema::ingest`]).
pub fn to_batch(split: Split, faces: &[Face]) -> RecordBatch {
    let n = faces.len();
    let mut image = StringBuilder::with_capacity(n, n * 14);
    let mut row = UInt32Builder::with_capacity(n);
    let mut split_col = StringBuilder::with_capacity(n, n * 5);
    let mut pixels = Vec::with_capacity(n * ferbayes_core::IMAGE_PIXELS);
    let mut votes = Vec::with_capacity(n * ferbayes_core::NUM_VOTES);
    let mut majority = UInt8Builder::with_capacity(n);
    let mut soft = OptionalVectors::new(n);
    let mut multi = OptionalVectors::new(n);
    let mut crowd = OptionalVectors::new(n);
    let mut crowd_entropy: Vec<Option<f32>> = Vec::with_capacity(n);
    for face in faces {
        let labels = Labels::from_votes(&face.votes);
        image.append_value(&face.image);
        row.append_value(face.row);
        split_col.append_value(split.name());
        pixels.extend_from_slice(&face.pixels);
        votes.extend_from_slice(&face.votes);
        majority.append_option(labels.majority);
        soft.push(labels.soft);
        multi.push(labels.multi_target);
        crowd.push(labels.crowd);
        crowd_entropy.push(labels.crowd_entropy);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(image.finish()),
        Arc::new(row.finish()),
        Arc::new(split_col.finish()),
        Arc::new(fixed_list_u8(pixels, ferbayes_core::IMAGE_PIXELS)),
        Arc::new(fixed_list_u8(votes, ferbayes_core::NUM_VOTES)),
        Arc::new(majority.finish()),
        Arc::new(soft.finish()),
        Arc::new(multi.finish()),
        Arc::new(crowd.finish()),
        Arc::new(Float32Array::from(crowd_entropy)),
    ];
    RecordBatch::try_new(schema::ingest(), columns).expect("columns match the ingest schema")
}

fn item_field(data_type: arrow_schema::DataType) -> Arc<Field> {
    Arc::new(Field::new("item", data_type, false))
}

pub(crate) fn fixed_list_u8(values: Vec<u8>, len: usize) -> FixedSizeListArray {
    FixedSizeListArray::new(
        item_field(arrow_schema::DataType::UInt8),
        len as i32,
        Arc::new(UInt8Array::from(values)),
        None,
    )
}

/// Builds a nullable fixed-size list of 8 f32 (null rows hold zeros underneath).
pub(crate) struct OptionalVectors {
    values: Vec<f32>,
    valid: Vec<bool>,
}

impl OptionalVectors {
    pub(crate) fn new(n: usize) -> Self {
        OptionalVectors {
            values: Vec::with_capacity(n * NUM_CLASSES),
            valid: Vec::with_capacity(n),
        }
    }

    pub(crate) fn push(&mut self, v: Option<[f32; NUM_CLASSES]>) {
        self.valid.push(v.is_some());
        self.values
            .extend_from_slice(&v.unwrap_or([0.0; NUM_CLASSES]));
    }

    pub(crate) fn finish(self) -> FixedSizeListArray {
        FixedSizeListArray::new(
            item_field(arrow_schema::DataType::Float32),
            NUM_CLASSES as i32,
            Arc::new(Float32Array::from(self.values)),
            Some(NullBuffer::from(self.valid)),
        )
    }
}
