//! The analyses beyond the study: selective prediction, dataset shift, OOD detection and the
//! soft-label comparison, against hand-computed values, and end to end through `run` with
//! shift/OOD/variant tables written here.

use std::collections::HashMap;
use std::path::PathBuf;

use arrow_array::RecordBatch;
use ferbayes_analyze::data::{KeyedSamples, OodKey, Samples, ShiftKey};
use ferbayes_analyze::labels::{LabelRow, best_modes};
use ferbayes_analyze::{ood, selective, shift};
use ferbayes_core::schema::Row;
use ferbayes_core::schema::rows::{
    InferOodRow, InferShiftRow, LabelsRow, MetricsRow, OodDetectionRow, OodImageRow, SelectiveRow,
    ShiftFaceRow, ShiftMetricsRow,
};
use ferbayes_core::{Arch, LabelMode, Layout, Method, Split, Stage, schema};
use ferbayes_uq::entropy;

use crate::support::{
    ingest, ingest_faces, metric, smoke_settings, synthetic_probs, walk, write_infer,
};

/// A distribution over the 8 classes from its first entries (the rest 0).
fn p(head: &[f32]) -> [f32; 8] {
    let mut row = [0.0; 8];
    row[..head.len()].copy_from_slice(head);
    row
}

/// Samples from `rows[face][t]` (face-major, as written), stored sample-major.
fn samples(rows: &[Vec<[f32; 8]>]) -> Samples {
    let faces = rows.len();
    let count = rows.first().map_or(0, Vec::len);
    let mut probs = vec![[0.0; 8]; faces * count];
    for (i, face) in rows.iter().enumerate() {
        for (t, row) in face.iter().enumerate() {
            probs[t * faces + i] = *row;
        }
    }
    Samples {
        path: PathBuf::from("test.parquet"),
        count,
        faces,
        probs,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

fn h(head: &[f32]) -> f64 {
    entropy(&p(head))
}

#[test]
fn selective_prediction_matches_hand_values() {
    // face 0: both samples (0.55, 0.45), label 1: wrong, confidence 0.55, MI 0.
    // face 1: (1, 0) and (0.6, 0.4) → (0.8, 0.2), label 0: right, MI ≈ 0.164.
    // face 2: (0.95, 0.05) and (0.85, 0.15) → (0.9, 0.1), label 0: right, MI ≈ 0.0145.
    // face 3: no label (left out).
    let s = samples(&[
        vec![p(&[0.55, 0.45]), p(&[0.55, 0.45])],
        vec![p(&[1.0]), p(&[0.6, 0.4])],
        vec![p(&[0.95, 0.05]), p(&[0.85, 0.15])],
        vec![p(&[0.1, 0.9]), p(&[0.1, 0.9])],
    ]);
    let labels = [Some(1), Some(0), Some(0), None];
    let rows = selective::selective(Arch::AlexNet, Method::Ensemble, &s, &labels);
    assert_eq!(rows.len(), 2);
    let (conf, mi) = (&rows[0], &rows[1]);
    assert_eq!((conf.score, mi.score), ("confidence", "mutual_information"));
    // Confidence: faces 2, 1, 0 → right, right, wrong: risks 0, 0, 1/3.
    assert!(close(conf.aurc, 1.0 / 9.0), "{}", conf.aurc);
    assert!(close(conf.accuracy_at_80, 2.0 / 3.0));
    assert!(close(conf.accuracy_at_90, 2.0 / 3.0));
    assert!(close(conf.coverage_at_90_accuracy, 2.0 / 3.0));
    assert_eq!(conf.curve.len(), 3);
    assert!(close(conf.curve[2].0, 1.0) && close(conf.curve[2].1, 1.0 / 3.0));
    // MI, lowest first: faces 0, 2, 1 → wrong, right, right: risks 1, 1/2, 1/3.
    assert!(close(mi.aurc, (1.0 + 0.5 + 1.0 / 3.0) / 3.0), "{}", mi.aurc);
    assert!(close(mi.accuracy_at_80, 2.0 / 3.0));
    assert_eq!(mi.coverage_at_90_accuracy, 0.0);
    assert!(mi.curve.iter().map(|c| c.1).eq([1.0, 0.5, 1.0 / 3.0]));

    // Long curves are cut to 200 points for the figure, the AURC uses all of them.
    let many: Vec<Vec<[f32; 8]>> = (0..1000)
        .map(|i| vec![p(&[0.5 + i as f32 / 4000.0, 0.5 - i as f32 / 4000.0])])
        .collect();
    let labels: Vec<Option<u8>> = (0..1000).map(|i| Some(u8::from(i % 3 == 0))).collect();
    let rows = selective::selective(Arch::Vgg16, Method::McDropout, &samples(&many), &labels);
    assert_eq!(rows[0].curve.len(), selective::CURVE_POINTS);
    let batch =
        selective::selective_batch(&rows, std::path::Path::new("s.parquet")).expect("batch");
    assert_eq!(batch.schema(), schema::analyze_selective());
    assert_eq!(batch.num_rows(), 2);
}

fn key(image: &str, corruption: &str, severity: u8) -> ShiftKey {
    ShiftKey {
        image: image.into(),
        corruption: corruption.into(),
        severity,
    }
}

#[test]
fn shift_rows_match_hand_values() {
    // Faces a (label 0) and b (label 1): clean, blurred at severity 1, noisy at severity 2;
    // c has no label and is left out. T = 2.
    let keys = vec![
        key("a", "none", 0),
        key("b", "none", 0),
        key("a", "blur", 1),
        key("b", "blur", 1),
        key("a", "noise", 2),
        key("c", "noise", 2),
    ];
    let rows = vec![
        // clean a: (0.8, 0.2) twice → right, NLL −ln 0.8, confidence 0.8, MI 0.
        vec![p(&[0.8, 0.2]), p(&[0.8, 0.2])],
        // clean b: (0.6, 0.4), (0.2, 0.8) → (0.4, 0.6): right, NLL −ln 0.6, confidence 0.6.
        vec![p(&[0.6, 0.4]), p(&[0.2, 0.8])],
        // blur a: (0.3, 0.7) → wrong, NLL −ln 0.3, confidence 0.7.
        vec![p(&[0.3, 0.7]), p(&[0.3, 0.7])],
        // blur b: (0.9, 0.1) → wrong, NLL −ln 0.1, confidence 0.9.
        vec![p(&[0.9, 0.1]), p(&[0.9, 0.1])],
        // noise a: (0.5, 0.5) → class 0 (first maximum): right, NLL ln 2, confidence 0.5.
        vec![p(&[0.5, 0.5]), p(&[0.5, 0.5])],
        vec![p(&[0.1, 0.9]), p(&[0.1, 0.9])],
    ];
    let keyed = KeyedSamples {
        keys: keys.clone(),
        samples: samples(&rows),
    };
    let mut labels: HashMap<ShiftKey, Option<u8>> = HashMap::new();
    for k in &keys {
        let y = match k.image.as_str() {
            "a" => Some(0),
            "b" => Some(1),
            _ => None,
        };
        labels.insert(k.clone(), y);
    }
    let got = shift::shift_rows(Arch::AlexNet, Method::McDropout, &keyed, &labels, 10)
        .expect("shift rows");
    let order: Vec<(&str, u8, usize)> = got
        .iter()
        .map(|r| (r.corruption.as_str(), r.severity, r.faces))
        .collect();
    assert_eq!(
        order,
        [
            ("blur", 0, 2),
            ("blur", 1, 2),
            ("noise", 0, 2),
            ("noise", 2, 1)
        ],
        "severity 0 (the clean faces) for every corruption"
    );
    let ln = |x: f32| f64::from(x).ln();
    let clean_mi = h(&[0.4, 0.6]) - (h(&[0.6, 0.4]) + h(&[0.2, 0.8])) / 2.0;
    for clean in [&got[0], &got[2]] {
        assert_eq!(clean.error, 0.0);
        assert!(
            close(clean.nll, -(ln(0.8) + ln(0.6)) / 2.0),
            "{}",
            clean.nll
        );
        // Bins (0.7, 0.8] and (0.5, 0.6], both all right: (0.2 + 0.4) / 2.
        assert!(close(clean.ece, 0.3), "{}", clean.ece);
        assert!(close(
            clean.entropy,
            (h(&[0.8, 0.2]) + h(&[0.4, 0.6])) / 2.0
        ));
        assert!(close(clean.mutual_information, clean_mi / 2.0));
    }
    let blur = &got[1];
    assert_eq!(blur.error, 1.0);
    assert!(close(blur.nll, -(ln(0.3) + ln(0.1)) / 2.0));
    assert!(close(blur.ece, (0.7 + 0.9) / 2.0), "{}", blur.ece);
    assert!(close(blur.mutual_information, 0.0));
    let noise = &got[3];
    assert_eq!(noise.error, 0.0);
    assert!(close(noise.nll, 2f64.ln()));
    assert!(close(noise.ece, 0.5));
    assert!(close(noise.entropy, 2f64.ln()));

    // The report's table: the mean over corruptions at each severity.
    let means = shift::mean_over_corruptions(&got);
    let severities: Vec<u8> = means.iter().map(|m| m.2).collect();
    assert_eq!(severities, [0, 1, 2]);
    assert!(close(means[0].3[1], got[0].nll));
    assert!(close(means[1].3[2], blur.ece) && close(means[2].3[0], 0.0));

    let batch = shift::shift_batch(&got, std::path::Path::new("x")).expect("batch");
    assert_eq!(batch.schema(), schema::analyze_shift());
    assert_eq!(batch.num_rows(), 4);

    // A corrupted face the ingest table does not have is an error naming the infer file.
    labels.remove(&key("a", "blur", 1));
    let msg = shift::shift_rows(Arch::AlexNet, Method::McDropout, &keyed, &labels, 10)
        .expect_err("unknown face")
        .to_string();
    assert!(
        msg.contains("test.parquet") && msg.contains("blur"),
        "{msg}"
    );
}

#[test]
fn ood_rows_match_hand_values() {
    // Test faces: (1, 0) and (0.9, 0.1), T = 1 (so MI is 0 everywhere).
    let test = samples(&[vec![p(&[1.0])], vec![p(&[0.9, 0.1])]]);
    let u = 1.0 / 8.0;
    let ood_keys = vec![
        OodKey {
            set: "noise".into(),
            image: "noise-00000".into(),
        },
        OodKey {
            set: "flipped".into(),
            image: "flipped-00000".into(),
        },
        OodKey {
            set: "noise".into(),
            image: "noise-00001".into(),
        },
        OodKey {
            set: "flipped".into(),
            image: "flipped-00001".into(),
        },
    ];
    let keyed = KeyedSamples {
        keys: ood_keys,
        samples: samples(&[
            vec![[u; 8]],
            vec![p(&[1.0])],
            vec![p(&[0.5, 0.5])],
            vec![p(&[0.9, 0.1])],
        ]),
    };
    let sets = vec![
        ("noise".to_owned(), false),
        ("flipped".to_owned(), true),
        ("unused".to_owned(), false),
    ];
    let r = ood::ood_rows(Arch::Vgg16, Method::Ensemble, &test, &keyed, &sets).expect("ood");
    let rows: Vec<(&str, bool, &str)> = r
        .rows
        .iter()
        .map(|r| (r.set.as_str(), r.near, r.score))
        .collect();
    assert_eq!(
        rows,
        [
            ("noise", false, "max_prob"),
            ("noise", false, "entropy"),
            ("noise", false, "mutual_information"),
            ("flipped", true, "max_prob"),
            ("flipped", true, "entropy"),
            ("flipped", true, "mutual_information"),
        ],
        "sets in ingest order, a set without predictions left out"
    );
    // Noise: every OOD score above every test score.
    for row in &r.rows[..2] {
        assert_eq!((row.auroc, row.aupr, row.fpr95), (1.0, 1.0, 0.0), "{row:?}");
    }
    // MI is 0 for all: chance, and every test face is flagged at 95 % TPR.
    assert_eq!((r.rows[2].auroc, r.rows[2].fpr95), (0.5, 1.0));
    // Flipped: the same scores as the test faces. AUROC ½ (ties), AP = ½·½ + ½·½.
    for row in &r.rows[3..] {
        assert!(close(row.auroc, 0.5) && close(row.aupr, 0.5), "{row:?}");
        assert_eq!(row.fpr95, 1.0);
    }
    assert_eq!(r.test.entropy.len(), 2);
    assert!(close(r.sets[0].1.entropy[0], 8f64.ln()));
    assert!(close(r.sets[0].1.max_prob[1], 0.5));

    let batch = ood::ood_batch(&r.rows, std::path::Path::new("x")).expect("batch");
    assert_eq!(batch.schema(), schema::analyze_ood());

    // A set the ingest table does not list is an error.
    let msg = ood::ood_rows(Arch::Vgg16, Method::Ensemble, &test, &keyed, &sets[..1])
        .expect_err("unknown set")
        .to_string();
    assert!(msg.contains("flipped"), "{msg}");
}

fn label_row(
    mode: LabelMode,
    arch: Arch,
    method: Method,
    nll: f64,
    ece: f64,
    jsd: f64,
) -> LabelRow {
    LabelRow {
        label_mode: mode,
        arch,
        method,
        values: [0.3, nll, ece, 0.4, jsd, 0.6, 0.2],
    }
}

#[test]
fn best_label_mode_per_arch() {
    use LabelMode::{CrossEntropy, Majority, Probability};
    use Method::{Ensemble, McDropout};
    let rows = vec![
        label_row(Majority, Arch::AlexNet, McDropout, 1.0, 0.05, 0.30),
        label_row(Majority, Arch::AlexNet, Ensemble, 1.2, 0.03, 0.32),
        label_row(CrossEntropy, Arch::AlexNet, McDropout, 0.9, 0.08, 0.20),
        label_row(CrossEntropy, Arch::AlexNet, Ensemble, 1.0, 0.06, f64::NAN),
        // Probability lacks the ensemble: compared on mc_dropout only.
        label_row(Probability, Arch::AlexNet, McDropout, 0.95, 0.01, 0.25),
        label_row(Majority, Arch::Vgg16, McDropout, 0.7, 0.02, 0.1),
        label_row(CrossEntropy, Arch::Vgg16, McDropout, 0.8, 0.01, 0.1),
    ];
    let best = best_modes(&rows, &["nll", "ece", "jsd"]);
    let got: Vec<(Arch, &str, LabelMode)> =
        best.iter().map(|b| (b.arch, b.metric, b.mode)).collect();
    assert_eq!(
        got,
        [
            (Arch::AlexNet, "nll", CrossEntropy),
            (Arch::AlexNet, "ece", Probability),
            (Arch::AlexNet, "jsd", CrossEntropy),
            (Arch::Vgg16, "nll", Majority),
            (Arch::Vgg16, "ece", CrossEntropy),
            (Arch::Vgg16, "jsd", Majority),
        ]
    );
    // AlexNet NLL: on mc_dropout only (the method all three modes have): 1.0, 0.9, 0.95.
    assert_eq!(
        best[0].means,
        [(Majority, 1.0), (CrossEntropy, 0.9), (Probability, 0.95)]
    );
    assert_eq!(best[0].value, 0.9);
}

fn commit<R: Row>(path: PathBuf, rows: &[R]) {
    let batch = R::to_batch(rows).expect("batch");
    ferbayes_core::io::write_parquet(&path, &R::schema(), [batch], 3)
        .expect("write")
        .commit()
        .expect("commit");
}

/// `ingest/shift.parquet` with the first `faces` test faces: the clean copy plus every
/// corruption at severities 1..=5 (black pixels: analyze does not look at them).
fn write_ingest_shift(
    layout: &Layout,
    images: &[String],
    labels: &[Option<u8>],
    corruptions: &[&str],
) -> Vec<ShiftKey> {
    let mut keys = Vec::new();
    let mut majority = Vec::new();
    for (image, y) in images.iter().zip(labels) {
        keys.push(key(image, "none", 0));
        majority.push(*y);
    }
    for c in corruptions {
        for severity in 1..=5 {
            for (image, y) in images.iter().zip(labels) {
                keys.push(key(image, c, severity));
                majority.push(*y);
            }
        }
    }
    let rows: Vec<ShiftFaceRow> = keys
        .iter()
        .zip(&majority)
        .map(|(k, y)| ShiftFaceRow {
            image: k.image.clone(),
            corruption: k.corruption.clone(),
            severity: k.severity,
            pixels: vec![0; 2304],
            majority: *y,
            crowd: Some([0.125; 8]),
        })
        .collect();
    commit(layout.ingest_shift(), &rows);
    keys
}

/// `infer/<arch>/<method>/shift.parquet`: face-major, samples 0..T−1; the predictions get less
/// sure of the label with the severity.
fn write_infer_shift(
    layout: &Layout,
    arch: Arch,
    method: Method,
    keys: &[ShiftKey],
    labels: &HashMap<String, Option<u8>>,
    t: usize,
) {
    let mut rows = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let y = labels[&k.image].map_or(0, usize::from);
        for s in 0..t {
            let sure = 0.95 - 0.12 * f32::from(k.severity) - 0.02 * ((i + s) % 3) as f32;
            let mut probs = [(1.0 - sure) / 7.0; 8];
            probs[y] = sure;
            rows.push(InferShiftRow {
                image: k.image.clone(),
                corruption: k.corruption.clone(),
                severity: k.severity,
                sample: s as u16,
                probs,
            });
        }
    }
    commit(layout.infer_shift(arch, method), &rows);
}

/// `ingest/ood.parquet` and `infer/<arch>/<method>/ood.parquet` for each combination: a far
/// set of near-uniform predictions and a near set of confident ones.
fn write_ood(layout: &Layout, combos: &[(Arch, Method)], per_set: usize, t: usize) {
    let sets = [("uniform_noise", false), ("upside_down", true)];
    let mut images = Vec::new();
    for (name, near) in sets {
        for i in 0..per_set {
            images.push(OodImageRow {
                set: name.to_owned(),
                image: format!("{name}-{i:05}"),
                near,
                pixels: vec![0; 2304],
            });
        }
    }
    commit(layout.ingest_ood(), &images);
    for &(arch, method) in combos {
        let mut rows = Vec::new();
        for (j, img) in images.iter().enumerate() {
            for s in 0..t {
                let top = if img.near { 0.7 } else { 0.2 } + 0.01 * ((j + s) % 5) as f32;
                let mut probs = [(1.0 - top) / 7.0; 8];
                probs[j % 8] = top;
                rows.push(InferOodRow {
                    set: img.set.clone(),
                    image: img.image.clone(),
                    sample: s as u16,
                    probs,
                });
            }
        }
        commit(layout.infer_ood(arch, method), &rows);
    }
}

/// The corruptions of pipeline.toml's defaults.
const CORRUPTIONS: [&str; 7] = [
    "gaussian_noise",
    "gaussian_blur",
    "contrast",
    "brightness",
    "occlusion",
    "rotation",
    "pixelate",
];

#[test]
fn extra_analyses_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::env::var_os("FERBAYES_ANALYZE_OUT")
        .map(|d| PathBuf::from(d).join("extras"))
        .unwrap_or_else(|| dir.path().to_owned());
    let layout = Layout::new(&root, "smoke");
    ingest(&layout, 40);
    const T: usize = 3;

    let mut settings = smoke_settings();
    let archs = [Arch::AlexNet, Arch::Vgg16];
    let methods = [Method::McDropout, Method::Ensemble];
    settings.train.archs = archs.to_vec();
    settings.train.methods = methods.to_vec();
    settings.ingest.shift.faces = 4;
    settings.ingest.shift.corruptions = CORRUPTIONS.map(String::from).to_vec();
    settings.ingest.ood.faces = 6;
    settings.ingest.ood.generated = vec!["uniform_noise".into(), "upside_down".into()];
    settings.train.label_mode = LabelMode::Majority;
    settings.train.compare_label_modes = vec![LabelMode::CrossEntropy];
    settings.train.compare_archs = vec![Arch::AlexNet];

    let (test_images, test_labels) = ingest_faces(&layout, Split::Test);
    let combos: Vec<(Arch, Method)> = archs
        .iter()
        .flat_map(|&a| methods.iter().map(move |&m| (a, m)))
        .collect();
    for (c, &(arch, method)) in combos.iter().enumerate() {
        for (s, split) in [Split::Valid, Split::Test].into_iter().enumerate() {
            let (images, labels) = ingest_faces(&layout, split);
            let probs = synthetic_probs(&labels, T, (c * 10 + s) as u64);
            write_infer(&layout, arch, method, split, &images, &probs);
        }
    }
    // The shift faces: the first 4 test faces with a majority label.
    let (shift_images, shift_labels): (Vec<String>, Vec<Option<u8>>) = test_images
        .iter()
        .zip(&test_labels)
        .filter(|(_, y)| y.is_some())
        .take(4)
        .map(|(i, y)| (i.clone(), *y))
        .unzip();
    let keys = write_ingest_shift(&layout, &shift_images, &shift_labels, &CORRUPTIONS);
    let label_of: HashMap<String, Option<u8>> = shift_images
        .iter()
        .cloned()
        .zip(shift_labels.iter().copied())
        .collect();
    // vgg16/ensemble has no shift table: skipped with a warning.
    for &(arch, method) in &combos[..3] {
        write_infer_shift(&layout, arch, method, &keys, &label_of, T);
    }
    write_ood(&layout, &combos, 6, T);
    // The crossentropy run of alexnet: mc_dropout only (its ensemble is missing).
    let variant = layout.variant("label-crossentropy");
    let probs = synthetic_probs(&test_labels, T, 99);
    write_infer(
        &variant,
        Arch::AlexNet,
        Method::McDropout,
        Split::Test,
        &test_images,
        &probs,
    );

    let summary = ferbayes_analyze::run(&layout, &settings).expect("analyze runs");
    let missing: Vec<String> = summary
        .missing
        .iter()
        .map(|p| {
            p.strip_prefix(layout.profile_dir())
                .expect("under the profile")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        missing,
        [
            "infer/vgg16/ensemble/shift.parquet",
            "infer/label-crossentropy/alexnet/ensemble/test.parquet",
        ]
    );

    // Exactly the files of plan::analyze_outputs, and every one of them.
    let outputs = ferbayes_core::plan::analyze_outputs(&layout, &settings);
    assert_eq!(outputs.len(), 9);
    for path in &outputs {
        assert!(path.is_file(), "{} written", path.display());
    }
    let analyze_dir = layout.stage_dir(Stage::Analyze);
    let mut written: Vec<PathBuf> = walk(&analyze_dir)
        .into_iter()
        .filter(|p| {
            p.parent() == Some(analyze_dir.as_path())
                && p.file_name() != Some("manifest.json".as_ref())
                && *p != Layout::lock_in(&analyze_dir)
        })
        .collect();
    written.sort();
    let mut expected = outputs.clone();
    expected.sort();
    assert_eq!(written, expected);

    fn read<R: Row>(layout: &Layout, name: &str) -> Vec<R> {
        ferbayes_core::io::read_rows(&layout.analyze_table(name), None, "just analyze")
            .expect("table matches its schema")
    }

    // selective: 4 combinations x 2 scores, in range.
    let sel: Vec<SelectiveRow> = read(&layout, "selective");
    assert_eq!(sel.len(), 8);
    assert_eq!(
        [sel[0].score.as_str(), sel[1].score.as_str()],
        ["confidence", "mutual_information"]
    );
    for row in &sel {
        for v in [row.aurc, row.accuracy_at_80] {
            assert!(v.is_some_and(|v| (0.0..=1.0).contains(&v)), "{v:?}");
        }
    }

    // shift: 3 combinations x 7 corruptions x severities 0..5; 4 faces each.
    let sh: Vec<ShiftMetricsRow> = read(&layout, "shift");
    assert_eq!(sh.len(), 3 * 7 * 6);
    assert!(sh.iter().all(|r| r.faces == 4));
    assert_eq!(
        sh[..6].iter().map(|r| r.severity).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!(
        sh[..7]
            .iter()
            .filter(|r| r.corruption == "gaussian_noise")
            .count(),
        6
    );
    // Every prediction names the label, less surely as the severity grows: no errors, and the
    // NLL rises with the severity.
    assert!(sh.iter().all(|r| r.error == Some(0.0)));
    let nll: Vec<f64> = sh[..6].iter().map(|r| r.nll.expect("nll")).collect();
    assert!(nll.windows(2).all(|w| w[1] > w[0]), "{nll:?}");

    // ood: 4 combinations x 2 sets x 3 scores; the far set is told apart perfectly by entropy.
    let od: Vec<OodDetectionRow> = read(&layout, "ood");
    assert_eq!(od.len(), 4 * 2 * 3);
    for row in &od {
        assert_eq!(row.near, row.set == "upside_down");
        let auroc = row.auroc.expect("auroc");
        assert!((0.0..=1.0).contains(&auroc));
        if row.set == "uniform_noise" && row.score == "entropy" {
            assert!(
                auroc > 0.9,
                "uniform predictions have the highest entropy: {auroc}"
            );
        }
    }

    // labels: majority x (alexnet x 2 methods) + crossentropy x alexnet/mc_dropout.
    let lb: Vec<LabelsRow> = read(&layout, "labels");
    assert_eq!(
        lb.iter().map(|r| r.label_mode.as_str()).collect::<Vec<_>>(),
        ["majority", "majority", "crossentropy"]
    );
    assert!(lb.iter().all(|r| r.arch == Arch::AlexNet));
    assert_eq!(
        lb.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(),
        ["mc_dropout", "ensemble", "mc_dropout"]
    );
    // The main run's row equals metrics.parquet at n = T on test.
    let metrics: Vec<MetricsRow> = read(&layout, "metrics");
    let row = metrics
        .iter()
        .find(|r| {
            r.arch == Arch::AlexNet
                && r.method == Method::McDropout
                && r.split == Split::Test
                && usize::from(r.n) == T
        })
        .expect("metrics row");
    let main = &lb[0];
    for (name, value) in [
        ("error", main.error),
        ("nll", main.nll),
        ("ece", main.ece),
        ("brier", main.brier),
        ("jsd", main.jsd),
        ("soft_accuracy", main.soft_accuracy),
        ("entropy_corr", main.entropy_corr),
    ] {
        assert!(
            close(
                value.expect("labels value"),
                metric(row, name).expect("metrics value")
            ),
            "{name}"
        );
    }
    assert_eq!(
        ferbayes_analyze::labels::METRICS.len(),
        7,
        "every labels.parquet metric is compared above"
    );

    // Figures and report sections.
    let stems: Vec<&str> = summary.figures.iter().map(|f| f.stem.as_str()).collect();
    for stem in [
        "risk_coverage_alexnet",
        "risk_coverage_vgg16",
        "shift_error_alexnet",
        "shift_ece_alexnet",
        "shift_error_vgg16",
        "shift_ece_vgg16",
        "ood_hist_alexnet",
        "ood_hist_vgg16",
    ] {
        assert!(stems.contains(&stem), "{stem} drawn ({stems:?})");
        for ext in ["png", "svg"] {
            assert!(layout.figure(&format!("{stem}.{ext}")).is_file());
        }
    }
    let md = std::fs::read_to_string(layout.report_md()).expect("report.md");
    let html = std::fs::read_to_string(layout.report_html()).expect("report.html");
    for title in [
        "Selective prediction (test)",
        "Dataset shift (corrupted test faces)",
        "Out-of-distribution detection",
        "Soft-label comparison (test)",
    ] {
        assert!(
            md.contains(&format!("## {title}")),
            "report.md lacks {title}"
        );
        assert!(
            html.contains(&format!("\">{title}</h2>")),
            "report.html lacks {title}"
        );
    }
    assert!(
        md.contains("figures/shift_ece_alexnet.png") && md.contains("figures/ood_hist_vgg16.png")
    );
    assert!(md.contains("alexnet: lowest NLL with `"), "{md}");
    assert!(md.contains("| alexnet | mc_dropout | uniform_noise | far |"));
    assert_eq!(
        html.matches("data:image/png;base64,").count(),
        summary.figures.len()
    );

    // The manifest lists every table with its rows; a second run is up to date.
    let manifest: ferbayes_core::manifest::Manifest = serde_json::from_slice(
        &std::fs::read(Layout::manifest_in(&analyze_dir)).expect("manifest"),
    )
    .expect("manifest parses");
    for (file, rows) in [
        ("selective.parquet", 8),
        ("shift.parquet", 126),
        ("ood.parquet", 24),
        ("labels.parquet", 3),
    ] {
        assert!(
            manifest
                .outputs
                .iter()
                .any(|o| o.file == file && o.rows == rows),
            "{file} with {rows} rows in {:?}",
            manifest.outputs
        );
    }
    assert!(
        ferbayes_analyze::run_checked(&layout, &settings, false)
            .expect("check")
            .is_none(),
        "up to date"
    );
}

#[test]
fn missing_extra_inputs_still_write_empty_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path(), "smoke");
    ingest(&layout, 20);
    let mut settings = smoke_settings();
    settings.train.archs = vec![Arch::AlexNet];
    settings.train.methods = vec![Method::McDropout];
    settings.train.compare_archs = vec![Arch::AlexNet];
    settings.train.label_mode = LabelMode::Majority;
    settings.train.compare_label_modes = vec![LabelMode::CrossEntropy];
    settings.ingest.shift.faces = 4;
    settings.ingest.shift.corruptions = vec!["contrast".into()];
    settings.ingest.ood.faces = 4;
    settings.ingest.ood.generated = vec!["uniform_noise".into()];
    let (images, labels) = ingest_faces(&layout, Split::Test);
    write_infer(
        &layout,
        Arch::AlexNet,
        Method::McDropout,
        Split::Test,
        &images,
        &synthetic_probs(&labels, 2, 5),
    );
    let summary = ferbayes_analyze::run(&layout, &settings).expect("analyze runs");
    // ingest shift + ood, the variant's test table (and the main valid table).
    assert_eq!(summary.missing.len(), 4, "{:?}", summary.missing);
    for path in ferbayes_core::plan::analyze_outputs(&layout, &settings) {
        assert!(path.is_file(), "{}", path.display());
    }
    let rows = |name: &str, schema: &arrow_schema::SchemaRef| -> usize {
        ferbayes_core::io::read_parquet(&layout.analyze_table(name), schema, None, "x")
            .expect("readable")
            .iter()
            .map(RecordBatch::num_rows)
            .sum()
    };
    assert_eq!(rows("shift", &schema::analyze_shift()), 0);
    assert_eq!(rows("ood", &schema::analyze_ood()), 0);
    assert_eq!(
        rows("labels", &schema::analyze_labels()),
        1,
        "the main run's row"
    );
    assert_eq!(rows("selective", &schema::analyze_selective()), 2);
    let md = std::fs::read_to_string(layout.report_md()).expect("report.md");
    assert!(md.contains("`shift.parquet` is empty") && md.contains("`ood.parquet` is empty"));
}
