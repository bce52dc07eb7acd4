//! Temperature scaling over plain slices: one T > 0 that rescales the log-probabilities of a
//! prediction, p_T = softmax(log(max(p̄, 1e-12)) / T), fitted by minimising the NLL of the
//! majority labels.
//!
//! The NLL of p_T is convex in β = 1/T (a log-sum-exp minus a linear term), hence unimodal in
//! log T, so a golden-section search on log T over [[`T_MIN`], [`T_MAX`]] finds its minimum; it
//! stops when the bracket is narrower than [`T_TOLERANCE`] in log T (a relative tolerance on T).
//! Dividing all log-probabilities by the same T > 0 keeps their order, so the predicted class and
//! the error never change.

use crate::PROB_FLOOR;

/// Smallest temperature searched.
pub const T_MIN: f64 = 0.05;
/// Largest temperature searched.
pub const T_MAX: f64 = 20.0;
/// Width of the final bracket in ln T (≈ a relative tolerance on T).
pub const T_TOLERANCE: f64 = 1e-3;

/// The prediction `p` at temperature `t`: softmax(ln(max(p_k, 1e-12)) / t), in f64 then f32.
pub fn temper<const K: usize>(p: &[f32; K], t: f64) -> [f32; K] {
    let logits: [f64; K] = std::array::from_fn(|k| f64::from(p[k]).max(PROB_FLOOR).ln() / t);
    let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: [f64; K] = std::array::from_fn(|k| (logits[k] - top).exp());
    let sum: f64 = exps.iter().sum();
    std::array::from_fn(|k| (exps[k] / sum) as f32)
}

/// Every row of `probs` at temperature `t`.
pub fn temper_all<const K: usize>(probs: &[[f32; K]], t: f64) -> Vec<[f32; K]> {
    probs.iter().map(|p| temper(p, t)).collect()
}

/// The NLL of the labels under p_T, computed in f64 without rounding p_T: mean over faces of
/// logsumexp(z / t) − z_y / t with z = ln(max(p, 1e-12)). NaN without faces.
pub fn tempered_nll<const K: usize>(probs: &[[f32; K]], labels: &[u8], t: f64) -> f64 {
    let faces = probs.len().min(labels.len());
    if faces == 0 {
        return f64::NAN;
    }
    let sum: f64 = probs
        .iter()
        .zip(labels)
        .map(|(p, &y)| {
            let z: [f64; K] = std::array::from_fn(|k| f64::from(p[k]).max(PROB_FLOOR).ln() / t);
            let top = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = top + z.iter().map(|v| (v - top).exp()).sum::<f64>().ln();
            lse - z[usize::from(y)]
        })
        .sum();
    sum / faces as f64
}

/// The minimum of a unimodal `f` over [lo, hi] by golden-section search, to a bracket narrower
/// than `tol`; returns the midpoint of the final bracket.
pub fn golden_section(f: impl Fn(f64) -> f64, lo: f64, hi: f64, tol: f64) -> f64 {
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (lo, hi);
    let mut c = b - ratio * (b - a);
    let mut d = a + ratio * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    while b - a > tol {
        if fc <= fd {
            b = d;
            d = c;
            fd = fc;
            c = b - ratio * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + ratio * (b - a);
            fd = f(d);
        }
    }
    0.5 * (a + b)
}

/// The temperature in [[`T_MIN`], [`T_MAX`]] minimising [`tempered_nll`] on `(probs, labels)`;
/// NaN without faces.
pub fn fit_temperature<const K: usize>(probs: &[[f32; K]], labels: &[u8]) -> f64 {
    if probs.is_empty() || labels.is_empty() {
        return f64::NAN;
    }
    golden_section(
        |log_t| tempered_nll(probs, labels, log_t.exp()),
        T_MIN.ln(),
        T_MAX.ln(),
        T_TOLERANCE,
    )
    .exp()
}
