//! Times last-layer Laplace at the study's sizes on random features: K = 8 classes, F = 256
//! features (D = 2,056), 28,000 training and 3,600 valid faces, the default 33-point prior grid,
//! 30 sampled layers. A rough measurement, not a benchmark:
//!
//!     cargo run --release -p ferbayes-posterior --example laplace_sizes

use std::time::Instant;

use ferbayes_posterior::laplace::{
    Ggn, LaplacePosterior, default_prior_grid, select_prior_precision,
};
use ferbayes_posterior::{ChaCha8Rng, LastLayer, Result, sampled_softmax, standard_normals};
use rand::{Rng, SeedableRng};

fn main() -> Result<()> {
    let (k, f, n_train, n_valid) = (8, 256, 28_000, 3_600);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    // Post-ReLU-like features (|z|) and a small random last layer.
    let mut features = |n: usize| -> Vec<f32> {
        standard_normals(&mut rng, n * f)
            .iter()
            .map(|z| z.abs() as f32)
            .collect()
    };
    let train = features(n_train);
    let valid = features(n_valid);
    let weight: Vec<f32> = standard_normals(&mut rng, k * f)
        .iter()
        .map(|z| (0.1 * z) as f32)
        .collect();
    let layer = LastLayer::new(k, f, weight, vec![0.0; k])?;
    let labels: Vec<u8> = (0..n_valid).map(|_| rng.random_range(0..k as u8)).collect();

    let t = Instant::now();
    let ggn = Ggn::new(&layer, &train)?;
    eprintln!(
        "GGN ({n_train} faces, D = {}): {:.2} s",
        ggn.dim(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let grid = default_prior_grid();
    let search = select_prior_precision(&ggn, &layer, &valid, &labels, &grid)?;
    eprintln!(
        "prior search ({n_valid} faces, {} grid points): {:.2} s, delta = {}",
        grid.len(),
        t.elapsed().as_secs_f64(),
        search.precision()
    );
    let t = Instant::now();
    let post = LaplacePosterior::new(&ggn, &layer, search.precision())?;
    eprintln!(
        "posterior (Cholesky + inverse): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let probit = post.probit(&valid)?;
    eprintln!(
        "probit predictive ({n_valid} faces): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let layers = post.sample(&mut rng, 30)?;
    let probs = sampled_softmax(&valid, &layers)?;
    eprintln!(
        "30 sampled layers and their softmax ({n_valid} faces): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    eprintln!(
        "(checksums: {} {})",
        probit.iter().sum::<f32>(),
        probs.iter().sum::<f32>()
    );
    Ok(())
}
