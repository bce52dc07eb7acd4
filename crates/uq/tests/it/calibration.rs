//! Calibration against the crowd: crowd ECE, classwise crowd ECE, temperature scaling and
//! split-conformal prediction sets, against hand-computed values, against
//! tests/reference/calibration_reference.py (numpy/scipy; its output is pasted below as `PY_*`;
//! rerun it with `python3 crates/uq/tests/reference/calibration_reference.py`), and on
//! synthetic data with known answers.

use ferbayes_uq::calibration::{self, crowd_cw_ece, crowd_ece};
use ferbayes_uq::conformal::{
    self, SetFace, prediction_set, qhat, quantile_rank, set_classes, set_metrics,
};
use ferbayes_uq::crowd::{average_ranks, spearman};
use ferbayes_uq::predictive;
use ferbayes_uq::temperature::{T_TOLERANCE, fit_temperature, temper, temper_all, tempered_nll};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// Output of tests/reference/calibration_reference.py.
const PY_CROWD_ECE_TEST_4BINS: f64 = 0.049999997019768;
const PY_CROWD_CW_ECE_TEST_4BINS: f64 = 0.029166665626690;
const PY_TEMPERED_NLL_VALID_T2: f64 = 1.005396739371895;
const PY_TEMPERED_NLL_VALID_T05: f64 = 0.677724756197855;
const PY_FITTED_T_VALID: f64 = 0.495797835183662;
const PY_TEMPERED_TEST_ROW0: [f64; 4] = [
    0.995569044408899,
    0.002925823562179,
    0.001044215212640,
    0.000460916816282,
];
const PY_QHAT_ALPHA_01: f64 = 0.849999994039536;
const PY_QHAT_ALPHA_02: f64 = 0.75;
// coverage, set size, crowd recall, crowd precision, exact match, Spearman (NaN: constant sizes).
const PY_SETS_ALPHA_005: [f64; 6] = [1.0, 4.0, 1.0, 0.291666666666667, 0.0, f64::NAN];
const PY_SETS_ALPHA_01: [f64; 6] = [
    1.0,
    2.833333333333333,
    1.0,
    0.5,
    0.166666666666667,
    0.835914007637145,
];
const PY_SETS_ALPHA_02: [f64; 6] = [
    1.0,
    1.333333333333333,
    0.916666666666667,
    0.833333333333333,
    0.5,
    0.0,
];
const PY_SPEARMAN_TIES: f64 = 0.617914380653325;

// The fixture of the reference script.
const VALID: [[f32; 4]; 10] = [
    [0.70, 0.10, 0.10, 0.10],
    [0.20, 0.50, 0.20, 0.10],
    [0.40, 0.40, 0.10, 0.10],
    [0.10, 0.10, 0.60, 0.20],
    [0.25, 0.25, 0.25, 0.25],
    [0.05, 0.05, 0.10, 0.80],
    [0.60, 0.30, 0.05, 0.05],
    [0.30, 0.30, 0.30, 0.10],
    [0.10, 0.80, 0.05, 0.05],
    [0.15, 0.15, 0.50, 0.20],
];
const VALID_LABELS: [u8; 10] = [0, 1, 1, 2, 3, 3, 0, 2, 1, 0];
const TEST: [[f32; 4]; 6] = [
    [0.90, 0.05, 0.03, 0.02],
    [0.30, 0.40, 0.20, 0.10],
    [0.50, 0.20, 0.20, 0.10],
    [0.10, 0.20, 0.65, 0.05],
    [0.20, 0.20, 0.20, 0.40],
    [0.35, 0.35, 0.15, 0.15],
];
const TEST_LABELS: [usize; 6] = [0, 1, 0, 2, 3, 1];
const CROWD: [[f32; 4]; 6] = [
    [0.8, 0.1, 0.1, 0.0],
    [0.3, 0.5, 0.2, 0.0],
    [0.4, 0.4, 0.1, 0.1],
    [0.1, 0.1, 0.8, 0.0],
    [0.2, 0.1, 0.3, 0.4],
    [0.3, 0.4, 0.0, 0.3],
];
const MULTI: [u8; 6] = [0b0001, 0b0010, 0b0011, 0b0100, 0b1000, 0b0010];

