//! Last-layer Laplace approximation (Daxberger et al. 2021, "Laplace Redux").
//!
//! Only the network's linear last layer `logits = W φ + b` (`K` classes, `F` features) is
//! treated as random; the features `φ` are those of the trained network in eval mode (dropout
//! off), fixed. The parameters are `θ = [W | b]` row-major, dimension `D = K (F + 1)` (see
//! [`LastLayer`] for the order); `φ̃ = [φ, 1]` is a face's augmented feature row of length
//! `F̃ = F + 1`.
//!
//! 1. [`Ggn::new`]: the generalised Gauss–Newton matrix of the softmax cross-entropy summed over
//!    the `N` training faces, `G = Σ_n J_nᵀ Λ_n J_n`, `Λ_n = diag(p_n) − p_n p_nᵀ`, `p_n` the
//!    softmax of the MAP logits, `J_n = I_K ⊗ φ̃_nᵀ` (`K × D`) the Jacobian of the logits.
//! 2. [`select_prior_precision`]: the prior precision `δ` (prior `N(0, δ⁻¹ I)`) minimising the
//!    valid negative log-likelihood of the probit predictive over a log-spaced grid
//!    ([`default_prior_grid`]).
//! 3. [`LaplacePosterior::new`]: the posterior `N(θ_MAP, P⁻¹)`, `P = G + δ I`, `θ_MAP` the trained
//!    weights, with the Cholesky factor `P = L Lᵀ`. `G` alone is singular (adding one vector to
//!    every class's `[w_k, b_k]` leaves the softmax unchanged, so `G` has at least `F + 1` zero
//!    eigenvalues); `δ > 0` makes `P` positive definite.
//! 4. Predictives: [`LaplacePosterior::probit`] (one deterministic prediction per face) and
//!    [`LaplacePosterior::sample`] (`T` last layers; [`crate::sampled_softmax`] applies them).
//!
//! # Costs (K = 8, F = 256, D = 2,056; N = 28,000 training and 3,600 valid faces)
//!
//! * GGN: `K (K + 1) / 2 = 36` products `Φ̃ᵀ diag(Λ_cc′) Φ̃` of `N × F̃` matrices,
//!   `36 N F̃² ≈ 6.7·10¹⁰` multiply-adds; memory `D² · 8 B = 34 MB` for `G` plus one chunk of
//!   2,048 faces (`2,048 × D` values, 34 MB).
//! * Prior search: one symmetric eigendecomposition of `G` (`O(D³)`), then per class the
//!   projections of the valid features on the eigenvectors, `K N_valid F̃ D ≈ 1.5·10¹⁰`
//!   multiply-adds, and `K N_valid D` per grid point; every `δ` shares the eigendecomposition.
//! * Posterior: one Cholesky factorisation (`D³/3`) and the inverse from it (`≈ D³`), of which
//!   only the `K` diagonal `F̃ × F̃` blocks are kept for the probit predictive.
//! * Probit predictive: `K F̃²` multiply-adds per face. Samples: one triangular solve with `T`
//!   right-hand sides, `D² T`.
//!
//! Measured with `examples/laplace_sizes.rs` (release build, the shared 2-core AMD EPYC
//! development machine at a load average of 7 to 9, so rough): GGN 3.8 to 4.9 s, prior search
//! over the 33 default grid points (eigendecomposition included) 2.6 to 3.3 s, posterior 0.3 to
//! 0.4 s, probit predictive of 3,600 faces 0.1 to 0.2 s, 30 sampled layers with their softmax
//! 0.2 to 0.3 s; about 310 MB resident.

use std::time::Instant;

use faer::Mat;
use rand_chacha::ChaCha8Rng;

use crate::layer::softmax_in_place;
use crate::{Error, LastLayer, Result, linalg, standard_normals};

/// Faces per chunk of the GGN's and the predictives' matrix products (bounds their memory).
const CHUNK: usize = 2048;

