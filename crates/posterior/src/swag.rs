//! SWA-Gaussian (Maddox et al. 2019, "A Simple Baseline for Bayesian Uncertainty in Deep
//! Learning").
//!
//! Along an SGD trajectory the caller hands [`Swag::collect`] the flattened parameter vector
//! `θ_i` (`f32`, dimension `d`, in any fixed order the caller defines) at each collection point
//! (e.g. the end of each epoch of the SWA phase). [`Swag`] keeps:
//!
//! * the running mean `θ̄_n = (1/n) Σ_{i≤n} θ_i` and mean of squares `(1/n) Σ_{i≤n} θ_i²`, in
//!   `f64`, updated as Maddox et al.'s code does: `θ̄_n = θ̄_{n−1} · (n−1)/n + θ_n / n`;
//! * the deviation matrix `D` (`d × K`) of the last `rank` deviations `θ_i − θ̄_i` (the mean
//!   *after* adding `θ_i`, as in Maddox et al.'s code), computed in `f64` and stored in `f32` to
//!   bound memory: `d (16 + 4 rank)` bytes in all (`K ≤ rank` columns collected so far; column `k`
//!   is the `k`-th oldest deviation kept).
//!
//! The diagonal variance is `Σ_diag = max(mean of squares − θ̄², 0)` elementwise (rounding can
//! make the difference slightly negative; no other clamp). [`Swag::sample`] draws from
//!
//! * [`SwagSample::Full`], SWAG: `N(θ̄, ½ (Σ_diag + D Dᵀ / (K − 1)))`,
//!   `θ̃ = θ̄ + (1/√2) √Σ_diag ∘ z₁ + (1/√(2 (K − 1))) D z₂`; with `K = 1` the low-rank term is
//!   left out (and `z₂` not drawn). Maddox et al.'s code divides by `rank − 1` (its
//!   `max_num_models − 1`) even before `rank` columns are collected; this crate divides by
//!   `K − 1`, the number of columns collected, as the paper's formula does.
//! * [`SwagSample::Diagonal`], SWAG-Diagonal: `N(θ̄, Σ_diag)`, `θ̃ = θ̄ + √Σ_diag ∘ z₁`.
//! * [`SwagSample::Swa`]: the SWA solution `θ̄` itself (no draw).
//!
//! `z₁` (`d` values) and `z₂` (`K` values) are [`crate::standard_normals`] drawn in that order for
//! each sample. A network using SWAG samples (or the SWA mean) still needs its BatchNorm
//! statistics recomputed for those weights: that is the caller's.

use rand_chacha::ChaCha8Rng;

use crate::{Error, Result, check_finite, standard_normals};

/// Which distribution [`Swag::sample`] draws from (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwagSample {
    /// The SWA mean `θ̄` (deterministic, no draw).
    Swa,
    /// `N(θ̄, Σ_diag)`.
    Diagonal,
    /// `N(θ̄, ½ (Σ_diag + D Dᵀ / (K − 1)))`.
    Full,
}

/// The SWAG moments of a flattened parameter vector (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Swag {
    dim: usize,
    rank: usize,
    count: u64,
    mean: Vec<f64>,
    sq_mean: Vec<f64>,
    /// `rank` slots of `dim` values each, used as a ring: slot `(oldest + k) % rank` holds column `k`.
    deviations: Vec<f32>,
    columns: usize,
    oldest: usize,
}

impl Swag {
    /// Empty moments for vectors of dimension `dim`, keeping at most `rank` deviations
    /// (Maddox et al. use 20). Allocates `d (16 + 4 rank)` bytes.
    pub fn new(dim: usize, rank: usize) -> Result<Self> {
        if dim == 0 {
            return Err(Error::Empty {
                what: "SWAG parameter dimension",
            });
        }
        if rank == 0 {
            return Err(Error::Empty { what: "SWAG rank" });
        }
        Ok(Self {
            dim,
            rank,
            count: 0,
            mean: vec![0.0; dim],
            sq_mean: vec![0.0; dim],
            deviations: vec![0.0; dim * rank],
            columns: 0,
            oldest: 0,
        })
    }

