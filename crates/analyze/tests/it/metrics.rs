//! Every metric against hand-computed values on tiny inputs. The less trivial ones are also
//! recomputed independently by tests/reference/metrics_reference.py (its output is pasted below
//! as `PY_*`; rerun it with `python3 crates/analyze/tests/reference/metrics_reference.py`).

use ferbayes_analyze::curves;
use ferbayes_analyze::data::Samples;
use ferbayes_analyze::metrics::{self, Evaluator, Metrics};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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
    close(metrics::error(&p, &y), 1.0 / 3.0, 1e-12, "error");
    // −(ln 0.5 + ln 0.125 + ln 0.5) / 3 = (0.693147 + 2.079442 + 0.693147) / 3 = 1.155245
    close(metrics::nll(&p, &y), 1.155_245_3, 1e-6, "nll");
    // face 1: 0.25 + 0.0625 + 0.0625 = 0.375; face 2: 0.765625 + 0.5625 + 0.015625 = 1.34375;
    // face 3: 0.375; mean = 2.09375 / 3 = 0.697917
    close(metrics::brier(&p, &y), 2.09375 / 3.0, 1e-7, "brier");
    // A zero probability on the label is clamped at 1e-12: −ln 1e-12 = 27.631021.
    close(
        metrics::nll(&[[1.0f32, 0.0, 0.0]], &[1]),
        27.631_021_1,
        1e-6,
        "clamped nll",
    );
    assert!(metrics::error::<3>(&[], &[]).is_nan(), "empty input is NaN");
}

#[test]
fn bins_are_left_open() {
    // (lo, hi]: a value on an edge belongs to the lower bin; 0 goes to the first bin.
    assert_eq!(metrics::bin_index(0.0, 15), 0);
    assert_eq!(metrics::bin_index(1.0, 15), 14);
    assert_eq!(metrics::bin_index(0.5, 4), 1);
    assert_eq!(metrics::bin_index(0.75, 4), 2);
    assert_eq!(metrics::bin_index(0.75 + 1e-12, 4), 3);
    assert_eq!(metrics::bin_index(0.2, 5), 0);
    assert_eq!(metrics::bin_index(0.2 + 1e-12, 5), 1);
    assert_eq!(metrics::bin_index(1.0 / 15.0, 15), 0);
    assert_eq!(metrics::bin_index(2.0 / 15.0, 15), 1);
}