/// The floor of a probability inside a log: `−log max(p, 1e-12)`, as the project's NLL metric.
pub const NLL_FLOOR: f64 = 1e-12;

/// The probit (mean-field) approximation of the expected softmax under Gaussian logits with
/// means `mu` and variances `var` (one face, `K` values each), into `out`:
/// `out = softmax(μ_k / sqrt(1 + π/8 · v_k))` (Lu et al. 2020, as in Daxberger et al. 2021, with
/// the diagonal of the logit covariance).
pub fn probit_into(mu: &[f64], var: &[f64], out: &mut [f64]) {
    for ((o, &m), &v) in out.iter_mut().zip(mu).zip(var) {
        *o = m / (1.0 + std::f64::consts::PI / 8.0 * v).sqrt();
    }
    softmax_in_place(out);
}

/// The augmented features `Φ̃ = [Φ, 1]` of faces `start..start + rows` as a column-major `f64`
/// matrix (`rows × (F + 1)`).
fn augmented(features: &[f32], f: usize, start: usize, rows: usize) -> Mat<f64> {
    let chunk = &features[start * f..(start + rows) * f];
    Mat::from_fn(rows, f + 1, |r, j| {
        if j < f {
            f64::from(chunk[r * f + j])
        } else {
            1.0
        }
    })
}

/// The generalised Gauss–Newton matrix of the softmax cross-entropy of a linear last layer, summed
/// over the training faces:
///
/// `G = Σ_n J_nᵀ (diag(p_n) − p_n p_nᵀ) J_n`,
///
/// `p_n = softmax(W φ_n + b)` at the MAP weights, `J_n = I_K ⊗ φ̃_nᵀ`. In the parameter order of
/// [`LastLayer`] (`[W | b]` row-major), the `F̃ × F̃` block of classes `(c, c′)` is
/// `Φ̃ᵀ diag(Λ_cc′) Φ̃` with `Λ_cc′[n] = p_nc (1[c = c′] − p_nc′)` and `Φ̃ = [Φ, 1]`. It is the sum
/// over faces, not the mean (the log-likelihood of the training set is a sum).
#[derive(Debug, Clone)]
pub struct Ggn {
    classes: usize,
    features: usize,
    faces: usize,
    matrix: Mat<f64>,
}

