//! One typed row struct per Parquet table, beside its schema in [`crate::schema`]: a field per
//! column, named as the column (nullable columns are `Option`s, fixed-size lists arrays or, for
//! the pixels, a `Vec` of the schema's length). [`Row::to_batch`] writes the rows in the schema's
//! column order; [`Row::from_batch`] finds each column by its name and checks its type.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use super::cell::{batch, decode, encode, table_row};
use super::{Row, RowError};
use crate::classes::{NUM_CLASSES, NUM_VOTES};
use crate::names::{Arch, LabelMode, Method};
use crate::split::Split;

table_row! {
    /// A face of `ingest/<split>.parquet` ([`super::ingest`]).
    pub struct FaceRow: super::ingest {
        image: String,
        row: u32,
        split: Split,
        /// `IMAGE_PIXELS` values, row-major 48x48.
        pixels: Vec<u8>,
        votes: [u8; NUM_VOTES],
        majority: Option<u8>,
        soft: Option<[f32; NUM_CLASSES]>,
        multi_target: Option<[f32; NUM_CLASSES]>,
        crowd: Option<[f32; NUM_CLASSES]>,
        crowd_entropy: Option<f32>,
    }
}

table_row! {
    /// An epoch of one member in `train/<arch>/<method>/history.parquet` ([`super::history`]).
    pub struct HistoryRow: super::history {
        member: u16,
        epoch: u32,
        train_loss: f64,
        train_accuracy: f64,
        valid_loss: f64,
        valid_accuracy: f64,
        learning_rate: f64,
        seconds: f32,
    }
}

table_row! {
    /// A (face, sample) of `infer/<arch>/<method>/<split>.parquet` ([`super::infer`]).
    pub struct InferRow: super::infer {
        image: String,
        sample: u16,
        probs: [f32; NUM_CLASSES],
    }
}

table_row! {
    /// A corrupted copy of a test face in `ingest/shift.parquet` ([`super::ingest_shift`]).
    pub struct ShiftFaceRow: super::ingest_shift {
        image: String,
        corruption: String,
        severity: u8,
        /// `IMAGE_PIXELS` values, row-major 48x48.
        pixels: Vec<u8>,
        majority: Option<u8>,
        crowd: Option<[f32; NUM_CLASSES]>,
    }
}

table_row! {
    /// An out-of-distribution image of `ingest/ood.parquet` ([`super::ingest_ood`]).
    pub struct OodImageRow: super::ingest_ood {
        set: String,
        image: String,
        near: bool,
        /// `IMAGE_PIXELS` values, row-major 48x48.
        pixels: Vec<u8>,
    }
}

table_row! {
    /// A (corrupted face, sample) of `infer/<arch>/<method>/shift.parquet`
    /// ([`super::infer_shift`]).
    pub struct InferShiftRow: super::infer_shift {
        image: String,
        corruption: String,
        severity: u8,
        sample: u16,
        probs: [f32; NUM_CLASSES],
    }
}

table_row! {
    /// An (OOD image, sample) of `infer/<arch>/<method>/ood.parquet` ([`super::infer_ood`]).
    pub struct InferOodRow: super::infer_ood {
        set: String,
        image: String,
        sample: u16,
        probs: [f32; NUM_CLASSES],
    }
}

table_row! {
    /// An (arch, method, score) of `analyze/selective.parquet` ([`super::analyze_selective`]).
    pub struct SelectiveRow: super::analyze_selective {
        arch: Arch,
        method: Method,
        score: String,
        accuracy_at_80: Option<f64>,
        accuracy_at_90: Option<f64>,
        coverage_at_90_accuracy: Option<f64>,
        aurc: Option<f64>,
    }
}

table_row! {
    /// An (arch, method, corruption, severity) of `analyze/shift.parquet`
    /// ([`super::analyze_shift`]).
    pub struct ShiftMetricsRow: super::analyze_shift {
        arch: Arch,
        method: Method,
        corruption: String,
        severity: u8,
        faces: u32,
        error: Option<f64>,
        nll: Option<f64>,
        ece: Option<f64>,
        entropy: Option<f64>,
        mutual_information: Option<f64>,
    }
}

