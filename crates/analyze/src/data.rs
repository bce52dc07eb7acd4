//! Reading the inputs: the faces of an ingest split and the samples of an infer file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ferbayes_core::io::read_rows;
use ferbayes_core::schema::rows::{
    FaceRow, InferOodRow, InferRow, InferShiftRow, OodImageRow, ShiftFaceRow,
};
use ferbayes_core::{IMAGE_PIXELS, NUM_CLASSES};

use crate::error::{AnalyzeError, Result};
use crate::metrics::Evaluator;

/// Tolerance on the sum of a probability row.
const SUM_TOLERANCE: f32 = 1e-3;

/// The faces of one ingest split.
#[derive(Debug)]
pub struct Faces {
    pub path: PathBuf,
    pub images: Vec<String>,
    /// Row-major 48x48 grayscale of every face (`IMAGE_PIXELS` each); empty unless requested.
    pub pixels: Vec<u8>,
    /// The FER+ `multi_target` set of every face as a bit mask (bit k = class k; 0 when null).
    pub multi_target: Vec<u8>,
    pub evaluator: Evaluator<NUM_CLASSES>,
}

impl Faces {
    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The pixels of face `i`, if they were read.
    pub fn face_pixels(&self, i: usize) -> Option<&[u8]> {
        self.pixels.get(i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS)
    }
}

/// The samples of one infer file, sample-major: `probs[t * faces + i]` is face i under sample t.
#[derive(Debug)]
pub struct Samples {
    pub path: PathBuf,
    pub count: usize,
    pub faces: usize,
    pub probs: Vec<[f32; NUM_CLASSES]>,
}

impl Samples {
    /// Every face's prediction under sample `t`.
    pub fn sample(&self, t: usize) -> &[[f32; NUM_CLASSES]] {
        &self.probs[t * self.faces..(t + 1) * self.faces]
    }

    /// Every sample's predictions, in sample order (the prediction at n = T averages them).
    pub fn all(&self) -> Vec<&[[f32; NUM_CLASSES]]> {
        (0..self.count).map(|t| self.sample(t)).collect()
    }
}

