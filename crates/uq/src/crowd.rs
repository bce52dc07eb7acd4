//! Agreement of a prediction with the crowd's vote distribution (Jensen–Shannon divergence in
//! bits, KL in nats, soft accuracy) and the correlations the analyses use (Pearson, Spearman with
//! average ranks, the correlation of the predictive entropy with the crowd entropy).

use std::cmp::Ordering;

use crate::predictive::entropy;
use crate::{PROB_FLOOR, mean_or_nan as mean};

/// Jensen–Shannon divergence between two distributions, base 2 (in [0, 1]):
/// ½ KL(c ‖ m) + ½ KL(p ‖ m) with m = (c + p) / 2.
pub fn jsd(c: &[f32], p: &[f32]) -> f64 {
    let half_kl = |a: f64, m: f64| {
        if a > 0.0 {
            0.5 * a * (a / m).log2()
        } else {
            0.0
        }
    };
    c.iter()
        .zip(p)
        .map(|(&c, &p)| {
            let (c, p) = (f64::from(c), f64::from(p));
            let m = 0.5 * (c + p);
            half_kl(c, m) + half_kl(p, m)
        })
        .sum()
}

/// KL(c ‖ p) in nats with p clamped at 1e-12 and 0·log 0 = 0.
pub fn kl(c: &[f32], p: &[f32]) -> f64 {
    c.iter()
        .zip(p)
        .map(|(&c, &p)| (f64::from(c), f64::from(p)))
        .filter(|&(c, _)| c > 0.0)
        .map(|(c, p)| c * (c.ln() - p.max(PROB_FLOOR).ln()))
        .sum()
}

/// Soft accuracy of one face: Σ_k min(c_k, p_k), the overlap of the two distributions.
pub fn soft_accuracy_row(c: &[f32], p: &[f32]) -> f64 {
    c.iter().zip(p).map(|(&c, &p)| f64::from(c.min(p))).sum()
}

/// Mean Jensen–Shannon divergence (bits) between the crowd and the predictions.
pub fn mean_jsd<const K: usize>(crowd: &[[f32; K]], probs: &[[f32; K]]) -> f64 {
    let sum = crowd.iter().zip(probs).map(|(c, p)| jsd(c, p)).sum();
    mean(sum, crowd.len().min(probs.len()))
}

/// Mean KL(crowd ‖ prediction) in nats.
pub fn mean_kl<const K: usize>(crowd: &[[f32; K]], probs: &[[f32; K]]) -> f64 {
    let sum = crowd.iter().zip(probs).map(|(c, p)| kl(c, p)).sum();
    mean(sum, crowd.len().min(probs.len()))
}

/// Mean soft accuracy against the crowd.
pub fn soft_accuracy<const K: usize>(crowd: &[[f32; K]], probs: &[[f32; K]]) -> f64 {
    let sum = crowd
        .iter()
        .zip(probs)
        .map(|(c, p)| soft_accuracy_row(c, p))
        .sum();
    mean(sum, crowd.len().min(probs.len()))
}

/// Pearson correlation of two equally long series; NaN when shorter than 2 or either is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let mut acc = Pearson::default();
    for (&a, &b) in x.iter().zip(y) {
        acc.push(a, b);
    }
    acc.value()
}

/// Pearson correlation between each face's predictive entropy and its crowd entropy.
pub fn entropy_corr<const K: usize>(probs: &[[f32; K]], crowd_entropy: &[f32]) -> f64 {
    let h: Vec<f64> = probs.iter().map(|p| entropy(p)).collect();
    let c: Vec<f64> = crowd_entropy.iter().map(|&v| f64::from(v)).collect();
    pearson(&h, &c)
}

/// Running sums of a Pearson correlation (two-pass accuracy is not needed at these sizes: the
/// values are entropies in [0, ln K]).
#[derive(Debug, Default, Clone, Copy)]
pub struct Pearson {
    n: usize,
    sx: f64,
    sy: f64,
    sxx: f64,
    syy: f64,
    sxy: f64,
}

impl Pearson {
    /// Adds the pair (x, y).
    pub fn push(&mut self, x: f64, y: f64) {
        self.n += 1;
        self.sx += x;
        self.sy += y;
        self.sxx += x * x;
        self.syy += y * y;
        self.sxy += x * y;
    }

    /// The correlation of the pairs so far; NaN with fewer than 2 or when either series is
    /// constant.
    pub fn value(&self) -> f64 {
        if self.n < 2 {
            return f64::NAN;
        }
        let n = self.n as f64;
        let cov = self.sxy - self.sx * self.sy / n;
        let vx = self.sxx - self.sx * self.sx / n;
        let vy = self.syy - self.sy * self.sy / n;
        if !(vx > 0.0 && vy > 0.0) {
            return f64::NAN;
        }
        (cov / (vx.sqrt() * vy.sqrt())).clamp(-1.0, 1.0)
    }
}

/// Average ranks (1-based) of `x`, ties sharing the mean of their positions.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].partial_cmp(&x[b]).unwrap_or(Ordering::Equal));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's rank correlation: the Pearson correlation of the average ranks; NaN when shorter
/// than 2 or either series is constant.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let len = x.len().min(y.len());
    pearson(&average_ranks(&x[..len]), &average_ranks(&y[..len]))
}
