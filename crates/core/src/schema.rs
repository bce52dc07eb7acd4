//! Arrow schemas of the Parquet artifacts, one constructor per artifact, and beside them in
//! [`rows`] each table's typed row struct, which converts to and from record batches ([`Row`]).

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::classes::{IMAGE_PIXELS, NUM_CLASSES, NUM_VOTES};

mod cell;
pub mod rows;

pub use cell::{Row, RowError};

/// Version of the artifact schemas; bumped whenever a column changes meaning or type.
pub const SCHEMA_VERSION: u32 = 1;

/// A fixed-size list of `len` non-null `item` values.
pub fn fixed_list(item: DataType, len: usize) -> DataType {
    let len = i32::try_from(len).expect("list length fits i32");
    DataType::FixedSizeList(Arc::new(Field::new("item", item, false)), len)
}

/// The schema of `ingest/<split>.parquet`, one row per face:
///
/// | column | type | meaning |
/// |---|---|---|
/// | `image` | utf8 | file name, e.g. `fer0000000.png` |
/// | `row` | u32 | row index in `fer2013.csv` |
/// | `split` | utf8 | `train`, `valid` or `test` |
/// | `pixels` | 2304 × u8 | row-major 48x48 grayscale |
/// | `votes` | 10 × u8 | crowd votes in FER+ order (8 emotions, unknown, NF) |
/// | `majority` | u8, nullable | FER+ majority class; null when FER+ drops the face |
/// | `soft` | 8 × f32, nullable | FER+ `crossentropy` target |
/// | `multi_target` | 8 × f32, nullable | FER+ `multi_target` set as 0/1 |
/// | `crowd` | 8 × f32, nullable | plain vote distribution over the 8 emotions |
/// | `crowd_entropy` | f32, nullable | entropy of `crowd` in nats |
pub fn ingest() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("image", DataType::Utf8, false),
            Field::new("row", DataType::UInt32, false),
            Field::new("split", DataType::Utf8, false),
            Field::new("pixels", fixed_list(DataType::UInt8, IMAGE_PIXELS), false),
            Field::new("votes", fixed_list(DataType::UInt8, NUM_VOTES), false),
            Field::new("majority", DataType::UInt8, true),
            Field::new("soft", fixed_list(DataType::Float32, NUM_CLASSES), true),
            Field::new(
                "multi_target",
                fixed_list(DataType::Float32, NUM_CLASSES),
                true,
            ),
            Field::new("crowd", fixed_list(DataType::Float32, NUM_CLASSES), true),
            Field::new("crowd_entropy", DataType::Float32, true),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// The schema of `train/<arch>/<method>/history.parquet`, one row per (member, epoch): mean
/// training loss and accuracy (against the target served), valid-split majority NLL and accuracy
/// of the deterministic network, the learning rate at the epoch's start, and its wall time.
pub fn history() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("member", DataType::UInt16, false),
            Field::new("epoch", DataType::UInt32, false),
            Field::new("train_loss", DataType::Float64, false),
            Field::new("train_accuracy", DataType::Float64, false),
            Field::new("valid_loss", DataType::Float64, false),
            Field::new("valid_accuracy", DataType::Float64, false),
            Field::new("learning_rate", DataType::Float64, false),
            Field::new("seconds", DataType::Float32, false),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// The schema of `infer/<arch>/<method>/<split>.parquet`, long format, one row per
/// (face, sample): `image` (joins the ingest tables), `sample` (pass index t for the MC methods,
/// member index for ensembles) and `probs`, the softmax output over the 8 classes (sums to 1).
pub fn infer() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("image", DataType::Utf8, false),
            Field::new("sample", DataType::UInt16, false),
            Field::new("probs", fixed_list(DataType::Float32, NUM_CLASSES), false),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// The schema of `ingest/shift.parquet`, one row per (face, corruption, severity): a copy of a
/// test face corrupted by `corruption` at `severity` 1..=5, plus the clean face once per face as
/// corruption `none`, severity 0. `image`, `majority` and `crowd` are the test face's.
pub fn ingest_shift() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("image", DataType::Utf8, false),
            Field::new("corruption", DataType::Utf8, false),
            Field::new("severity", DataType::UInt8, false),
            Field::new("pixels", fixed_list(DataType::UInt8, IMAGE_PIXELS), false),
            Field::new("majority", DataType::UInt8, true),
            Field::new("crowd", fixed_list(DataType::Float32, NUM_CLASSES), true),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// The schema of `ingest/ood.parquet`, one row per out-of-distribution image: `set` (a generated
/// set's name or an image folder's name), `image` (file name, or `<set>-NNNNN` when generated),
/// `near` (a near-OOD set such as upside-down faces) and the 48x48 `pixels`.
pub fn ingest_ood() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("set", DataType::Utf8, false),
            Field::new("image", DataType::Utf8, false),
            Field::new("near", DataType::Boolean, false),
            Field::new("pixels", fixed_list(DataType::UInt8, IMAGE_PIXELS), false),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// The schema of `infer/<arch>/<method>/shift.parquet`: as [`infer`], per corrupted face, with