impl Ggn {
    /// `G` of `layer` (the MAP) over the training `features` (`N × F` row-major).
    ///
    /// Computed blockwise: for each chunk of 2,048 faces and each class `c`, one matrix product
    /// `Φ̃ᵀ [diag(Λ_cc) Φ̃ | diag(Λ_c,c+1) Φ̃ | … | diag(Λ_c,K−1) Φ̃]` gives the blocks `(c, c′ ≥ c)`,
    /// accumulated over the chunks in order (never per face with dense outer products). Each
    /// block is then made exactly symmetric (`(M + Mᵀ)/2`: the product rounds `M[a, b]` and
    /// `M[b, a]` differently) and copied to `(c′, c)`, so `G` is exactly symmetric.
    pub fn new(layer: &LastLayer, features: &[f32]) -> Result<Self> {
        let started = Instant::now();
        let n = layer.faces("training features", features)?;
        if n == 0 {
            return Err(Error::Empty {
                what: "training faces",
            });
        }
        let (k, f) = (layer.classes(), layer.features());
        let ft = f + 1;
        let d = k * ft;
        let mut g = Mat::<f64>::zeros(d, d);
        let mut probs = vec![0.0f64; CHUNK * k];
        for start in (0..n).step_by(CHUNK) {
            let rows = CHUNK.min(n - start);
            let phi = augmented(features, f, start, rows);
            for (r, p) in probs.chunks_exact_mut(k).take(rows).enumerate() {
                let face = start + r;
                layer.logits_into(&features[face * f..(face + 1) * f], p);
                softmax_in_place(p);
            }
            for c in 0..k {
                let width = (k - c) * ft;
                let mut weighted = Mat::<f64>::zeros(rows, width);
                for c2 in c..k {
                    let lambda: Vec<f64> = (0..rows)
                        .map(|r| {
                            let p = &probs[r * k..(r + 1) * k];
                            p[c] * (f64::from(u8::from(c == c2)) - p[c2])
                        })
                        .collect();
                    for j in 0..ft {
                        let col = weighted.col_as_slice_mut((c2 - c) * ft + j);
                        for ((w, &l), &x) in col.iter_mut().zip(&lambda).zip(phi.col_as_slice(j)) {
                            *w = l * x;
                        }
                    }
                }
                linalg::matmul(
                    g.submatrix_mut(c * ft, c * ft, ft, width),
                    true,
                    phi.transpose(),
                    weighted.as_ref(),
                );
            }
        }
        for c in 0..k {
            for c2 in c..k {
                let (r0, c0) = (c * ft, c2 * ft);
                for a in 0..ft {
                    for b in a + 1..ft {
                        let v = 0.5 * (g[(r0 + a, c0 + b)] + g[(r0 + b, c0 + a)]);
                        g[(r0 + a, c0 + b)] = v;
                        g[(r0 + b, c0 + a)] = v;
                    }
                }
                if c2 != c {
                    for a in 0..ft {
                        for b in 0..ft {
                            g[(c0 + a, r0 + b)] = g[(r0 + a, c0 + b)];
                        }
                    }
                }
            }
        }
        tracing::debug!(
            faces = n,
            dim = d,
            seconds = started.elapsed().as_secs_f64(),
            "last-layer GGN"
        );
        Ok(Self {
            classes: k,
            features: f,
            faces: n,
            matrix: g,
        })
    }

    /// The number of classes `K`.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The number of features `F`.
    pub fn features(&self) -> usize {
        self.features
    }

    /// The number of training faces summed over.
    pub fn faces(&self) -> usize {
        self.faces
    }

    /// The dimension `D = K (F + 1)`.
    pub fn dim(&self) -> usize {
        self.matrix.nrows()
    }

    /// `G[i, j]` (`i, j < D`, in [`LastLayer`]'s parameter order).
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.matrix[(i, j)]
    }

    /// `G` as a `D × D` row-major vector.
    pub fn to_row_major(&self) -> Vec<f64> {
        let d = self.dim();
        (0..d * d).map(|x| self.matrix[(x / d, x % d)]).collect()
    }

    fn check_layer(&self, layer: &LastLayer) -> Result<()> {
        if layer.classes() != self.classes || layer.features() != self.features {
            return Err(Error::Shape {
                what: "last layer (against the GGN's classes × features)",
                expected: self.classes * self.features,
                got: layer.classes() * layer.features(),
            });
        }
        Ok(())
    }
}

/// The default prior-precision grid: `δ = 10^(−4 + i/4)`, `i = 0..=32`, i.e. 33 values from
/// `1e-4` to `1e4`, four per decade, ascending.
pub fn default_prior_grid() -> Vec<f64> {
    (0..=32)
        .map(|i| 10f64.powf(-4.0 + f64::from(i) / 4.0))
        .collect()
}

/// The outcome of [`select_prior_precision`].
#[derive(Debug, Clone, PartialEq)]
pub struct PriorSearch {
    /// The grid searched, as given.
    pub grid: Vec<f64>,
    /// The valid NLL of the probit predictive at each grid point.
    pub nll: Vec<f64>,
    /// The index of the chosen grid point.
    pub best: usize,
}

impl PriorSearch {
    /// The chosen prior precision `δ = grid[best]`.
    pub fn precision(&self) -> f64 {
        self.grid[self.best]
    }
}

