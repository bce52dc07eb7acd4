//! Seeded random draws: Bernoulli masks for dropout and DropConnect, standard normals and
//! Rademacher signs for the variational layers' Flipout.

use candle_core::{Device, Shape, Tensor};
use ferbayes_kernels::device::MaskStream;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Mask entries per parallel piece; masks under two pieces are drawn in one go.
const PIECE: usize = 1 << 13;

/// Source of every random draw of a forward pass (dropout / DropConnect masks, Flipout's
/// normals and signs): a ChaCha8 stream seeded from a `u64`, so a run is reproducible
/// (candle's own CPU RNG cannot be seeded).
///
/// Draws are made in the order the forward pass meets the stochastic layers, so
/// the same seed, model and sequence of calls gives the same draws.
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

    /// `n` standard normals: each `rng.sample::<f32, _>(rand_distr::StandardNormal)` on this
    /// ChaCha8 stream, in order (rand_distr's ziggurat in f64, rounded to f32). A draw takes a
    /// varying number of words (the ziggurat's rejections), so the values are drawn one after
    /// the other, never in pieces. Every normal ferbayes draws for weights (Flipout's ε here,
    /// the posterior samplers') follows this one definition.
    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| self.rng.sample::<f32, _>(StandardNormal))
            .collect()
    }

    /// [`Noise::normals`] as a tensor of `shape` (row-major).
    pub fn normal_tensor(&mut self, shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let values = self.normals(shape.elem_count());
        Ok(Tensor::from_vec(values, shape, device)?)
    }

    /// `n` Rademacher signs, ±1 with probability ½ each: each takes one `u32` word of the
    /// stream and is +1 iff the word is below 2³¹ (its top bit clear).
    pub fn signs(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                if self.rng.random::<u32>() < 1 << 31 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect()
    }

    /// [`Noise::signs`] as a tensor of `shape` (row-major).
    pub fn sign_tensor(&mut self, shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let values = self.signs(shape.elem_count());
        Ok(Tensor::from_vec(values, shape, device)?)
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

    /// Normals and signs are their definitions' draws from the stream, one after the other:
    /// `StandardNormal` as f32 on the ChaCha8 generator, and +1 iff a `u32` word is below 2³¹;
    /// later draws continue where they stop, and their moments are those of N(0, 1) and of a
    /// fair sign (within 5 standard errors over 100 000 draws).
    #[test]
    fn normals_and_signs_are_their_definitions_draws() {
        let mut noise = Noise::new(7);
        let normals = noise.normals(100_000);
        let signs = noise.signs(100_000);
        let after = noise.mask_values(5, 0.5).expect("mask");
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let want: Vec<f32> = (0..100_000)
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect();
        assert_eq!(normals, want);
        let want: Vec<f32> = (0..100_000)
            .map(|_| {
                if rng.random::<u32>() >> 31 == 0 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        assert_eq!(signs, want);
        let rest: Vec<f32> = (0..5)
            .map(|_| {
                if rng.random::<u32>() < 1 << 31 {
                    2.0
                } else {
                    0.0
                }
            })
            .collect();
        assert_eq!(after, rest);
        let n = 100_000f64;
        let mean = normals.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = normals.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n - mean * mean;
        assert!(mean.abs() < 5.0 / n.sqrt(), "normal mean {mean}");
        assert!(
            (var - 1.0).abs() < 5.0 * (2.0 / n).sqrt(),
            "normal variance {var}"
        );
        let sign_mean = signs.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        assert!(sign_mean.abs() < 5.0 / n.sqrt(), "sign mean {sign_mean}");
        let t = Noise::new(7)
            .normal_tensor((2, 3), &Device::Cpu)
            .expect("tensor");
        assert_eq!(t.dims(), [2, 3]);
        assert_eq!(
            t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("v"),
            normals[..6]
        );
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
