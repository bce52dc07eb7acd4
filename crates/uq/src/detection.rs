//! Out-of-distribution detection and selective prediction over plain slices, independent of
//! Parquet.
//!
//! **Detection.** A detector assigns each input a score where *higher means "more likely
//! out-of-distribution"* (callers pass the predictive entropy, the mutual information, or
//! 1 − the maximum probability). `in_scores` are the scores of in-distribution inputs (the
//! negatives), `out_scores` those of out-of-distribution inputs (the positives). An input is
//! flagged as OOD at threshold τ when its score is ≥ τ, so the thresholds that matter are the
//! distinct score values and tied scores always fall on the same side of a threshold.
//!
//! **Selective prediction.** A classifier abstains on its least confident inputs. `confidence`
//! is higher for more confident predictions (callers pass the maximum probability or −mutual
//! information) and `correct[i]` says whether prediction i is right. Inputs are ranked by
//! confidence, descending; ties keep input order (a stable sort), as for
//! [`crate::calibration::aurc_of`], so the mean risk of [`risk_coverage`] is the AURC.
//!
//! Conventions every function follows (as in the crate's conventions):
//! - an empty input gives NaN; detection needs both sets, so either set empty gives NaN;
//! - a NaN detection score makes the detection metrics NaN; a NaN confidence ranks last (least
//!   confident); −0 and +0 are the same score;
//! - counts are exact integers and sums are accumulated in f64;
//! - a fraction target (`tpr`, `coverage`) is met by a count k out of n when
//!   `k as f64 / n as f64 >= target`, so that e.g. 7 of 100 meets 0.07 although `0.07 * 100.0`
//!   rounds to 7.000000000000001;
//! - `confidence` and `correct` are paired by index; entries beyond the shorter slice are ignored.

use std::cmp::Ordering;

/// The true-positive rate of [`OodScores::fpr95`]: 95 % of the OOD inputs flagged.
pub const TPR95: f64 = 0.95;

/// Descending order with NaN last (a total order; −0 and +0 compare equal).
fn descending(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
    }
}

/// The smallest k in 1..=n with `k / n >= fraction` (in f64), or n when none (fraction > 1);
/// 1 when `fraction` ≤ 1/n. `n` must be ≥ 1 and `fraction` not NaN.
fn smallest_count(n: usize, fraction: f64) -> usize {
    let of = |k: usize| k as f64 / n as f64;
    let guess = (fraction * n as f64).ceil();
    let mut k = if guess >= n as f64 {
        n
    } else if guess >= 1.0 {
        guess as usize
    } else {
        1
    };
    while k > 1 && of(k - 1) >= fraction {
        k -= 1;
    }
    while k < n && of(k) < fraction {
        k += 1;
    }
    k
}

/// The scores of both sets grouped by distinct value, from the highest score down: each group
/// is (in-distribution count, OOD count) at one score value.
#[derive(Debug)]
struct Groups {
    n_in: usize,
    n_out: usize,
    groups: Vec<(usize, usize)>,
}

impl Groups {
    /// None when either set is empty or a score is NaN.
    fn new(in_scores: &[f64], out_scores: &[f64]) -> Option<Self> {
        let (n_in, n_out) = (in_scores.len(), out_scores.len());
        if n_in == 0 || n_out == 0 || in_scores.iter().chain(out_scores).any(|s| s.is_nan()) {
            return None;
        }
        let mut all: Vec<(f64, bool)> = in_scores
            .iter()
            .map(|&s| (s, false))
            .chain(out_scores.iter().map(|&s| (s, true)))
            .collect();
        all.sort_unstable_by(|a, b| descending(a.0, b.0));
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut previous = f64::NAN;
        for (score, ood) in all {
            // `!=` treats −0 and +0 as one score; `previous` is NaN only before the first.
            let start = previous.is_nan() || score != previous;
            if start {
                groups.push((0, 0));
                previous = score;
            }
            if let Some(g) = groups.last_mut() {
                if ood {
                    g.1 += 1;
                } else {
                    g.0 += 1;
                }
            }
        }
        Some(Self {
            n_in,
            n_out,
            groups,
        })
    }

