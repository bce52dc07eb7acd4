//! One face's numbers are the same bits wherever they are shown: from one matrix of samples
//! (T = 5 samples × a few faces, K = 8: MC-style samples that disagree, a tie between two
//! classes, agreeing and disagreeing one-hot samples, samples a few ulps apart, pseudo-random
//! ones with exact zeros), written as an ingest and an infer table,
//!
//! - analyze's per-face path (its own reader `data::read_samples`, then `ferbayes_uq::face_splits`
//!   as its selective, shift and OOD analyses call it, `ood::Scores::of` and `mean_prediction`),
//! - `ferbayes predict`'s summary (`summary::summarise` of one face's samples) and
//! - explore's running statistics (`RunData::load`, then `ComboStats::at` for n = 1..T)
//!
//! give identical probabilities, entropy, aleatoric and epistemic parts and predicted class.

use std::path::Path;

use ferbayes_analyze::data::{read_faces, read_samples};
use ferbayes_analyze::ood::Scores;
use ferbayes_core::schema;
use ferbayes_core::schema::rows::{FaceRow, InferRow};
use ferbayes_core::{Arch, EMOTIONS, Layout, Method, NUM_CLASSES, Split};
use ferbayes_explore::data::{RunData, RunKey};
use ferbayes_predict::FaceBox;
use ferbayes_predict::summary::{FaceSource, summarise};
use ferbayes_uq::{FaceSplit, face_splits, mean_prediction};

use crate::support::smoke_settings;

const T: usize = 5;

/// The faces' samples, face-major: `faces()[i][t]`.
fn faces() -> Vec<[[f32; NUM_CLASSES]; T]> {
    let mc = [
        [0.50, 0.20, 0.10, 0.05, 0.05, 0.04, 0.03, 0.03],
        [0.10, 0.60, 0.10, 0.05, 0.05, 0.04, 0.03, 0.03],
        [0.30, 0.30, 0.20, 0.05, 0.05, 0.04, 0.03, 0.03],
        [0.45, 0.15, 0.15, 0.10, 0.05, 0.04, 0.03, 0.03],
        [0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.65],
    ];
    // The mean of all five has 0.35 at classes 2 and 5 (and of the first two, 0.375 at both).
    let a = [0.0, 0.0, 0.5, 0.0, 0.0, 0.25, 0.25, 0.0];
    let b = [0.0, 0.0, 0.25, 0.0, 0.0, 0.5, 0.25, 0.0];
    let c = [0.0, 0.0, 0.25, 0.0, 0.0, 0.25, 0.5, 0.0];
    let tie = [a, b, a, b, c];
    let one_hot = |k: usize| {
        let mut p = [0.0; NUM_CLASSES];
        p[k] = 1.0;
        p
    };
    let agree = [one_hot(3); T];
    let disagree = [one_hot(0), one_hot(7), one_hot(0), one_hot(7), one_hot(1)];
    // Two samples a few ulps apart (crates/uq's predictive test): rounding the mean to f32 puts
    // its entropy a hair below the samples' mean entropy.
    let x = [
        0.042_268_36,
        0.181_938_1,
        0.130_895_96,
        0.174_021_84,
        0.128_237_3,
        0.236_130_83,
        0.027_967_483,
        0.078_540_124,
    ];
    let mut y = x;
    y[2] = 0.130_895_94;
    y[4] = 0.128_237_32;
    let near = [x, y, x, y, x];
    let mut all = vec![mc, tie, agree, disagree, near];
    // Pseudo-random faces: softmax of uniform logits in [−4, 4), every third with an exact zero
    // (a 64-bit LCG, Knuth's MMIX constants).
    let mut state = 20_240_917u64;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    for i in 0..20 {
        all.push(std::array::from_fn(|_| {
            let e: [f32; NUM_CLASSES] = std::array::from_fn(|_| (8.0 * uniform() - 4.0).exp());
            let sum: f32 = e.iter().sum();
            let mut p = e.map(|v| v / sum);
            if i % 3 == 0 {
                p[i % NUM_CLASSES] += p[(i + 1) % NUM_CLASSES];
                p[(i + 1) % NUM_CLASSES] = 0.0;
            }
            p
        }));
    }
    all
}

/// Every number of a split as bits.
fn bits(s: &FaceSplit<NUM_CLASSES>) -> ([u32; NUM_CLASSES], [u64; 3], usize) {
    (
        s.probs.map(f32::to_bits),
        [
            s.entropy.to_bits(),
            s.aleatoric.to_bits(),
            s.epistemic.to_bits(),
        ],
        s.predicted().0,
    )
}