fn check_grid(grid: &[f64]) -> Result<()> {
    if grid.is_empty() {
        return Err(Error::Empty {
            what: "prior-precision grid",
        });
    }
    match grid.iter().find(|d| !(d.is_finite() && **d > 0.0)) {
        Some(&d) => Err(Error::PriorPrecision(d)),
        None => Ok(()),
    }
}

fn check_labels(labels: &[u8], faces: usize, classes: usize) -> Result<()> {
    if labels.len() != faces {
        return Err(Error::Shape {
            what: "valid labels (one per face)",
            expected: faces,
            got: labels.len(),
        });
    }
    match labels.iter().position(|&y| usize::from(y) >= classes) {
        Some(index) => Err(Error::Label {
            index,
            label: usize::from(labels[index]),
            classes,
        }),
        None => Ok(()),
    }
}

/// Chooses the prior precision `δ` of the last-layer Laplace posterior on the valid split.
///
/// For every `δ` in `grid` (all positive; [`default_prior_grid`] is the usual one) this
/// computes the valid NLL of the probit predictive of the posterior `N(θ_MAP, (G + δ I)⁻¹)`,
///
/// `NLL(δ) = −(1/N) Σ_n log max(p_n[y_n], 1e-12)`, `p_n` as in [`LaplacePosterior::probit`],
///
/// and picks the `δ` with the lowest NLL; on a tie, the smaller `δ`. `features` are the valid
/// faces' (`N × F` row-major), `labels` their classes (`0..K`; faces without a label left out by
/// the caller), `layer` the MAP last layer.
///
/// All grid points share one eigendecomposition `G = U diag(λ) Uᵀ` (eigenvalues below zero from
/// rounding clamped to zero): the logit variance of class `c` is
/// `v_nc = Σ_i (U_cᵀ φ̃_n)_i² / (λ_i + δ)`, `U_c` the rows of class `c`'s block, so each extra
/// grid point costs `K N D` multiply-adds.
pub fn select_prior_precision(
    ggn: &Ggn,
    layer: &LastLayer,
    features: &[f32],
    labels: &[u8],
    grid: &[f64],
) -> Result<PriorSearch> {
    ggn.check_layer(layer)?;
    check_grid(grid)?;
    let n = layer.faces("valid features", features)?;
    if n == 0 {
        return Err(Error::Empty {
            what: "valid faces",
        });
    }
    let (k, f) = (ggn.classes, ggn.features);
    check_labels(labels, n, k)?;
    let ft = f + 1;
    let d = ggn.dim();
    let started = Instant::now();
    let (lambda, u) = linalg::symmetric_eigen(ggn.matrix.as_ref()).ok_or(Error::Eigen)?;
    tracing::debug!(
        dim = d,
        seconds = started.elapsed().as_secs_f64(),
        "GGN eigendecomposition"
    );
    let gn = grid.len();
    // R[i, g] = 1 / (max(λ_i, 0) + δ_g).
    let r = Mat::from_fn(d, gn, |i, g| 1.0 / (lambda[i].max(0.0) + grid[g]));
    let mut sums = vec![0.0f64; gn];
    let (mut mu, mut var, mut p) = (vec![0.0; k], vec![0.0; k], vec![0.0; k]);
    for start in (0..n).step_by(CHUNK) {
        let rows = CHUNK.min(n - start);
        let phi = augmented(features, f, start, rows);
        // v[c][(r, g)]: the variance of class c's logit of face start + r at δ_g.
        let mut v = Vec::with_capacity(k);
        let mut proj = Mat::<f64>::zeros(rows, d);
        for c in 0..k {
            linalg::matmul(
                proj.as_mut(),
                false,
                phi.as_ref(),
                u.as_ref().submatrix(c * ft, 0, ft, d),
            );
            for j in 0..d {
                for x in proj.col_as_slice_mut(j) {
                    *x *= *x;
                }
            }
            let mut vc = Mat::<f64>::zeros(rows, gn);
            linalg::matmul(vc.as_mut(), false, proj.as_ref(), r.as_ref());
            v.push(vc);
        }
        for row in 0..rows {
            let face = start + row;
            layer.logits_into(&features[face * f..(face + 1) * f], &mut mu);
            let y = usize::from(labels[face]);
            for (g, sum) in sums.iter_mut().enumerate() {
                for (c, vc) in v.iter().enumerate() {
                    var[c] = vc[(row, g)];
                }
                probit_into(&mu, &var, &mut p);
                *sum -= p[y].max(NLL_FLOOR).ln();
            }
        }
    }
    let nll: Vec<f64> = sums.iter().map(|s| s / n as f64).collect();
    let mut best = 0;
    for g in 1..gn {
        if nll[g] < nll[best] || (nll[g] == nll[best] && grid[g] < grid[best]) {
            best = g;
        }
    }
    tracing::debug!(
        faces = n,
        grid = gn,
        prior_precision = grid[best],
        nll = nll[best],
        seconds = started.elapsed().as_secs_f64(),
        "prior-precision search"
    );
    Ok(PriorSearch {
        grid: grid.to_vec(),
        nll,
        best,
    })
}

