//! OOD detection and selective prediction (src/detection.rs) against hand-computed values on tiny
//! inputs, and on pseudo-random inputs against scikit-learn / numpy: the `PY_*` constants below
//! are the output of tests/reference/detection_reference.py. Rerun it with
//! `python3 -m venv /tmp/skvenv && /tmp/skvenv/bin/pip install scikit-learn numpy` and
//! `/tmp/skvenv/bin/python crates/uq/tests/reference/detection_reference.py`.

use ferbayes_uq::calibration;
use ferbayes_uq::detection::{
    OodScores, TPR95, accuracy_at_coverage, aupr, auroc, coverage_at_accuracy, downsample,
    fpr_at_tpr, ood_scores, risk_coverage,
};

// Output of tests/reference/detection_reference.py (scikit-learn 1.9.1, numpy 2.4.6).
// detection: 200 in (seed 20240601), 150 out
const PY_AUROC: f64 = 0.6121166666666666;
const PY_AUPR: f64 = 0.5057001649904995;
// FPR95: roc_curve(drop_intermediate=True) gives 0.73 (same)
const PY_FPR95: f64 = 0.73;
// FPR80: roc_curve(drop_intermediate=True) gives 0.59 (same)
const PY_FPR80: f64 = 0.59;
// in = out = [3, 2, 1], TPR 0.5: direct 0.6666666666666666, drop_intermediate=True 1.0
const PY_AUROC_SWAPPED: f64 = 0.3878833333333333;
const PY_AUPR_SWAPPED: f64 = 0.5129007946575297;
// selective: 300 faces (seed 7)
const PY_SEL_AURC: f64 = 0.19861111340901405;
const PY_SEL_CORRECT: usize = 180;
const PY_RISK_AT: [(usize, f64); 6] = [
    (1, 0.0),
    (10, 0.0),
    (75, 0.08),
    (150, 0.20666666666666667),
    (299, 0.3979933110367893),
    (300, 0.4),
];
const PY_ACC_AT_COV: [(f64, f64); 6] = [
    (0.0, 1.0),
    (0.1, 1.0),
    (0.25, 0.92),
    (0.5, 0.7933333333333333),
    (0.9, 0.6259259259259259),
    (1.0, 0.6),
];
const PY_COV_AT_ACC: [(f64, f64); 6] = [
    (0.5, 1.0),
    (0.7, 0.7033333333333334),
    (0.8, 0.47333333333333333),
    (0.9, 0.2733333333333333),
    (0.95, 0.22333333333333333),
    (1.0, 0.10333333333333333),
];

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-15,
        "{what}: got {got}, expected {want}"
    );
}

/// 1e-12 relative (exact when the expected value is 0).
fn rel_close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-12 * want.abs(),
        "{what}: got {got}, expected {want} (1e-12 relative)"
    );
}

/// The LCG of detection_reference.py: state ← A·state + C mod 2⁶⁴, a uniform in [0, 1) from the
/// top 53 bits.
struct Lcg(u64);

