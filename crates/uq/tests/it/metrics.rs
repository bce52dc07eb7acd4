//! Every metric against hand-computed values on tiny inputs. The less trivial ones are also
//! recomputed independently by tests/reference/metrics_reference.py (its output is pasted below
//! as `PY_*`; rerun it with `python3 crates/uq/tests/reference/metrics_reference.py`).

use ferbayes_uq::{calibration, crowd, predictive};

// Output of tests/reference/metrics_reference.py.
const PY_ECE_A_4BINS: f64 = 0.583333333333333;
const PY_CLASSWISE_ECE_A_4BINS: f64 = 0.361111111111111;
const PY_AURC_A: f64 = 0.611111111111111;
const PY_ECE_B_15BINS: f64 = 0.300000004470348;
const PY_CLASSWISE_ECE_B_15BINS: f64 = 0.241666670267781;
const PY_AURC_B: f64 = 0.062500000000000;
#[allow(clippy::approx_constant)] // the script's output; the first value is ln 2
const PY_UNCERTAINTY_2X2: [f64; 3] = [0.693147180559945, 0.346573590279973, 0.346573590279973];
const PY_UNCERTAINTY_3X2: [f64; 3] = [0.948589021033889, 0.920848838938403, 0.027740182095487];
const PY_JSD: [f64; 3] = [0.311278124459133, 0.0, 0.015539010258568];
const PY_KL: [f64; 3] = [13.122_363_377_404_33, 0.0, 0.040078243176251];
const PY_MEAN_JSD: f64 = 0.108939044905900;
const PY_MEAN_KL: f64 = 4.387480540193527;
const PY_SOFT_ACCURACY: f64 = 0.800000004470348;
const PY_PEARSON_1234: f64 = 0.831521840620300;
const PY_ENTROPY_CORR: f64 = 0.941057343520025;

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, expected {want} (±{tol})"
    );
}

/// Case A: 3 faces, 3 classes, dyadic probabilities (exact in f32), labels 0, 0, 2.
/// Predictions 0 (conf 0.5), 1 (conf 0.75), 2 (conf 0.5): face 2 is wrong.
fn case_a() -> (Vec<[f32; 3]>, Vec<u8>) {
    (
        vec![[0.5, 0.25, 0.25], [0.125, 0.75, 0.125], [0.25, 0.25, 0.5]],
        vec![0, 0, 2],
    )
}

/// Case B: 4 faces with non-dyadic probabilities, labels 0, 1, 2, 1; face 2 is wrong.
fn case_b() -> (Vec<[f32; 3]>, Vec<u8>) {
    (
        vec![
            [0.7, 0.2, 0.1],
            [0.4, 0.35, 0.25],
            [0.1, 0.3, 0.6],
            [0.05, 0.9, 0.05],
        ],
        vec![0, 1, 2, 1],
    )
}

#[test]
fn error_nll_brier_by_hand() {
    let (p, y) = case_a();
    // 1 of 3 faces wrong.
    close(calibration::error(&p, &y), 1.0 / 3.0, 1e-12, "error");
    // −(ln 0.5 + ln 0.125 + ln 0.5) / 3 = (0.693147 + 2.079442 + 0.693147) / 3 = 1.155245
    close(calibration::nll(&p, &y), 1.155_245_3, 1e-6, "nll");
    // face 1: 0.25 + 0.0625 + 0.0625 = 0.375; face 2: 0.765625 + 0.5625 + 0.015625 = 1.34375;
    // face 3: 0.375; mean = 2.09375 / 3 = 0.697917
    close(calibration::brier(&p, &y), 2.09375 / 3.0, 1e-7, "brier");
    // A zero probability on the label is clamped at 1e-12: −ln 1e-12 = 27.631021.
    close(
        calibration::nll(&[[1.0f32, 0.0, 0.0]], &[1]),
        27.631_021_1,
        1e-6,
        "clamped nll",
    );
    assert!(
        calibration::error::<3>(&[], &[]).is_nan(),
        "empty input is NaN"
    );
}

#[test]
fn bins_are_left_open() {
    // (lo, hi]: a value on an edge belongs to the lower bin; 0 goes to the first bin.
    assert_eq!(calibration::bin_index(0.0, 15), 0);
    assert_eq!(calibration::bin_index(1.0, 15), 14);
    assert_eq!(calibration::bin_index(0.5, 4), 1);
    assert_eq!(calibration::bin_index(0.75, 4), 2);
    assert_eq!(calibration::bin_index(0.75 + 1e-12, 4), 3);
    assert_eq!(calibration::bin_index(0.2, 5), 0);
    assert_eq!(calibration::bin_index(0.2 + 1e-12, 5), 1);
    assert_eq!(calibration::bin_index(1.0 / 15.0, 15), 0);
    assert_eq!(calibration::bin_index(2.0 / 15.0, 15), 1);
}