/// The last-layer Laplace posterior `N(θ_MAP, P⁻¹)`, `P = G + δ I`, with `P`'s lower Cholesky
/// factor `L` (`P = L Lᵀ`) and the `K` diagonal `F̃ × F̃` blocks `Σ_cc` of `Σ = P⁻¹` (what the
/// probit predictive needs).
#[derive(Debug, Clone)]
pub struct LaplacePosterior {
    map: LastLayer,
    theta_map: Vec<f64>,
    prior_precision: f64,
    cholesky: Mat<f64>,
    blocks: Vec<Mat<f64>>,
}

impl LaplacePosterior {
    /// The posterior of the MAP last layer `map` with GGN `ggn` and prior precision `δ`
    /// (`prior_precision`, positive). Fails if `G + δ I` is not numerically positive definite.
    pub fn new(ggn: &Ggn, map: &LastLayer, prior_precision: f64) -> Result<Self> {
        ggn.check_layer(map)?;
        check_grid(&[prior_precision])?;
        let started = Instant::now();
        let d = ggn.dim();
        let ft = ggn.features + 1;
        let mut p = ggn.matrix.clone();
        for i in 0..d {
            p[(i, i)] += prior_precision;
        }
        let cholesky =
            linalg::cholesky(p.as_ref()).map_err(|index| Error::NotPositiveDefinite {
                delta: prior_precision,
                index,
            })?;
        let sigma = linalg::cholesky_inverse(cholesky.as_ref());
        let blocks = (0..ggn.classes)
            .map(|c| sigma.as_ref().submatrix(c * ft, c * ft, ft, ft).to_owned())
            .collect();
        tracing::debug!(
            dim = d,
            seconds = started.elapsed().as_secs_f64(),
            "Laplace posterior (Cholesky and inverse)"
        );
        Ok(Self {
            map: map.clone(),
            theta_map: map.theta(),
            prior_precision,
            cholesky,
            blocks,
        })
    }

    /// The MAP last layer (the posterior mean).
    pub fn map(&self) -> &LastLayer {
        &self.map
    }

    /// `δ`.
    pub fn prior_precision(&self) -> f64 {
        self.prior_precision
    }

    /// The dimension `D = K (F + 1)`.
    pub fn dim(&self) -> usize {
        self.theta_map.len()
    }

    /// `L`, the lower Cholesky factor of `P = G + δ I`, `D × D` row-major (upper triangle zero).
    pub fn cholesky_factor(&self) -> Vec<f64> {
        let d = self.dim();
        (0..d * d).map(|x| self.cholesky[(x / d, x % d)]).collect()
    }

    /// The posterior covariance `Σ = P⁻¹ = L⁻ᵀ L⁻¹`, `D × D` row-major (recomputed, `O(D³)`).
    pub fn covariance(&self) -> Vec<f64> {
        let d = self.dim();
        let sigma = linalg::cholesky_inverse(self.cholesky.as_ref());
        (0..d * d).map(|x| sigma[(x / d, x % d)]).collect()
    }

