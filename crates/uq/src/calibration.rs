//! Accuracy and calibration of a prediction against the majority labels and the crowd: error,
//! NLL, Brier score, reliability bins and ECE (equal-width bins, (lo, hi], [`bin_index`]),
//! classwise ECE, crowd ECE and classwise crowd ECE, and the area under the risk–coverage curve.

use std::cmp::Ordering;

use crate::predictive::predict;
use crate::{PROB_FLOOR, mean_or_nan as mean};

/// Classification error: the fraction of faces whose predicted class is not the label.
pub fn error<const K: usize>(probs: &[[f32; K]], labels: &[u8]) -> f64 {
    let wrong = probs
        .iter()
        .zip(labels)
        .filter(|(p, y)| predict(&p[..]).0 != usize::from(**y))
        .count();
    mean(wrong as f64, probs.len().min(labels.len()))
}

/// Negative log-likelihood of the labels: −mean log max(p\[y\], 1e-12).
pub fn nll<const K: usize>(probs: &[[f32; K]], labels: &[u8]) -> f64 {
    let sum: f64 = probs
        .iter()
        .zip(labels)
        .map(|(p, &y)| -f64::from(p[usize::from(y)]).max(PROB_FLOOR).ln())
        .sum();
    mean(sum, probs.len().min(labels.len()))
}

/// Brier score: mean over faces of Σ_k (p_k − onehot(y)_k)².
pub fn brier<const K: usize>(probs: &[[f32; K]], labels: &[u8]) -> f64 {
    let sum: f64 = probs
        .iter()
        .zip(labels)
        .map(|(p, &y)| brier_row(p, usize::from(y)))
        .sum();
    mean(sum, probs.len().min(labels.len()))
}

/// Σ_k (p_k − onehot(y)_k)² of one face (the Brier score's summand).
pub fn brier_row(p: &[f32], y: usize) -> f64 {
    p.iter()
        .enumerate()
        .map(|(k, &v)| {
            let d = f64::from(v) - if k == y { 1.0 } else { 0.0 };
            d * d
        })
        .sum()
}

/// The bin of `value` among `bins` equal-width bins of [0, 1]: bin b holds (b/bins, (b+1)/bins],
/// and 0 goes to bin 0 (as do values below 0; values above 1 go to the last bin). The edges are
/// compared as `b as f64 / bins as f64`, so a value on an edge lands in the lower bin exactly.
pub fn bin_index(value: f64, bins: usize) -> usize {
    let last = bins.saturating_sub(1);
    if value.is_nan() || value <= 0.0 {
        return 0;
    }
    let width = bins as f64;
    let mut b = ((value * width).ceil() as usize)
        .saturating_sub(1)
        .min(last);
    while b > 0 && value <= b as f64 / width {
        b -= 1;
    }
    while b < last && value > (b + 1) as f64 / width {
        b += 1;
    }
    b
}

/// One calibration bin: the faces whose confidence lies in (lo, hi].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    /// Mean confidence of the bin's faces (NaN when empty).
    pub confidence: f64,
    /// Fraction of the bin's faces classified correctly (NaN when empty).
    pub accuracy: f64,
}

/// The reliability diagram: confidence bins with their accuracy and mean confidence.
pub fn reliability<const K: usize>(probs: &[[f32; K]], labels: &[u8], bins: usize) -> Vec<Bin> {
    let pairs = probs.iter().zip(labels).map(|(p, &y)| {
        let (pred, conf) = predict(p);
        (conf, f64::from(u8::from(pred == usize::from(y))))
    });
    bins_of(pairs, bins)
}

/// (confidence, target) pairs in `bins` equal-width (lo, hi] confidence bins, each bin's
/// `accuracy` being the mean target of its pairs.
fn bins_of(pairs: impl Iterator<Item = (f64, f64)>, bins: usize) -> Vec<Bin> {
    let mut acc = vec![(0usize, 0.0f64, 0.0f64); bins];
    for (conf, target) in pairs {
        let slot = &mut acc[bin_index(conf, bins)];
        slot.0 += 1;
        slot.1 += conf;
        slot.2 += target;
    }
    acc.into_iter()
        .enumerate()
        .map(|(b, (count, conf, target))| Bin {
            lo: b as f64 / bins as f64,
            hi: (b + 1) as f64 / bins as f64,
            count,
            confidence: mean(conf, count),
            accuracy: mean(target, count),
        })
        .collect()
}

