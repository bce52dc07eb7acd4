//! SWAG against `tests/reference/swag.py` (six hand-written f32 vectors of dimension 5, rank 3).

use ferbayes_posterior::swag::{Swag, SwagSample};
use ferbayes_posterior::{ChaCha8Rng, Error, Result, standard_normals};
use rand::SeedableRng;
use serde_json::Value;

use crate::{assert_close, f32_rounding, f32s, f64s, reference};

fn collected(r: &Value, n: usize) -> Result<Swag> {
    let rank = r["rank"]
        .as_u64()
        .expect("an integer in the reference JSON") as usize;
    let trajectory = r["trajectory"]
        .as_array()
        .expect("an array in the reference JSON");
    let mut swag = Swag::new(5, rank)?;
    for theta in &trajectory[..n] {
        swag.collect(&f32s(theta))?;
    }
    Ok(swag)
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// swag.py: mean, mean of squares, variance and the deviation columns (oldest first) after 2
/// (K = 2 < rank) and 6 (K = rank = 3, the oldest three dropped) vectors.
#[test]
fn moments_match_numpy() -> Result<()> {
    let r = reference("swag.json");
    for state in r["states"]
        .as_array()
        .expect("an array in the reference JSON")
    {
        let n = state["count"]
            .as_u64()
            .expect("an integer in the reference JSON") as usize;
        let swag = collected(&r, n)?;
        assert_eq!(swag.count(), n as u64);
        assert_close("mean", swag.mean(), &f64s(&state["mean"]), |_, _| 1e-15);
        assert_close(
            "mean of squares",
            swag.sq_mean(),
            &f64s(&state["sq_mean"]),
            |_, _| 1e-14,
        );
        assert_close(
            "variance",
            &swag.variance(),
            &f64s(&state["variance"]),
            |_, _| 1e-14,
        );
        let want = state["deviations"]
            .as_array()
            .expect("an array in the reference JSON");
        assert_eq!(swag.columns(), want.len());
        for (k, column) in want.iter().enumerate() {
            let got = widen(swag.deviation(k).expect("a kept column"));
            // Rounded to f32 from f64 values that differ from numpy's in the last bits.
            assert_close("deviation", &got, &f64s(column), |_, w| f32_rounding(w));
        }
        assert!(swag.deviation(want.len()).is_none());
    }
    Ok(())
}

/// swag.py: the samples for fixed z₁, z₂ (full SWAG and SWAG-Diagonal), and SWA's mean.
#[test]
fn samples_for_fixed_z_match_numpy() -> Result<()> {
    let r = reference("swag.json");
    let z1 = f64s(&r["z1"]);
    for state in r["states"]
        .as_array()
        .expect("an array in the reference JSON")
    {
        let swag = collected(
            &r,
            state["count"]
                .as_u64()
                .expect("an integer in the reference JSON") as usize,
        )?;
        let full = swag.sample_full_with(&z1, &f64s(&state["z2"]))?;
        assert_close(
            "SWAG sample",
            &widen(&full),
            &f64s(&state["full"]),
            |_, w| f32_rounding(w),
        );
        let diagonal = swag.sample_diagonal_with(&z1)?;
        assert_close(
            "SWAG-Diagonal sample",
            &widen(&diagonal),
            &f64s(&state["diagonal"]),
            |_, w| f32_rounding(w),
        );
        let swa = swag.sample(SwagSample::Swa, &mut ChaCha8Rng::seed_from_u64(0))?;
        assert_close("SWA", &widen(&swa), &f64s(&state["mean"]), |_, w| {
            f32_rounding(w)
        });
    }
    Ok(())
}

/// The covariance of many SWAG samples approaches diag/2 + D Dᵀ / (2 (K − 1)) (swag.py), within
/// 5 standard errors of a Gaussian sample covariance, sqrt((C_ii C_jj + C_ij²) / T), plus f32
/// rounding; the sample mean within 5 sqrt(C_ii / T) of θ̄.
#[test]
fn sample_covariance_approaches_the_swag_covariance() -> Result<()> {
    let r = reference("swag.json");
    let state = &r["states"][1];
    let swag = collected(&r, 6)?;
    let want = f64s(&state["covariance"]);
    let mean_want = f64s(&state["mean"]);
    const T: usize = 200_000;
    let d = 5;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let samples = (0..T)
        .map(|_| Ok(widen(&swag.sample(SwagSample::Full, &mut rng)?)))
        .collect::<Result<Vec<Vec<f64>>>>()?;
    let mean: Vec<f64> = (0..d)
        .map(|i| samples.iter().map(|s| s[i]).sum::<f64>() / T as f64)
        .collect();
    assert_close("sample mean", &mean, &mean_want, |i, w| {
        5.0 * (want[i * d + i] / T as f64).sqrt() + f32_rounding(w)
    });
    let mut cov = vec![0.0; d * d];
    for s in &samples {
        for i in 0..d {
            for j in 0..d {
                cov[i * d + j] += (s[i] - mean[i]) * (s[j] - mean[j]) / (T - 1) as f64;
            }
        }
    }
    assert_close("sample covariance", &cov, &want, |x, w| {
        let (i, j) = (x / d, x % d);
        5.0 * ((want[i * d + i] * want[j * d + j] + w * w) / T as f64).sqrt() + 1e-12
    });
    // The constant coordinate (index 3) has a variance of zero up to rounding (clamped at zero,
    // never NaN) and deviations of zero up to rounding: its samples stay within an f32 ulp.
    assert!((0.0..1e-15).contains(&swag.variance()[3]));
    assert!(
        samples
            .iter()
            .all(|s| (s[3] - f64::from(0.1f32)).abs() <= 1e-8)
    );
    Ok(())
}

/// With one vector collected (K = 1) there is no low-rank term and no z₂ is drawn; the variance
/// is zero, so every sample is that vector.
#[test]
fn one_vector_draws_no_low_rank_term() -> Result<()> {
    let r = reference("swag.json");
    let swag = collected(&r, 1)?;
    let theta = f32s(&r["trajectory"][0]);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    assert_eq!(swag.sample(SwagSample::Full, &mut rng)?, theta);
    // Exactly d normals were drawn.
    let mut reference_rng = ChaCha8Rng::seed_from_u64(9);
    standard_normals(&mut reference_rng, 5);
    assert_eq!(
        standard_normals(&mut rng, 3),
        standard_normals(&mut reference_rng, 3)
    );
    assert!(matches!(
        swag.sample_full_with(&[0.0; 5], &[1.0]),
        Err(Error::Shape { .. })
    ));
    Ok(())
}

/// Same seed, same bits; the draws are z₁ then z₂ from standard_normals; a checkpoint restored
/// with from_parts samples the same bits.
#[test]
fn samples_are_deterministic() -> Result<()> {
    let r = reference("swag.json");
    let swag = collected(&r, 6)?;
    let draw = |kind, seed| {
        swag.sample(kind, &mut ChaCha8Rng::seed_from_u64(seed))
            .expect("sampling")
    };
    for kind in [SwagSample::Full, SwagSample::Diagonal] {
        let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(draw(kind, 1)), bits(draw(kind, 1)));
        assert_ne!(bits(draw(kind, 1)), bits(draw(kind, 2)));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let z1 = standard_normals(&mut rng, 5);
    let z2 = standard_normals(&mut rng, 3);
    assert_eq!(draw(SwagSample::Full, 1), swag.sample_full_with(&z1, &z2)?);
    let columns: Vec<&[f32]> = (0..swag.columns())
        .map(|k| swag.deviation(k).expect("a kept column"))
        .collect();
    let restored = Swag::from_parts(
        swag.rank(),
        swag.count(),
        swag.mean().to_vec(),
        swag.sq_mean().to_vec(),
        &columns,
    )?;
    let again = restored.sample(SwagSample::Full, &mut ChaCha8Rng::seed_from_u64(1))?;
    assert_eq!(again, draw(SwagSample::Full, 1));
    Ok(())
}

#[test]
fn bad_inputs_are_refused() -> Result<()> {
    let mut swag = Swag::new(3, 2)?;
    assert!(matches!(
        swag.sample(SwagSample::Swa, &mut ChaCha8Rng::seed_from_u64(0)),
        Err(Error::NoSnapshots)
    ));
    assert!(matches!(
        swag.collect(&[1.0, 2.0]),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        swag.collect(&[1.0, f32::INFINITY, 2.0]),
        Err(Error::NonFinite { index: 1, .. })
    ));
    assert_eq!(swag.count(), 0);
    assert!(matches!(Swag::new(3, 0), Err(Error::Empty { .. })));
    // A checkpoint needs its min(count, rank) deviation columns.
    assert!(matches!(
        Swag::from_parts(2, 5, vec![0.0; 3], vec![0.0; 3], &[&[0.0; 3]]),
        Err(Error::Shape {
            expected: 2,
            got: 1,
            ..
        })
    ));
    Ok(())
}
