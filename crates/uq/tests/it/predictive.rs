//! The per-face numbers: arg-max and its tie rule, entropy, the mean prediction and the split of
//! the predictive entropy, by hand and against tests/reference/predictive_reference.py (its
//! output pasted below as `PY_*`; rerun it with
//! `python3 crates/uq/tests/reference/predictive_reference.py`); and the running accumulators
//! against the batch functions, bit for bit, on seeded random samples.

use ferbayes_uq::predictive::{mean_entropy, uncertainty};
use ferbayes_uq::{
    FaceSplit, RunningMean, RunningSplit, argmax, entropy, face_split, face_splits,
    mean_prediction, predict,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// Output of tests/reference/predictive_reference.py.
#[allow(clippy::excessive_precision)] // f32 values as the script prints them (their f64 repr)
const PY_MC_MEAN: [f32; 8] = [
    0.3375000059604645,
    0.3125,
    0.13750000298023224,
    0.0625,
    0.05000000074505806,
    0.03999999910593033,
    0.029999999329447746,
    0.029999999329447746,
];
// entropy, aleatoric, epistemic; predicted class 0
const PY_MC_SPLIT: [f64; 3] = [1.6651136524879666, 1.5684566594675133, 0.09665699302045327];
// first 2: entropy, aleatoric, epistemic; class 1
const PY_MC_SPLIT_2: [f64; 3] = [1.5966883790382624, 1.4715877672683382, 0.12510061176992426];
const PY_TIE_SPLIT: [f64; 3] = [1.0821955300387673, 1.0397207708399179, 0.042474759198849465];
#[allow(clippy::excessive_precision)] // f32 values as the script prints them (their f64 repr)
const PY_NEAR_MEAN: [f32; 8] = [
    0.042268358170986176,
    0.18193809688091278,
    0.1308959424495697,
    0.17402184009552002,
    0.1282373070716858,
    0.23613083362579346,
    0.027967482805252075,
    0.0785401239991188,
];
// entropy, aleatoric, epistemic; predicted class 5
const PY_NEAR_SPLIT: [f64; 3] = [
    1.9182677882881234,
    1.9182678038391634,
    -1.5551040011274608e-08,
];

/// The fixture of the reference script: four MC passes of one face that disagree.
const MC: [[f32; 8]; 4] = [
    [0.50, 0.20, 0.10, 0.05, 0.05, 0.04, 0.03, 0.03],
    [0.10, 0.60, 0.10, 0.05, 0.05, 0.04, 0.03, 0.03],
    [0.30, 0.30, 0.20, 0.05, 0.05, 0.04, 0.03, 0.03],
    [0.45, 0.15, 0.15, 0.10, 0.05, 0.04, 0.03, 0.03],
];
/// Four samples whose mean is 0.375 at classes 2 and 5.
const TIE: [[f32; 8]; 4] = [
    [0.0, 0.0, 0.5, 0.0, 0.0, 0.25, 0.25, 0.0],
    [0.0, 0.0, 0.25, 0.0, 0.0, 0.5, 0.25, 0.0],
    [0.0, 0.0, 0.5, 0.0, 0.0, 0.25, 0.25, 0.0],
    [0.0, 0.0, 0.25, 0.0, 0.0, 0.5, 0.25, 0.0],
];
/// Two samples a few ulps apart.
#[allow(clippy::excessive_precision)] // f32 values as the script prints them (their f64 repr)
const NEAR: [[f32; 8]; 2] = [
    [
        0.042268358170986176,
        0.18193809688091278,
        0.1308959573507309,
        0.17402184009552002,
        0.1282373070716858,
        0.23613083362579346,
        0.027967482805252075,
        0.0785401239991188,
    ],
    [
        0.042268358170986176,
        0.18193809688091278,
        0.1308959424495697,
        0.17402184009552002,
        0.12823732197284698,
        0.23613083362579346,
        0.027967482805252075,
        0.0785401239991188,
    ],
];

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got:e}, expected {want:e} (±{tol:e})"
    );
}

fn check_split(got: &FaceSplit<8>, want: [f64; 3], what: &str) {
    close(got.entropy, want[0], 1e-14, &format!("{what} entropy"));
    close(got.aleatoric, want[1], 1e-14, &format!("{what} aleatoric"));
    close(got.epistemic, want[2], 1e-14, &format!("{what} epistemic"));
}

