//! Split-conformal prediction sets over plain slices, and how they compare with the crowd.
//!
//! The score of a face with majority label y is s = 1 − p̄\[y\]. On m calibration scores, q̂ is
//! the ⌈(m+1)(1−α)⌉-th smallest ([`quantile_rank`]); when that rank exceeds m, q̂ = +∞ and every
//! set holds every class. The set of a test face is C = {k : 1 − p̄\[k\] ≤ q̂}. With exchangeable
//! calibration and test faces, P(y ∈ C) ≥ 1 − α.
//!
//! Sets are bit masks over at most 8 classes (bit k = class k), like the crowd's label set M,
//! the FER+ `multi_target` classes.

use std::cmp::Ordering;

use crate::crowd::spearman;
use crate::mean_or_nan as mean;

/// The 1-based rank ⌈(m+1)(1−α)⌉ of q̂ among m sorted calibration scores; None when it exceeds m
/// (q̂ = +∞). The product is rounded to 1e-9 before the ceiling so that, e.g., (9+1)·0.9 is 9.
pub fn quantile_rank(m: usize, alpha: f64) -> Option<usize> {
    let raw = (m as f64 + 1.0) * (1.0 - alpha);
    let rank = ((raw * 1e9).round() / 1e9).ceil().max(1.0) as usize;
    (rank <= m).then_some(rank)
}

/// q̂ of `scores` at level `alpha` (+∞ when the rank exceeds the number of scores).
pub fn qhat(scores: &[f64], alpha: f64) -> f64 {
    let Some(rank) = quantile_rank(scores.len(), alpha) else {
        return f64::INFINITY;
    };
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
    sorted[rank - 1]
}

/// The conformal score of a face: 1 − p\[y\], in f64.
pub fn score(p: &[f32], y: usize) -> f64 {
    1.0 - f64::from(p[y])
}

/// The prediction set {k : 1 − p\[k\] ≤ q̂} as a bit mask (bit k = class k; the boundary is
/// inclusive, and q̂ = +∞ gives every class). The one set rule of analyze's tables, `ferbayes
/// predict` and explore; [`set_classes`] lists its classes.
pub fn prediction_set(p: &[f32], qhat: f64) -> u8 {
    p.iter()
        .enumerate()
        .take(8)
        .filter(|(_, v)| 1.0 - f64::from(**v) <= qhat)
        .fold(0u8, |mask, (k, _)| mask | (1 << k))
}

/// The classes of a set's bit mask ([`prediction_set`]), in order.
pub fn set_classes(mask: u8) -> impl Iterator<Item = usize> {
    (0..8).filter(move |k| mask & (1 << k) != 0)
}

/// One test face as the set metrics see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetFace {
    /// The prediction set C.
    pub set: u8,
    /// The majority label y.
    pub label: usize,
    /// The crowd's label set M (0 when FER+ has none).
    pub crowd_set: u8,
    /// The crowd's vote entropy (NaN when unknown).
    pub crowd_entropy: f64,
}

/// The set metrics over test faces (each NaN where undefined).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetMetrics {
    /// Fraction of faces with y ∈ C.
    pub coverage: f64,
    /// Mean |C|.
    pub set_size: f64,
    /// Mean |C ∩ M| / |M| over the faces with a non-empty M.
    pub crowd_recall: f64,
    /// Mean |C ∩ M| / |C| over the faces with a non-empty C (and a non-empty M).
    pub crowd_precision: f64,
    /// Fraction of the faces with a non-empty M whose C equals M.
    pub crowd_exact: f64,
    /// Spearman correlation of |C| with the crowd entropy (faces with a known entropy).
    pub size_entropy_spearman: f64,
}

impl SetMetrics {
    /// The values in `ferbayes_core::schema::CONFORMAL_METRICS` order.
    pub fn to_array(&self) -> [f64; 6] {
        [
            self.coverage,
            self.set_size,
            self.crowd_recall,
            self.crowd_precision,
            self.crowd_exact,
            self.size_entropy_spearman,
        ]
    }
}

/// [`SetMetrics`] of `faces`.
pub fn set_metrics(faces: &[SetFace]) -> SetMetrics {
    let size = |m: u8| f64::from(m.count_ones());
    let covered = faces.iter().filter(|f| f.set & (1 << f.label) != 0).count();
    let sizes: f64 = faces.iter().map(|f| size(f.set)).sum();
    let with_m: Vec<&SetFace> = faces.iter().filter(|f| f.crowd_set != 0).collect();
    let recall: f64 = with_m
        .iter()
        .map(|f| size(f.set & f.crowd_set) / size(f.crowd_set))
        .sum();
    let with_c: Vec<&&SetFace> = with_m.iter().filter(|f| f.set != 0).collect();
    let precision: f64 = with_c
        .iter()
        .map(|f| size(f.set & f.crowd_set) / size(f.set))
        .sum();
    let exact = with_m.iter().filter(|f| f.set == f.crowd_set).count();
    let (x, y): (Vec<f64>, Vec<f64>) = faces
        .iter()
        .filter(|f| !f.crowd_entropy.is_nan())
        .map(|f| (size(f.set), f.crowd_entropy))
        .unzip();
    SetMetrics {
        coverage: mean(covered as f64, faces.len()),
        set_size: mean(sizes, faces.len()),
        crowd_recall: mean(recall, with_m.len()),
        crowd_precision: mean(precision, with_c.len()),
        crowd_exact: mean(exact as f64, with_m.len()),
        size_entropy_spearman: spearman(&x, &y),
    }
}
