//! Fixtures: a small artifact root with real ingest tables and synthetic inference outputs.

use std::path::{Path, PathBuf};

use ferbayes_core::schema::Row;
use ferbayes_core::schema::rows::{FaceRow, InferRow, MetricsRow};
use ferbayes_core::{Arch, IngestSettings, Layout, Method, PipelineFile, Settings, Split, schema};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The `smoke` profile of the repository's pipeline.toml.
pub fn smoke_settings() -> Settings {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml");
    PipelineFile::load(&path)
        .expect("pipeline.toml parses")
        .settings("smoke")
        .expect("smoke profile")
}

/// Runs the real ingest on the first `n` faces of each FER+ split into `layout`.
pub fn ingest(layout: &Layout, n: usize) {
    let settings = IngestSettings {
        max_per_split: Some(n),
        zstd_level: 3,
        ..Default::default()
    };
    ferbayes_ingest::run(&ferbayes_core::test_data_root(), layout, &settings).expect("ingest runs");
}

/// Image names and majority labels of an ingest split.
pub fn ingest_faces(layout: &Layout, split: Split) -> (Vec<String>, Vec<Option<u8>>) {
    let rows: Vec<FaceRow> = ferbayes_core::io::read_rows(
        &layout.ingest_split(split),
        Some(&["image", "majority"]),
        "just ingest",
    )
    .expect("ingest readable");
    rows.into_iter().map(|r| (r.image, r.majority)).unzip()
}

/// Synthetic predictions `probs[t][face]`: softmax of N(0, 1)-ish logits, with the majority class
/// pushed up on two faces in three so that the error is well below chance.
pub fn synthetic_probs(labels: &[Option<u8>], samples: usize, seed: u64) -> Vec<Vec<[f32; 8]>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..samples)
        .map(|_| {
            labels
                .iter()
                .enumerate()
                .map(|(i, y)| {
                    let mut logits: [f32; 8] = std::array::from_fn(|_| rng.random_range(-1.5..1.5));
                    match y {
                        Some(y) if i % 3 != 0 => logits[usize::from(*y)] += 2.5,
                        _ => {}
                    }
                    let max = logits.iter().fold(f32::MIN, |a, &b| a.max(b));
                    let e = logits.map(|l| (l - max).exp());
                    let s: f32 = e.iter().sum();
                    e.map(|v| v / s)
                })
                .collect()
        })
        .collect()
}

/// Writes `infer/<arch>/<method>/<split>.parquet` (schema `schema::infer()`), faces in file
/// order and samples interleaved as the infer stage would.
pub fn write_infer(
    layout: &Layout,
    arch: Arch,
    method: Method,
    split: Split,
    images: &[String],
    probs: &[Vec<[f32; 8]>],
) -> PathBuf {
    let mut rows = Vec::new();
    for (i, name) in images.iter().enumerate() {
        for (t, sample) in probs.iter().enumerate() {
            rows.push(InferRow {
                image: name.clone(),
                sample: t as u16,
                probs: sample[i],
            });
        }
    }
    let batch = InferRow::to_batch(&rows).expect("infer batch");
    let path = layout.infer_split(arch, method, split);
    ferbayes_core::io::write_parquet(&path, &schema::infer(), [batch], 3)
        .expect("write infer")
        .commit()
        .expect("commit infer")
}

/// Every file under `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The metric `name` (one of [`schema::METRICS`]) of a `metrics.parquet` row.
pub fn metric(row: &MetricsRow, name: &str) -> Option<f64> {
    row.values[metric_index(name)]
}

/// Its `_std` column.
pub fn metric_std(row: &MetricsRow, name: &str) -> Option<f64> {
    row.stds[metric_index(name)]
}

fn metric_index(name: &str) -> usize {
    schema::METRICS
        .iter()
        .position(|m| *m == name)
        .unwrap_or_else(|| panic!("{name} is not a metric"))
}