/// the face's `corruption` and `severity`.
pub fn infer_shift() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("image", DataType::Utf8, false),
            Field::new("corruption", DataType::Utf8, false),
            Field::new("severity", DataType::UInt8, false),
            Field::new("sample", DataType::UInt16, false),
            Field::new("probs", fixed_list(DataType::Float32, NUM_CLASSES), false),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// The schema of `infer/<arch>/<method>/ood.parquet`: as [`infer`], per OOD image, with its `set`.
pub fn infer_ood() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("set", DataType::Utf8, false),
            Field::new("image", DataType::Utf8, false),
            Field::new("sample", DataType::UInt16, false),
            Field::new("probs", fixed_list(DataType::Float32, NUM_CLASSES), false),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// Columns of `analyze/metrics.parquet` that hold a metric (each also has a `<name>_std`
/// column: the standard deviation over random ensemble member orderings, 0 for MC methods).
/// `crowd_ece` and `crowd_cw_ece` judge the confidence against the crowd's vote share instead of
/// the majority label's hit rate.
pub const METRICS: [&str; 15] = [
    "error",
    "nll",
    "ece",
    "brier",
    "classwise_ece",
    "aurc",
    "entropy",
    "aleatoric",
    "epistemic",
    "jsd",
    "soft_accuracy",
    "kl_crowd",
    "entropy_corr",
    "crowd_ece",
    "crowd_cw_ece",
];

/// Miscoverage levels α of the split-conformal prediction sets (`analyze/conformal.parquet`).
pub const CONFORMAL_ALPHAS: [f64; 3] = [0.05, 0.10, 0.20];

/// The α whose prediction sets the report and `ferbayes predict` show.
pub const SHOWN_ALPHA: f64 = 0.10;

/// The schema of `analyze/metrics.parquet`: one row per (arch, method, split, n) with every
/// metric of [`METRICS`] (f64) and its `_std` column.
pub fn metrics() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let mut fields = vec![
            Field::new("arch", DataType::Utf8, false),
            Field::new("method", DataType::Utf8, false),
            Field::new("split", DataType::Utf8, false),
            Field::new("n", DataType::UInt16, false),
        ];
        for name in METRICS {
            fields.push(Field::new(name, DataType::Float64, true));
        }
        for name in METRICS {
            fields.push(Field::new(format!("{name}_std"), DataType::Float64, true));
        }
        Arc::new(Schema::new(fields))
    });
    Arc::clone(&SCHEMA)
}

/// The schema of `analyze/selective.parquet`: selective prediction on the test split at n = T,
/// one row per (arch, method, score). `score` is `confidence` (maximum mean probability) or
/// `mutual_information` (faces ranked by −MI); `accuracy_at_80`/`accuracy_at_90` are the
/// accuracies on the 80 % / 90 % most confident faces, `coverage_at_90_accuracy` the largest
/// coverage whose accuracy is ≥ 0.9, `aurc` the area under the risk–coverage curve (all f64,
/// null where undefined).
pub fn analyze_selective() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("arch", DataType::Utf8, false),
            Field::new("method", DataType::Utf8, false),
            Field::new("score", DataType::Utf8, false),
            Field::new("accuracy_at_80", DataType::Float64, true),
            Field::new("accuracy_at_90", DataType::Float64, true),
            Field::new("coverage_at_90_accuracy", DataType::Float64, true),
            Field::new("aurc", DataType::Float64, true),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// The schema of `analyze/shift.parquet`: one row per (arch, method, corruption, severity) at
/// n = T, severity 0 being the clean faces (repeated for every corruption). `faces` counts the
/// faces with a majority label the metrics are over; `error`, `nll`, `ece`, mean predictive
/// `entropy` and mean `mutual_information` (nats) are f64, null where undefined.
pub fn analyze_shift() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("arch", DataType::Utf8, false),
            Field::new("method", DataType::Utf8, false),
            Field::new("corruption", DataType::Utf8, false),
            Field::new("severity", DataType::UInt8, false),
            Field::new("faces", DataType::UInt32, false),
            Field::new("error", DataType::Float64, true),
            Field::new("nll", DataType::Float64, true),
            Field::new("ece", DataType::Float64, true),
            Field::new("entropy", DataType::Float64, true),
            Field::new("mutual_information", DataType::Float64, true),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// The schema of `analyze/ood.parquet`: OOD detection of one set against the test faces at
/// n = T, one row per (arch, method, set, score); `near` is the set's flag from
/// `ingest/ood.parquet`, `score` is `max_prob` (1 − maximum probability), `entropy` or
/// `mutual_information`; `auroc`, `aupr` (OOD positive) and `fpr95` (FPR at 95 % TPR) are f64.
pub fn analyze_ood() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("arch", DataType::Utf8, false),
            Field::new("method", DataType::Utf8, false),
            Field::new("set", DataType::Utf8, false),
            Field::new("near", DataType::Boolean, false),
            Field::new("score", DataType::Utf8, false),
            Field::new("auroc", DataType::Float64, true),
            Field::new("aupr", DataType::Float64, true),
            Field::new("fpr95", DataType::Float64, true),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// The schema of `analyze/labels.parquet`: the soft-label comparison on the test split at