fn close(got: f64, want: f64, tol: f64, what: &str) {
    let both_nan = got.is_nan() && want.is_nan();
    assert!(
        both_nan || (got - want).abs() <= tol,
        "{what}: got {got}, want {want} (tolerance {tol})"
    );
}

fn conf_and_agreement(probs: &[[f32; 4]], crowd: &[[f32; 4]]) -> (Vec<f64>, Vec<f64>) {
    probs
        .iter()
        .zip(crowd)
        .map(|(p, c)| {
            let (k, conf) = predictive::predict(p);
            (conf, f64::from(c[k]))
        })
        .unzip()
}

#[test]
fn crowd_ece_by_hand() {
    // 4 bins (0, .25], (.25, .5], (.5, .75], (.75, 1]: 0.9 and 0.8 share the last bin
    // (|0.85 − 0.8| · 2/4), 0.6 (|0.6 − 0.5| · 1/4), 0.3 (|0.3 − 0.1| · 1/4): 0.1 in all.
    let ece = crowd_ece(&[0.9, 0.8, 0.6, 0.3], &[0.7, 0.9, 0.5, 0.1], 4);
    close(ece, 0.025 + 0.025 + 0.05, 1e-12, "crowd ECE");
    // Edges: 0.5 is in (.25, .5] alone (gap 0.1); 0.5001 and 0.75 share (.5, .75]
    // (mean conf 0.62505, mean agreement 0.725): (0.1 + 2 · 0.09995) / 3.
    let ece = crowd_ece(&[0.5, 0.5001, 0.75], &[0.4, 0.7, 0.75], 4);
    close(
        ece,
        (0.1 + 2.0 * 0.09995) / 3.0,
        1e-12,
        "crowd ECE on the edges",
    );
    // A prediction that matches the crowd share exactly has crowd ECE 0, whatever its accuracy.
    close(
        crowd_ece(&[0.6, 0.6], &[0.6, 0.6], 10),
        0.0,
        1e-12,
        "perfect",
    );
    assert!(crowd_ece(&[], &[], 10).is_nan());
}

#[test]
fn crowd_classwise_ece_by_hand() {
    // 2 classes, 2 bins. Class 0: p = .8 | .4, .3 against c = .6 | .5, .2: |.6 − .8| + 0 over
    // 3 faces; class 1: p = .2 | .6, .7 against c = .4 | .5, .8: |.4 − .2| + 0 over 3 faces.
    let probs = [[0.8f32, 0.2], [0.4, 0.6], [0.3, 0.7]];
    let crowd = [[0.6f32, 0.4], [0.5, 0.5], [0.2, 0.8]];
    close(
        crowd_cw_ece(&probs, &crowd, 2),
        (0.2 / 3.0 + 0.2 / 3.0) / 2.0,
        1e-7,
        "classwise crowd ECE",
    );
    assert!(crowd_cw_ece::<2>(&[], &[], 2).is_nan());
}

#[test]
fn crowd_metrics_match_the_reference_script() {
    let (conf, agree) = conf_and_agreement(&TEST, &CROWD);
    close(
        crowd_ece(&conf, &agree, 4),
        PY_CROWD_ECE_TEST_4BINS,
        1e-12,
        "crowd ECE",
    );
    close(
        crowd_cw_ece(&TEST, &CROWD, 4),
        PY_CROWD_CW_ECE_TEST_4BINS,
        1e-12,
        "classwise crowd ECE",
    );
    // The reliability bins behind crowd ECE hold every face once.
    let bins = calibration::crowd_reliability(&conf, &agree, 4);
    assert_eq!(bins.iter().map(|b| b.count).sum::<usize>(), TEST.len());
}

#[test]
fn temperature_matches_the_reference_script() {
    close(
        tempered_nll(&VALID, &VALID_LABELS, 2.0),
        PY_TEMPERED_NLL_VALID_T2,
        1e-12,
        "NLL at T = 2",
    );
    close(
        tempered_nll(&VALID, &VALID_LABELS, 0.5),
        PY_TEMPERED_NLL_VALID_T05,
        1e-12,
        "NLL at T = 0.5",
    );
    let t = fit_temperature(&VALID, &VALID_LABELS);
    close(
        t,
        PY_FITTED_T_VALID,
        T_TOLERANCE * PY_FITTED_T_VALID,
        "fitted T",
    );
    let row = temper(&TEST[0], PY_FITTED_T_VALID);
    for (k, (&g, &w)) in row.iter().zip(&PY_TEMPERED_TEST_ROW0).enumerate() {
        close(f64::from(g), w, 1e-7, &format!("tempered class {k}"));
    }
}