#[test]
fn argmax_keeps_the_first_maximum() {
    assert_eq!(argmax(&[0.1, 0.4, 0.4, 0.1]), 1);
    assert_eq!(argmax(&[0.25; 4]), 0);
    assert_eq!(argmax(&[0.1, 0.2, 0.3, 0.4]), 3);
    assert_eq!(argmax::<f32>(&[]), 0);
    assert_eq!(predict(&[0.1, 0.4, 0.4, 0.1]), (1, f64::from(0.4f32)));
    let (k, conf) = predict(&[]);
    assert!(k == 0 && conf.is_nan());
}

#[test]
fn entropy_by_hand() {
    // 0·log 0 = 0: a one-hot distribution has no entropy, zeros add nothing.
    assert_eq!(entropy(&[0.0, 1.0, 0.0]), 0.0);
    close(
        entropy(&[0.5, 0.0, 0.5]),
        std::f64::consts::LN_2,
        1e-15,
        "ln 2",
    );
    // Uniform over 8: ln 8.
    close(entropy(&[0.125; 8]), 8f64.ln(), 1e-15, "ln 8");
    // (0.5, 0.25, 0.25): 0.5 ln 2 + 0.5 ln 4 = 1.5 ln 2 = 1.039721.
    close(
        entropy(&[0.5, 0.25, 0.25]),
        1.5 * std::f64::consts::LN_2,
        1e-15,
        "1.5 ln 2",
    );
    close(
        mean_entropy(&[[1.0f32, 0.0], [0.5, 0.5]]),
        std::f64::consts::LN_2 / 2.0,
        1e-15,
        "mean entropy",
    );
    assert!(mean_entropy::<2>(&[]).is_nan());
}

#[test]
fn the_split_of_disagreeing_samples_matches_the_reference() {
    let s = face_split(&MC);
    assert_eq!(s.probs, PY_MC_MEAN, "f64 sums rounded to f32");
    check_split(&s, PY_MC_SPLIT, "mc");
    assert_eq!(s.predicted().0, 0);
    // After the first two passes the mean is (0.3, 0.4, ...): class 1.
    let two = face_split(&MC[..2]);
    check_split(&two, PY_MC_SPLIT_2, "mc, first 2");
    assert_eq!(two.predicted().0, 1);
    // One sample: the mean is the sample, all of the entropy aleatoric.
    let one = face_split(&MC[..1]);
    assert_eq!(one.probs, MC[0]);
    assert_eq!(one.entropy, one.aleatoric);
    assert_eq!(one.epistemic, 0.0);
}

#[test]
fn a_tie_predicts_the_first_class_and_the_split_is_by_hand() {
    let s = face_split(&TIE);
    assert_eq!(s.probs, [0.0, 0.0, 0.375, 0.0, 0.0, 0.375, 0.25, 0.0]);
    // 0.375 at classes 2 and 5: the first.
    assert_eq!(s.predicted(), (2, 0.375));
    // H = −2 · 0.375 ln 0.375 − 0.25 ln 0.25 = 0.735622 + 0.346574 = 1.082196; every sample is
    // (0.5, 0.25, 0.25) up to order: aleatoric 1.5 ln 2 = 1.039721; epistemic 0.042475.
    let h = -2.0 * 0.375 * 0.375f64.ln() - 0.25 * 0.25f64.ln();
    close(s.entropy, h, 1e-15, "tie entropy by hand");
    close(
        s.aleatoric,
        1.5 * std::f64::consts::LN_2,
        1e-15,
        "tie aleatoric by hand",
    );
    check_split(&s, PY_TIE_SPLIT, "tie");
    close(
        s.epistemic_share(),
        PY_TIE_SPLIT[2] / PY_TIE_SPLIT[0],
        1e-15,
        "share",
    );
}

#[test]
fn the_epistemic_part_is_not_clamped() {
    // The exact mean's mutual information is ~0; rounding p̄ to f32 puts H[p̄] 1.6e-8 below the
    // samples' mean entropy, and the difference is reported as it is.
    let s = face_split(&NEAR);
    assert_eq!(s.probs, PY_NEAR_MEAN);
    check_split(&s, PY_NEAR_SPLIT, "near");
    assert!(s.epistemic < 0.0 && s.epistemic > -1e-7, "{}", s.epistemic);
    assert_eq!(s.predicted().0, 5);
    assert_eq!(
        s.epistemic_share(),
        0.0,
        "the share is clamped, the value not"
    );
    // Identical samples give an exact mean and an epistemic part of exactly 0.
    let same = face_split(&[NEAR[0]; 5]);
    assert_eq!(same.probs, NEAR[0]);
    assert_eq!(same.epistemic, 0.0);
}