    /// Mann–Whitney: 2U = Σ over OOD inputs of (2 · in-scores below + in-scores tied), exact.
    fn auroc(&self) -> f64 {
        let mut in_at_or_above = 0u128;
        let mut twice_u = 0u128;
        for &(c_in, c_out) in &self.groups {
            // Going down, the in-scores below this group are n_in − (those at or above it).
            in_at_or_above += c_in as u128;
            let below = self.n_in as u128 - in_at_or_above;
            twice_u += c_out as u128 * (2 * below + c_in as u128);
        }
        twice_u as f64 / (2.0 * self.n_in as f64 * self.n_out as f64)
    }

    /// Σ over thresholds (distinct scores, descending) of ΔRecall · Precision.
    fn average_precision(&self) -> f64 {
        let (mut tp, mut fp) = (0usize, 0usize);
        let mut sum = 0.0;
        for &(c_in, c_out) in &self.groups {
            tp += c_out;
            fp += c_in;
            if c_out > 0 {
                sum += (c_out as f64 / self.n_out as f64) * (tp as f64 / (tp + fp) as f64);
            }
        }
        sum
    }

    /// FPR at the first threshold (from the top) whose TPR reaches `tpr`.
    fn fpr_at_tpr(&self, tpr: f64) -> f64 {
        if tpr.is_nan() || tpr <= 0.0 || tpr > 1.0 {
            return f64::NAN;
        }
        let (mut tp, mut fp) = (0usize, 0usize);
        for &(c_in, c_out) in &self.groups {
            tp += c_out;
            fp += c_in;
            if tp as f64 / self.n_out as f64 >= tpr {
                return fp as f64 / self.n_in as f64;
            }
        }
        // Unreachable: at the last group tp = n_out, and 1 ≥ tpr.
        fp as f64 / self.n_in as f64
    }
}

/// Area under the ROC curve of OOD detection: the probability that a random OOD score exceeds
/// a random in-distribution score, a tie counting 1/2 — the Mann–Whitney U statistic over
/// `in_scores.len() · out_scores.len()`. 1 is perfect separation, 0.5 chance (or all scores
/// equal), 0 perfectly reversed. O(n log n): one sort of both sets, then one pass over the
/// groups of tied scores, with U counted exactly in integers. NaN when either set is empty or a
/// score is NaN.
pub fn auroc(in_scores: &[f64], out_scores: &[f64]) -> f64 {
    Groups::new(in_scores, out_scores).map_or(f64::NAN, |g| g.auroc())
}

/// Area under the precision–recall curve of OOD detection, OOD being the positive class, as
/// average precision (scikit-learn's `average_precision_score`): with the distinct score values
/// τ₁ > τ₂ > … as thresholds (tied scores form one threshold), precision P_k and recall R_k of
/// flagging the scores ≥ τ_k, AP = Σ_k (R_k − R_{k−1}) · P_k with R₀ = 0. No interpolation. A
/// chance detector scores about the OOD fraction `n_out / (n_in + n_out)`. NaN when either set
/// is empty or a score is NaN.
pub fn aupr(in_scores: &[f64], out_scores: &[f64]) -> f64 {
    Groups::new(in_scores, out_scores).map_or(f64::NAN, |g| g.average_precision())
}