fn ingest_err(path: &Path, message: impl Into<String>) -> AnalyzeError {
    AnalyzeError::Ingest {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn infer_err(path: &Path, message: impl Into<String>) -> AnalyzeError {
    AnalyzeError::Inference {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The classes of a 0/1 row (`multi_target`) as a bit mask, bit k = class k.
fn class_mask(row: &[f32]) -> u8 {
    row.iter()
        .enumerate()
        .filter(|(_, v)| **v > 0.5)
        .fold(0u8, |mask, (k, _)| mask | (1 << k))
}

/// Reads the faces of an ingest split; `pixels` also reads the images (for the figures).
pub fn read_faces(path: &Path, pixels: bool, bins: usize) -> Result<Faces> {
    let mut cols = vec![
        "image",
        "majority",
        "crowd",
        "crowd_entropy",
        "multi_target",
    ];
    if pixels {
        cols.push("pixels");
    }
    let rows: Vec<FaceRow> = read_rows(path, Some(&cols), "just ingest")?;
    let n = rows.len();
    let mut images = Vec::with_capacity(n);
    let mut majority = Vec::with_capacity(n);
    let mut crowd = Vec::with_capacity(n);
    let mut crowd_entropy = Vec::with_capacity(n);
    let mut multi_target = Vec::with_capacity(n);
    let mut pixel_data = Vec::with_capacity(if pixels { n * IMAGE_PIXELS } else { 0 });
    for row in rows {
        let y = row.majority;
        if y.is_some_and(|y| usize::from(y) >= NUM_CLASSES) {
            let message = format!("{}: majority class {y:?} is out of range", row.image);
            return Err(ingest_err(path, message));
        }
        majority.push(y);
        crowd.push(row.crowd);
        crowd_entropy.push(row.crowd_entropy);
        multi_target.push(row.multi_target.map_or(0u8, |m| class_mask(&m)));
        pixel_data.extend_from_slice(&row.pixels);
        images.push(row.image);
    }
    Ok(Faces {
        path: path.to_owned(),
        images,
        pixels: pixel_data,
        multi_target,
        evaluator: Evaluator::new(majority, crowd, crowd_entropy, bins),
    })
}

/// Reads an infer file and places every row by (sample, face); every face of `faces` must have
/// every sample 0..T−1 exactly once, with finite, non-negative probabilities summing to 1.
pub fn read_samples(path: &Path, faces: &Faces) -> Result<Samples> {
    let index: HashMap<&str, usize> = faces
        .images
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let table: Vec<InferRow> = read_rows(path, None, "just infer")?;
    let err = |m: String| infer_err(path, m);
    let mut rows: Vec<(usize, usize, [f32; NUM_CLASSES])> = Vec::with_capacity(table.len());
    let mut count = 0usize;
    for row in &table {
        let name = row.image.as_str();
        let face = *index.get(name).ok_or_else(|| {
            err(format!(
                "face {name} is not in {} (the ingest tables changed since inference)",
                faces.path.display()
            ))
        })?;
        let t = usize::from(row.sample);
        let what = || format!("{name}, sample {t}");
        let p = distribution(row.probs, &what, &err)?;
        count = count.max(t + 1);
        rows.push((t, face, p));
    }
    let n = faces.len();
    if rows.is_empty() || n == 0 {
        return Err(err("holds no predictions".into()));
    }
    if rows.len() != count * n {
        return Err(err(format!(
            "{} rows, but {n} faces x {count} samples = {} were expected",
            rows.len(),
            count * n
        )));
    }
    let mut probs = vec![[0.0f32; NUM_CLASSES]; count * n];
    let mut seen = vec![false; count * n];
    for (t, face, row) in rows {
        let slot = t * n + face;
        if std::mem::replace(&mut seen[slot], true) {
            return Err(err(format!(
                "face {} has sample {t} twice",
                faces.images[face]
            )));
        }
        probs[slot] = row;
    }
    // Equal counts and no duplicates imply every slot is filled.
    Ok(Samples {
        path: path.to_owned(),
        count,
        faces: n,
        probs,
    })
}

/// A corrupted copy of a test face: the row key of the shift tables.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShiftKey {
    /// The test face's file name.
    pub image: String,
    /// The corruption (`none` at severity 0).
    pub corruption: String,
    /// 0 (clean) to 5.
    pub severity: u8,
}

/// An out-of-distribution image: the row key of the OOD tables.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OodKey {
    /// The set's name.
    pub set: String,
    /// The image's name within the set.
    pub image: String,
}

/// The samples of a long-format infer table whose rows are keyed by more than the image
/// (`infer/<arch>/<method>/{shift,ood}.parquet`): `keys[i]` is face i of `samples`, in order of
/// first appearance.
#[derive(Debug)]
pub struct KeyedSamples<K> {
    /// The key of every face of `samples`.
    pub keys: Vec<K>,
    /// The predictions, sample-major as for the test split.
    pub samples: Samples,
}

/// Places `(key, sample, probs)` rows by (sample, face), faces in order of first appearance;
/// every face must have every sample 0..T−1 exactly once.
fn keyed_samples<K: Clone + Eq + std::hash::Hash + std::fmt::Debug>(
    path: &Path,
    rows: Vec<(K, usize, [f32; NUM_CLASSES])>,
) -> Result<KeyedSamples<K>> {
    let err = |m: String| infer_err(path, m);
    let mut index: HashMap<K, usize> = HashMap::new();
    let mut keys: Vec<K> = Vec::new();
    let mut count = 0usize;
    let mut placed = Vec::with_capacity(rows.len());
    for (key, t, p) in rows {
        let face = *index.entry(key.clone()).or_insert_with(|| {
            keys.push(key);
            keys.len() - 1
        });
        count = count.max(t + 1);
        placed.push((t, face, p));
    }
    let n = keys.len();
    if n == 0 {
        return Err(err("holds no predictions".into()));
    }
    if placed.len() != count * n {
        return Err(err(format!(
            "{} rows, but {n} images x {count} samples = {} were expected",
            placed.len(),
            count * n
        )));
    }
    let mut probs = vec![[0.0f32; NUM_CLASSES]; count * n];
    let mut seen = vec![false; count * n];
    for (t, face, row) in placed {
        let slot = t * n + face;
        if std::mem::replace(&mut seen[slot], true) {
            return Err(err(format!("{:?} has sample {t} twice", keys[face])));
        }
        probs[slot] = row;
    }
    Ok(KeyedSamples {
        keys,
        samples: Samples {
            path: path.to_owned(),
            count,
            faces: n,
            probs,
        },
    })
}

/// A `probs` row, checked to be a distribution: finite, non-negative, summing to 1.
fn distribution(
    p: [f32; NUM_CLASSES],
    what: &dyn Fn() -> String,
    err: &dyn Fn(String) -> AnalyzeError,
) -> Result<[f32; NUM_CLASSES]> {
    let sum: f32 = p.iter().sum();
    if p.iter().any(|v| !v.is_finite() || *v < 0.0) || (sum - 1.0).abs() > SUM_TOLERANCE {
        return Err(err(format!(
            "{}: probabilities {p:?} are not a distribution (sum {sum})",
            what()
        )));
    }
    Ok(p)
}

/// Reads `infer/<arch>/<method>/shift.parquet` (schema
/// [`ferbayes_core::schema::infer_shift`]).
pub fn read_shift_samples(path: &Path) -> Result<KeyedSamples<ShiftKey>> {
    let table: Vec<InferShiftRow> = read_rows(path, None, "just infer")?;
    let err = |m: String| infer_err(path, m);
    let mut rows = Vec::with_capacity(table.len());
    for row in table {
        let key = ShiftKey {
            image: row.image,
            corruption: row.corruption,
            severity: row.severity,
        };
        let t = usize::from(row.sample);
        let what = || {
            format!(
                "{} ({} {}), sample {t}",
                key.image, key.corruption, key.severity
            )
        };
        let p = distribution(row.probs, &what, &err)?;
        rows.push((key, t, p));
    }
    keyed_samples(path, rows)
}

/// Reads `infer/<arch>/<method>/ood.parquet` (schema [`ferbayes_core::schema::infer_ood`]).
pub fn read_ood_samples(path: &Path) -> Result<KeyedSamples<OodKey>> {
    let table: Vec<InferOodRow> = read_rows(path, None, "just infer")?;
    let err = |m: String| infer_err(path, m);
    let mut rows = Vec::with_capacity(table.len());
    for row in table {
        let key = OodKey {
            set: row.set,
            image: row.image,
        };
        let t = usize::from(row.sample);
        let what = || format!("{}/{}, sample {t}", key.set, key.image);
        let p = distribution(row.probs, &what, &err)?;
        rows.push((key, t, p));
    }
    keyed_samples(path, rows)
}

/// The majority label of every row of `ingest/shift.parquet` (schema
/// [`ferbayes_core::schema::ingest_shift`]).
pub fn read_shift_labels(path: &Path) -> Result<HashMap<ShiftKey, Option<u8>>> {
    let cols = ["image", "corruption", "severity", "majority"];
    let table: Vec<ShiftFaceRow> = read_rows(path, Some(&cols), "just ingest")?;
    let mut out = HashMap::with_capacity(table.len());
    for row in table {
        let y = row.majority;
        if y.is_some_and(|y| usize::from(y) >= NUM_CLASSES) {
            let message = format!("{}: majority class {y:?} is out of range", row.image);
            return Err(ingest_err(path, message));
        }
        let key = ShiftKey {
            image: row.image,
            corruption: row.corruption,
            severity: row.severity,
        };
        out.insert(key, y);
    }
    Ok(out)
}

/// The sets of `ingest/ood.parquet` (schema [`ferbayes_core::schema::ingest_ood`]) with their
/// `near` flag, in order of first appearance.
pub fn read_ood_sets(path: &Path) -> Result<Vec<(String, bool)>> {
    let table: Vec<OodImageRow> = read_rows(path, Some(&["set", "near"]), "just ingest")?;
    let mut out: Vec<(String, bool)> = Vec::new();
    for row in table {
        if !out.iter().any(|(s, _)| *s == row.set) {
            out.push((row.set, row.near));
        }
    }
    Ok(out)
}