impl Lcg {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// 200 in-distribution scores then 150 OOD scores, on a grid of 1/40 (many ties).
fn detection_inputs() -> (Vec<f64>, Vec<f64>) {
    let mut rng = Lcg(20_240_601);
    let ins = (0..200)
        .map(|_| (rng.uniform() * 40.0).floor() / 40.0)
        .collect();
    let outs = (0..150)
        .map(|_| ((0.25 + 0.75 * rng.uniform()) * 40.0).floor() / 40.0)
        .collect();
    (ins, outs)
}

/// 300 faces: confidence on a grid of 1/20, correct with probability 0.2 + 0.8 · confidence.
fn selective_inputs() -> (Vec<f64>, Vec<bool>) {
    let mut rng = Lcg(7);
    (0..300)
        .map(|_| {
            let c = (rng.uniform() * 20.0).floor() / 20.0;
            (c, rng.uniform() < 0.2 + 0.8 * c)
        })
        .unzip()
}

fn all_three(ins: &[f64], outs: &[f64]) -> (f64, f64, f64) {
    (
        auroc(ins, outs),
        aupr(ins, outs),
        fpr_at_tpr(ins, outs, TPR95),
    )
}

#[test]
fn ood_by_hand_sklearn_doc_example() {
    // in = [0.1, 0.4], out = [0.35, 0.8] (scikit-learn's documentation example).
    let (ins, outs) = ([0.1, 0.4], [0.35, 0.8]);
    // AUROC: pairs (out, in): 0.35 > 0.1, 0.35 < 0.4, 0.8 > 0.1, 0.8 > 0.4 → 3/4.
    close(auroc(&ins, &outs), 0.75, "auroc");
    // AP, thresholds descending: 0.8 (out): TP 1 FP 0, P 1, R 1/2; 0.4 (in): R unchanged;
    // 0.35 (out): TP 2 FP 1, P 2/3, R 1 → 1/2 · 1 + 1/2 · 2/3 = 5/6.
    close(aupr(&ins, &outs), 5.0 / 6.0, "aupr");
    // FPR95: k = 2 (1/2 < 0.95 ≤ 2/2), τ = 2nd highest out score = 0.35; in ≥ 0.35: {0.4} → 1/2.
    close(fpr_at_tpr(&ins, &outs, 0.95), 0.5, "fpr95");
    // TPR 0.5: k = 1, τ = 0.8; no in-score ≥ 0.8 → 0.
    close(fpr_at_tpr(&ins, &outs, 0.5), 0.0, "fpr50");
}

#[test]
fn ood_by_hand_with_ties() {
    // in = [1, 2, 2, 3], out = [2, 3, 4].
    let (ins, outs) = ([1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 4.0]);
    // U: out 2 beats {1} and ties {2, 2}: 1 + 2/2 = 2; out 3 beats {1, 2, 2}, ties {3}: 3.5;
    // out 4 beats all 4: 4. U = 9.5, AUROC = 9.5 / 12 = 19/24.
    close(auroc(&ins, &outs), 19.0 / 24.0, "auroc");
    // AP, distinct thresholds descending (ties are one threshold):
    // 4: in 0 out 1 → TP 1 FP 0, P 1,   ΔR 1/3;
    // 3: in 1 out 1 → TP 2 FP 1, P 2/3, ΔR 1/3;
    // 2: in 2 out 1 → TP 3 FP 3, P 1/2, ΔR 1/3;
    // 1: in 1 out 0 → ΔR 0.
    // AP = (1 + 2/3 + 1/2) / 3 = 13/18.
    close(aupr(&ins, &outs), 13.0 / 18.0, "aupr");
    // FPR95: k = 3 (2/3 < 0.95), τ = 3rd highest out = 2; in ≥ 2: {2, 2, 3} → 3/4 (ties flagged).
    close(fpr_at_tpr(&ins, &outs, 0.95), 0.75, "fpr95");
    // TPR 2/3 and 0.5: k = 2, τ = 3; in ≥ 3: {3} → 1/4.
    close(fpr_at_tpr(&ins, &outs, 2.0 / 3.0), 0.25, "fpr at 2/3");
    close(fpr_at_tpr(&ins, &outs, 0.5), 0.25, "fpr50");
    // TPR 0.3: k = 1, τ = 4 → 0. TPR 1: k = 3 → 3/4.
    close(fpr_at_tpr(&ins, &outs, 0.3), 0.0, "fpr30");
    close(fpr_at_tpr(&ins, &outs, 1.0), 0.75, "fpr100");
    // ood_scores is the three at once.
    assert_eq!(
        ood_scores(&ins, &outs),
        OodScores {
            auroc: 19.0 / 24.0,
            aupr: 13.0 / 18.0,
            fpr95: 0.75,
        }
    );
}

#[test]
fn ood_perfect_reversed_and_equal() {
    // Perfect separation: every out above every in → AUROC 1, AP 1 (precision 1 at every
    // OOD threshold), FPR95 0 (τ = 0.5 flags no in-score).
    let (a, p, f) = all_three(&[0.1, 0.2, 0.3], &[0.5, 0.6]);
    close(a, 1.0, "perfect auroc");
    close(p, 1.0, "perfect aupr");
    close(f, 0.0, "perfect fpr95");
    // Touching: in = [0.1, 0.5], out = [0.5, 0.9]. U = (1 + 1/2) + 2 = 3.5 → 7/8; FPR95: τ = 0.5
    // flags the tied in-score 0.5 → 1/2. AP: 0.9: P 1, ΔR 1/2; 0.5 (1 in, 1 out): TP 2 FP 1,
    // P 2/3, ΔR 1/2 → 5/6.
    let (a, p, f) = all_three(&[0.1, 0.5], &[0.5, 0.9]);
    close(a, 0.875, "touching auroc");
    close(p, 5.0 / 6.0, "touching aupr");
    close(f, 0.5, "touching fpr95");
    // Reversed: every out below every in → AUROC 0; FPR95: τ = 0.1 (k = 3) flags both in → 1.
    // AP: 0.6, 0.5 are in (FP 2); 0.3: TP 1 P 1/3; 0.2: TP 2 P 2/4; 0.1: TP 3 P 3/5, ΔR 1/3 each
    // → (1/3 + 1/2 + 3/5) / 3 = 43/90.
    let (a, p, f) = all_three(&[0.5, 0.6], &[0.1, 0.2, 0.3]);
    close(a, 0.0, "reversed auroc");
    close(p, 43.0 / 90.0, "reversed aupr");
    close(f, 1.0, "reversed fpr95");
    // All equal: every pair ties → 1/2; one threshold flags everything: AP = P = 3/7 (the OOD
    // fraction), FPR95 = 1.
    let (a, p, f) = all_three(&[0.7; 4], &[0.7; 3]);
    close(a, 0.5, "equal auroc");
    close(p, 3.0 / 7.0, "equal aupr");
    close(f, 1.0, "equal fpr95");
    // −0 and +0 are the same score: a tie.
    close(auroc(&[0.0], &[-0.0]), 0.5, "signed zeros");
    // Infinite scores are ordinary values.
    close(
        auroc(&[f64::NEG_INFINITY, 1.0], &[f64::INFINITY, 1.0]),
        // out ∞ beats both (2); out 1 beats −∞ and ties 1 (1.5) → 3.5/4.
        0.875,
        "infinities",
    );
}

#[test]
fn ood_empty_nan_and_bad_tpr() {
    for (ins, outs) in [
        (&[][..], &[1.0][..]),
        (&[1.0][..], &[][..]),
        (&[][..], &[][..]),
        (&[1.0, f64::NAN][..], &[2.0][..]),
        (&[1.0][..], &[f64::NAN][..]),
    ] {
        let (a, p, f) = all_three(ins, outs);
        assert!(a.is_nan() && p.is_nan() && f.is_nan(), "{ins:?} {outs:?}");
        let s = ood_scores(ins, outs);
        assert!(s.auroc.is_nan() && s.aupr.is_nan() && s.fpr95.is_nan());
    }
    for tpr in [0.0, -0.5, 1.0 + 1e-12, f64::NAN] {
        assert!(fpr_at_tpr(&[1.0], &[2.0], tpr).is_nan(), "tpr {tpr}");
    }
}

#[test]
fn ood_against_sklearn() {
    let (ins, outs) = detection_inputs();
    assert_eq!((ins.len(), outs.len()), (200, 150));
    rel_close(auroc(&ins, &outs), PY_AUROC, "auroc");
    rel_close(aupr(&ins, &outs), PY_AUPR, "aupr");
    rel_close(fpr_at_tpr(&ins, &outs, 0.95), PY_FPR95, "fpr95");
    rel_close(fpr_at_tpr(&ins, &outs, 0.8), PY_FPR80, "fpr80");
    // Swapping the roles reverses the detector.
    rel_close(auroc(&outs, &ins), PY_AUROC_SWAPPED, "swapped auroc");
    rel_close(aupr(&outs, &ins), PY_AUPR_SWAPPED, "swapped aupr");
    let s = ood_scores(&ins, &outs);
    assert_eq!(
        s,
        OodScores {
            auroc: auroc(&ins, &outs),
            aupr: aupr(&ins, &outs),
            fpr95: fpr_at_tpr(&ins, &outs, TPR95),
        }
    );
}

#[test]
fn ood_agrees_with_brute_force_and_is_invariant() {
    let (ins, outs) = detection_inputs();
    // O(n²) Mann–Whitney.
    let mut twice_u = 0u64;
    for o in &outs {
        for i in &ins {
            twice_u += if o > i { 2 } else { u64::from(o == i) };
        }
    }
    let brute = twice_u as f64 / (2.0 * 200.0 * 150.0);
    rel_close(auroc(&ins, &outs), brute, "brute-force auroc");
    close(auroc(&outs, &ins), 1.0 - brute, "swapped = 1 − auroc");
    // The literal FPR definition: the largest τ among the out-scores with #{out ≥ τ}/n ≥ tpr.
    for tpr in [0.01, 0.1, 0.5, 0.8, 0.95, 0.99, 1.0] {
        let count = |xs: &[f64], t: f64| xs.iter().filter(|&&x| x >= t).count() as f64;
        let tau = outs
            .iter()
            .copied()
            .filter(|&t| count(&outs, t) / 150.0 >= tpr)
            .fold(f64::NEG_INFINITY, f64::max);
        close(
            fpr_at_tpr(&ins, &outs, tpr),
            count(&ins, tau) / 200.0,
            &format!("fpr at {tpr}"),
        );
    }
    // Input order and a strictly increasing transform change nothing.
    let rev = |xs: &[f64]| xs.iter().rev().map(|x| (3.0 * x).exp()).collect::<Vec<_>>();
    let (ins2, outs2) = (rev(&ins), rev(&outs));
    assert_eq!(ood_scores(&ins, &outs), ood_scores(&ins2, &outs2));
}

/// confidence [0.9, 0.6, 0.9, 0.3, 0.6], correct [T, F, F, T, T]. Ranked (descending, stable):
/// 0.9 (#0 T), 0.9 (#2 F), 0.6 (#1 F), 0.6 (#4 T), 0.3 (#3 T) → T F F T T.
fn selective_case() -> ([f64; 5], [bool; 5]) {
    ([0.9, 0.6, 0.9, 0.3, 0.6], [true, false, false, true, true])
}

#[test]
fn risk_coverage_by_hand() {
    let (conf, ok) = selective_case();
    // Errors among the first k: 0, 1, 2, 2, 2 → risks 0, 1/2, 2/3, 2/4, 2/5.
    let want = [
        (0.2, 0.0),
        (0.4, 0.5),
        (0.6, 2.0 / 3.0),
        (0.8, 0.5),
        (1.0, 0.4),
    ];
    let got = risk_coverage(&conf, &ok);
    assert_eq!(got.len(), 5);
    for (g, w) in got.iter().zip(want) {
        close(g.0, w.0, "coverage");
        close(g.1, w.1, "risk");
    }
    // The ties keep input order: #0 (right) before #2 (wrong). Swapping the two tied faces makes
    // the first risk 1.
    let swapped = risk_coverage(
        &[0.9, 0.6, 0.9, 0.3, 0.6],
        &[false, false, true, true, true],
    );
    close(swapped[0].1, 1.0, "tie order");
    // Mean risk = (0 + 1/2 + 2/3 + 1/2 + 2/5) / 5 = (31/15) / 5 = 31/75 = AURC.
    let mean = got.iter().map(|p| p.1).sum::<f64>() / 5.0;
    close(mean, 31.0 / 75.0, "mean risk");
    let mut pairs: Vec<(f64, bool)> = conf.iter().copied().zip(ok).collect();
    close(calibration::aurc_of(&mut pairs), mean, "aurc_of");
    // A NaN confidence ranks last.
    let nan = risk_coverage(&[f64::NAN, 0.5], &[false, true]);
    assert_eq!(nan, vec![(0.5, 0.0), (1.0, 0.5)]);
    // Entries beyond the shorter slice are ignored; empty input gives an empty curve.
    assert_eq!(risk_coverage(&[0.5, 0.4], &[true]), vec![(1.0, 0.0)]);
    assert!(risk_coverage(&[], &[]).is_empty());
}

#[test]
fn accuracy_at_coverage_by_hand() {
    let (conf, ok) = selective_case();
    // Ranked T F F T T; k = ⌈coverage · 5⌉, at least 1, at most 5.
    for (coverage, want) in [
        (0.0, 1.0),       // k = 1 (at least one face): 1/1
        (-1.0, 1.0),      // k = 1
        (0.2, 1.0),       // k = 1
        (0.3, 0.5),       // k = ⌈1.5⌉ = 2: 1/2
        (0.4, 0.5),       // k = 2
        (0.6, 1.0 / 3.0), // k = 3: 1/3
        (0.8, 0.5),       // k = 4: 2/4
        (1.0, 0.6),       // k = 5: 3/5
        (1.5, 0.6),       // k = 5 (at most all)
    ] {
        close(
            accuracy_at_coverage(&conf, &ok, coverage),
            want,
            &format!("accuracy at coverage {coverage}"),
        );
    }
    // 0.07 · 100 = 7.000000000000001 in f64, whose ceiling is 8, but the count is the smallest
    // k with k/100 ≥ 0.07, i.e. 7. Faces ranked 0..100; the first 7 right, the rest wrong.
    let conf100: Vec<f64> = (0..100).map(|i| 1.0 - f64::from(i) / 100.0).collect();
    let ok100: Vec<bool> = (0..100).map(|i| i < 7).collect();
    close(
        accuracy_at_coverage(&conf100, &ok100, 0.07),
        1.0,
        "0.07 of 100 is 7",
    );
    close(
        accuracy_at_coverage(&conf100, &ok100, 0.08),
        7.0 / 8.0,
        "0.08 of 100 is 8",
    );
    // The same rule for the TPR: 7 of 100 OOD scores above the single in-score meet TPR 0.07.
    let outs100: Vec<f64> = (0..100).map(|i| if i < 7 { 2.0 } else { 0.0 }).collect();
    close(fpr_at_tpr(&[1.0], &outs100, 0.07), 0.0, "tpr 0.07 of 100");
    close(fpr_at_tpr(&[1.0], &outs100, 0.08), 1.0, "tpr 0.08 of 100");
    assert!(accuracy_at_coverage(&[], &[], 0.5).is_nan());
    assert!(accuracy_at_coverage(&conf, &ok, f64::NAN).is_nan());
}

#[test]
fn coverage_at_accuracy_by_hand() {
    let (conf, ok) = selective_case();
    // Ranked T F F T T: accuracy of the first k = 1, 1/2, 1/3, 1/2, 3/5.
    for (accuracy, want) in [
        (1.0, 0.2),  // only k = 1
        (0.7, 0.2),  // only k = 1
        (0.6, 1.0),  // k = 1 and k = 5 (3/5 = 0.6); the largest is 5
        (0.55, 1.0), // k = 1, 5
        (0.5, 1.0),  // k = 1, 2, 4, 5
        (0.0, 1.0),  // every k
    ] {
        close(
            coverage_at_accuracy(&conf, &ok, accuracy),
            want,
            &format!("coverage at accuracy {accuracy}"),
        );
    }
    // Ranked T T F F: accuracies 1, 1, 2/3, 1/2; at 0.6 the largest k is 3 → 3/4.
    let conf4 = [0.9, 0.8, 0.7, 0.6];
    let ok4 = [true, true, false, false];
    close(
        coverage_at_accuracy(&conf4, &ok4, 0.6),
        0.75,
        "T T F F at 0.6",
    );
    close(coverage_at_accuracy(&conf4, &ok4, 1.0), 0.5, "T T F F at 1");
    // No k achieves it → 0.
    close(
        coverage_at_accuracy(&conf4, &[false; 4], 0.1),
        0.0,
        "all wrong",
    );
    assert!(coverage_at_accuracy(&[], &[], 0.5).is_nan());
    assert!(coverage_at_accuracy(&conf, &ok, f64::NAN).is_nan());
}

#[test]
fn selective_against_numpy() {
    let (conf, ok) = selective_inputs();
    assert_eq!(ok.iter().filter(|&&c| c).count(), PY_SEL_CORRECT);
    let curve = risk_coverage(&conf, &ok);
    assert_eq!(curve.len(), 300);
    for (k, risk) in PY_RISK_AT {
        rel_close(curve[k - 1].1, risk, &format!("risk at k = {k}"));
        close(curve[k - 1].0, k as f64 / 300.0, "coverage");
    }
    let mean = curve.iter().map(|p| p.1).sum::<f64>() / 300.0;
    rel_close(mean, PY_SEL_AURC, "mean risk");
    let mut pairs: Vec<(f64, bool)> = conf.iter().copied().zip(ok.iter().copied()).collect();
    rel_close(calibration::aurc_of(&mut pairs), PY_SEL_AURC, "aurc_of");
    for (coverage, accuracy) in PY_ACC_AT_COV {
        rel_close(
            accuracy_at_coverage(&conf, &ok, coverage),
            accuracy,
            &format!("accuracy at coverage {coverage}"),
        );
    }
    for (accuracy, coverage) in PY_COV_AT_ACC {
        rel_close(
            coverage_at_accuracy(&conf, &ok, accuracy),
            coverage,
            &format!("coverage at accuracy {accuracy}"),
        );
    }
}

#[test]
fn downsample_keeps_ends() {
    let curve: Vec<(f64, f64)> = (0..7).map(|i| (f64::from(i), f64::from(i * i))).collect();
    // m = 3 of 7: indices round(j · 6/2) = 0, 3, 6.
    assert_eq!(downsample(&curve, 3), vec![curve[0], curve[3], curve[6]]);
    // m = 4 of 6: round(j · 5/3) = round(0, 1.67, 3.33, 5) = 0, 2, 3, 5.
    assert_eq!(
        downsample(&curve[..6], 4),
        vec![curve[0], curve[2], curve[3], curve[5]]
    );
    // Short enough: unchanged. m = 1: the last point; m = 0: nothing.
    assert_eq!(downsample(&curve, 7), curve);
    assert_eq!(downsample(&curve, 100), curve);
    assert_eq!(downsample(&curve, 1), vec![curve[6]]);
    assert!(downsample(&curve, 0).is_empty());
    assert!(downsample(&[], 5).is_empty());
    // A real curve: 300 points to at most 50, ends kept, coverage increasing.
    let (conf, ok) = selective_inputs();
    let full = risk_coverage(&conf, &ok);
    let small = downsample(&full, 50);
    assert_eq!(small.len(), 50);
    assert_eq!(small.first(), full.first());
    assert_eq!(small.last(), full.last());
    assert!(small.windows(2).all(|w| w[0].0 < w[1].0));
}