    /// The variance of each face's logits under the posterior, `N × K` row-major:
    /// `v_nc = (J_n Σ J_nᵀ)_cc = φ̃_nᵀ Σ_cc φ̃_n` (the diagonal of the logit covariance).
    pub fn logit_variances(&self, features: &[f32]) -> Result<Vec<f64>> {
        let n = self.map.faces("features", features)?;
        let (k, f) = (self.map.classes(), self.map.features());
        let ft = f + 1;
        let mut out = vec![0.0; n * k];
        for start in (0..n).step_by(CHUNK) {
            let rows = CHUNK.min(n - start);
            let phi = augmented(features, f, start, rows);
            let mut y = Mat::<f64>::zeros(rows, ft);
            for (c, block) in self.blocks.iter().enumerate() {
                linalg::matmul(y.as_mut(), false, phi.as_ref(), block.as_ref());
                for r in 0..rows {
                    let mut s = 0.0;
                    for j in 0..ft {
                        s += y[(r, j)] * phi[(r, j)];
                    }
                    out[(start + r) * k + c] = s;
                }
            }
        }
        Ok(out)
    }

    /// The probit predictive, one deterministic prediction per face (`N × K` row-major, `f32`):
    /// `p_n = softmax(μ_n / sqrt(1 + π/8 · v_n))` elementwise, `μ_n = W φ_n + b` the MAP logits,
    /// `v_n` the [`logit_variances`](Self::logit_variances) (see [`probit_into`]).
    pub fn probit(&self, features: &[f32]) -> Result<Vec<f32>> {
        let var = self.logit_variances(features)?;
        let mu = self.map.logits(features)?;
        let k = self.map.classes();
        let mut p = vec![0.0; k];
        let mut out = Vec::with_capacity(mu.len());
        for (m, v) in mu.chunks_exact(k).zip(var.chunks_exact(k)) {
            probit_into(m, v, &mut p);
            out.extend(p.iter().map(|&x| x as f32));
        }
        Ok(out)
    }

    /// The last layers `θ_t = θ_MAP + L⁻ᵀ z_t` (so `θ_t ~ N(θ_MAP, P⁻¹)`) for given standard
    /// normal vectors: `z` holds `T` vectors of `D` values one after the other (`z_t` at
    /// `z[t D..(t + 1) D]`). `θ_t` is computed in `f64` (one triangular solve with the `T`
    /// vectors as columns) and rounded to `f32`.
    pub fn perturb(&self, z: &[f64]) -> Result<Vec<LastLayer>> {
        let d = self.dim();
        let t = crate::rows_of("standard normal draws", z.len(), d)?;
        crate::check_finite("standard normal draws", z)?;
        let mut x = Mat::from_fn(d, t, |i, s| z[s * d + i]);
        linalg::solve_lower_transpose(self.cholesky.as_ref(), x.as_mut());
        (0..t)
            .map(|s| {
                let theta: Vec<f64> = x
                    .col_as_slice(s)
                    .iter()
                    .zip(&self.theta_map)
                    .map(|(dx, m)| m + dx)
                    .collect();
                LastLayer::from_theta(self.map.classes(), self.map.features(), &theta)
            })
            .collect()
    }

    /// `T` last layers drawn from the posterior: [`perturb`](Self::perturb) with
    /// `z = standard_normals(rng, T D)`, i.e. `z_0`'s `D` values first, in parameter order.
    pub fn sample(&self, rng: &mut ChaCha8Rng, samples: usize) -> Result<Vec<LastLayer>> {
        if samples == 0 {
            return Err(Error::Empty { what: "samples" });
        }
        let z = standard_normals(rng, samples * self.dim());
        self.perturb(&z)
    }
}