    /// Adds `θ_n` (`n = count() + 1`): updates the mean and the mean of squares, then appends the
    /// deviation `θ_n − θ̄_n` as `D`'s newest column, dropping the oldest when `rank` are kept.
    pub fn collect(&mut self, theta: &[f32]) -> Result<()> {
        if theta.len() != self.dim {
            return Err(Error::Shape {
                what: "SWAG parameter vector",
                expected: self.dim,
                got: theta.len(),
            });
        }
        check_finite("SWAG parameter vector", theta)?;
        let n = self.count as f64;
        let (keep, add) = (n / (n + 1.0), 1.0 / (n + 1.0));
        let slot = if self.columns < self.rank {
            self.columns += 1;
            (self.oldest + self.columns - 1) % self.rank
        } else {
            let slot = self.oldest;
            self.oldest = (self.oldest + 1) % self.rank;
            slot
        };
        let dev = &mut self.deviations[slot * self.dim..(slot + 1) * self.dim];
        for (((m, s), &x), dv) in self
            .mean
            .iter_mut()
            .zip(self.sq_mean.iter_mut())
            .zip(theta)
            .zip(dev.iter_mut())
        {
            let x = f64::from(x);
            *m = *m * keep + x * add;
            *s = *s * keep + x * x * add;
            *dv = (x - *m) as f32;
        }
        self.count += 1;
        Ok(())
    }

    /// The dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The most deviation columns kept.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of vectors collected, `n`.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The number of deviation columns kept, `K = min(n, rank)`.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// `θ̄`, the SWA mean.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// The mean of squares `(1/n) Σ θ_i²`.
    pub fn sq_mean(&self) -> &[f64] {
        &self.sq_mean
    }

    /// `Σ_diag = max(mean of squares − θ̄², 0)` elementwise.
    pub fn variance(&self) -> Vec<f64> {
        self.mean
            .iter()
            .zip(&self.sq_mean)
            .map(|(m, s)| (s - m * m).max(0.0))
            .collect()
    }

    /// Column `k` of `D` (`k < columns()`, `0` the oldest kept), or `None`.
    pub fn deviation(&self, k: usize) -> Option<&[f32]> {
        (k < self.columns).then(|| {
            let slot = (self.oldest + k) % self.rank;
            &self.deviations[slot * self.dim..(slot + 1) * self.dim]
        })
    }

    /// Moments restored from a checkpoint (what [`mean`](Self::mean), [`sq_mean`](Self::sq_mean),
    /// [`count`](Self::count) and [`deviation`](Self::deviation) gave): `mean` and `sq_mean`
    /// (`dim` values each) after `count` vectors, and the `min(count, rank)` deviation columns,
    /// oldest first (`dim` values each). It samples what the original samples, bit for bit.
    pub fn from_parts(
        rank: usize,
        count: u64,
        mean: Vec<f64>,
        sq_mean: Vec<f64>,
        deviations: &[&[f32]],
    ) -> Result<Self> {
        let mut swag = Self::new(mean.len(), rank)?;
        if sq_mean.len() != swag.dim {
            return Err(Error::Shape {
                what: "SWAG mean of squares",
                expected: swag.dim,
                got: sq_mean.len(),
            });
        }
        let columns = usize::try_from(count).unwrap_or(usize::MAX).min(rank);
        if deviations.len() != columns {
            return Err(Error::Shape {
                what: "SWAG deviation columns (min(count, rank))",
                expected: columns,
                got: deviations.len(),
            });
        }
        check_finite("SWAG mean", &mean)?;
        check_finite("SWAG mean of squares", &sq_mean)?;
        for (k, column) in deviations.iter().enumerate() {
            if column.len() != swag.dim {
                return Err(Error::Shape {
                    what: "SWAG deviation column",
                    expected: swag.dim,
                    got: column.len(),
                });
            }
            check_finite("SWAG deviation column", column)?;
            swag.deviations[k * swag.dim..(k + 1) * swag.dim].copy_from_slice(column);
        }
        swag.count = count;
        swag.mean = mean;
        swag.sq_mean = sq_mean;
        swag.columns = deviations.len();
        Ok(swag)
    }