table_row! {
    /// An (arch, method, set, score) of `analyze/ood.parquet` ([`super::analyze_ood`]).
    pub struct OodDetectionRow: super::analyze_ood {
        arch: Arch,
        method: Method,
        set: String,
        near: bool,
        score: String,
        auroc: Option<f64>,
        aupr: Option<f64>,
        fpr95: Option<f64>,
    }
}

table_row! {
    /// A (label_mode, arch, method) of `analyze/labels.parquet` ([`super::analyze_labels`]).
    pub struct LabelsRow: super::analyze_labels {
        label_mode: LabelMode,
        arch: Arch,
        method: Method,
        error: Option<f64>,
        nll: Option<f64>,
        ece: Option<f64>,
        brier: Option<f64>,
        jsd: Option<f64>,
        soft_accuracy: Option<f64>,
        entropy_corr: Option<f64>,
    }
}

table_row! {
    /// An (image, face, sample) of the table `ferbayes predict DIR` writes
    /// ([`super::predict_faces`]).
    pub struct PredictRow: super::predict_faces {
        image: String,
        face: u16,
        box_x: u32,
        box_y: u32,
        box_width: u32,
        box_height: u32,
        sample: u16,
        probs: [f32; NUM_CLASSES],
        predictive_entropy: f32,
        aleatoric: f32,
        epistemic: f32,
        verdict: String,
    }
}

table_row! {
    /// An (arch, method, n, alpha) of `analyze/conformal.parquet` ([`super::analyze_conformal`];
    /// the metrics are the columns of [`super::CONFORMAL_METRICS`]).
    pub struct ConformalRow: super::analyze_conformal {
        arch: Arch,
        method: Method,
        n: u16,
        alpha: f64,
        qhat: f64,
        coverage: Option<f64>,
        set_size: Option<f64>,
        crowd_recall: Option<f64>,
        crowd_precision: Option<f64>,
        crowd_exact: Option<f64>,
        size_entropy_spearman: Option<f64>,
    }
}

/// An (arch, method, split, n) of `analyze/metrics.parquet` ([`super::metrics`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsRow {
    pub arch: Arch,
    pub method: Method,
    pub split: Split,
    pub n: u16,
    /// The metrics in [`super::METRICS`] order.
    pub values: [Option<f64>; super::METRICS.len()],
    /// Their `_std` columns, same order.
    pub stds: [Option<f64>; super::METRICS.len()],
}

/// The `_std` column names of [`super::METRICS`].
fn metric_std_names() -> Vec<String> {
    super::METRICS.iter().map(|m| format!("{m}_std")).collect()
}

