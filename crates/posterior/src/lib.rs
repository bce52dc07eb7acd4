//! Approximate posteriors over network weights, as plain numerics: slices of `f32`/`f64` in,
//! slices out, no tensors, no I/O, no other ferbayes crate.
//!
//! * [`swag`]: SWA-Gaussian (Maddox et al. 2019). The first and second moments and the last
//!   `rank` deviations of the flattened parameter vector along an SGD trajectory
//!   ([`swag::Swag::collect`]), and samples from `N(θ̄, ½ (Σ_diag + D Dᵀ/(K−1)))`
//!   ([`swag::Swag::sample`]).
//!
//! # Determinism
//!
//! Every random draw is a standard normal ([`standard_normals`]: `rand_distr::StandardNormal` as
//! `f64` from a [`ChaCha8Rng`]) taken in a documented order, so the same inputs and seed give the
//! same bits.
//!
//! # Precision
//!
//! Inputs are `f32` (SWAG snapshots); everything is computed in `f64`; the outputs a network
//! consumes (sampled weights) are rounded to `f32` at the end.

pub mod swag;

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
    /// SWAG sampled before any parameter vector was collected.
    #[error("SWAG: no parameter vector has been collected")]
    NoSnapshots,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `n` standard normal draws, `rng.sample::<f64, _>(rand_distr::StandardNormal)` one after the
/// other: the definition of every `z` in this crate (SWAG's `z₁`, `z₂`).
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