    fn check_collected(&self) -> Result<()> {
        if self.count == 0 {
            Err(Error::NoSnapshots)
        } else {
            Ok(())
        }
    }

    /// One parameter vector drawn as `kind` says, in `f32`. `Swa` draws nothing, `Diagonal` draws
    /// `z₁` (`d` values), `Full` draws `z₁` then `z₂` (`K` values; none if `K = 1`), all from `rng`
    /// (see the module docs for the formulas).
    pub fn sample(&self, kind: SwagSample, rng: &mut ChaCha8Rng) -> Result<Vec<f32>> {
        self.check_collected()?;
        match kind {
            SwagSample::Swa => Ok(self.mean.iter().map(|&m| m as f32).collect()),
            SwagSample::Diagonal => {
                let z1 = standard_normals(rng, self.dim);
                self.sample_diagonal_with(&z1)
            }
            SwagSample::Full => {
                let z1 = standard_normals(rng, self.dim);
                let k = if self.columns > 1 { self.columns } else { 0 };
                let z2 = standard_normals(rng, k);
                self.sample_full_with(&z1, &z2)
            }
        }
    }

    /// SWAG-Diagonal for a given `z₁` (`d` values): `θ̄ + √Σ_diag ∘ z₁`, in `f64`, rounded to `f32`.
    pub fn sample_diagonal_with(&self, z1: &[f64]) -> Result<Vec<f32>> {
        self.check_collected()?;
        self.check_normals(z1, self.dim, "SWAG z1")?;
        Ok(self
            .mean
            .iter()
            .zip(&self.sq_mean)
            .zip(z1)
            .map(|((m, s), z)| (m + (s - m * m).max(0.0).sqrt() * z) as f32)
            .collect())
    }

    /// SWAG for given `z₁` (`d` values) and `z₂` (`K` values, or none when `K = 1`):
    /// `θ̄ + (1/√2) √Σ_diag ∘ z₁ + (1/√(2 (K − 1))) Σ_k D[:, k] z₂[k]`, the sum over `k` oldest
    /// column first, all in `f64`, rounded to `f32`.
    pub fn sample_full_with(&self, z1: &[f64], z2: &[f64]) -> Result<Vec<f32>> {
        self.check_collected()?;
        self.check_normals(z1, self.dim, "SWAG z1")?;
        let k = if self.columns > 1 { self.columns } else { 0 };
        self.check_normals(z2, k, "SWAG z2 (one per deviation column; none when K = 1)")?;
        let mut low_rank = vec![0.0f64; self.dim];
        for (c, &z) in z2.iter().enumerate() {
            let slot = (self.oldest + c) % self.rank;
            let column = &self.deviations[slot * self.dim..(slot + 1) * self.dim];
            for (acc, &dv) in low_rank.iter_mut().zip(column) {
                *acc += f64::from(dv) * z;
            }
        }
        let diag_scale = std::f64::consts::FRAC_1_SQRT_2;
        let low_rank_scale = if k > 1 {
            1.0 / (2.0 * (k - 1) as f64).sqrt()
        } else {
            0.0
        };
        Ok(self
            .mean
            .iter()
            .zip(&self.sq_mean)
            .zip(z1)
            .zip(&low_rank)
            .map(|(((m, s), z), lr)| {
                (m + diag_scale * (s - m * m).max(0.0).sqrt() * z + low_rank_scale * lr) as f32
            })
            .collect())
    }

    fn check_normals(&self, z: &[f64], expected: usize, what: &'static str) -> Result<()> {
        if z.len() != expected {
            return Err(Error::Shape {
                what,
                expected,
                got: z.len(),
            });
        }
        check_finite(what, z)
    }
}