/// n = T, one row per (label_mode, arch, method); error, NLL, ECE and Brier against the majority
/// label, JSD (bits), soft accuracy and the entropy correlation against the crowd (f64).
pub fn analyze_labels() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("label_mode", DataType::Utf8, false),
            Field::new("arch", DataType::Utf8, false),
            Field::new("method", DataType::Utf8, false),
            Field::new("error", DataType::Float64, true),
            Field::new("nll", DataType::Float64, true),
            Field::new("ece", DataType::Float64, true),
            Field::new("brier", DataType::Float64, true),
            Field::new("jsd", DataType::Float64, true),
            Field::new("soft_accuracy", DataType::Float64, true),
            Field::new("entropy_corr", DataType::Float64, true),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// The schema of the table `ferbayes predict DIR` writes for a folder of photos, long format as
/// the infer tables, one row per (image, face, sample):
///
/// | column | type | meaning |
/// |---|---|---|
/// | `image` | utf8 | path of the photo relative to the folder |
/// | `face` | u16 | face index in the photo (left to right) |
/// | `box_x`, `box_y`, `box_width`, `box_height` | u32 | the face's box in the photo's pixels |
/// | `sample` | u16 | pass t (MC methods) or member index (ensembles) |
/// | `probs` | 8 × f32 | softmax output of that sample, sums to 1 |
/// | `predictive_entropy`, `aleatoric`, `epistemic` | f32 | the face's entropy parts (nats; same on every sample row) |
/// | `verdict` | utf8 | `confident`, `ambiguous face` or `unsure model` (same on every sample row) |
pub fn predict_faces() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("image", DataType::Utf8, false),
            Field::new("face", DataType::UInt16, false),
            Field::new("box_x", DataType::UInt32, false),
            Field::new("box_y", DataType::UInt32, false),
            Field::new("box_width", DataType::UInt32, false),
            Field::new("box_height", DataType::UInt32, false),
            Field::new("sample", DataType::UInt16, false),
            Field::new("probs", fixed_list(DataType::Float32, NUM_CLASSES), false),
            Field::new("predictive_entropy", DataType::Float32, false),
            Field::new("aleatoric", DataType::Float32, false),
            Field::new("epistemic", DataType::Float32, false),
            Field::new("verdict", DataType::Utf8, false),
        ]))
    });
    Arc::clone(&SCHEMA)
}
/// The schema of `analyze/temperature.parquet`: temperature scaling, one row per
/// (arch, method, n). `temperature` is the T > 0 fitted on the valid split (minimum NLL of
/// softmax(log p̄ / T)); the `_before`/`_after` pairs are the test split's error, NLL, ECE,
/// `crowd_ece` and JSD to the crowd (bits) without and with T (f64, null where undefined).
pub fn analyze_temperature() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let mut fields = vec![
            Field::new("arch", DataType::Utf8, false),
            Field::new("method", DataType::Utf8, false),
            Field::new("n", DataType::UInt16, false),
            Field::new("temperature", DataType::Float64, true),
        ];
        for name in TEMPERATURE_METRICS {
            fields.push(Field::new(
                format!("{name}_before"),
                DataType::Float64,
                true,
            ));
            fields.push(Field::new(format!("{name}_after"), DataType::Float64, true));
        }
        Arc::new(Schema::new(fields))
    });
    Arc::clone(&SCHEMA)
}

/// The test metrics of `analyze/temperature.parquet`, each with a `_before` and `_after` column.
pub const TEMPERATURE_METRICS: [&str; 5] = ["error", "nll", "ece", "crowd_ece", "jsd"];

/// The schema of `analyze/conformal.parquet`: split-conformal prediction sets, one row per
/// (arch, method, n, alpha) with alpha in [`CONFORMAL_ALPHAS`]. `qhat` is the threshold on the
/// score 1 − p̄[y] calibrated on the valid split (+inf when the valid split is too small for
/// alpha: every class is in the set); on the test split `coverage` of the majority label,
/// `set_size` (mean |C|), `crowd_recall` (mean |C ∩ M| / |M| against the FER+ `multi_target`
/// set M), `crowd_precision` (mean |C ∩ M| / |C| over non-empty C), `crowd_exact` (fraction with
/// C = M) and `size_entropy_spearman` (Spearman correlation of |C| with the crowd entropy).
pub fn analyze_conformal() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let mut fields = vec![
            Field::new("arch", DataType::Utf8, false),
            Field::new("method", DataType::Utf8, false),
            Field::new("n", DataType::UInt16, false),
            Field::new("alpha", DataType::Float64, false),
            Field::new("qhat", DataType::Float64, false),
        ];
        for name in CONFORMAL_METRICS {
            fields.push(Field::new(name, DataType::Float64, true));
        }
        Arc::new(Schema::new(fields))
    });
    Arc::clone(&SCHEMA)
}

/// The metric columns of `analyze/conformal.parquet`, after `qhat`.
pub const CONFORMAL_METRICS: [&str; 6] = [
    "coverage",
    "set_size",
    "crowd_recall",
    "crowd_precision",
    "crowd_exact",
    "size_entropy_spearman",
];