/// Expected calibration error of a reliability diagram: Σ_b (n_b / N) |accuracy_b − confidence_b|.
pub fn ece_of_bins(bins: &[Bin]) -> f64 {
    let total: usize = bins.iter().map(|b| b.count).sum();
    let sum: f64 = bins
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| b.count as f64 * (b.accuracy - b.confidence).abs())
        .sum();
    mean(sum, total)
}

/// Expected calibration error with `bins` equal-width confidence bins.
pub fn ece<const K: usize>(probs: &[[f32; K]], labels: &[u8], bins: usize) -> f64 {
    ece_of_bins(&reliability(probs, labels, bins))
}

/// Classwise ECE: for every class k, bin all faces by p_k and take Σ_b (n_b / N)
/// |freq_b(y = k) − mean_b p_k|; the mean of that over the K classes.
pub fn classwise_ece<const K: usize>(probs: &[[f32; K]], labels: &[u8], bins: usize) -> f64 {
    let faces = probs.len().min(labels.len());
    classwise_gap(&probs[..faces], bins, |i, k| {
        f64::from(u8::from(usize::from(labels[i]) == k))
    })
}

/// For every class k, bin the faces by p_k into `bins` equal-width bins and take
/// Σ_b |Σ_{i∈b} target(i, k) − Σ_{i∈b} p_k| / N; the mean of that over the K classes (NaN
/// without faces).
fn classwise_gap<const K: usize>(
    probs: &[[f32; K]],
    bins: usize,
    target: impl Fn(usize, usize) -> f64,
) -> f64 {
    let faces = probs.len();
    if faces == 0 {
        return f64::NAN;
    }
    let mut total = 0.0;
    for k in 0..K {
        let mut acc = vec![(0.0f64, 0.0f64); bins];
        for (i, p) in probs.iter().enumerate() {
            let v = f64::from(p[k]);
            let slot = &mut acc[bin_index(v, bins)];
            slot.0 += v;
            slot.1 += target(i, k);
        }
        total += acc.iter().map(|&(p, t)| (t - p).abs()).sum::<f64>() / faces as f64;
    }
    total / K as f64
}

/// The crowd reliability diagram: the faces binned by confidence `conf[i]` as for ECE, each bin's
/// `accuracy` being the mean crowd agreement `crowd_at_pred[i]` = c_i\[ŷ_i\], the share of the
/// crowd's votes on the predicted class.
pub fn crowd_reliability(conf: &[f64], crowd_at_pred: &[f64], bins: usize) -> Vec<Bin> {
    let pairs = conf.iter().copied().zip(crowd_at_pred.iter().copied());
    bins_of(pairs, bins.max(1))
}

/// Crowd ECE: Σ_b (|B_b| / N) |mean_b conf − mean_b c\[ŷ\]| over the equal-width (lo, hi]
/// confidence bins of ECE; `crowd_at_pred[i]` is c_i\[ŷ_i\].
pub fn crowd_ece(conf: &[f64], crowd_at_pred: &[f64], bins: usize) -> f64 {
    ece_of_bins(&crowd_reliability(conf, crowd_at_pred, bins))
}

/// Classwise crowd ECE: for every class k, bin all faces by p_k and take Σ_b (n_b / N)
/// |mean_b c_k − mean_b p_k|; the mean of that over the K classes.
pub fn crowd_cw_ece<const K: usize>(probs: &[[f32; K]], crowd: &[[f32; K]], bins: usize) -> f64 {
    let faces = probs.len().min(crowd.len());
    classwise_gap(&probs[..faces], bins.max(1), |i, k| f64::from(crowd[i][k]))
}

/// Area under the risk–coverage curve from (confidence, correct) pairs: rank by confidence
/// (descending, ties in input order), risk at coverage i/N = errors among the first i / i, and
/// AURC = the mean of those N risks.
pub fn aurc_of(ranked: &mut [(f64, bool)]) -> f64 {
    ranked.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal));
    let mut errors = 0usize;
    let mut sum = 0.0;
    for (i, &(_, correct)) in ranked.iter().enumerate() {
        errors += usize::from(!correct);
        sum += errors as f64 / (i + 1) as f64;
    }
    mean(sum, ranked.len())
}

/// AURC with the maximum probability as the confidence score.
pub fn aurc<const K: usize>(probs: &[[f32; K]], labels: &[u8]) -> f64 {
    let mut ranked: Vec<(f64, bool)> = probs
        .iter()
        .zip(labels)
        .map(|(p, &y)| {
            let (pred, conf) = predict(p);
            (conf, pred == usize::from(y))
        })
        .collect();
    aurc_of(&mut ranked)
}