#[test]
fn ece_with_edges_by_hand_and_python() {
    let (p, y) = case_a();
    // 4 bins: confidences 0.5 (right), 0.75 (wrong), 0.5 (right). 0.5 lies on the edge of
    // (0.25, 0.5] and (0.5, 0.75]: bin 1 holds faces 1 and 3 (accuracy 1, confidence 0.5),
    // bin 2 holds face 2 (accuracy 0, confidence 0.75).
    // ECE = 2/3 · |1 − 0.5| + 1/3 · |0 − 0.75| = 0.333333 + 0.25 = 0.583333
    close(metrics::ece(&p, &y, 4), 0.583_333_333, 1e-9, "ece A");
    close(
        metrics::ece(&p, &y, 4),
        PY_ECE_A_4BINS,
        1e-12,
        "ece A (python)",
    );
    let bins = metrics::reliability(&p, &y, 4);
    assert_eq!(
        bins.iter().map(|b| b.count).collect::<Vec<_>>(),
        [0, 2, 1, 0]
    );
    close(bins[1].accuracy, 1.0, 0.0, "bin 1 accuracy");
    close(bins[2].confidence, 0.75, 0.0, "bin 2 confidence");

    let (p, y) = case_b();
    // 15 bins: 0.7, 0.4, 0.6, 0.9 fall into 4 different bins (as f32, 0.4 and 0.6 are just above
    // the edges 6/15 and 9/15), so ECE = (|1−0.7| + |0−0.4| + |1−0.6| + |1−0.9|) / 4 = 0.3
    close(metrics::ece(&p, &y, 15), 0.3, 1e-7, "ece B");
    close(
        metrics::ece(&p, &y, 15),
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
        metrics::classwise_ece(&p, &y, 4),
        0.361_111_111,
        1e-9,
        "classwise A",
    );
    close(
        metrics::classwise_ece(&p, &y, 4),
        PY_CLASSWISE_ECE_A_4BINS,
        1e-12,
        "classwise A (python)",
    );
    let (p, y) = case_b();
    close(
        metrics::classwise_ece(&p, &y, 15),
        PY_CLASSWISE_ECE_B_15BINS,
        1e-12,
        "classwise B (python)",
    );
    // A class whose probability is 0 everywhere sits in bin 0 with frequency 0: no gap.
    let p0 = [[1.0f32, 0.0], [1.0, 0.0]];
    close(
        metrics::classwise_ece(&p0, &[0, 0], 10),
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
    close(metrics::aurc(&p, &y), 0.611_111_111, 1e-9, "aurc A");
    close(metrics::aurc(&p, &y), PY_AURC_A, 1e-12, "aurc A (python)");
    let (p, y) = case_b();
    // Ranked 0.9, 0.7, 0.6 (right), 0.4 (wrong): risks 0, 0, 0, 1/4; AURC = 0.0625
    close(metrics::aurc(&p, &y), 0.0625, 1e-12, "aurc B");
    close(metrics::aurc(&p, &y), PY_AURC_B, 1e-12, "aurc B (python)");
}

#[test]
fn mutual_information_by_hand_and_python() {
    // 2 faces x 2 samples. Face 1: [1,0,0] and [0,1,0] average to [0.5,0.5,0]: H = ln 2, sample
    // entropies 0. Face 2: [0.5,0.5,0] twice: H = ln 2, sample entropies ln 2.
    // entropy = ln 2 = 0.693147; aleatoric = (0 + ln 2) / 2 = 0.346574; epistemic = 0.346574
    let s0: Vec<[f32; 3]> = vec![[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]];
    let s1: Vec<[f32; 3]> = vec![[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]];
    let u = metrics::uncertainty(&[&s0, &s1]);
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
    let u = metrics::uncertainty(&[&t0, &t1, &t2]);
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
    close(
        metrics::jsd(&crowd[0], &pred[0]),
        0.311_278_1,
        1e-7,
        "jsd 1",
    );
    // KL(c‖p) with p_2 = 0 clamped at 1e-12: 0.5 ln(0.5) + 0.5 ln(0.5 / 1e-12)
    //   = −0.346574 + 0.5 · 26.937874 = 13.122363 nats.
    close(metrics::kl(&crowd[0], &pred[0]), 13.122_363_4, 1e-6, "kl 1");
    // Face 2: identical distributions.
    close(metrics::jsd(&crowd[1], &pred[1]), 0.0, 1e-15, "jsd 2");
    close(metrics::kl(&crowd[1], &pred[1]), 0.0, 1e-15, "kl 2");
    for i in 0..3 {
        close(
            metrics::jsd(&crowd[i], &pred[i]),
            PY_JSD[i],
            1e-12,
            "jsd (python)",
        );
        close(
            metrics::kl(&crowd[i], &pred[i]),
            PY_KL[i],
            1e-9,
            "kl (python)",
        );
    }
    close(
        metrics::mean_jsd(&crowd, &pred),
        PY_MEAN_JSD,
        1e-12,
        "mean jsd",
    );
    close(metrics::mean_kl(&crowd, &pred), PY_MEAN_KL, 1e-9, "mean kl");
    // Soft accuracy: 0.5 + 1 + (0.1 + 0.5 + 0.3) = 2.4; / 3 = 0.8
    close(metrics::soft_accuracy(&crowd, &pred), 0.8, 1e-7, "soft acc");
    close(
        metrics::soft_accuracy(&crowd, &pred),
        PY_SOFT_ACCURACY,
        1e-12,
        "soft acc (python)",
    );
    // JSD is at most 1 bit: disjoint supports.
    close(
        metrics::jsd(&[1.0f32, 0.0], &[0.0, 1.0]),
        1.0,
        1e-15,
        "disjoint",
    );
}

#[test]
fn pearson_by_hand_and_python() {
    // x = 1..4, y = 1, 3, 2, 5: Σdxdy = 5.5, Σdx² = 5, Σdy² = 8.75; r = 5.5 / √43.75 = 0.831522
    let r = metrics::pearson(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 5.0]);
    close(r, 0.831_521_8, 1e-7, "pearson");
    close(r, PY_PEARSON_1234, 1e-12, "pearson (python)");
    assert!(metrics::pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
    assert!(metrics::pearson(&[1.0], &[1.0]).is_nan());
    // Entropies 0, ln 2, 0.562335 against crowd entropies 0.1, 0.9, 0.5.
    let probs: Vec<[f32; 2]> = vec![[1.0, 0.0], [0.5, 0.5], [0.75, 0.25]];
    let r = metrics::entropy_corr(&probs, &[0.1, 0.9, 0.5]);
    close(r, PY_ENTROPY_CORR, 1e-7, "entropy corr (python)");
}

#[test]
fn metric_names_follow_the_schema() {
    assert_eq!(Metrics::NAMES, ferbayes_core::schema::METRICS);
    let m = Metrics::from_array(std::array::from_fn(|i| i as f64));
    assert_eq!(m.to_array(), std::array::from_fn(|i| i as f64));
    assert_eq!(m.get("kl_crowd"), Some(11.0));
    assert_eq!(m.get("nope"), None);
    // Population std: values 1 and 3 have mean 2 and std 1.
    let a = Metrics::from_array([1.0; metrics::METRIC_COUNT]);
    let b = Metrics::from_array([3.0; metrics::METRIC_COUNT]);
    let (mean, std) = Metrics::mean_std(&[a, b]);
    assert_eq!(mean.error, 2.0);
    assert_eq!(std.jsd, 1.0);
}

fn random_rows(rng: &mut ChaCha8Rng, n: usize) -> Vec<[f32; 8]> {
    (0..n)
        .map(|_| {
            let logits: [f32; 8] = std::array::from_fn(|_| rng.random_range(-3.0..3.0));
            let max = logits.iter().fold(f32::MIN, |a, &b| a.max(b));
            let e = logits.map(|l| (l - max).exp());
            let s: f32 = e.iter().sum();
            let mut p = e.map(|v| v / s);
            // Occasional exact zeros exercise the clamps and 0·log 0.
            if rng.random_bool(0.1) {
                let k = rng.random_range(0..8);
                let moved = p[k];
                p[k] = 0.0;
                p[(k + 1) % 8] += moved;
            }
            p
        })
        .collect()
}

/// The fused one-pass evaluator agrees with the single-metric functions, on faces with and
/// without labels and crowd distributions.
#[test]
fn evaluator_agrees_with_the_single_metrics() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let n = 300;
    let probs = random_rows(&mut rng, n);
    let majority: Vec<Option<u8>> = (0..n)
        .map(|i| (i % 7 != 0).then(|| rng.random_range(0..8u8)))
        .collect();
    let crowd: Vec<Option<[f32; 8]>> = random_rows(&mut rng, n)
        .into_iter()
        .enumerate()
        .map(|(i, c)| (i % 5 != 0).then_some(c))
        .collect();
    let crowd_entropy: Vec<Option<f32>> = crowd
        .iter()
        .map(|c| c.map(|c| metrics::entropy(&c) as f32))
        .collect();
    let ev = Evaluator::new(majority.clone(), crowd.clone(), crowd_entropy.clone(), 15);
    let got = ev.evaluate(&probs, 0.25);

    let (lp, ly): (Vec<[f32; 8]>, Vec<u8>) = probs
        .iter()
        .zip(&majority)
        .filter_map(|(p, y)| y.map(|y| (*p, y)))
        .unzip();
    let (cc, cp): (Vec<[f32; 8]>, Vec<[f32; 8]>) = probs
        .iter()
        .zip(&crowd)
        .filter_map(|(p, c)| c.map(|c| (c, *p)))
        .unzip();
    let (hp, hc): (Vec<f64>, Vec<f64>) = probs
        .iter()
        .zip(&crowd_entropy)
        .filter_map(|(p, h)| h.map(|h| (metrics::entropy(p), f64::from(h))))
        .unzip();
    // The crowd calibration: faces with a label and a crowd.
    let (both_p, both_c): (Vec<[f32; 8]>, Vec<[f32; 8]>) = probs
        .iter()
        .zip(&majority)
        .zip(&crowd)
        .filter_map(|((p, y), c)| y.and(*c).map(|c| (*p, c)))
        .unzip();
    let (both_conf, both_agree): (Vec<f64>, Vec<f64>) = both_p
        .iter()
        .zip(&both_c)
        .map(|(p, c)| {
            let (k, conf) = metrics::predict(p);
            (conf, f64::from(c[k]))
        })
        .unzip();
    let entropy = metrics::mean_entropy(&lp);
    let want = Metrics {
        error: metrics::error(&lp, &ly),
        nll: metrics::nll(&lp, &ly),
        ece: metrics::ece(&lp, &ly, 15),
        brier: metrics::brier(&lp, &ly),
        classwise_ece: metrics::classwise_ece(&lp, &ly, 15),
        aurc: metrics::aurc(&lp, &ly),
        entropy,
        aleatoric: 0.25,
        epistemic: entropy - 0.25,
        jsd: metrics::mean_jsd(&cc, &cp),
        soft_accuracy: metrics::soft_accuracy(&cc, &cp),
        kl_crowd: metrics::mean_kl(&cc, &cp),
        entropy_corr: metrics::pearson(&hp, &hc),
        crowd_ece: metrics::crowd_ece(&both_conf, &both_agree, 15),
        crowd_cw_ece: metrics::crowd_cw_ece(&both_p, &both_c, 15),
    };
    for ((name, g), w) in Metrics::NAMES
        .iter()
        .zip(got.to_array())
        .zip(want.to_array())
    {
        close(g, w, 1e-9 * w.abs().max(1.0), name);
    }
    assert!(
        got.error > 0.5 && got.error < 1.0,
        "random labels: {}",
        got.error
    );
}

