//! `ferbayes predict DIR`: every photo of a folder (recursively; PNG and JPEG by extension) to
//! one Parquet table in the long format of the infer tables ([`ferbayes_core::schema::predict_faces`]).

use std::path::{Path, PathBuf};

use ferbayes_core::schema;
use ferbayes_core::schema::rows::PredictRow;
use ferbayes_models::Predictor;
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

/// The PNG and JPEG files under `dir`, sorted; [`PredictError::NoImages`] when there are none
/// (an empty table named after the folder would look like a result).
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
    if out.is_empty() {
        return Err(PredictError::NoImages {
            dir: dir.to_owned(),
        });
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
            Err(PredictError::Faces(e)) => {
                tracing::warn!("{e}");
                out.unreadable.push(e.to_string());
            }
            Err(e) => return Err(e),
        }
        span.pb_inc(1);
    }
    Ok(out)
}

/// The faces' rows of [`schema::predict_faces`], image paths relative to `dir`: one per (image,
/// face, sample), the face's entropy parts and verdict on each of its sample rows.
pub fn rows(dir: &Path, faces: &[FacePrediction]) -> Vec<PredictRow> {
    let mut rows = Vec::with_capacity(faces.iter().map(|f| f.sample_probs.len()).sum());
    for f in faces {
        let name = f
            .image
            .strip_prefix(dir)
            .unwrap_or(&f.image)
            .to_string_lossy();
        for (t, p) in f.sample_probs.iter().enumerate() {
            rows.push(PredictRow {
                image: name.clone().into_owned(),
                face: f.face as u16,
                box_x: f.bbox.x,
                box_y: f.bbox.y,
                box_width: f.bbox.width,
                box_height: f.bbox.height,
                sample: t as u16,
                probs: *p,
                predictive_entropy: f.predictive_entropy as f32,
                aleatoric: f.aleatoric as f32,
                epistemic: f.epistemic as f32,
                verdict: f.verdict.name().to_owned(),
            });
        }
    }
    rows
}

/// Writes the faces of a folder to `out` (Parquet, zstd, atomically).
pub fn write(out: &Path, dir: &Path, faces: &[FacePrediction]) -> Result<PathBuf> {
    let batch = ferbayes_core::io::rows_batch(out, &rows(dir, faces))?;
    let pending = ferbayes_core::io::write_parquet(
        out,
        &schema::predict_faces(),
        [batch],
        ferbayes_core::io::TABLE_ZSTD_LEVEL,
    )?;
    Ok(pending.commit()?)
}