#[test]
fn temperature_by_hand() {
    // p = (0.8, 0.2) at T = 2: softmax(ln p / 2) ∝ (√0.8, √0.2) = (2/3, 1/3).
    let p = temper(&[0.8f32, 0.2], 2.0);
    close(f64::from(p[0]), 2.0 / 3.0, 1e-7, "T = 2");
    // T = 1 gives p back; a zero stays (almost) zero through the 1e-12 floor.
    let p = temper(&[0.5f32, 0.5, 0.0], 1.0);
    close(f64::from(p[0]), 0.5, 1e-7, "T = 1");
    assert!(p[2] < 1e-11);
    // NLL at T = 1 is the plain NLL.
    close(
        tempered_nll(&VALID, &VALID_LABELS, 1.0),
        calibration::nll(&VALID, &VALID_LABELS),
        1e-7,
        "NLL at T = 1",
    );
}

/// Faces whose labels occur exactly in proportion to their predictions (each prediction a
/// multiple of 1/10, its face repeated 10 times): calibrated by construction, so the NLL is the
/// cross-entropy, minimal at T = 1.
fn calibrated(rng: &mut ChaCha8Rng, faces: usize) -> (Vec<[f32; 4]>, Vec<u8>) {
    let (mut probs, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..faces {
        let mut votes = [0u8; 4];
        for _ in 0..10 {
            votes[rng.random_range(0..4)] += 1;
        }
        let p = votes.map(|v| f32::from(v) / 10.0);
        for (k, &v) in votes.iter().enumerate() {
            for _ in 0..v {
                probs.push(p);
                labels.push(k as u8);
            }
        }
    }
    (probs, labels)
}

#[test]
fn temperature_is_one_when_calibrated_below_when_underconfident_above_when_over() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (probs, labels) = calibrated(&mut rng, 200);
    let t = fit_temperature(&probs, &labels);
    close(t, 1.0, 2.0 * T_TOLERANCE, "calibrated: T = 1");
    // Flattened by 3 (underconfident): T = 1/3 undoes it. Sharpened by 3: T = 3.
    let under = temper_all(&probs, 3.0);
    let t = fit_temperature(&under, &labels);
    assert!(t < 1.0);
    close(
        t,
        1.0 / 3.0,
        3.0 * T_TOLERANCE / 3.0,
        "underconfident: T = 1/3",
    );
    let over = temper_all(&probs, 1.0 / 3.0);
    let t = fit_temperature(&over, &labels);
    assert!(t > 1.0);
    close(t, 3.0, 3.0 * 3.0 * T_TOLERANCE, "overconfident: T = 3");
}

#[test]
fn temperature_scaling_never_changes_the_error() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let probs: Vec<[f32; 8]> = (0..500)
        .map(|_| {
            let z: [f64; 8] = std::array::from_fn(|_| rng.random_range(-4.0..4.0));
            let s: f64 = z.iter().map(|v| v.exp()).sum();
            z.map(|v| (v.exp() / s) as f32)
        })
        .collect();
    let labels: Vec<u8> = (0..500).map(|_| rng.random_range(0..8u8)).collect();
    let before = calibration::error(&probs, &labels);
    for t in [0.05, 0.3, 0.9, 1.7, 5.0, 20.0] {
        let after = calibration::error(&temper_all(&probs, t), &labels);
        assert_eq!(before, after, "T = {t}");
    }
    let fitted = fit_temperature(&probs, &labels);
    assert_eq!(
        before,
        calibration::error(&temper_all(&probs, fitted), &labels)
    );
}

