//! The linear last layer `logits = W φ + b` and the softmax over its logits.

use crate::{Error, Result, check_finite, rows_of};

/// A linear last layer with `K` classes and `F` features: `logits = W φ + b`.
///
/// `W` is `K × F` row-major (row `k` holds class `k`'s weights, as candle's `Linear` stores its
/// `weight`), `b` has `K` values; both `f32` as the network stores them.
///
/// # Parameter order
///
/// The last-layer parameter vector `θ` (dimension `K (F + 1)`) used by [`crate::laplace`] is the
/// augmented matrix `[W | b]` row-major, i.e. per class `[w_k, b_k]`:
/// `θ[k (F + 1) + j] = W[k, j]` for `j < F` and `θ[k (F + 1) + F] = b[k]`. The Jacobian of the
/// logits is then `J_n = I_K ⊗ φ̃_nᵀ` with `φ̃_n = [φ_n, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LastLayer {
    classes: usize,
    features: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl LastLayer {
    /// A layer from its weights (`classes × features`, row-major) and biases (`classes`).
    /// Refuses empty shapes, wrong lengths and non-finite values.
    pub fn new(classes: usize, features: usize, weight: Vec<f32>, bias: Vec<f32>) -> Result<Self> {
        if classes == 0 {
            return Err(Error::Empty { what: "classes" });
        }
        if features == 0 {
            return Err(Error::Empty { what: "features" });
        }
        if weight.len() != classes * features {
            return Err(Error::Shape {
                what: "last-layer weight",
                expected: classes * features,
                got: weight.len(),
            });
        }
        if bias.len() != classes {
            return Err(Error::Shape {
                what: "last-layer bias",
                expected: classes,
                got: bias.len(),
            });
        }
        check_finite("last-layer weight", &weight)?;
        check_finite("last-layer bias", &bias)?;
        Ok(Self {
            classes,
            features,
            weight,
            bias,
        })
    }

    /// A layer from a parameter vector in the order of [`LastLayer`]'s docs (`[W | b]` row-major),
    /// each value rounded to `f32`.
    pub fn from_theta(classes: usize, features: usize, theta: &[f64]) -> Result<Self> {
        let width = features + 1;
        if theta.len() != classes * width {
            return Err(Error::Shape {
                what: "last-layer parameter vector",
                expected: classes * width,
                got: theta.len(),
            });
        }
        let mut weight = Vec::with_capacity(classes * features);
        let mut bias = Vec::with_capacity(classes);
        for row in theta.chunks_exact(width) {
            weight.extend(row[..features].iter().map(|&v| v as f32));
            bias.push(row[features] as f32);
        }
        Self::new(classes, features, weight, bias)
    }

    /// The number of classes `K`.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The number of features `F`.
    pub fn features(&self) -> usize {
        self.features
    }

    /// `W`, `K × F` row-major.
    pub fn weight(&self) -> &[f32] {
        &self.weight
    }

    /// `b`, `K` values.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// The dimension of `θ`, `K (F + 1)`.
    pub fn dim(&self) -> usize {
        self.classes * (self.features + 1)
    }

    /// `θ = [W | b]` row-major (see the type's docs), widened to `f64`.
    pub fn theta(&self) -> Vec<f64> {
        let mut theta = Vec::with_capacity(self.dim());
        for (row, &b) in self.weight.chunks_exact(self.features).zip(&self.bias) {
            theta.extend(row.iter().map(|&v| f64::from(v)));
            theta.push(f64::from(b));
        }
        theta
    }

    /// The number of faces in a row-major `N × F` feature slice, checking its length and values.
    pub(crate) fn faces(&self, what: &'static str, features: &[f32]) -> Result<usize> {
        let n = rows_of(what, features.len(), self.features)?;
        check_finite(what, features)?;
        Ok(n)
    }

    /// The logits `W φ_n + b` of each face (`N × K` row-major, `f64`): for each class, the sum
    /// over `j` in increasing order of `W[k, j] φ_n[j]` in `f64`, plus `b[k]`.
    pub fn logits(&self, features: &[f32]) -> Result<Vec<f64>> {
        let n = self.faces("features", features)?;
        let mut out = vec![0.0; n * self.classes];
        for (phi, logits) in features
            .chunks_exact(self.features)
            .zip(out.chunks_exact_mut(self.classes))
        {
            self.logits_into(phi, logits);
        }
        Ok(out)
    }

    /// One face's logits into `out` (`K` values); `phi` has `F` values.
    pub(crate) fn logits_into(&self, phi: &[f32], out: &mut [f64]) {
        for ((o, row), &b) in out
            .iter_mut()
            .zip(self.weight.chunks_exact(self.features))
            .zip(&self.bias)
        {
            let mut s = 0.0f64;
            for (&w, &x) in row.iter().zip(phi) {
                s += f64::from(w) * f64::from(x);
            }
            *o = s + f64::from(b);
        }
    }

    /// The softmax of each face's logits (`N × K` row-major, computed in `f64`, rounded to `f32`).
    pub fn softmax(&self, features: &[f32]) -> Result<Vec<f32>> {
        let mut logits = self.logits(features)?;
        for row in logits.chunks_exact_mut(self.classes) {
            softmax_in_place(row);
        }
        Ok(logits.iter().map(|&p| p as f32).collect())
    }
}

/// Replaces `x` by `softmax(x)`: `exp(x_k − max x) / Σ_j exp(x_j − max x)`.
pub fn softmax_in_place(x: &mut [f64]) {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// The softmax rows of every face under every layer in `layers` (for instance the samples of
/// [`crate::laplace::LaplacePosterior::sample`]), as `N × T × K` row-major `f32`: face `n`,
/// sample `t` at `[(n T + t) K ..][..K]`, the order of infer's one row per (face, sample).
/// Each row is [`LastLayer::softmax`] of that face under layer `t`. The layers must share one
/// shape, that of the features.
pub fn sampled_softmax(features: &[f32], layers: &[LastLayer]) -> Result<Vec<f32>> {
    let Some(first) = layers.first() else {
        return Err(Error::Empty {
            what: "sampled layers",
        });
    };
    let (k, f) = (first.classes, first.features);
    if let Some(other) = layers.iter().find(|l| l.classes != k || l.features != f) {
        return Err(Error::Shape {
            what: "sampled layer weight",
            expected: k * f,
            got: other.classes * other.features,
        });
    }
    let n = first.faces("features", features)?;
    let t = layers.len();
    let mut out = vec![0.0f32; n * t * k];
    let mut row = vec![0.0f64; k];
    for (phi, face) in features.chunks_exact(f).zip(out.chunks_exact_mut(t * k)) {
        for (layer, probs) in layers.iter().zip(face.chunks_exact_mut(k)) {
            layer.logits_into(phi, &mut row);
            softmax_in_place(&mut row);
            for (p, &v) in probs.iter_mut().zip(&row) {
                *p = v as f32;
            }
        }
    }
    Ok(out)
}
