//! Fixtures: a small artifact root with real ingest tables and synthetic inference outputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt8Type;
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray, UInt16Array,
};
use arrow_schema::{DataType, Field};
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
    let batches = ferbayes_core::io::read_parquet(
        &layout.ingest_split(split),
        &schema::ingest(),
        Some(&["image", "majority"]),
        "just ingest",
    )
    .expect("ingest readable");
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for b in &batches {
        let image = b.column_by_name("image").expect("image").as_string::<i32>();
        let majority = b
            .column_by_name("majority")
            .expect("majority")
            .as_primitive::<UInt8Type>();
        for i in 0..b.num_rows() {
            images.push(image.value(i).to_owned());
            labels.push((!majority.is_null(i)).then(|| majority.value(i)));
        }
    }
    (images, labels)
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
    let mut image = Vec::new();
    let mut sample = Vec::new();
    let mut values = Vec::new();
    for (i, name) in images.iter().enumerate() {
        for (t, rows) in probs.iter().enumerate() {
            image.push(name.as_str());
            sample.push(t as u16);
            values.extend_from_slice(&rows[i]);
        }
    }
    let list = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        8,
        Arc::new(Float32Array::from(values)),
        None,
    );
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(image)),
        Arc::new(UInt16Array::from(sample)),
        Arc::new(list),
    ];
    let batch = RecordBatch::try_new(schema::infer(), columns).expect("infer batch");
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
