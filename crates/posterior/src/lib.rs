//! Approximate posteriors over network weights, as plain numerics: slices of `f32`/`f64` in,
//! slices out, no tensors, no I/O, no other ferbayes crate.
//!
//! Two methods beyond the study's MC-Dropout, MC-DropConnect and deep ensembles:
//!
//! * [`laplace`]: the last-layer Laplace approximation of Daxberger et al. (2021, "Laplace
//!   Redux"). The network's last layer is linear, `logits = W φ + b`; its posterior is the
//!   Gaussian `N(θ_MAP, P⁻¹)` with `P = G + δ I`, `G` the generalised Gauss–Newton matrix of the
//!   softmax cross-entropy over the training faces ([`laplace::Ggn`]), `δ` the prior precision
//!   chosen on the valid split ([`laplace::select_prior_precision`]). Predictions come from the
//!   probit (mean-field) approximation or from sampled last layers
//!   ([`laplace::LaplacePosterior`]).
//! * [`swag`]: SWA-Gaussian (Maddox et al. 2019). The first and second moments and the last
//!   `rank` deviations of the flattened parameter vector along an SGD trajectory
//!   ([`swag::Swag::collect`]), and samples from `N(θ̄, ½ (Σ_diag + D Dᵀ/(K−1)))`
//!   ([`swag::Swag::sample`]).
//!
//! The last layer and its samples are [`LastLayer`]s (weights `K × F` row-major and biases, `f32`
//! as the network stores them). Features are `N × F` row-major `f32` slices.
//!
//! # Determinism
//!
//! Every random draw is a standard normal ([`standard_normals`]: `rand_distr::StandardNormal` as
//! `f64` from a [`ChaCha8Rng`]) taken in a documented order, and all linear algebra runs through
//! `faer` on one thread (`Par::Seq`) with fixed matrix shapes, so the same inputs and seed give the
//! same bits on one machine. Across machines faer's matrix products may block their sums
//! differently (they size blocks from the CPU's caches and pick SIMD kernels at run time), so
//! results agree to rounding only.
//!
//! # Precision
//!
//! Inputs are `f32` (features, weights, SWAG snapshots); everything is computed in `f64`; the
//! outputs a network consumes (sampled weights, probabilities) are rounded to `f32` at the end.

pub mod laplace;
mod layer;
mod linalg;
pub mod swag;

pub use layer::{LastLayer, sampled_softmax, softmax_in_place};

use rand::Rng;
pub use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// What went wrong; every variant names the input at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A slice whose length is not the one its shape needs.
    #[error("{what}: expected {expected} values, got {got}")]
    Shape {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// A row-major matrix whose length is not a whole number of rows.
    #[error("{what}: {len} values are not a whole number of rows of {width}")]
    Ragged {
        what: &'static str,
        len: usize,
        width: usize,
    },
    /// A size that must be positive is zero.
    #[error("{what} must be at least 1")]
    Empty { what: &'static str },
    /// A NaN or infinity in an input.
    #[error("{what}: value {index} is not finite ({value})")]
    NonFinite {
        what: &'static str,
        index: usize,
        value: f64,
    },
    /// A class label outside `0..classes`.
    #[error("label {label} of face {index} is not a class (0..{classes})")]
    Label {
        index: usize,
        label: usize,
        classes: usize,
    },
    /// A prior precision that is not a positive finite number.
    #[error("prior precision {0} is not a positive finite number")]
    PriorPrecision(f64),
    /// The Cholesky factorisation met a non-positive pivot.
    #[error("the posterior precision G + {delta} I is not positive definite (pivot {index})")]
    NotPositiveDefinite { delta: f64, index: usize },
    /// faer's symmetric eigensolver did not converge.
    #[error("the eigendecomposition of the GGN did not converge")]
    Eigen,
    /// SWAG sampled before any parameter vector was collected.
    #[error("SWAG: no parameter vector has been collected")]
    NoSnapshots,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `n` standard normal draws, `rng.sample::<f64, _>(rand_distr::StandardNormal)` one after the
/// other: the definition of every `z` in this crate (SWAG's `z₁`, `z₂`, Laplace's `z_t`).
pub fn standard_normals(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| rng.sample::<f64, _>(StandardNormal))
        .collect()
}

/// Checks that `values` is finite, naming the first value that is not.
pub(crate) fn check_finite<T: Copy + Into<f64>>(what: &'static str, values: &[T]) -> Result<()> {
    match values.iter().position(|&v| !v.into().is_finite()) {
        None => Ok(()),
        Some(index) => Err(Error::NonFinite {
            what,
            index,
            value: values[index].into(),
        }),
    }
}

/// The number of rows of a row-major `? × width` matrix.
pub(crate) fn rows_of(what: &'static str, len: usize, width: usize) -> Result<usize> {
    if width == 0 {
        return Err(Error::Empty { what });
    }
    if !len.is_multiple_of(width) {
        return Err(Error::Ragged { what, len, width });
    }
    Ok(len / width)
}
