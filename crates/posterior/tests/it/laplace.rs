//! Last-layer Laplace against `tests/reference/laplace.py` (K = 3, F = 2, N = 20 hand-written
//! training faces, 12 valid faces): explicit per-face Jacobians and dense inverses there.

use ferbayes_posterior::laplace::{
    Ggn, LaplacePosterior, default_prior_grid, select_prior_precision,
};
use ferbayes_posterior::{ChaCha8Rng, Error, LastLayer, Result, sampled_softmax};
use rand::SeedableRng;
use serde_json::Value;

use crate::{assert_close, f32_rounding, f32s, f64s, reference};

struct Case {
    r: Value,
    layer: LastLayer,
    train: Vec<f32>,
    valid: Vec<f32>,
    labels: Vec<u8>,
}

fn case() -> Result<Case> {
    let r = reference("laplace.json");
    let k = r["classes"]
        .as_u64()
        .expect("an integer in the reference JSON") as usize;
    let f = r["features"]
        .as_u64()
        .expect("an integer in the reference JSON") as usize;
    let layer = LastLayer::new(k, f, f32s(&r["weight"]), f32s(&r["bias"]))?;
    let labels = f64s(&r["valid_labels"]).iter().map(|&y| y as u8).collect();
    Ok(Case {
        train: f32s(&r["train_features"]),
        valid: f32s(&r["valid_features"]),
        labels,
        layer,
        r,
    })
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// laplace.py: G = Σ_n J_nᵀ Λ_n J_n face by face.
#[test]
fn ggn_matches_per_face_jacobians() -> Result<()> {
    let c = case()?;
    let ggn = Ggn::new(&c.layer, &c.train)?;
    assert_eq!((ggn.dim(), ggn.faces()), (9, 20));
    let want = f64s(&c.r["ggn"]);
    let scale = max_abs(&want);
    assert_close("GGN", &ggn.to_row_major(), &want, |_, _| 1e-13 * scale);
    // Shifting every class's [w_k, b_k] by the same u leaves the softmax unchanged: G u = 0.
    let g = ggn.to_row_major();
    let u = [0.7, -1.3, 0.4];
    for i in 0..9 {
        let gu: f64 = (0..9).map(|j| g[i * 9 + j] * u[j % 3]).sum();
        assert!(gu.abs() < 1e-13 * scale, "(G u)[{i}] = {gu}");
    }
    // Exactly symmetric.
    for i in 0..9 {
        for j in 0..9 {
            assert_eq!(ggn.get(i, j).to_bits(), ggn.get(j, i).to_bits());
        }
    }
    Ok(())
}

/// laplace.py: the valid NLL of the probit predictive at every grid point (a dense inverse per
/// δ there, one eigendecomposition here) and its first minimum.
#[test]
fn prior_search_picks_the_scripts_grid_minimum() -> Result<()> {
    let c = case()?;
    let grid = default_prior_grid();
    assert_close("grid", &grid, &f64s(&c.r["grid"]), |_, w| 1e-15 * w);
    let ggn = Ggn::new(&c.layer, &c.train)?;
    let search = select_prior_precision(&ggn, &c.layer, &c.valid, &c.labels, &grid)?;
    assert_close("valid NLL", &search.nll, &f64s(&c.r["nll"]), |_, _| 1e-10);
    let best = c.r["best"]
        .as_u64()
        .expect("an integer in the reference JSON") as usize;
    assert_eq!(search.best, best);
    assert_eq!(
        best, 14,
        "the script's minimum is inside the grid (δ = 10^-0.5)"
    );
    assert_eq!(search.precision(), grid[best]);
    // The grid's order does not matter, and a tie goes to the smaller δ.
    let reversed: Vec<f64> = grid.iter().rev().copied().collect();
    let search = select_prior_precision(&ggn, &c.layer, &c.valid, &c.labels, &reversed)?;
    assert_eq!(search.precision(), grid[best]);
    let twice = [grid[best], grid[best]];
    let search = select_prior_precision(&ggn, &c.layer, &c.valid, &c.labels, &twice)?;
    assert_eq!(search.best, 0);
    Ok(())
}

/// laplace.py: Σ = (G + δ I)⁻¹, its Cholesky factor, the logit variances diag(J Σ Jᵀ) and the
/// probit predictive at the chosen δ.
#[test]
fn posterior_and_probit_match_dense_inverse() -> Result<()> {
    let c = case()?;
    let ggn = Ggn::new(&c.layer, &c.train)?;
    let delta = c.r["prior_precision"]
        .as_f64()
        .expect("a number in the reference JSON");
    let post = LaplacePosterior::new(&ggn, &c.layer, delta)?;
    let sigma = f64s(&c.r["covariance"]);
    let scale = max_abs(&sigma);
    assert_close("covariance", &post.covariance(), &sigma, |_, _| {
        1e-12 * scale
    });
    let l = f64s(&c.r["cholesky"]);
    let scale = max_abs(&l);
    assert_close("Cholesky factor", &post.cholesky_factor(), &l, |_, _| {
        1e-13 * scale
    });
    let var = f64s(&c.r["logit_variances"]);
    let scale = max_abs(&var);
    assert_close(
        "logit variances",
        &post.logit_variances(&c.valid)?,
        &var,
        |_, _| 1e-12 * scale,
    );
    let probit: Vec<f64> = post
        .probit(&c.valid)?
        .iter()
        .map(|&p| f64::from(p))
        .collect();
    assert_close("probit", &probit, &f64s(&c.r["probit"]), |_, w| {
        f32_rounding(w)
    });
    Ok(())
}

/// laplace.py: θ_MAP + L⁻ᵀ z for two fixed z.
#[test]
fn sample_for_fixed_z_matches_triangular_solve() -> Result<()> {
    let c = case()?;
    let ggn = Ggn::new(&c.layer, &c.train)?;
    let post = LaplacePosterior::new(
        &ggn,
        &c.layer,
        c.r["prior_precision"]
            .as_f64()
            .expect("a number in the reference JSON"),
    )?;
    let layers = post.perturb(&f64s(&c.r["z"]))?;
    let got: Vec<f64> = layers.iter().flat_map(LastLayer::theta).collect();
    assert_close(
        "θ_MAP + L⁻ᵀ z",
        &got,
        &f64s(&c.r["theta_fixed"]),
        |_, w| f32_rounding(w),
    );
    Ok(())
}

/// The sampled last layers' mean and covariance approach θ_MAP and Σ (laplace.py), and their
/// mean softmax the script's mean over 10⁶ numpy draws. Tolerances are 5 standard errors for T
/// draws: sqrt(Σ_ii / T) for a mean, sqrt((Σ_ii Σ_jj + Σ_ij²) / T) for a Gaussian sample
/// covariance, s / sqrt(T) (+ the script's own s / sqrt(10⁶)) for a mean softmax with standard
/// deviation s, plus f32 rounding of the sampled weights.
#[test]
fn sampled_predictive_mean_and_covariance() -> Result<()> {
    let c = case()?;
    let ggn = Ggn::new(&c.layer, &c.train)?;
    let post = LaplacePosterior::new(
        &ggn,
        &c.layer,
        c.r["prior_precision"]
            .as_f64()
            .expect("a number in the reference JSON"),
    )?;
    const T: usize = 40_000;
    let layers = post.sample(&mut ChaCha8Rng::seed_from_u64(11), T)?;
    let d = post.dim();
    let thetas: Vec<Vec<f64>> = layers.iter().map(LastLayer::theta).collect();
    let mean: Vec<f64> = (0..d)
        .map(|i| thetas.iter().map(|t| t[i]).sum::<f64>() / T as f64)
        .collect();
    let sigma = f64s(&c.r["covariance"]);
    let theta_map = c.layer.theta();
    assert_close("sample mean", &mean, &theta_map, |i, w| {
        5.0 * (sigma[i * d + i] / T as f64).sqrt() + f32_rounding(w)
    });
    let mut cov = vec![0.0; d * d];
    for t in &thetas {
        for i in 0..d {
            for j in 0..d {
                cov[i * d + j] += (t[i] - mean[i]) * (t[j] - mean[j]) / (T - 1) as f64;
            }
        }
    }
    assert_close("sample covariance", &cov, &sigma, |x, w| {
        let (i, j) = (x / d, x % d);
        5.0 * ((sigma[i * d + i] * sigma[j * d + j] + w * w) / T as f64).sqrt()
    });
    let probs = sampled_softmax(&c.valid, &layers)?;
    let k = c.layer.classes();
    let n = c.labels.len();
    assert_eq!(probs.len(), n * T * k);
    let mean_probs: Vec<f64> = (0..n * k)
        .map(|x| {
            let (face, class) = (x / k, x % k);
            (0..T)
                .map(|t| f64::from(probs[(face * T + t) * k + class]))
                .sum::<f64>()
                / T as f64
        })
        .collect();
    let std = f64s(&c.r["mc_std"]);
    let script_draws = c.r["mc_draws"]
        .as_f64()
        .expect("a number in the reference JSON");
    assert_close(
        "mean sampled softmax",
        &mean_probs,
        &f64s(&c.r["mc_mean"]),
        |x, _| 5.0 * std[x] * (1.0 / (T as f64).sqrt() + 1.0 / script_draws.sqrt()) + 1e-6,
    );
    // Each row of the sampled softmax is that layer's softmax.
    let face0 = layers[3].softmax(&c.valid[..2])?;
    assert_eq!(&probs[3 * k..4 * k], &face0[..]);
    Ok(())
}

/// Same seed, same bits; another seed, other draws.
#[test]
fn samples_are_deterministic() -> Result<()> {
    let c = case()?;
    let ggn = Ggn::new(&c.layer, &c.train)?;
    let post = LaplacePosterior::new(&ggn, &c.layer, 0.5)?;
    let draw = |seed| {
        post.sample(&mut ChaCha8Rng::seed_from_u64(seed), 5)
            .expect("sampling")
    };
    let bits = |layers: &[LastLayer]| -> Vec<u32> {
        layers
            .iter()
            .flat_map(|l| {
                l.weight()
                    .iter()
                    .chain(l.bias())
                    .map(|x| x.to_bits())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    assert_eq!(bits(&draw(3)), bits(&draw(3)));
    assert_ne!(bits(&draw(3)), bits(&draw(4)));
    // The draws are z_0 first: sampling 2 layers gives the first 2 of 5.
    assert_eq!(
        bits(&post.sample(&mut ChaCha8Rng::seed_from_u64(3), 2)?),
        bits(&draw(3)[..2])
    );
    let again = Ggn::new(&c.layer, &c.train)?;
    assert_eq!(
        again
            .to_row_major()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>(),
        ggn.to_row_major()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
fn bad_inputs_are_refused() -> Result<()> {
    let c = case()?;
    let ggn = Ggn::new(&c.layer, &c.train)?;
    assert!(matches!(
        Ggn::new(&c.layer, &c.train[..3]),
        Err(Error::Ragged { .. })
    ));
    let mut labels = c.labels.clone();
    labels[4] = 3;
    assert!(matches!(
        select_prior_precision(&ggn, &c.layer, &c.valid, &labels, &[1.0]),
        Err(Error::Label {
            index: 4,
            label: 3,
            classes: 3
        })
    ));
    assert!(matches!(
        select_prior_precision(&ggn, &c.layer, &c.valid, &c.labels, &[]),
        Err(Error::Empty { .. })
    ));
    assert!(matches!(
        LaplacePosterior::new(&ggn, &c.layer, 0.0),
        Err(Error::PriorPrecision(_))
    ));
    let mut nan = c.valid.clone();
    nan[5] = f32::NAN;
    assert!(matches!(
        select_prior_precision(&ggn, &c.layer, &nan, &c.labels, &[1.0]),
        Err(Error::NonFinite { index: 5, .. })
    ));
    let other = LastLayer::new(2, 2, vec![0.0; 4], vec![0.0; 2])?;
    assert!(matches!(
        LaplacePosterior::new(&ggn, &other, 1.0),
        Err(Error::Shape { .. })
    ));
    Ok(())
}