impl Row for MetricsRow {
    fn schema() -> SchemaRef {
        super::metrics()
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, RowError> {
        let schema = Self::schema();
        let std_names = metric_std_names();
        let mut columns = vec![
            (
                "arch",
                encode(&schema, "arch", rows.iter().map(|r| &r.arch))?,
            ),
            (
                "method",
                encode(&schema, "method", rows.iter().map(|r| &r.method))?,
            ),
            (
                "split",
                encode(&schema, "split", rows.iter().map(|r| &r.split))?,
            ),
            ("n", encode(&schema, "n", rows.iter().map(|r| &r.n))?),
        ];
        for (j, name) in super::METRICS.iter().enumerate() {
            let column = encode(&schema, name, rows.iter().map(|r| &r.values[j]))?;
            columns.push((name, column));
        }
        for (j, name) in std_names.iter().enumerate() {
            let column = encode(&schema, name, rows.iter().map(|r| &r.stds[j]))?;
            columns.push((name.as_str(), column));
        }
        batch(schema, columns)
    }

    fn from_batch_columns(
        batch: &RecordBatch,
        only: Option<&[&str]>,
    ) -> Result<Vec<Self>, RowError> {
        let schema = Self::schema();
        let mut arch = decode::<Arch>(batch, &schema, "arch", only)?.into_iter();
        let mut method = decode::<Method>(batch, &schema, "method", only)?.into_iter();
        let mut split = decode::<Split>(batch, &schema, "split", only)?.into_iter();
        let mut n = decode::<u16>(batch, &schema, "n", only)?.into_iter();
        let mut spread = Vec::with_capacity(2 * super::METRICS.len());
        let names = super::METRICS.iter().map(|m| (*m).to_owned());
        for name in names.chain(metric_std_names()) {
            spread.push(decode::<Option<f64>>(batch, &schema, &name, only)?.into_iter());
        }
        let (values, stds) = spread.split_at_mut(super::METRICS.len());
        Ok((0..batch.num_rows())
            .map(|_| MetricsRow {
                arch: arch.next().unwrap_or_default(),
                method: method.next().unwrap_or_default(),
                split: split.next().unwrap_or_default(),
                n: n.next().unwrap_or_default(),
                values: std::array::from_fn(|j| values[j].next().flatten()),
                stds: std::array::from_fn(|j| stds[j].next().flatten()),
            })
            .collect())
    }
}

/// An (arch, method, n) of `analyze/temperature.parquet` ([`super::analyze_temperature`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TemperatureRow {
    pub arch: Arch,
    pub method: Method,
    pub n: u16,
    pub temperature: Option<f64>,
    /// The test metrics without T, in [`super::TEMPERATURE_METRICS`] order (`<name>_before`).
    pub before: [Option<f64>; super::TEMPERATURE_METRICS.len()],
    /// The same with T (`<name>_after`).
    pub after: [Option<f64>; super::TEMPERATURE_METRICS.len()],
}

/// The `(<name>_before, <name>_after)` column names of [`super::TEMPERATURE_METRICS`].
fn temperature_names() -> Vec<(String, String)> {
    super::TEMPERATURE_METRICS
        .iter()
        .map(|m| (format!("{m}_before"), format!("{m}_after")))
        .collect()
}