/// The incremental curve equals recomputing each n from scratch, and orderings permute samples.
#[test]
fn running_sums_match_recomputation() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (faces, t) = (120, 5);
    let probs: Vec<[f32; 8]> = (0..t).flat_map(|_| random_rows(&mut rng, faces)).collect();
    let samples = Samples {
        path: "synthetic".into(),
        count: t,
        faces,
        probs,
    };
    let majority: Vec<Option<u8>> = (0..faces).map(|i| Some((i % 8) as u8)).collect();
    let crowd: Vec<Option<[f32; 8]>> = random_rows(&mut rng, faces).into_iter().map(Some).collect();
    let ce: Vec<Option<f32>> = crowd
        .iter()
        .map(|c| c.map(|c| metrics::entropy(&c) as f32))
        .collect();
    let ev = Evaluator::new(majority, crowd, ce, 15);
    let entropies: Vec<f64> = (0..t)
        .map(|s| ev.labelled_entropy(samples.sample(s)))
        .collect();
    let order = [3usize, 0, 4, 1, 2];
    let curve = curves::curve(&samples, &ev, &entropies, &order);
    assert_eq!(curve.len(), t);
    for n in 1..=t {
        let slices: Vec<&[[f32; 8]]> = order[..n].iter().map(|&s| samples.sample(s)).collect();
        let pbar = metrics::mean_prediction(&slices);
        let u = metrics::uncertainty(&slices);
        let want = ev.evaluate(&pbar, u.aleatoric);
        for ((name, g), w) in Metrics::NAMES
            .iter()
            .zip(curve[n - 1].to_array())
            .zip(want.to_array())
        {
            close(g, w, 1e-6 * w.abs().max(1.0), name);
        }
        close(curve[n - 1].epistemic, u.epistemic, 1e-6, "epistemic");
        assert!(curve[n - 1].epistemic >= -1e-6);
    }

    let perms = curves::orderings(
        42,
        ferbayes_core::Arch::AlexNet,
        ferbayes_core::Method::Ensemble,
        15,
        20,
    );
    assert_eq!(perms.len(), 20);
    for p in &perms {
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..15).collect::<Vec<_>>());
    }
    assert_ne!(perms[0], perms[1]);
    let again = curves::orderings(
        42,
        ferbayes_core::Arch::AlexNet,
        ferbayes_core::Method::Ensemble,
        15,
        20,
    );
    assert_eq!(perms, again, "seeded");
}