#[test]
fn ece_with_edges_by_hand_and_python() {
    let (p, y) = case_a();
    // 4 bins: confidences 0.5 (right), 0.75 (wrong), 0.5 (right). 0.5 lies on the edge of
    // (0.25, 0.5] and (0.5, 0.75]: bin 1 holds faces 1 and 3 (accuracy 1, confidence 0.5),
    // bin 2 holds face 2 (accuracy 0, confidence 0.75).
    // ECE = 2/3 · |1 − 0.5| + 1/3 · |0 − 0.75| = 0.333333 + 0.25 = 0.583333
    close(calibration::ece(&p, &y, 4), 0.583_333_333, 1e-9, "ece A");
    close(
        calibration::ece(&p, &y, 4),
        PY_ECE_A_4BINS,
        1e-12,
        "ece A (python)",
    );
    let bins = calibration::reliability(&p, &y, 4);
    assert_eq!(
        bins.iter().map(|b| b.count).collect::<Vec<_>>(),
        [0, 2, 1, 0]
    );
    close(bins[1].accuracy, 1.0, 0.0, "bin 1 accuracy");
    close(bins[2].confidence, 0.75, 0.0, "bin 2 confidence");

    let (p, y) = case_b();
    // 15 bins: 0.7, 0.4, 0.6, 0.9 fall into 4 different bins (as f32, 0.4 and 0.6 are just above
    // the edges 6/15 and 9/15), so ECE = (|1−0.7| + |0−0.4| + |1−0.6| + |1−0.9|) / 4 = 0.3
    close(calibration::ece(&p, &y, 15), 0.3, 1e-7, "ece B");
    close(
        calibration::ece(&p, &y, 15),
        PY_ECE_B_15BINS,
        1e-12,
        "ece B (python)",
    );
}

#[test]
fn classwise_ece_by_hand_and_python() {
    let (p, y) = case_a();
    // 4 bins over p_k, N = 3:
    // class 0: p = 0.5, 0.125, 0.25; y = 0 for faces 1, 2. Bin 0 {0.125, 0.25}: |1 − 0.375|
    //   = 0.625; bin 1 {0.5}: |1 − 0.5| = 0.5; (0.625 + 0.5) / 3 = 0.375
    // class 1: p = 0.25, 0.75, 0.25; never the label. Bin 0: |0 − 0.5|; bin 2: |0 − 0.75|;
    //   1.25 / 3 = 0.416667
    // class 2: p = 0.25, 0.125, 0.5; label of face 3. Bin 0: |0 − 0.375|; bin 1: |1 − 0.5|;
    //   0.875 / 3 = 0.291667
    // mean = (0.375 + 0.416667 + 0.291667) / 3 = 0.361111
    close(
        calibration::classwise_ece(&p, &y, 4),
        0.361_111_111,
        1e-9,
        "classwise A",
    );
    close(
        calibration::classwise_ece(&p, &y, 4),
        PY_CLASSWISE_ECE_A_4BINS,
        1e-12,
        "classwise A (python)",
    );
    let (p, y) = case_b();
    close(
        calibration::classwise_ece(&p, &y, 15),
        PY_CLASSWISE_ECE_B_15BINS,
        1e-12,
        "classwise B (python)",
    );
    // A class whose probability is 0 everywhere sits in bin 0 with frequency 0: no gap.
    let p0 = [[1.0f32, 0.0], [1.0, 0.0]];
    close(
        calibration::classwise_ece(&p0, &[0, 0], 10),
        0.0,
        0.0,
        "perfect",
    );
}

#[test]
fn aurc_by_hand_and_python() {
    let (p, y) = case_a();
    // Ranked by confidence: face 2 (0.75, wrong), then faces 1 and 3 (0.5 each, right; the tie
    // keeps face order). Risks 1/1, 1/2, 1/3: AURC = (1 + 0.5 + 0.333333) / 3 = 0.611111
    close(calibration::aurc(&p, &y), 0.611_111_111, 1e-9, "aurc A");
    close(
        calibration::aurc(&p, &y),
        PY_AURC_A,
        1e-12,
        "aurc A (python)",
    );
    let (p, y) = case_b();
    // Ranked 0.9, 0.7, 0.6 (right), 0.4 (wrong): risks 0, 0, 0, 1/4; AURC = 0.0625
    close(calibration::aurc(&p, &y), 0.0625, 1e-12, "aurc B");
    close(
        calibration::aurc(&p, &y),
        PY_AURC_B,
        1e-12,
        "aurc B (python)",
    );
}

