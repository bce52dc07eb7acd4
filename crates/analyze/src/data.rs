//! Reading the inputs: the faces of an ingest split and the samples of an infer file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt8Type, UInt16Type};
use arrow_array::{Array, FixedSizeListArray, RecordBatch};
use ferbayes_core::io::read_parquet;
use ferbayes_core::{IMAGE_PIXELS, NUM_CLASSES, schema};

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

fn column<'a>(
    batch: &'a RecordBatch,
    name: &str,
    err: &dyn Fn(String) -> AnalyzeError,
) -> Result<&'a dyn Array> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| err(format!("missing column `{name}`")))
}

/// The values of row `i` of a fixed-size list of f32 with `len` items (None when null).
fn f32_row(list: &FixedSizeListArray, i: usize, len: usize) -> Option<Option<&[f32]>> {
    if list.is_null(i) {
        return Some(None);
    }
    let values = list.values().as_primitive_opt::<Float32Type>()?;
    let start = list.value_offset_at(i);
    values.values().get(start..start + len).map(Some)
}

/// A fixed-size list column of `batch`.
fn fixed_list<'a>(
    batch: &'a RecordBatch,
    name: &str,
    err: &dyn Fn(String) -> AnalyzeError,
) -> Result<&'a FixedSizeListArray> {
    column(batch, name, err)?
        .as_fixed_size_list_opt()
        .ok_or_else(|| err(format!("column `{name}` is not a fixed-size list")))
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
    let batches = read_parquet(path, &schema::ingest(), Some(&cols), "just ingest")?;
    let err = |m: String| ingest_err(path, m);
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut images = Vec::with_capacity(rows);
    let mut majority = Vec::with_capacity(rows);
    let mut crowd = Vec::with_capacity(rows);
    let mut crowd_entropy = Vec::with_capacity(rows);
    let mut multi_target = Vec::with_capacity(rows);
    let mut pixel_data = Vec::with_capacity(if pixels { rows * IMAGE_PIXELS } else { 0 });
    for batch in &batches {
        let image = column(batch, "image", &err)?
            .as_string_opt::<i32>()
            .ok_or_else(|| err("column `image` is not utf8".into()))?;
        let label = column(batch, "majority", &err)?
            .as_primitive_opt::<UInt8Type>()
            .ok_or_else(|| err("column `majority` is not u8".into()))?;
        let crowd_col = fixed_list(batch, "crowd", &err)?;
        let entropy = column(batch, "crowd_entropy", &err)?
            .as_primitive_opt::<Float32Type>()
            .ok_or_else(|| err("column `crowd_entropy` is not f32".into()))?;
        let multi_col = fixed_list(batch, "multi_target", &err)?;
        let pixel_col = if pixels {
            Some(fixed_list(batch, "pixels", &err)?)
        } else {
            None
        };
        for i in 0..batch.num_rows() {
            let name = image.value(i);
            images.push(name.to_owned());
            let y = (!label.is_null(i)).then(|| label.value(i));
            if y.is_some_and(|y| usize::from(y) >= NUM_CLASSES) {
                return Err(err(format!("{name}: majority class {y:?} is out of range")));
            }
            majority.push(y);
            let c = f32_row(crowd_col, i, NUM_CLASSES)
                .ok_or_else(|| err(format!("{name}: malformed `crowd` row")))?;
            crowd.push(c.map(|c| {
                let mut row = [0.0f32; NUM_CLASSES];
                row.copy_from_slice(c);
                row
            }));
            crowd_entropy.push((!entropy.is_null(i)).then(|| entropy.value(i)));
            let m = f32_row(multi_col, i, NUM_CLASSES)
                .ok_or_else(|| err(format!("{name}: malformed `multi_target` row")))?;
            multi_target.push(m.map_or(0u8, class_mask));
            if let Some(list) = pixel_col {
                let values = list
                    .values()
                    .as_primitive_opt::<UInt8Type>()
                    .ok_or_else(|| err("column `pixels` does not hold u8".into()))?;
                let start = list.value_offset_at(i);
                let row = values
                    .values()
                    .get(start..start.saturating_add(IMAGE_PIXELS))
                    .ok_or_else(|| err(format!("{name}: malformed `pixels` row")))?;
                pixel_data.extend_from_slice(row);
            }
        }
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
    let batches = read_parquet(path, &schema::infer(), None, "just infer")?;
    let err = |m: String| infer_err(path, m);
    let mut rows: Vec<(usize, usize, [f32; NUM_CLASSES])> = Vec::new();
    let mut count = 0usize;
    for batch in &batches {
        let image = column(batch, "image", &err)?
            .as_string_opt::<i32>()
            .ok_or_else(|| err("column `image` is not utf8".into()))?;
        let sample = column(batch, "sample", &err)?
            .as_primitive_opt::<UInt16Type>()
            .ok_or_else(|| err("column `sample` is not u16".into()))?;
        let probs = column(batch, "probs", &err)?
            .as_fixed_size_list_opt()
            .ok_or_else(|| err("column `probs` is not a fixed-size list".into()))?;
        for i in 0..batch.num_rows() {
            let name = image.value(i);
            let face = *index.get(name).ok_or_else(|| {
                err(format!(
                    "face {name} is not in {} (the ingest tables changed since inference)",
                    faces.path.display()
                ))
            })?;
            let t = usize::from(sample.value(i));
            let p = f32_row(probs, i, NUM_CLASSES)
                .flatten()
                .ok_or_else(|| err(format!("{name}, sample {t}: malformed `probs` row")))?;
            let sum: f32 = p.iter().sum();
            if p.iter().any(|v| !v.is_finite() || *v < 0.0) || (sum - 1.0).abs() > SUM_TOLERANCE {
                return Err(err(format!(
                    "{name}, sample {t}: probabilities {p:?} are not a distribution (sum {sum})"
                )));
            }
            let mut row = [0.0f32; NUM_CLASSES];
            row.copy_from_slice(p);
            count = count.max(t + 1);
            rows.push((t, face, row));
        }
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

/// Row `i` of a `probs` column as a checked distribution.
fn probs_row(
    probs: &FixedSizeListArray,
    i: usize,
    what: &dyn Fn() -> String,
    err: &dyn Fn(String) -> AnalyzeError,
) -> Result<[f32; NUM_CLASSES]> {
    let p = f32_row(probs, i, NUM_CLASSES)
        .flatten()
        .ok_or_else(|| err(format!("{}: malformed `probs` row", what())))?;
    let sum: f32 = p.iter().sum();
    if p.iter().any(|v| !v.is_finite() || *v < 0.0) || (sum - 1.0).abs() > SUM_TOLERANCE {
        return Err(err(format!(
            "{}: probabilities {p:?} are not a distribution (sum {sum})",
            what()
        )));
    }
    let mut row = [0.0f32; NUM_CLASSES];
    row.copy_from_slice(p);
    Ok(row)
}

/// Reads `infer/<arch>/<method>/shift.parquet` (schema [`schema::infer_shift`]).
pub fn read_shift_samples(path: &Path) -> Result<KeyedSamples<ShiftKey>> {
    let batches = read_parquet(path, &schema::infer_shift(), None, "just infer")?;
    let err = |m: String| infer_err(path, m);
    let mut rows = Vec::new();
    for batch in &batches {
        let image = column(batch, "image", &err)?
            .as_string_opt::<i32>()
            .ok_or_else(|| err("column `image` is not utf8".into()))?;
        let corruption = column(batch, "corruption", &err)?
            .as_string_opt::<i32>()
            .ok_or_else(|| err("column `corruption` is not utf8".into()))?;
        let severity = column(batch, "severity", &err)?
            .as_primitive_opt::<UInt8Type>()
            .ok_or_else(|| err("column `severity` is not u8".into()))?;
        let sample = column(batch, "sample", &err)?
            .as_primitive_opt::<UInt16Type>()
            .ok_or_else(|| err("column `sample` is not u16".into()))?;
        let probs = column(batch, "probs", &err)?
            .as_fixed_size_list_opt()
            .ok_or_else(|| err("column `probs` is not a fixed-size list".into()))?;
        for i in 0..batch.num_rows() {
            let key = ShiftKey {
                image: image.value(i).to_owned(),
                corruption: corruption.value(i).to_owned(),
                severity: severity.value(i),
            };
            let t = usize::from(sample.value(i));
            let what = || {
                format!(
                    "{} ({} {}), sample {t}",
                    key.image, key.corruption, key.severity
                )
            };
            let p = probs_row(probs, i, &what, &err)?;
            rows.push((key, t, p));
        }
    }
    keyed_samples(path, rows)
}

/// Reads `infer/<arch>/<method>/ood.parquet` (schema [`schema::infer_ood`]).
pub fn read_ood_samples(path: &Path) -> Result<KeyedSamples<OodKey>> {
    let batches = read_parquet(path, &schema::infer_ood(), None, "just infer")?;
    let err = |m: String| infer_err(path, m);
    let mut rows = Vec::new();
    for batch in &batches {
        let set = column(batch, "set", &err)?
            .as_string_opt::<i32>()
            .ok_or_else(|| err("column `set` is not utf8".into()))?;
        let image = column(batch, "image", &err)?
            .as_string_opt::<i32>()
            .ok_or_else(|| err("column `image` is not utf8".into()))?;
        let sample = column(batch, "sample", &err)?
            .as_primitive_opt::<UInt16Type>()
            .ok_or_else(|| err("column `sample` is not u16".into()))?;
        let probs = column(batch, "probs", &err)?
            .as_fixed_size_list_opt()
            .ok_or_else(|| err("column `probs` is not a fixed-size list".into()))?;
        for i in 0..batch.num_rows() {
            let key = OodKey {
                set: set.value(i).to_owned(),
                image: image.value(i).to_owned(),
            };
            let t = usize::from(sample.value(i));
            let what = || format!("{}/{}, sample {t}", key.set, key.image);
            let p = probs_row(probs, i, &what, &err)?;
            rows.push((key, t, p));
        }
    }
    keyed_samples(path, rows)
}

/// The majority label of every row of `ingest/shift.parquet` (schema [`schema::ingest_shift`]).
pub fn read_shift_labels(path: &Path) -> Result<HashMap<ShiftKey, Option<u8>>> {
    let cols = ["image", "corruption", "severity", "majority"];
    let batches = read_parquet(path, &schema::ingest_shift(), Some(&cols), "just ingest")?;
    let err = |m: String| ingest_err(path, m);
    let mut out = HashMap::new();
    for batch in &batches {
        let image = column(batch, "image", &err)?
            .as_string_opt::<i32>()
            .ok_or_else(|| err("column `image` is not utf8".into()))?;
        let corruption = column(batch, "corruption", &err)?
            .as_string_opt::<i32>()
            .ok_or_else(|| err("column `corruption` is not utf8".into()))?;
        let severity = column(batch, "severity", &err)?
            .as_primitive_opt::<UInt8Type>()
            .ok_or_else(|| err("column `severity` is not u8".into()))?;
        let label = column(batch, "majority", &err)?
            .as_primitive_opt::<UInt8Type>()
            .ok_or_else(|| err("column `majority` is not u8".into()))?;
        for i in 0..batch.num_rows() {
            let y = (!label.is_null(i)).then(|| label.value(i));
            if y.is_some_and(|y| usize::from(y) >= NUM_CLASSES) {
                return Err(err(format!(
                    "{}: majority class {y:?} is out of range",
                    image.value(i)
                )));
            }
            out.insert(
                ShiftKey {
                    image: image.value(i).to_owned(),
                    corruption: corruption.value(i).to_owned(),
                    severity: severity.value(i),
                },
                y,
            );
        }
    }
    Ok(out)
}

/// The sets of `ingest/ood.parquet` (schema [`schema::ingest_ood`]) with their `near` flag, in
/// order of first appearance.
pub fn read_ood_sets(path: &Path) -> Result<Vec<(String, bool)>> {
    let batches = read_parquet(
        path,
        &schema::ingest_ood(),
        Some(&["set", "near"]),
        "just ingest",
    )?;
    let err = |m: String| ingest_err(path, m);
    let mut out: Vec<(String, bool)> = Vec::new();
    for batch in &batches {
        let set = column(batch, "set", &err)?
            .as_string_opt::<i32>()
            .ok_or_else(|| err("column `set` is not utf8".into()))?;
        let near = column(batch, "near", &err)?
            .as_boolean_opt()
            .ok_or_else(|| err("column `near` is not boolean".into()))?;
        for i in 0..batch.num_rows() {
            let name = set.value(i);
            if !out.iter().any(|(s, _)| s == name) {
                out.push((name.to_owned(), near.value(i)));
            }
        }
    }
    Ok(out)
}
