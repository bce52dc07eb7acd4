//! The evaluation sets beyond FER+ itself: corrupted copies of test faces (dataset shift) and
//! out-of-distribution images (generated sets and image folders), as `ingest/shift.parquet` and
//! `ingest/ood.parquet`.
//!
//! Shift: the first `ingest.shift.faces` test faces with a majority label, each once clean
//! (corruption `none`, severity 0) and once per corruption × severity 1..=5; the randomness of a
//! corrupted copy is seeded from (`ingest.shift.seed`, corruption name, face row), so a face's
//! copies do not change when other faces or settings change.
//!
//! OOD: `ingest.ood.faces` images per generated set (the face-based sets cycle through the test
//! faces; seeds from (`ingest.ood.seed`, set name, index)), and `ingest.ood.faces` images of
//! every folder in `ingest.ood.folders` (all of them if it has fewer; otherwise evenly spread
//! over the folder sorted by file name, see [`spread`]), converted by `ferbayes-faces` as
//! `predict` converts a photo.

use std::path::{Path, PathBuf};

use ferbayes_core::schema::rows::{OodImageRow, ShiftFaceRow};
use ferbayes_core::seed::{mix, stream_of};
use ferbayes_core::{OodSettings, ShiftSettings};
use rayon::prelude::*;

use crate::error::{IngestError, Result};
use crate::labels::Labels;
use crate::shift::{Corruption, GeneratedOod, SEVERITIES};
use crate::source::Face;

/// The setting's file for error messages about the extra sets.
const SETTINGS: &str = "pipeline.toml";

fn setting_error(key: &str, message: String) -> IngestError {
    IngestError::Layout {
        root: PathBuf::from(SETTINGS),
        message: format!("`{key}`: {message}"),
    }
}

/// Checks the extra sets' settings before any face is read: corruption and generated set names,
/// and that every `ingest.ood.folders` entry is a folder holding PNG or JPEG images; the error
/// names the key and the path.
pub fn check_settings(settings: &ferbayes_core::IngestSettings) -> Result<()> {
    if settings.shift.enabled() {
        corruptions(&settings.shift)?;
    }
    if settings.ood.enabled() {
        generated_sets(&settings.ood)?;
        for dir in &settings.ood.folders {
            folder_images(dir, settings.ood.faces)?;
        }
    }
    Ok(())
}

/// Parses the corruption names of `ingest.shift.corruptions`.
pub fn corruptions(settings: &ShiftSettings) -> Result<Vec<Corruption>> {
    settings
        .corruptions
        .iter()
        .map(|name| {
            name.parse()
                .map_err(|e| setting_error("ingest.shift.corruptions", format!("{e}")))
        })
        .collect()
}

/// Parses the set names of `ingest.ood.generated`.
pub fn generated_sets(settings: &OodSettings) -> Result<Vec<GeneratedOod>> {
    settings
        .generated
        .iter()
        .map(|name| {
            name.parse()
                .map_err(|e| setting_error("ingest.ood.generated", format!("{e}")))
        })
        .collect()
}

/// The rows of `ingest/shift.parquet` from the test faces (schema
/// [`ferbayes_core::schema::ingest_shift`]).
pub fn shift_rows(test: &[Face], settings: &ShiftSettings) -> Result<Vec<ShiftFaceRow>> {
    let kinds = corruptions(settings)?;
    let chosen: Vec<(&Face, Labels)> = test
        .iter()
        .map(|f| (f, Labels::from_votes(&f.votes)))
        .filter(|(_, l)| l.majority.is_some())
        .take(settings.faces)
        .collect();
    let rows: Vec<Vec<ShiftFaceRow>> = chosen
        .par_iter()
        .map(|(face, labels)| {
            let row = |corruption: &str, severity: u8, pixels: Vec<u8>| ShiftFaceRow {
                image: face.image.clone(),
                corruption: corruption.to_owned(),
                severity,
                pixels,
                majority: labels.majority,
                crowd: labels.crowd,
            };
            let mut rows = vec![row("none", 0, face.pixels.clone())];
            for &kind in &kinds {
                let seed = mix(
                    mix(settings.seed, stream_of(kind.as_str())),
                    u64::from(face.row),
                );
                for severity in 1..=SEVERITIES {
                    let pixels = crate::shift::corrupt(&face.pixels, kind, severity, seed)
                        .map_err(|e| IngestError::Image {
                            path: PathBuf::from(&face.image),
                            message: format!("cannot corrupt ({kind}, {severity}): {e}"),
                        })?;
                    rows.push(row(kind.as_str(), severity, pixels));
                }
            }
            Ok(rows)
        })
        .collect::<Result<_>>()?;
    Ok(rows.into_iter().flatten().collect())
}

