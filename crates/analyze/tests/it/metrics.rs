//! The one-pass [`Evaluator`] and the running curves over n against `ferbayes_uq`'s
//! single-metric functions (whose own tests, with hand-computed and reference-script values, are
//! in crates/uq/tests/it), and the metric names against the schema.

use ferbayes_analyze::curves;
use ferbayes_analyze::data::Samples;
use ferbayes_analyze::metrics::{self, Evaluator, Metrics};
use ferbayes_uq::{calibration, crowd, predictive};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, expected {want} (±{tol})"
    );
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
        .map(|c| c.map(|c| predictive::entropy(&c) as f32))
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
        .filter_map(|(p, h)| h.map(|h| (predictive::entropy(p), f64::from(h))))
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
            let (k, conf) = predictive::predict(p);
            (conf, f64::from(c[k]))
        })
        .unzip();
    let entropy = predictive::mean_entropy(&lp);
    let want = Metrics {
        error: calibration::error(&lp, &ly),
        nll: calibration::nll(&lp, &ly),
        ece: calibration::ece(&lp, &ly, 15),
        brier: calibration::brier(&lp, &ly),
        classwise_ece: calibration::classwise_ece(&lp, &ly, 15),
        aurc: calibration::aurc(&lp, &ly),
        entropy,
        aleatoric: 0.25,
        epistemic: entropy - 0.25,
        jsd: crowd::mean_jsd(&cc, &cp),
        soft_accuracy: crowd::soft_accuracy(&cc, &cp),
        kl_crowd: crowd::mean_kl(&cc, &cp),
        entropy_corr: crowd::pearson(&hp, &hc),
        crowd_ece: calibration::crowd_ece(&both_conf, &both_agree, 15),
        crowd_cw_ece: calibration::crowd_cw_ece(&both_p, &both_c, 15),
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
        .map(|c| c.map(|c| predictive::entropy(&c) as f32))
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
        let pbar = predictive::mean_prediction(&slices);
        let u = predictive::uncertainty(&slices);
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