#[test]
fn an_empty_set_of_samples_is_nan() {
    let s = RunningSplit::<3>::new();
    assert_eq!(s.count(), 0);
    assert!(s.mean().iter().all(|v| v.is_nan()));
    assert!(s.aleatoric().is_nan());
    let none = face_split::<3>(&[]);
    assert!(none.probs.iter().all(|v| v.is_nan()));
    assert!(none.aleatoric.is_nan() && none.epistemic.is_nan());
    assert!(mean_prediction::<3>(&[]).is_empty());
    assert!(face_splits::<3>(&[]).is_empty());
}

/// `faces` random rows per sample, `t` samples; some rows with exact zeros, some one-hot (their
/// entropies are −0.0, which the sums must carry as a `sum()` does).
fn random_samples(rng: &mut ChaCha8Rng, t: usize, faces: usize) -> Vec<Vec<[f32; 8]>> {
    (0..t)
        .map(|_| {
            (0..faces)
                .map(|i| {
                    if i % 11 == 0 {
                        let mut p = [0.0; 8];
                        p[i % 8] = 1.0;
                        return p;
                    }
                    let z: [f32; 8] = std::array::from_fn(|_| rng.random_range(-4.0..4.0));
                    let e = z.map(f32::exp);
                    let s: f32 = e.iter().sum();
                    let mut p = e.map(|v| v / s);
                    if rng.random_bool(0.2) {
                        let k = rng.random_range(0..8);
                        p[(k + 3) % 8] += p[k];
                        p[k] = 0.0;
                    }
                    p
                })
                .collect()
        })
        .collect()
}

fn bits(s: &FaceSplit<8>) -> ([u32; 8], [u64; 3]) {
    (
        s.probs.map(f32::to_bits),
        [
            s.entropy.to_bits(),
            s.aleatoric.to_bits(),
            s.epistemic.to_bits(),
        ],
    )
}

/// After n samples the running accumulators hold exactly the batch values of the first n.
#[test]
fn running_values_equal_the_batch_values_bit_for_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    for (t, faces) in [(1, 5), (3, 40), (10, 60), (30, 23)] {
        let samples = random_samples(&mut rng, t, faces);
        let slices: Vec<&[[f32; 8]]> = samples.iter().map(Vec::as_slice).collect();
        let mut running = vec![RunningSplit::<8>::new(); faces];
        let mut means = vec![RunningMean::<8>::new(); faces];
        for n in 1..=t {
            for i in 0..faces {
                running[i].push(&samples[n - 1][i]);
                means[i].push(&samples[n - 1][i]);
            }
            let batch = face_splits(&slices[..n]);
            let pbar = mean_prediction(&slices[..n]);
            for i in 0..faces {
                assert_eq!(running[i].count(), n);
                assert_eq!(
                    bits(&running[i].split()),
                    bits(&batch[i]),
                    "t {t}, n {n}, face {i}"
                );
                assert_eq!(
                    means[i].mean().map(f32::to_bits),
                    pbar[i].map(f32::to_bits),
                    "mean, n {n}, face {i}"
                );
                // One face's own rows give the same split.
                let rows: Vec<[f32; 8]> = samples[..n].iter().map(|s| s[i]).collect();
                assert_eq!(bits(&face_split(&rows)), bits(&batch[i]));
            }
        }
    }
}

/// The batch functions are the literal sums: per class Σ_t p_t in f64 (as `sum()` adds, from
/// −0.0), / n, rounded to f32; H of that mean; the mean of the samples' entropies.
#[test]
fn the_batch_values_are_the_literal_definition() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let samples = random_samples(&mut rng, 7, 50);
    let slices: Vec<&[[f32; 8]]> = samples.iter().map(Vec::as_slice).collect();
    let got = face_splits(&slices);
    for (i, s) in got.iter().enumerate() {
        let n = samples.len() as f64;
        let mean: [f32; 8] = std::array::from_fn(|k| {
            (samples.iter().map(|x| f64::from(x[i][k])).sum::<f64>() / n) as f32
        });
        let h = entropy(&mean);
        let aleatoric = samples.iter().map(|x| entropy(&x[i])).sum::<f64>() / n;
        let want = FaceSplit {
            probs: mean,
            entropy: h,
            aleatoric,
            epistemic: h - aleatoric,
        };
        assert_eq!(bits(s), bits(&want), "face {i}");
    }
    // Means over faces ([`uncertainty`]) of the same numbers.
    let u = uncertainty(&slices);
    let h: f64 = got.iter().map(|s| s.entropy).sum::<f64>() / got.len() as f64;
    close(u.entropy, h, 1e-12, "mean entropy over faces");
    let a: f64 = got.iter().map(|s| s.aleatoric).sum::<f64>() / got.len() as f64;
    close(u.aleatoric, a, 1e-12, "mean aleatoric over faces");
}