/// False-positive rate at a true-positive rate of at least `tpr`: the fraction of
/// in-distribution inputs flagged as OOD when the threshold is as high as it can be while still
/// flagging a fraction ≥ `tpr` of the OOD inputs.
///
/// Precisely: τ = the largest value with `#{out ≥ τ} / n_out >= tpr` (that is the k-th highest
/// OOD score for the smallest k with k / n_out ≥ `tpr`), and the result is `#{in ≥ τ} / n_in`;
/// in-distribution scores tied with τ count as flagged. This is scikit-learn's
/// `fpr[np.searchsorted(tpr_curve, tpr)]` on `roc_curve(..., drop_intermediate=False)`; with
/// the default `drop_intermediate=True` sklearn can skip the point at τ when it lies on a
/// straight segment of the ROC curve and report a larger FPR. Lower is better: 0 when the
/// `tpr` fraction of highest OOD scores are all above every in-distribution score. NaN when
/// either set is empty, a score is NaN, or `tpr` is not in (0, 1].
pub fn fpr_at_tpr(in_scores: &[f64], out_scores: &[f64], tpr: f64) -> f64 {
    Groups::new(in_scores, out_scores).map_or(f64::NAN, |g| g.fpr_at_tpr(tpr))
}

/// The three OOD detection metrics of one detector (see [`ood_scores`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OodScores {
    /// [`auroc`]: higher is better, 0.5 is chance.
    pub auroc: f64,
    /// [`aupr`] with OOD as the positive class: higher is better.
    pub aupr: f64,
    /// [`fpr_at_tpr`] at [`TPR95`]: lower is better.
    pub fpr95: f64,
}

/// [`auroc`], [`aupr`] and the FPR at 95 % TPR of one detector, sharing one sort. All NaN when
/// either set is empty or a score is NaN.
pub fn ood_scores(in_scores: &[f64], out_scores: &[f64]) -> OodScores {
    match Groups::new(in_scores, out_scores) {
        Some(g) => OodScores {
            auroc: g.auroc(),
            aupr: g.average_precision(),
            fpr95: g.fpr_at_tpr(TPR95),
        },
        None => OodScores {
            auroc: f64::NAN,
            aupr: f64::NAN,
            fpr95: f64::NAN,
        },
    }
}

/// `correct` in the order of `confidence`, descending, ties in input order (stable), NaN last.
fn ranked(confidence: &[f64], correct: &[bool]) -> Vec<bool> {
    let mut pairs: Vec<(f64, bool)> = confidence
        .iter()
        .copied()
        .zip(correct.iter().copied())
        .collect();
    pairs.sort_by(|a, b| descending(a.0, b.0));
    pairs.into_iter().map(|p| p.1).collect()
}

/// The risk–coverage curve of selective prediction: rank the inputs by confidence (descending,
/// ties in input order — each input is its own point, ties are not grouped, as in AURC), and for
/// k = 1..=n give (coverage k/n, risk = errors among the first k / k). All n points, in order of
/// increasing coverage; the last is (1, overall error rate) and the mean of the risks is
/// [`crate::calibration::aurc_of`]. Empty for an empty input.
pub fn risk_coverage(confidence: &[f64], correct: &[bool]) -> Vec<(f64, f64)> {
    let ranked = ranked(confidence, correct);
    let n = ranked.len() as f64;
    let mut errors = 0usize;
    ranked
        .iter()
        .enumerate()
        .map(|(i, &ok)| {
            errors += usize::from(!ok);
            let k = (i + 1) as f64;
            (k / n, errors as f64 / k)
        })
        .collect()
}

/// Selective accuracy: the accuracy on the ⌈coverage · n⌉ most confident inputs (ranked as in
/// [`risk_coverage`]), at least 1 and at most n of them; the count is the smallest k with
/// `k as f64 / n as f64 >= coverage`, so 0.07 of 100 inputs is 7 (although `0.07 * 100.0` is
/// 7.000000000000001). NaN for an empty input or a NaN
/// `coverage`.
pub fn accuracy_at_coverage(confidence: &[f64], correct: &[bool], coverage: f64) -> f64 {
    let ranked = ranked(confidence, correct);
    if ranked.is_empty() || coverage.is_nan() {
        return f64::NAN;
    }
    let k = smallest_count(ranked.len(), coverage);
    let right = ranked[..k].iter().filter(|&&ok| ok).count();
    right as f64 / k as f64
}

