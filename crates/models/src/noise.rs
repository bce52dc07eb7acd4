//! Seeded Bernoulli masks for dropout and DropConnect.

use candle_core::{Device, Tensor};
use ferbayes_kernels::device::MaskStream;
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

    /// Where the next `n` mask entries come from, the stream moved past them as
    /// [`Noise::mask_values`] would move it: the device ops draw those entries in place
    /// (`ferbayes_kernels::device::dropout`), bit for bit the values `mask_values` returns.
    /// `keep` must be in (0, 1]; with `keep == 1` no words are consumed (and no mask is needed).
    pub fn reserve(&mut self, n: usize, keep: f64) -> Result<MaskStream> {
        if !(keep > 0.0 && keep <= 1.0) {
            return Err(Error::KeepProbability(keep));
        }
        let word = self.rng.get_word_pos();
        if keep < 1.0 {
            self.rng.set_word_pos(word + n as u128);
        }
        Ok(MaskStream {
            key: MaskStream::key_words(&self.rng.get_seed()),
            stream: self.rng.get_stream(),
            word,
        })
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

    /// The device ops' own ChaCha8 (`ferbayes_kernels::device::chacha`, the function the GPU
    /// kernel runs) gives rand_chacha's words at any position of any stream.
    #[test]
    fn device_chacha_is_rand_chacha() {
        use rand::RngCore;
        for (seed, stream, pos) in [
            (0u64, 0u64, 0u128),
            (42, 0, 5),
            (20240321, 0, 16 * 1000 + 3),
            (7, 9, 123_456_789),
            (u64::MAX, 3, (1u128 << 36) + 15),
        ] {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(stream);
            rng.set_word_pos(pos);
            let want: Vec<u32> = (0..70).map(|_| rng.next_u32()).collect();
            let at = MaskStream {
                key: MaskStream::key_words(&rng.get_seed()),
                stream,
                word: pos,
            };
            let mut got = vec![0u32; 70];
            at.fill(0, &mut got);
            assert_eq!(got, want, "seed {seed} stream {stream} position {pos}");
            let mut tail = vec![0u32; 20];
            at.fill(50, &mut tail);
            assert_eq!(tail, want[50..], "seed {seed}: from word 50");
        }
    }

    /// A dropout on the device ops (its mask drawn inside the op from `Noise::reserve`'s stream
    /// position) multiplies by exactly the mask `Noise::mask` draws, and leaves the stream
    /// where the mask draw leaves it: for one stream and for packed streams, masks starting
    /// mid-block, and masks long enough to be drawn in parallel pieces.
    #[test]
    fn device_dropout_is_the_cpu_mask_bit_for_bit() {
        let keep = 0.8;
        for (members, n) in [(1usize, 37usize), (3, 5 * PIECE + 17), (2, 16)] {
            let mut cpu: Vec<Noise> = (0..members).map(|g| Noise::new(100 + g as u64)).collect();
            let mut dev = cpu.clone();
            for round in 0..3 {
                let want: Vec<f32> = cpu
                    .iter_mut()
                    .flat_map(|s| s.mask_values(n + round, keep).expect("mask"))
                    .collect();
                let streams: Vec<MaskStream> = dev
                    .iter_mut()
                    .map(|s| s.reserve(n + round, keep).expect("reserve"))
                    .collect();
                let len = members * (n + round);
                let x = Tensor::from_vec(
                    (0..len).map(|i| 1.0 + (i % 7) as f32).collect::<Vec<f32>>(),
                    len,
                    &Device::Cpu,
                )
                .expect("x");
                let y = ferbayes_kernels::device::dropout(&x, &streams, keep).expect("dropout");
                let want: Vec<u32> = want
                    .iter()
                    .enumerate()
                    .map(|(i, &m)| ((1.0 + (i % 7) as f32) * m).to_bits())
                    .collect();
                let got: Vec<u32> = y
                    .to_vec1::<f32>()
                    .expect("values")
                    .into_iter()
                    .map(f32::to_bits)
                    .collect();
                assert_eq!(got, want, "{members} member(s), {n} entries, round {round}");
            }
        }
    }
}