/// The images of an OOD folder (PNG and JPEG, sorted by file name), at most `limit` spread
/// evenly over the sorted list.
fn folder_images(dir: &Path, limit: usize) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(setting_error(
            "ingest.ood.folders",
            format!(
                "{} is not a folder (give image folders, or remove the entry)",
                dir.display()
            ),
        ));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| IngestError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| {
                ["png", "jpg", "jpeg"]
                    .iter()
                    .any(|x| e.eq_ignore_ascii_case(x))
            })
        })
        .collect();
    if files.is_empty() {
        return Err(setting_error(
            "ingest.ood.folders",
            format!("{} holds no PNG or JPEG images", dir.display()),
        ));
    }
    files.sort();
    Ok(spread(files, limit))
}

/// At most `limit` items evenly spread over `items` (all of them when there are no more):
/// item ⌊i · len / limit⌋ for i < limit, so a folder sorted by source keeps every source.
pub fn spread<T: Clone>(items: Vec<T>, limit: usize) -> Vec<T> {
    if items.len() <= limit {
        return items;
    }
    (0..limit)
        .map(|i| items[i * items.len() / limit].clone())
        .collect()
}

/// The name of an OOD set from its folder (the folder's own name).
pub fn folder_set_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// The rows of `ingest/ood.parquet` (schema [`ferbayes_core::schema::ingest_ood`]): the
/// generated sets, built from the test faces where a set needs faces, then the image folders.
pub fn ood_rows(test: &[Face], settings: &OodSettings) -> Result<Vec<OodImageRow>> {
    let kinds = generated_sets(settings)?;
    if test.is_empty() && kinds.iter().any(|k| k.uses_face()) {
        return Err(setting_error(
            "ingest.ood.generated",
            "the face-based sets need test faces, and the test split is empty".into(),
        ));
    }
    let mut rows: Vec<OodImageRow> = Vec::new();
    for kind in kinds {
        let made: Vec<OodImageRow> = (0..settings.faces)
            .into_par_iter()
            .map(|i| {
                let face = &test[i % test.len().max(1)];
                let seed = mix(mix(settings.seed, stream_of(kind.as_str())), i as u64);
                let pixels = crate::shift::generate(kind, &face.pixels, seed).map_err(|e| {
                    IngestError::Image {
                        path: PathBuf::from(&face.image),
                        message: format!("cannot make the {kind} image: {e}"),
                    }
                })?;
                Ok(OodImageRow {
                    set: kind.as_str().to_owned(),
                    image: format!("{kind}-{i:05}"),
                    near: kind.is_near_ood(),
                    pixels,
                })
            })
            .collect::<Result<_>>()?;
        rows.extend(made);
    }
    for dir in &settings.folders {
        let set = folder_set_name(dir);
        let files = folder_images(dir, settings.faces)?;
        let loaded: Vec<OodImageRow> = files
            .par_iter()
            .map(|path| {
                let photo = ferbayes_faces::photo::load_photo(path)?;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Ok(OodImageRow {
                    set: set.clone(),
                    image: name,
                    near: false,
                    pixels: photo.pixels,
                })
            })
            .collect::<Result<_>>()?;
        rows.extend(loaded);
    }
    Ok(rows)
}