#[test]
fn mutual_information_by_hand_and_python() {
    // 2 faces x 2 samples. Face 1: [1,0,0] and [0,1,0] average to [0.5,0.5,0]: H = ln 2, sample
    // entropies 0. Face 2: [0.5,0.5,0] twice: H = ln 2, sample entropies ln 2.
    // entropy = ln 2 = 0.693147; aleatoric = (0 + ln 2) / 2 = 0.346574; epistemic = 0.346574
    let s0: Vec<[f32; 3]> = vec![[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]];
    let s1: Vec<[f32; 3]> = vec![[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]];
    let u = predictive::uncertainty(&[&s0, &s1]);
    close(u.entropy, std::f64::consts::LN_2, 1e-12, "entropy");
    close(
        u.aleatoric,
        std::f64::consts::LN_2 / 2.0,
        1e-12,
        "aleatoric",
    );
    close(
        u.epistemic,
        std::f64::consts::LN_2 / 2.0,
        1e-12,
        "epistemic",
    );
    for (got, want) in [u.entropy, u.aleatoric, u.epistemic]
        .iter()
        .zip(PY_UNCERTAINTY_2X2)
    {
        close(*got, want, 1e-12, "2x2 (python)");
    }

    // 3 samples with non-dyadic values: only the independent script's numbers.
    let t0: Vec<[f32; 3]> = vec![[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]];
    let t1: Vec<[f32; 3]> = vec![[0.3, 0.6, 0.1], [0.25, 0.15, 0.6]];
    let t2: Vec<[f32; 3]> = vec![[0.5, 0.4, 0.1], [0.1, 0.3, 0.6]];
    let u = predictive::uncertainty(&[&t0, &t1, &t2]);
    for (got, want) in [u.entropy, u.aleatoric, u.epistemic]
        .iter()
        .zip(PY_UNCERTAINTY_3X2)
    {
        close(*got, want, 1e-9, "3x2 (python)");
    }
    assert!(u.epistemic >= 0.0, "mutual information is non-negative");
}

#[test]
fn crowd_metrics_by_hand_and_python() {
    let crowd: Vec<[f32; 3]> = vec![[0.5, 0.5, 0.0], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]];
    let pred: Vec<[f32; 3]> = vec![[1.0, 0.0, 0.0], [0.25, 0.25, 0.5], [0.2, 0.5, 0.3]];
    // Face 1: m = [0.75, 0.25, 0]. KL(c‖m) = 0.5 log2(0.5/0.75) + 0.5 log2(0.5/0.25)
    //   = −0.292481 + 0.5 = 0.207519; KL(p‖m) = log2(1/0.75) = 0.415037;
    //   JSD = (0.207519 + 0.415037) / 2 = 0.311278 bits.
    close(crowd::jsd(&crowd[0], &pred[0]), 0.311_278_1, 1e-7, "jsd 1");
    // KL(c‖p) with p_2 = 0 clamped at 1e-12: 0.5 ln(0.5) + 0.5 ln(0.5 / 1e-12)
    //   = −0.346574 + 0.5 · 26.937874 = 13.122363 nats.
    close(crowd::kl(&crowd[0], &pred[0]), 13.122_363_4, 1e-6, "kl 1");
    // Face 2: identical distributions.
    close(crowd::jsd(&crowd[1], &pred[1]), 0.0, 1e-15, "jsd 2");
    close(crowd::kl(&crowd[1], &pred[1]), 0.0, 1e-15, "kl 2");
    for i in 0..3 {
        close(
            crowd::jsd(&crowd[i], &pred[i]),
            PY_JSD[i],
            1e-12,
            "jsd (python)",
        );
        close(
            crowd::kl(&crowd[i], &pred[i]),
            PY_KL[i],
            1e-9,
            "kl (python)",
        );
    }
    close(
        crowd::mean_jsd(&crowd, &pred),
        PY_MEAN_JSD,
        1e-12,
        "mean jsd",
    );
    close(crowd::mean_kl(&crowd, &pred), PY_MEAN_KL, 1e-9, "mean kl");
    // Soft accuracy: 0.5 + 1 + (0.1 + 0.5 + 0.3) = 2.4; / 3 = 0.8
    close(crowd::soft_accuracy(&crowd, &pred), 0.8, 1e-7, "soft acc");
    close(
        crowd::soft_accuracy(&crowd, &pred),
        PY_SOFT_ACCURACY,
        1e-12,
        "soft acc (python)",
    );
    // JSD is at most 1 bit: disjoint supports.
    close(
        crowd::jsd(&[1.0f32, 0.0], &[0.0, 1.0]),
        1.0,
        1e-15,
        "disjoint",
    );
}

#[test]
fn pearson_by_hand_and_python() {
    // x = 1..4, y = 1, 3, 2, 5: Σdxdy = 5.5, Σdx² = 5, Σdy² = 8.75; r = 5.5 / √43.75 = 0.831522
    let r = crowd::pearson(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 5.0]);
    close(r, 0.831_521_8, 1e-7, "pearson");
    close(r, PY_PEARSON_1234, 1e-12, "pearson (python)");
    assert!(crowd::pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
    assert!(crowd::pearson(&[1.0], &[1.0]).is_nan());
    // Entropies 0, ln 2, 0.562335 against crowd entropies 0.1, 0.9, 0.5.
    let probs: Vec<[f32; 2]> = vec![[1.0, 0.0], [0.5, 0.5], [0.75, 0.25]];
    let r = crowd::entropy_corr(&probs, &[0.1, 0.9, 0.5]);
    close(r, PY_ENTROPY_CORR, 1e-7, "entropy corr (python)");
}
