//! `ferbayes predict DIR`: every photo of a folder (recursively; PNG and JPEG by extension) to
//! one Parquet table in the long format of the infer tables ([`ferbayes_core::schema::predict_faces`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float32Builder, StringBuilder, UInt16Builder, UInt32Builder};
use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch};
use arrow_schema::{DataType, Field};
use ferbayes_core::{NUM_CLASSES, schema};
use ferbayes_infer::Predictor;
use tracing_indicatif::span_ext::IndicatifSpanExt;

use crate::error::{PredictError, Result};
use crate::{FaceDetector, FacePrediction, Faces};

/// What a folder gave.
#[derive(Debug, Default)]
pub struct FolderPrediction {
    pub images: usize,
    pub faces: Vec<FacePrediction>,
    /// Photos in which no face was found.
    pub no_face: Vec<PathBuf>,
    /// Files that could not be read as images, with the reason.
    pub unreadable: Vec<String>,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// The PNG and JPEG files under `dir`, sorted.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| ferbayes_core::Error::io(&d, e))?;
        for entry in entries {
            let path = entry.map_err(|e| ferbayes_core::Error::io(&d, e))?.path();
            if path.is_dir() {
                todo.push(path);
            } else if is_image(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Predicts every photo under `dir` with a progress bar; photos without a face and unreadable
/// files are collected (and logged), not fatal.
pub fn predict_folder(
    predictor: &Predictor,
    detector: &mut FaceDetector,
    dir: &Path,
    faces: Faces,
) -> Result<FolderPrediction> {
    let files = image_files(dir)?;
    let span = ferbayes_core::cli::progress_span("photos", files.len() as u64);
    let _enter = span.enter();
    let mut out = FolderPrediction {
        images: files.len(),
        ..FolderPrediction::default()
    };
    for path in &files {
        match crate::predict_photo(predictor, detector, path, faces) {
            Ok(p) => out.faces.extend(p.faces),
            Err(PredictError::NoFace { path }) => {
                tracing::warn!("no face found in {}", path.display());
                out.no_face.push(path);
            }
            Err(PredictError::Ingest(e)) => {
                tracing::warn!("{e}");
                out.unreadable.push(e.to_string());
            }
            Err(e) => return Err(e),
        }
        span.pb_inc(1);
    }
    Ok(out)
}

/// The faces as one record batch of [`schema::predict_faces`], image paths relative to `dir`.
pub fn to_batch(dir: &Path, faces: &[FacePrediction]) -> RecordBatch {
    let rows: usize = faces.iter().map(|f| f.sample_probs.len()).sum();
    let mut image = StringBuilder::with_capacity(rows, rows * 24);
    let mut face = UInt16Builder::with_capacity(rows);
    let mut boxes: [UInt32Builder; 4] = std::array::from_fn(|_| UInt32Builder::with_capacity(rows));
    let mut sample = UInt16Builder::with_capacity(rows);
    let mut probs = Vec::with_capacity(rows * NUM_CLASSES);
    let mut parts: [Float32Builder; 3] =
        std::array::from_fn(|_| Float32Builder::with_capacity(rows));
    let mut verdict = StringBuilder::with_capacity(rows, rows * 12);
    for f in faces {
        let name = f
            .image
            .strip_prefix(dir)
            .unwrap_or(&f.image)
            .to_string_lossy();
        let b = &f.bbox;
        for (t, p) in f.sample_probs.iter().enumerate() {
            image.append_value(&name);
            face.append_value(f.face as u16);
            for (builder, v) in boxes.iter_mut().zip([b.x, b.y, b.width, b.height]) {
                builder.append_value(v);
            }
            sample.append_value(t as u16);
            probs.extend_from_slice(p);
            for (builder, v) in
                parts
                    .iter_mut()
                    .zip([f.predictive_entropy, f.aleatoric, f.epistemic])
            {
                builder.append_value(v as f32);
            }
            verdict.append_value(f.verdict.name());
        }
    }
    let probs = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        NUM_CLASSES as i32,
        Arc::new(Float32Array::from(probs)),
        None,
    );
    let mut columns: Vec<ArrayRef> = vec![Arc::new(image.finish()), Arc::new(face.finish())];
    columns.extend(boxes.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(sample.finish()));
    columns.push(Arc::new(probs));
    columns.extend(parts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(verdict.finish()));
    RecordBatch::try_new(schema::predict_faces(), columns)
        .expect("columns match the predict_faces schema")
}

/// Writes the faces of a folder to `out` (Parquet, zstd, atomically).
pub fn write(out: &Path, dir: &Path, faces: &[FacePrediction]) -> Result<PathBuf> {
    let batch = to_batch(dir, faces);
    let pending = ferbayes_core::io::write_parquet(
        out,
        &schema::predict_faces(),
        [batch],
        ferbayes_core::io::TABLE_ZSTD_LEVEL,
    )?;
    Ok(pending.commit()?)
}