#[test]
fn quantile_rank_is_off_by_one_safe() {
    // ⌈(m+1)(1−α)⌉: m = 1 needs α ≥ 1/2 for a finite q̂.
    assert_eq!(quantile_rank(1, 0.1), None);
    assert_eq!(quantile_rank(1, 0.5), Some(1));
    // m = 9, α = 0.1: ⌈10 · 0.9⌉ = 9 exactly (not 10 through rounding), the largest score.
    assert_eq!(quantile_rank(9, 0.1), Some(9));
    assert_eq!(quantile_rank(9, 0.05), None);
    assert_eq!(quantile_rank(9, 0.2), Some(8));
    // m = 10: ⌈11 · 0.9⌉ = ⌈9.9⌉ = 10; ⌈11 · 0.8⌉ = 9; ⌈11 · 0.95⌉ = 11 > 10.
    assert_eq!(quantile_rank(10, 0.1), Some(10));
    assert_eq!(quantile_rank(10, 0.2), Some(9));
    assert_eq!(quantile_rank(10, 0.05), None);
    let scores: Vec<f64> = (1..=10).map(|i| f64::from(i) / 10.0).rev().collect();
    close(
        qhat(&scores, 0.1),
        1.0,
        0.0,
        "m = 10, α = 0.1: the 10th smallest",
    );
    close(
        qhat(&scores, 0.2),
        0.9,
        0.0,
        "m = 10, α = 0.2: the 9th smallest",
    );
    assert_eq!(qhat(&scores[..9], 0.05), f64::INFINITY);
    assert_eq!(qhat(&[0.3], 0.1), f64::INFINITY);
    // q̂ = +∞ puts every class in the set; q̂ below every score gives the empty set.
    assert_eq!(prediction_set(&[0.1f32, 0.2, 0.7], f64::INFINITY), 0b111);
    assert_eq!(prediction_set(&[0.1f32, 0.2, 0.7], 0.2), 0b000);
    assert_eq!(prediction_set(&[0.1f32, 0.2, 0.7], 0.8), 0b110);
    assert_eq!(set_classes(0b110).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(set_classes(0).count(), 0);
    assert_eq!(
        set_classes(0xff).collect::<Vec<_>>(),
        (0..8).collect::<Vec<_>>()
    );
}

#[test]
fn the_set_holds_the_classes_within_the_threshold() {
    let set = |p: &[f32], q: f64| set_classes(prediction_set(p, q)).collect::<Vec<_>>();
    // 1 − p = (0.5, 0.7, 0.9, 1, 1, 1, 0.95, 0.95) (up to f32 rounding: 1 − 0.3f32 is
    // 0.69999998807907): q̂ = 0.7 keeps classes 0 and 1.
    let mean = [0.5f32, 0.3, 0.1, 0.0, 0.0, 0.0, 0.05, 0.05];
    assert_eq!(set(&mean, 0.7), vec![0, 1]);
    // The boundary is inclusive: 1 − 0.5 = 0.5 ≤ 0.5 exactly.
    assert_eq!(set(&mean, 0.5), vec![0]);
    assert_eq!(set(&mean, 0.69), vec![0]);
    assert_eq!(set(&mean, 0.4), Vec::<usize>::new());
    // q̂ = +∞ (too few calibration faces for α): every class.
    assert_eq!(set(&mean, f64::INFINITY), (0..8).collect::<Vec<_>>());
}

#[test]
fn set_metrics_by_hand() {
    let face = |set, label, crowd_set, crowd_entropy| SetFace {
        set,
        label,
        crowd_set,
        crowd_entropy,
    };
    let faces = [
        // C = {0}, M = {0}: covered, exact, recall 1, precision 1.
        face(0b001, 0, 0b001, 0.1),
        // C = {0, 1}, M = {1}: covered, recall 1, precision 1/2.
        face(0b011, 1, 0b010, 0.9),
        // C = {}, M = {2}: not covered, recall 0, left out of precision.
        face(0b000, 2, 0b100, 0.5),
        // C = {1, 2}, M = {0, 1}: label 0 not covered, recall 1/2, precision 1/2.
        face(0b110, 0, 0b011, 1.2),
    ];
    let m = set_metrics(&faces);
    close(m.coverage, 0.5, 1e-12, "coverage");
    close(m.set_size, 5.0 / 4.0, 1e-12, "set size");
    close(
        m.crowd_recall,
        (1.0 + 1.0 + 0.0 + 0.5) / 4.0,
        1e-12,
        "recall",
    );
    close(
        m.crowd_precision,
        (1.0 + 0.5 + 0.5) / 3.0,
        1e-12,
        "precision",
    );
    close(m.crowd_exact, 0.25, 1e-12, "exact");
    // Sizes (1, 2, 0, 2) against entropies (0.1, 0.9, 0.5, 1.2): ranks (2, 3.5, 1, 3.5) and
    // (1, 3, 2, 4); Pearson of the ranks = 3.5 / √(4.5 · 5) = 0.737864787372622.
    close(
        m.size_entropy_spearman,
        3.5 / (4.5f64 * 5.0).sqrt(),
        1e-12,
        "Spearman",
    );
    assert_eq!(
        average_ranks(&[1.0, 2.0, 0.0, 2.0]),
        vec![2.0, 3.5, 1.0, 3.5]
    );
}

#[test]
fn conformal_sets_match_the_reference_script() {
    let scores: Vec<f64> = VALID
        .iter()
        .zip(VALID_LABELS)
        .map(|(p, y)| conformal::score(p, usize::from(y)))
        .collect();
    let crowd_entropy: Vec<f64> = CROWD.iter().map(|c| predictive::entropy(c)).collect();
    for (alpha, want_q, want) in [
        (0.05, f64::INFINITY, PY_SETS_ALPHA_005),
        (0.1, PY_QHAT_ALPHA_01, PY_SETS_ALPHA_01),
        (0.2, PY_QHAT_ALPHA_02, PY_SETS_ALPHA_02),
    ] {
        let q = qhat(&scores, alpha);
        assert!(
            q == want_q || (q - want_q).abs() < 1e-12,
            "α = {alpha}: q̂ {q}"
        );
        let faces: Vec<SetFace> = (0..TEST.len())
            .map(|i| SetFace {
                set: prediction_set(&TEST[i], q),
                label: TEST_LABELS[i],
                crowd_set: MULTI[i],
                crowd_entropy: crowd_entropy[i],
            })
            .collect();
        let got = set_metrics(&faces).to_array();
        for (j, (g, w)) in got.iter().zip(want).enumerate() {
            close(*g, w, 1e-9, &format!("α = {alpha}, metric {j}"));
        }
    }
    close(
        spearman(
            &[1.0, 2.0, 2.0, 3.0, 1.0, 4.0],
            &[0.1, 0.5, 0.4, 0.9, 0.2, 0.3],
        ),
        PY_SPEARMAN_TIES,
        1e-12,
        "Spearman with ties",
    );
}

/// Split conformal on exchangeable synthetic faces (labels drawn from the predictions): over 200
/// seeded random splits into 1000 calibration and 1000 test faces, the mean coverage is at least
/// 1 − α (up to three standard errors of the mean) and within 1 pp of it.
#[test]
fn conformal_coverage_holds_on_exchangeable_data() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let faces = 2000;
    let probs: Vec<[f32; 8]> = (0..faces)
        .map(|_| {
            let z: [f64; 8] = std::array::from_fn(|_| rng.random_range(-3.0..3.0));
            let s: f64 = z.iter().map(|v| v.exp()).sum();
            z.map(|v| (v.exp() / s) as f32)
        })
        .collect();
    let labels: Vec<usize> = probs
        .iter()
        .map(|p| {
            let u: f32 = rng.random_range(0.0..1.0);
            let mut acc = 0.0;
            p.iter()
                .position(|&v| {
                    acc += v;
                    u < acc
                })
                .unwrap_or(7)
        })
        .collect();
    // The levels of analyze's conformal table (`ferbayes_core::schema::CONFORMAL_ALPHAS`).
    for alpha in [0.05, 0.10, 0.20] {
        let coverages: Vec<f64> = (0..200u64)
            .map(|seed| {
                let mut order: Vec<usize> = (0..faces).collect();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
                let (cal, test) = order.split_at(faces / 2);
                let scores: Vec<f64> = cal
                    .iter()
                    .map(|&i| conformal::score(&probs[i], labels[i]))
                    .collect();
                let q = qhat(&scores, alpha);
                let covered = test
                    .iter()
                    .filter(|&&i| prediction_set(&probs[i], q) & (1 << labels[i]) != 0)
                    .count();
                covered as f64 / test.len() as f64
            })
            .collect();
        let n = coverages.len() as f64;
        let mean = coverages.iter().sum::<f64>() / n;
        let sd = (coverages.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let se = sd / n.sqrt();
        assert!(
            mean >= 1.0 - alpha - 3.0 * se,
            "α = {alpha}: mean coverage {mean} (se {se})"
        );
        assert!(
            (mean - (1.0 - alpha)).abs() <= 0.01,
            "α = {alpha}: mean coverage {mean}"
        );
    }
}