#[test]
fn analyze_predict_and_explore_give_one_face_the_same_bits() {
    let faces = faces();
    let names: Vec<String> = (0..faces.len()).map(|i| format!("f{i:03}.png")).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = smoke_settings();
    let layout = Layout::new(dir.path(), "smoke");
    let (arch, method) = (Arch::AlexNet, Method::McDropout);
    let face_rows: Vec<FaceRow> = names
        .iter()
        .map(|n| FaceRow {
            image: n.clone(),
            split: ferbayes_core::Split::Test,
            pixels: vec![0; ferbayes_core::IMAGE_PIXELS],
            ..FaceRow::default()
        })
        .collect();
    let ingest = layout.ingest_split(Split::Test);
    let batch = ferbayes_core::io::rows_batch(&ingest, &face_rows).expect("batch");
    ferbayes_core::io::write_parquet(&ingest, &schema::ingest(), [batch], 3)
        .expect("write")
        .commit()
        .expect("commit");
    // Sample-major, as infer writes them.
    let infer_rows: Vec<InferRow> = (0..T)
        .flat_map(|t| {
            names.iter().zip(&faces).map(move |(n, s)| InferRow {
                image: n.clone(),
                sample: t as u16,
                probs: s[t],
            })
        })
        .collect();
    let infer = layout.infer_split(arch, method, Split::Test);
    let batch = ferbayes_core::io::rows_batch(&infer, &infer_rows).expect("batch");
    ferbayes_core::io::write_parquet(&infer, &schema::infer(), [batch], 3)
        .expect("write")
        .commit()
        .expect("commit");

    // analyze: its reader, then what its analyses call.
    let ingest = read_faces(&ingest, false, 15).expect("faces");
    let samples = read_samples(&infer, &ingest).expect("samples");
    let scores = Scores::of(&samples);
    // explore: the tables loaded as a request sees them.
    let run = RunData::load(&layout, &settings, RunKey::read(&layout, &settings));
    let stats = run
        .stats(arch, method, Split::Test)
        .expect("explore's stats");
    assert_eq!(stats.samples, T);

    let mut ties = 0;
    let mut below_zero = 0;
    for n in 1..=T {
        let all = samples.all();
        let analyze = face_splits(&all[..n]);
        let pbar = mean_prediction(&all[..n]);
        for (i, name) in names.iter().enumerate() {
            let want = bits(&analyze[i]);
            assert_eq!(pbar[i].map(f32::to_bits), want.0, "{name} n {n}");
            // explore
            assert_eq!(bits(&stats.at(i, n)), want, "explore, {name} n {n}");
            // predict
            let p = summarise(
                FaceSource {
                    image: Path::new(name),
                    face: 0,
                    bbox: FaceBox {
                        x: 0,
                        y: 0,
                        width: 48,
                        height: 48,
                        score: None,
                    },
                    warning: None,
                },
                &faces[i][..n],
            );
            let got = FaceSplit {
                probs: p.mean(),
                entropy: p.predictive_entropy,
                aleatoric: p.aleatoric,
                epistemic: p.epistemic,
            };
            assert_eq!(bits(&got), want, "predict, {name} n {n}");
            assert_eq!(p.emotion, EMOTIONS[want.2], "{name} n {n}");
            assert_eq!(p.confidence, f64::from(analyze[i].probs[want.2]));
            let probs: Vec<u64> = p.probabilities.iter().map(|(_, v)| v.to_bits()).collect();
            let wide: Vec<u64> = analyze[i]
                .probs
                .iter()
                .map(|&v| f64::from(v).to_bits())
                .collect();
            assert_eq!(probs, wide, "predict's probabilities, {name} n {n}");
            if n == T {
                // analyze's OOD scores of all T samples.
                assert_eq!(scores.entropy[i].to_bits(), want.1[0], "{name}");
                assert_eq!(scores.mutual_information[i].to_bits(), want.1[2], "{name}");
            }
            let p = analyze[i].probs;
            let top = p.iter().copied().fold(f32::MIN, f32::max);
            ties += usize::from(p.iter().filter(|&&v| v == top).count() > 1);
            below_zero += usize::from(analyze[i].epistemic < 0.0);
        }
    }
    // The fixture exercises what it claims: ties (the tie face at n = 2, 4, 5, the disagreeing
    // one-hot face at n = 2, 4, 5) and an epistemic part a hair below 0 (the near face).
    assert_eq!(
        bits(&face_splits(&samples.all())[1]).2,
        2,
        "the tie's first class"
    );
    assert!(ties >= 4, "{ties} ties");
    assert!(below_zero >= 1, "no negative epistemic part");
}