impl Row for TemperatureRow {
    fn schema() -> SchemaRef {
        super::analyze_temperature()
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, RowError> {
        let schema = Self::schema();
        let names = temperature_names();
        let temperature = rows.iter().map(|r| &r.temperature);
        let mut columns = vec![
            (
                "arch",
                encode(&schema, "arch", rows.iter().map(|r| &r.arch))?,
            ),
            (
                "method",
                encode(&schema, "method", rows.iter().map(|r| &r.method))?,
            ),
            ("n", encode(&schema, "n", rows.iter().map(|r| &r.n))?),
            ("temperature", encode(&schema, "temperature", temperature)?),
        ];
        for (j, (before, after)) in names.iter().enumerate() {
            let column = encode(&schema, before, rows.iter().map(|r| &r.before[j]))?;
            columns.push((before.as_str(), column));
            let column = encode(&schema, after, rows.iter().map(|r| &r.after[j]))?;
            columns.push((after.as_str(), column));
        }
        batch(schema, columns)
    }

    fn from_batch_columns(
        batch: &RecordBatch,
        only: Option<&[&str]>,
    ) -> Result<Vec<Self>, RowError> {
        let schema = Self::schema();
        let mut arch = decode::<Arch>(batch, &schema, "arch", only)?.into_iter();
        let mut method = decode::<Method>(batch, &schema, "method", only)?.into_iter();
        let mut n = decode::<u16>(batch, &schema, "n", only)?.into_iter();
        let mut temperature =
            decode::<Option<f64>>(batch, &schema, "temperature", only)?.into_iter();
        let (mut before, mut after) = (Vec::new(), Vec::new());
        for (b, a) in temperature_names() {
            before.push(decode::<Option<f64>>(batch, &schema, &b, only)?.into_iter());
            after.push(decode::<Option<f64>>(batch, &schema, &a, only)?.into_iter());
        }
        Ok((0..batch.num_rows())
            .map(|_| TemperatureRow {
                arch: arch.next().unwrap_or_default(),
                method: method.next().unwrap_or_default(),
                n: n.next().unwrap_or_default(),
                temperature: temperature.next().flatten(),
                before: std::array::from_fn(|j| before[j].next().flatten()),
                after: std::array::from_fn(|j| after[j].next().flatten()),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Debug;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, UInt32Array};
    use arrow_schema::{Field, Schema};

    use super::*;
    use crate::classes::IMAGE_PIXELS;

    /// Writes `rows` to a batch and reads them back, also with the columns in reverse order
    /// (columns are found by name).
    fn round_trip<R: Row + PartialEq + Debug>(rows: &[R]) -> RecordBatch {
        let batch = R::to_batch(rows).expect("to_batch");
        assert_eq!(batch.schema(), R::schema());
        assert_eq!(batch.num_rows(), rows.len());
        assert_eq!(R::from_batch(&batch).expect("from_batch"), rows);
        let reversed: Vec<usize> = (0..batch.num_columns()).rev().collect();
        let shuffled = batch.project(&reversed).expect("project");
        assert_eq!(R::from_batch(&shuffled).expect("by name"), rows);
        assert!(
            R::from_batch(&R::to_batch(&[]).expect("empty"))
                .expect("empty")
                .is_empty()
        );
        batch
    }

    fn probs(k: usize) -> [f32; NUM_CLASSES] {
        std::array::from_fn(|j| if j == k { 0.65 } else { 0.05 })
    }

    fn face(i: u8, labelled: bool) -> FaceRow {
        FaceRow {
            image: format!("fer{i:07}.png"),
            row: u32::from(i) * 7,
            split: Split::Test,
            pixels: (0..IMAGE_PIXELS)
                .map(|p| (p as u8).wrapping_add(i))
                .collect(),
            votes: std::array::from_fn(|k| (k as u8 + i) % 4),
            majority: labelled.then_some(i % 8),
            soft: labelled.then(|| probs(usize::from(i) % 8)),
            multi_target: labelled.then(|| std::array::from_fn(|k| f32::from(k == 2))),
            crowd: labelled.then(|| probs(3)),
            crowd_entropy: labelled.then_some(0.25 * f32::from(i)),
        }
    }

    #[test]
    fn ingest_tables_round_trip() {
        let batch = round_trip(&[face(1, true), face(2, false), face(3, true)]);
        assert_eq!(
            batch.column_by_name("majority").expect("col").null_count(),
            1
        );
        assert_eq!(batch.column_by_name("soft").expect("col").null_count(), 1);
        round_trip(&[ShiftFaceRow {
            image: "fer0000001.png".into(),
            corruption: "blur".into(),
            severity: 3,
            pixels: vec![9; IMAGE_PIXELS],
            majority: Some(4),
            crowd: None,
        }]);
        round_trip(&[
            OodImageRow {
                set: "noise".into(),
                image: "noise-00000".into(),
                near: false,
                pixels: vec![1; IMAGE_PIXELS],
            },
            OodImageRow {
                set: "flipped".into(),
                image: "flipped-00001".into(),
                near: true,
                pixels: vec![2; IMAGE_PIXELS],
            },
        ]);
    }

    #[test]
    fn train_and_infer_tables_round_trip() {
        round_trip(&[HistoryRow {
            member: 2,
            epoch: 5,
            train_loss: 1.25,
            train_accuracy: 0.5,
            valid_loss: 1.5,
            valid_accuracy: 0.375,
            learning_rate: 0.01,
            seconds: 12.5,
        }]);
        round_trip(&[
            InferRow {
                image: "a.png".into(),
                sample: 0,
                probs: probs(1),
            },
            InferRow {
                image: "a.png".into(),
                sample: 1,
                probs: probs(2),
            },
        ]);
        round_trip(&[InferShiftRow {
            image: "a.png".into(),
            corruption: "none".into(),
            severity: 0,
            sample: 3,
            probs: probs(0),
        }]);
        round_trip(&[InferOodRow {
            set: "noise".into(),
            image: "noise-00004".into(),
            sample: 1,
            probs: probs(7),
        }]);
        round_trip(&[PredictRow {
            image: "group/photo.jpg".into(),
            face: 1,
            box_x: 10,
            box_y: 20,
            box_width: 30,
            box_height: 40,
            sample: 2,
            probs: probs(5),
            predictive_entropy: 1.5,
            aleatoric: 1.0,
            epistemic: 0.5,
            verdict: "unsure model".into(),
        }]);
    }

    #[test]
    fn analyze_tables_round_trip() {
        let (arch, method) = (Arch::AlexNet, Method::Ensemble);
        round_trip(&[MetricsRow {
            arch,
            method,
            split: Split::Test,
            n: 3,
            values: std::array::from_fn(|j| (j != 4).then_some(j as f64 / 10.0)),
            stds: std::array::from_fn(|j| (j % 2 == 0).then_some(j as f64)),
        }]);
        round_trip(&[TemperatureRow {
            arch,
            method,
            n: 1,
            temperature: Some(1.5),
            before: [Some(0.1), None, Some(0.3), Some(0.4), Some(0.5)],
            after: [Some(0.2), Some(0.3), None, Some(0.5), Some(0.6)],
        }]);
        round_trip(&[ConformalRow {
            arch,
            method,
            n: 2,
            alpha: 0.1,
            qhat: f64::INFINITY,
            coverage: Some(0.9),
            set_size: Some(2.5),
            crowd_recall: None,
            crowd_precision: Some(0.5),
            crowd_exact: Some(0.25),
            size_entropy_spearman: None,
        }]);
        round_trip(&[SelectiveRow {
            arch,
            method,
            score: "confidence".into(),
            accuracy_at_80: Some(0.8),
            accuracy_at_90: None,
            coverage_at_90_accuracy: Some(0.4),
            aurc: Some(0.1),
        }]);
        round_trip(&[ShiftMetricsRow {
            arch,
            method,
            corruption: "noise".into(),
            severity: 5,
            faces: 100,
            error: Some(0.5),
            nll: None,
            ece: Some(0.1),
            entropy: Some(1.0),
            mutual_information: Some(0.2),
        }]);
        round_trip(&[OodDetectionRow {
            arch,
            method,
            set: "noise".into(),
            near: true,
            score: "entropy".into(),
            auroc: Some(0.9),
            aupr: None,
            fpr95: Some(0.3),
        }]);
        round_trip(&[LabelsRow {
            label_mode: LabelMode::Majority,
            arch,
            method,
            error: Some(0.3),
            nll: Some(0.9),
            ece: None,
            brier: Some(0.4),
            jsd: Some(0.1),
            soft_accuracy: Some(0.7),
            entropy_corr: None,
        }]);
    }

    #[test]
    fn a_projection_reads_its_columns_and_defaults_the_rest() {
        let rows = [face(1, true), face(2, false)];
        let batch = FaceRow::to_batch(&rows).expect("batch");
        let only = ["image", "majority"];
        let indices: Vec<usize> = only
            .iter()
            .map(|n| batch.schema().index_of(n).expect("column"))
            .collect();
        let projected = batch.project(&indices).expect("project");
        let read = FaceRow::from_batch_columns(&projected, Some(&only)).expect("read");
        assert_eq!(read[0].image, rows[0].image);
        assert_eq!(read[0].majority, rows[0].majority);
        assert!(read[0].pixels.is_empty() && read[0].soft.is_none());
        // Without the projection, the absent columns are an error.
        let err = FaceRow::from_batch(&projected).expect_err("pixels missing");
        assert!(err.to_string().contains("`row`"), "{err}");
    }

    fn infer_batch() -> RecordBatch {
        InferRow::to_batch(&[InferRow {
            image: "a.png".into(),
            sample: 0,
            probs: probs(1),
        }])
        .expect("batch")
    }

    #[test]
    fn a_missing_column_is_named() {
        let batch = infer_batch();
        let keep = ["image", "sample"].map(|n| batch.schema().index_of(n).expect("column"));
        let without = batch.project(&keep).expect("project");
        let err = InferRow::from_batch(&without).expect_err("missing");
        assert!(matches!(&err, RowError::MissingColumn { column } if column == "probs"));
        assert_eq!(err.to_string(), "missing column `probs`");
    }

    /// Name columns are typed: a table naming an unknown method is refused, naming the column,
    /// the row and the value, and a known name round-trips as its enum.
    #[test]
    fn an_unknown_name_is_refused_naming_column_row_and_value() {
        let rows = vec![
            SelectiveRow {
                arch: Arch::Vgg16,
                method: Method::BatchEnsemble,
                score: "confidence".into(),
                ..SelectiveRow::default()
            };
            2
        ];
        let batch = SelectiveRow::to_batch(&rows).expect("batch");
        assert_eq!(SelectiveRow::from_batch(&batch).expect("read"), rows);
        let names: ArrayRef = Arc::new(arrow_array::StringArray::from(vec![
            "batch_ensemble",
            "deep_kernel",
        ]));
        let at = batch.schema().index_of("method").expect("method");
        let mut columns = batch.columns().to_vec();
        columns[at] = names;
        let bad = RecordBatch::try_new(batch.schema(), columns).expect("batch");
        let err = SelectiveRow::from_batch(&bad).expect_err("unknown method");
        let text = err.to_string();
        assert!(
            matches!(&err, RowError::Value { column, row: 1, .. } if column == "method")
                && text.contains("deep_kernel")
                && text.contains("batch_ensemble"),
            "{text}"
        );
    }

    #[test]
    fn a_retyped_column_is_named_with_both_types() {
        let batch = infer_batch();
        let named = |name: &str| Arc::clone(batch.column_by_name(name).expect("column"));
        let probs = batch
            .schema()
            .field_with_name("probs")
            .expect("probs")
            .clone();
        let schema = Schema::new(vec![
            Field::new("image", arrow_schema::DataType::Utf8, false),
            Field::new("sample", arrow_schema::DataType::UInt32, false),
            probs,
        ]);
        let sample: ArrayRef = Arc::new(UInt32Array::from(vec![0u32]));
        let retyped = RecordBatch::try_new(
            Arc::new(schema),
            vec![named("image"), sample, named("probs")],
        )
        .expect("batch");
        let err = InferRow::from_batch(&retyped).expect_err("retyped");
        assert_eq!(
            err.to_string(),
            "column `sample` has type UInt32 but UInt16 was expected"
        );
    }

    #[test]
    fn a_null_in_a_required_column_and_a_short_list_are_refused() {
        let mut short = face(1, true);
        short.pixels.pop();
        let err = FaceRow::to_batch(&[short]).expect_err("short pixels");
        assert!(
            err.to_string().contains("`pixels`, row 0: 2303 values"),
            "{err}"
        );
        let schema = Arc::new(Schema::new(vec![Field::new(
            "faces",
            arrow_schema::DataType::UInt32,
            true,
        )]));
        let nulls: ArrayRef = Arc::new(UInt32Array::from(vec![Some(1), None]));
        let batch = RecordBatch::try_new(schema, vec![nulls]).expect("batch");
        let err = ShiftMetricsRow::from_batch_columns(&batch, Some(&["faces"])).expect_err("null");
        assert_eq!(
            err.to_string(),
            "column `faces` is null in row 1, but the table does not allow nulls there"
        );
    }

    #[test]
    fn rows_survive_a_parquet_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ingest.parquet");
        let rows = vec![face(4, true), face(5, false)];
        let batch = crate::io::rows_batch(&path, &rows).expect("batch");
        crate::io::write_parquet(&path, &FaceRow::schema(), [batch], 3)
            .expect("write")
            .commit()
            .expect("commit");
        let read: Vec<FaceRow> = crate::io::read_rows(&path, None, "just ingest").expect("read");
        assert_eq!(read, rows);
        let err = crate::io::read_rows::<InferRow>(&path, None, "just infer").expect_err("wrong");
        assert!(err.to_string().contains("ingest.parquet"), "{err}");
    }
}
