//! Seeded Bernoulli masks for dropout and DropConnect.

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// Source of every dropout / DropConnect mask: a ChaCha8 stream seeded from a `u64`,
/// so a run is reproducible (candle's own CPU RNG cannot be seeded).
///
/// Masks are drawn in the order the forward pass meets the stochastic layers, so
/// the same seed, model and sequence of calls gives the same masks.
#[derive(Clone, Debug)]
pub struct Noise {
    rng: ChaCha8Rng,
}

impl Noise {
    /// A stream seeded with `seed` (`ChaCha8Rng::seed_from_u64`).
    pub fn new(seed: u64) -> Self {
        Noise {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// An f32 mask of `shape` whose entries are independently `1/keep` with
    /// probability `keep` and `0` otherwise (inverted-dropout scaling, so the mask
    /// has expectation 1). `keep` must be in (0, 1]; with `keep == 1` the mask is all
    /// ones and no random numbers are consumed.
    ///
    /// Each entry consumes one `u32` of the stream and is kept iff
    /// `u32 < round(keep * 2^32)`.
    pub fn mask(&mut self, shape: &[usize], keep: f64, device: &Device) -> Result<Tensor> {
        if !(keep > 0.0 && keep <= 1.0) {
            return Err(Error::KeepProbability(keep));
        }
        if keep == 1.0 {
            return Ok(Tensor::ones(shape, candle_core::DType::F32, device)?);
        }
        let n: usize = shape.iter().product();
        let threshold = (keep * 4_294_967_296.0).round() as u64;
        let scale = (1.0 / keep) as f32;
        let values: Vec<f32> = (0..n)
            .map(|_| {
                if u64::from(self.rng.random::<u32>()) < threshold {
                    scale
                } else {
                    0.0
                }
            })
            .collect();
        Ok(Tensor::from_vec(values, shape, device)?)
    }
}
