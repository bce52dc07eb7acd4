//! Seeded Bernoulli masks for dropout and DropConnect.

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Mask entries per parallel piece; masks under two pieces are drawn in one go.
const PIECE: usize = 1 << 13;

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
        let n: usize = shape.iter().product();
        if keep == 1.0 {
            return Ok(Tensor::ones(shape, candle_core::DType::F32, device)?);
        }
        Ok(Tensor::from_vec(self.mask_values(n, keep)?, shape, device)?)
    }

    /// The `n` values of [`Noise::mask`] (row-major), appended to nothing: what a mask
    /// of any shape with `n` entries holds, and the same draws from the stream.
    pub fn mask_values(&mut self, n: usize, keep: f64) -> Result<Vec<f32>> {
        if !(keep > 0.0 && keep <= 1.0) {
            return Err(Error::KeepProbability(keep));
        }
        if keep == 1.0 {
            return Ok(vec![1.0; n]);
        }
        let threshold = (keep * 4_294_967_296.0).round() as u64;
        let scale = (1.0 / keep) as f32;
        let draw = |rng: &mut ChaCha8Rng| {
            if u64::from(rng.random::<u32>()) < threshold {
                scale
            } else {
                0.0
            }
        };
        let values: Vec<f32> = if n < 2 * PIECE {
            (0..n).map(|_| draw(&mut self.rng)).collect()
        } else {
            // The same stream drawn in parallel pieces: each entry takes one 32-bit word,
            // so piece k starts at word `start + k·PIECE` (ChaCha seeks in O(1)).
            let start = self.rng.get_word_pos();
            let mut values = vec![0f32; n];
            values
                .par_chunks_mut(PIECE)
                .enumerate()
                .for_each(|(k, piece)| {
                    let mut rng = self.rng.clone();
                    rng.set_word_pos(start + (k * PIECE) as u128);
                    piece.iter_mut().for_each(|v| *v = draw(&mut rng));
                });
            self.rng.set_word_pos(start + n as u128);
            values
        };
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mask drawn in parallel pieces is the sequential stream's, and the generator
    /// ends where the sequential draw leaves it (the next mask matches too).
    #[test]
    fn parallel_mask_is_the_sequential_stream() {
        let n = 5 * PIECE + 321;
        let (keep, seed) = (0.8, 42);
        let mut noise = Noise::new(seed);
        let first = noise.mask(&[3], keep, &Device::Cpu).expect("small mask");
        let big = noise.mask(&[n], keep, &Device::Cpu).expect("big mask");
        let after = noise.mask(&[7], keep, &Device::Cpu).expect("small mask");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let threshold = (keep * 4_294_967_296.0).round() as u64;
        let mut seq = |m: usize| -> Vec<f32> {
            (0..m)
                .map(|_| {
                    if u64::from(rng.random::<u32>()) < threshold {
                        1.25
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        let vals = |t: &Tensor| bits(t.to_vec1::<f32>().expect("values"));
        assert_eq!(vals(&first), bits(seq(3)));
        let want = seq(n);
        let kept = want.iter().filter(|&&v| v > 0.0).count() as f64 / n as f64;
        assert!((kept - keep).abs() < 0.01, "kept fraction {kept}");
        assert_eq!(vals(&big), bits(want));
        assert_eq!(vals(&after), bits(seq(7)));
    }
}