/// The largest coverage k/n (ranked as in [`risk_coverage`]) at which the accuracy of the k
/// most confident inputs, `right_k as f64 / k as f64`, is ≥ `accuracy`; the accuracy need not
/// hold at smaller coverages. 0.0 when no k achieves it; NaN for an empty input or a NaN
/// `accuracy`.
pub fn coverage_at_accuracy(confidence: &[f64], correct: &[bool], accuracy: f64) -> f64 {
    let ranked = ranked(confidence, correct);
    if ranked.is_empty() || accuracy.is_nan() {
        return f64::NAN;
    }
    let mut right = 0usize;
    let mut best = 0usize;
    for (i, &ok) in ranked.iter().enumerate() {
        right += usize::from(ok);
        if right as f64 / (i + 1) as f64 >= accuracy {
            best = i + 1;
        }
    }
    best as f64 / ranked.len() as f64
}

/// At most `max_points` points of `curve` for plotting, evenly spaced by index and always
/// keeping the first and the last: point j of m = `max_points` is `curve[round(j · (n − 1) /
/// (m − 1))]` (halves rounded up), strictly increasing indices. The whole curve when it has at
/// most `max_points` points; only the last point (full coverage) when `max_points` is 1; empty
/// when it is 0.
pub fn downsample(curve: &[(f64, f64)], max_points: usize) -> Vec<(f64, f64)> {
    let n = curve.len();
    if n <= max_points {
        return curve.to_vec();
    }
    match max_points {
        0 => Vec::new(),
        1 => curve.last().map(|&p| vec![p]).unwrap_or_default(),
        m => {
            // n > m ≥ 2, so the step (n − 1)/(m − 1) exceeds 1 and the indices strictly increase.
            let (span, steps) = (n - 1, m - 1);
            (0..m)
                .map(|j| curve[(j * span + steps / 2) / steps])
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_count_meets_decimal_fractions() {
        assert_eq!(smallest_count(20, 0.95), 19);
        assert_eq!(smallest_count(10, 0.9), 9);
        assert_eq!(smallest_count(10, 0.91), 10);
        assert_eq!(smallest_count(10, 0.0), 1);
        assert_eq!(smallest_count(10, -1.0), 1);
        assert_eq!(smallest_count(10, 2.0), 10);
        assert_eq!(smallest_count(1, 0.5), 1);
        // 0.07 · 100 = 7.000000000000001 in f64 (ceiling 8).
        assert_eq!(smallest_count(100, 0.07), 7);
        // k/n ≥ f at the result, not at k − 1, across many n and fractions.
        for n in 1..200usize {
            for f in [0.05, 0.1, 0.3, 0.33, 0.5, 0.7, 0.9, 0.95, 0.99, 1.0] {
                let k = smallest_count(n, f);
                assert!(k as f64 / n as f64 >= f, "n {n} f {f} k {k}");
                assert!(
                    k == 1 || ((k - 1) as f64 / n as f64) < f,
                    "n {n} f {f} k {k}"
                );
            }
        }
    }

    #[test]
    fn groups_merge_ties_and_signed_zeros() {
        let g = Groups::new(&[0.0, 1.0, 1.0], &[-0.0, 2.0]).expect("groups");
        assert_eq!(g.groups, vec![(0, 1), (2, 0), (1, 1)]);
        assert!(Groups::new(&[f64::NAN], &[1.0]).is_none());
        assert!(Groups::new(&[], &[1.0]).is_none());
    }

    #[test]
    fn downsample_indices() {
        let curve: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), 0.0)).collect();
        let xs: Vec<f64> = downsample(&curve, 4).iter().map(|p| p.0).collect();
        // j · 9 / 3 = 0, 3, 6, 9.
        assert_eq!(xs, vec![0.0, 3.0, 6.0, 9.0]);
        for m in 2..10 {
            let d = downsample(&curve, m);
            assert_eq!(d.len(), m);
            assert_eq!(d.first(), curve.first());
            assert_eq!(d.last(), curve.last());
            assert!(d.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }
}
