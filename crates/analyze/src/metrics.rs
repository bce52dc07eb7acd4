//! The metrics of the study over plain slices, independent of Parquet.
//!
//! A prediction is a row `[f32; K]` of class probabilities (K = 8 in the pipeline; the functions
//! are generic so tests can use fewer classes). `probs[i]` is face i's prediction, `labels[i]` its
//! majority class, `crowd[i]` its crowd vote distribution. Sums are accumulated in f64.
//!
//! Conventions every function follows:
//! - the predicted class is the first arg-max, the confidence the maximum probability;
//! - an empty input gives NaN (written as null in `metrics.parquet`);
//! - logarithms are natural (nats) except the Jensen–Shannon divergence (base 2, in [0, 1]);
//! - NLL and KL clamp the predicted probability at [`PROB_FLOOR`]; 0·log 0 = 0;
//! - calibration bins are equal-width and half-open on the left, (lo, hi], with a value of exactly
//!   0 in the first bin (see [`bin_index`]);
//! - AURC ranks faces by confidence, descending; ties keep face order (a stable sort).
//!
//! [`Evaluator::evaluate`] computes all of them in one pass over the faces, sharing the
//! logarithms; the tests check that it agrees with the single-metric functions.

use std::cmp::Ordering;

/// Floor of a predicted probability inside a logarithm (NLL, KL).
pub const PROB_FLOOR: f64 = 1e-12;

/// The predicted class (first arg-max) and the confidence (maximum probability).
pub fn predict(p: &[f32]) -> (usize, f64) {
    let mut best = 0;
    for (k, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = k;
        }
    }
    (best, p.get(best).map_or(f64::NAN, |&v| f64::from(v)))
}

/// The prediction of the first `samples.len()` samples: the mean of their probabilities, face by
/// face (computed in f64, rounded to f32). Every sample slice holds the same faces in order.
pub fn mean_prediction<const K: usize>(samples: &[&[[f32; K]]]) -> Vec<[f32; K]> {
    let faces = samples.first().map_or(0, |s| s.len());
    let n = samples.len() as f64;
    (0..faces)
        .map(|i| {
            let mut row = [0.0f32; K];
            for (k, out) in row.iter_mut().enumerate() {
                let sum: f64 = samples.iter().map(|s| f64::from(s[i][k])).sum();
                *out = (sum / n) as f32;
            }
            row
        })
        .collect()
}

fn mean(sum: f64, count: usize) -> f64 {
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// Classification error: the fraction of faces whose predicted class is not the label.
pub fn error<const K: usize>(probs: &[[f32; K]], labels: &[u8]) -> f64 {
    let wrong = probs
        .iter()
        .zip(labels)
        .filter(|(p, y)| predict(&p[..]).0 != usize::from(**y))
        .count();
    mean(wrong as f64, probs.len().min(labels.len()))
}

/// Negative log-likelihood of the labels: −mean log max(p[y], 1e-12).
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

fn brier_row(p: &[f32], y: usize) -> f64 {
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
/// `accuracy` being the mean crowd agreement `crowd_at_pred[i]` = c_i[ŷ_i], the share of the
/// crowd's votes on the predicted class.
pub fn crowd_reliability(conf: &[f64], crowd_at_pred: &[f64], bins: usize) -> Vec<Bin> {
    let pairs = conf.iter().copied().zip(crowd_at_pred.iter().copied());
    bins_of(pairs, bins.max(1))
}

/// Crowd ECE: Σ_b (|B_b| / N) |mean_b conf − mean_b c[ŷ]| over the equal-width (lo, hi]
/// confidence bins of ECE; `crowd_at_pred[i]` is c_i[ŷ_i].
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

/// Shannon entropy of one distribution in nats (0·log 0 = 0).
pub fn entropy(p: &[f32]) -> f64 {
    -p.iter()
        .map(|&v| f64::from(v))
        .filter(|&v| v > 0.0)
        .map(|v| v * v.ln())
        .sum::<f64>()
}

/// Mean entropy of the rows.
pub fn mean_entropy<const K: usize>(probs: &[[f32; K]]) -> f64 {
    mean(probs.iter().map(|p| entropy(p)).sum(), probs.len())
}

/// The prediction and uncertainty of every face under a set of samples (each slice one sample
/// over all faces), face by face.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceUncertainty<const K: usize> {
    /// The mean prediction p̄ of each face ([`mean_prediction`]).
    pub pbar: Vec<[f32; K]>,
    /// Predictive entropy H[p̄] of each face, nats.
    pub entropy: Vec<f64>,
    /// Mutual information of each face: H[p̄] − mean_t H[p_t], nats (the per-face epistemic part
    /// of [`uncertainty`]).
    pub mutual_information: Vec<f64>,
}

/// [`FaceUncertainty`] of the prediction made of `samples`.
pub fn face_uncertainty<const K: usize>(samples: &[&[[f32; K]]]) -> FaceUncertainty<K> {
    let pbar = mean_prediction(samples);
    let entropy: Vec<f64> = pbar.iter().map(|p| entropy(p)).collect();
    let t = samples.len() as f64;
    let mutual_information = entropy
        .iter()
        .enumerate()
        .map(|(i, h)| h - samples.iter().map(|s| self::entropy(&s[i])).sum::<f64>() / t)
        .collect();
    FaceUncertainty {
        pbar,
        entropy,
        mutual_information,
    }
}

/// The decomposition of predictive uncertainty, each a mean over faces, in nats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Uncertainty {
    /// Predictive entropy H[p̄] of the mean prediction.
    pub entropy: f64,
    /// Expected entropy (aleatoric): the mean over samples of H[p_t].
    pub aleatoric: f64,
    /// Mutual information (epistemic): H[p̄] − mean_t H[p_t].
    pub epistemic: f64,
}

/// The uncertainty of the prediction made of `samples` (each slice one sample over all faces).
pub fn uncertainty<const K: usize>(samples: &[&[[f32; K]]]) -> Uncertainty {
    let pbar = mean_prediction(samples);
    let entropy = mean_entropy(&pbar);
    let aleatoric = mean(samples.iter().map(|s| mean_entropy(s)).sum(), samples.len());
    Uncertainty {
        entropy,
        aleatoric,
        epistemic: entropy - aleatoric,
    }
}

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
struct Pearson {
    n: usize,
    sx: f64,
    sy: f64,
    sxx: f64,
    syy: f64,
    sxy: f64,
}

impl Pearson {
    fn push(&mut self, x: f64, y: f64) {
        self.n += 1;
        self.sx += x;
        self.sy += y;
        self.sxx += x * x;
        self.syy += y * y;
        self.sxy += x * y;
    }

    fn value(&self) -> f64 {
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

/// Number of metrics in [`Metrics`] (= `ferbayes_core::schema::METRICS.len()`).
pub const METRIC_COUNT: usize = ferbayes_core::schema::METRICS.len();

/// Every metric of one prediction (one row of `metrics.parquet` without the `_std` columns).
/// NaN marks a metric without data (no labelled faces, a constant series).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    pub error: f64,
    pub nll: f64,
    pub ece: f64,
    pub brier: f64,
    pub classwise_ece: f64,
    pub aurc: f64,
    pub entropy: f64,
    pub aleatoric: f64,
    pub epistemic: f64,
    pub jsd: f64,
    pub soft_accuracy: f64,
    pub kl_crowd: f64,
    pub entropy_corr: f64,
    /// ECE against the crowd's vote share on the predicted class ([`crowd_ece`]).
    pub crowd_ece: f64,
    /// Classwise ECE against the crowd distribution ([`crowd_cw_ece`]).
    pub crowd_cw_ece: f64,
}

impl Metrics {
    /// The field names in the order of [`Metrics::to_array`] (= `ferbayes_core::schema::METRICS`).
    pub const NAMES: [&'static str; METRIC_COUNT] = ferbayes_core::schema::METRICS;

    /// The values in [`Metrics::NAMES`] order.
    pub fn to_array(&self) -> [f64; METRIC_COUNT] {
        [
            self.error,
            self.nll,
            self.ece,
            self.brier,
            self.classwise_ece,
            self.aurc,
            self.entropy,
            self.aleatoric,
            self.epistemic,
            self.jsd,
            self.soft_accuracy,
            self.kl_crowd,
            self.entropy_corr,
            self.crowd_ece,
            self.crowd_cw_ece,
        ]
    }

    /// The inverse of [`Metrics::to_array`].
    pub fn from_array(v: [f64; METRIC_COUNT]) -> Self {
        Metrics {
            error: v[0],
            nll: v[1],
            ece: v[2],
            brier: v[3],
            classwise_ece: v[4],
            aurc: v[5],
            entropy: v[6],
            aleatoric: v[7],
            epistemic: v[8],
            jsd: v[9],
            soft_accuracy: v[10],
            kl_crowd: v[11],
            entropy_corr: v[12],
            crowd_ece: v[13],
            crowd_cw_ece: v[14],
        }
    }

    /// The value of the metric called `name` (one of [`Metrics::NAMES`]).
    pub fn get(&self, name: &str) -> Option<f64> {
        let i = Self::NAMES.iter().position(|n| *n == name)?;
        Some(self.to_array()[i])
    }

    /// Element-wise mean and population standard deviation (divide by the count) of `runs`;
    /// NaN entries are left out of their metric's statistics.
    pub fn mean_std(runs: &[Metrics]) -> (Metrics, Metrics) {
        let mut m = [f64::NAN; METRIC_COUNT];
        let mut s = [f64::NAN; METRIC_COUNT];
        for j in 0..METRIC_COUNT {
            let vals: Vec<f64> = runs
                .iter()
                .map(|r| r.to_array()[j])
                .filter(|v| !v.is_nan())
                .collect();
            if vals.is_empty() {
                continue;
            }
            let n = vals.len() as f64;
            let mu = vals.iter().sum::<f64>() / n;
            m[j] = mu;
            s[j] = (vals.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / n).sqrt();
        }
        (Metrics::from_array(m), Metrics::from_array(s))
    }
}

/// The targets of one split, prepared once for many [`Evaluator::evaluate`] calls.
#[derive(Debug, Clone)]
pub struct Evaluator<const K: usize> {
    majority: Vec<Option<u8>>,
    crowd: Vec<Option<[f32; K]>>,
    /// ln of every crowd probability (0 where it is 0) and the crowd entropy in nats.
    crowd_logs: Vec<([f64; K], f64)>,
    crowd_entropy: Vec<Option<f32>>,
    bins: usize,
}

impl<const K: usize> Evaluator<K> {
    /// `majority[i]`, `crowd[i]` and `crowd_entropy[i]` describe face i (None where FER+ has none).
    /// The majority metrics use the faces with a label, the crowd metrics those with a crowd
    /// distribution, the entropy correlation those with a crowd entropy.
    pub fn new(
        majority: Vec<Option<u8>>,
        crowd: Vec<Option<[f32; K]>>,
        crowd_entropy: Vec<Option<f32>>,
        bins: usize,
    ) -> Self {
        let crowd_logs = crowd
            .iter()
            .map(|c| {
                let mut logs = [0.0; K];
                let mut h = 0.0;
                if let Some(c) = c {
                    for (l, &v) in logs.iter_mut().zip(c) {
                        let v = f64::from(v);
                        if v > 0.0 {
                            *l = v.ln();
                            h -= v * *l;
                        }
                    }
                }
                (logs, h)
            })
            .collect();
        Evaluator {
            majority,
            crowd,
            crowd_logs,
            crowd_entropy,
            bins: bins.max(1),
        }
    }

    /// Number of faces.
    pub fn faces(&self) -> usize {
        self.majority.len()
    }

    /// The majority labels.
    pub fn majority(&self) -> &[Option<u8>] {
        &self.majority
    }

    /// The crowd distributions.
    pub fn crowd(&self) -> &[Option<[f32; K]>] {
        &self.crowd
    }

    /// The crowd entropies.
    pub fn crowd_entropy(&self) -> &[Option<f32>] {
        &self.crowd_entropy
    }

    /// Mean entropy of one sample's predictions over the labelled faces: averaged over the
    /// samples of a prediction it is the aleatoric part [`Metrics::aleatoric`].
    pub fn labelled_entropy(&self, probs: &[[f32; K]]) -> f64 {
        let (sum, count) = probs
            .iter()
            .zip(&self.majority)
            .filter(|(_, y)| y.is_some())
            .fold((0.0, 0usize), |(s, c), (p, _)| (s + entropy(p), c + 1));
        mean(sum, count)
    }

    /// Every metric of the prediction `probs` (one row per face); `aleatoric` is the mean of
    /// [`Evaluator::labelled_entropy`] over the samples averaged into `probs`.
    pub fn evaluate(&self, probs: &[[f32; K]], aleatoric: f64) -> Metrics {
        let mut sums = Sums::<K>::new(self.bins, probs.len());
        for (i, p) in probs.iter().enumerate() {
            let label = self.majority.get(i).copied().flatten();
            let crowd = self.crowd.get(i).copied().flatten();
            let crowd_h = self.crowd_entropy.get(i).copied().flatten();
            if label.is_none() && crowd.is_none() && crowd_h.is_none() {
                continue;
            }
            let mut logs = [0.0f64; K];
            let mut h = 0.0;
            for (l, &v) in logs.iter_mut().zip(p) {
                let v = f64::from(v);
                if v > 0.0 {
                    *l = v.ln();
                    h -= v * *l;
                }
            }
            // ln max(p_k, 1e-12).
            let floored: [f64; K] = std::array::from_fn(|k| {
                if f64::from(p[k]) >= PROB_FLOOR {
                    logs[k]
                } else {
                    PROB_FLOOR.ln()
                }
            });
            if let Some(y) = label {
                sums.labelled(p, usize::from(y), &floored, h, crowd.as_ref());
            }
            if let Some(c) = crowd {
                sums.crowd(p, &c, &self.crowd_logs[i], &floored, h);
            }
            if let Some(ch) = crowd_h {
                sums.corr.push(h, f64::from(ch));
            }
        }
        sums.finish(aleatoric)
    }
}

/// The running sums of [`Evaluator::evaluate`].
struct Sums<const K: usize> {
    bins: usize,
    /// Per confidence bin: count, Σ confidence, Σ correct.
    conf_bins: Vec<(usize, f64, f64)>,
    /// Per (class, bin of p_k): count, Σ p_k, Σ [y = k].
    class_bins: Vec<(usize, f64, f64)>,
    ranked: Vec<(f64, bool)>,
    wrong: usize,
    nll: f64,
    brier: f64,
    entropy: f64,
    crowd_n: usize,
    jsd: f64,
    kl: f64,
    soft: f64,
    corr: Pearson,
    crowd_bins: CrowdBins<K>,
}

impl<const K: usize> Sums<K> {
    fn new(bins: usize, faces: usize) -> Self {
        Sums {
            bins,
            conf_bins: vec![(0, 0.0, 0.0); bins],
            class_bins: vec![(0, 0.0, 0.0); bins * K],
            ranked: Vec::with_capacity(faces),
            wrong: 0,
            nll: 0.0,
            brier: 0.0,
            entropy: 0.0,
            crowd_n: 0,
            jsd: 0.0,
            kl: 0.0,
            soft: 0.0,
            corr: Pearson::default(),
            crowd_bins: CrowdBins::new(bins),
        }
    }

    /// A face with majority label `y` (and perhaps a crowd distribution).
    fn labelled(
        &mut self,
        p: &[f32; K],
        y: usize,
        floored: &[f64; K],
        h: f64,
        crowd: Option<&[f32; K]>,
    ) {
        let bins = self.bins;
        let (pred, conf) = predict(p);
        let correct = pred == y;
        self.wrong += usize::from(!correct);
        self.nll -= floored[y];
        self.brier += brier_row(p, y);
        self.entropy += h;
        let slot = &mut self.conf_bins[bin_index(conf, bins)];
        slot.0 += 1;
        slot.1 += conf;
        slot.2 += f64::from(u8::from(correct));
        for (k, &v) in p.iter().enumerate() {
            let v = f64::from(v);
            let slot = &mut self.class_bins[k * bins + bin_index(v, bins)];
            slot.0 += 1;
            slot.1 += v;
            slot.2 += f64::from(u8::from(k == y));
        }
        self.ranked.push((conf, correct));
        if let Some(c) = crowd {
            self.crowd_bins.push(p, c, pred, conf);
        }
    }

    /// A face with crowd distribution `c` (`clogs`: ln c_k and the crowd entropy).
    fn crowd(
        &mut self,
        p: &[f32; K],
        c: &[f32; K],
        clogs: &([f64; K], f64),
        floored: &[f64; K],
        h: f64,
    ) {
        let (clogs, hc) = clogs;
        self.crowd_n += 1;
        let mut hm = 0.0;
        let mut cross = 0.0;
        for k in 0..K {
            let (ck, pk) = (f64::from(c[k]), f64::from(p[k]));
            let m = 0.5 * (ck + pk);
            if m > 0.0 {
                hm -= m * m.ln();
            }
            if ck > 0.0 {
                cross += ck * (clogs[k] - floored[k]);
            }
            self.soft += ck.min(pk);
        }
        self.jsd += ((hm - 0.5 * (hc + h)) / std::f64::consts::LN_2).clamp(0.0, 1.0);
        self.kl += cross;
    }

    fn finish(mut self, aleatoric: f64) -> Metrics {
        let labelled = self.ranked.len();
        let ece = {
            let sum: f64 = self
                .conf_bins
                .iter()
                .filter(|s| s.0 > 0)
                .map(|&(_, conf, correct)| (correct - conf).abs())
                .sum();
            mean(sum, labelled)
        };
        let classwise_ece = if labelled == 0 {
            f64::NAN
        } else {
            self.class_bins
                .iter()
                .filter(|s| s.0 > 0)
                .map(|&(_, p, hits)| (hits - p).abs())
                .sum::<f64>()
                / (labelled * K) as f64
        };
        let entropy = mean(self.entropy, labelled);
        Metrics {
            error: mean(self.wrong as f64, labelled),
            nll: mean(self.nll, labelled),
            ece,
            brier: mean(self.brier, labelled),
            classwise_ece,
            aurc: aurc_of(&mut self.ranked),
            entropy,
            aleatoric,
            epistemic: entropy - aleatoric,
            jsd: mean(self.jsd, self.crowd_n),
            soft_accuracy: mean(self.soft, self.crowd_n),
            kl_crowd: mean(self.kl, self.crowd_n),
            entropy_corr: self.corr.value(),
            crowd_ece: self.crowd_bins.ece(),
            crowd_cw_ece: self.crowd_bins.classwise(),
        }
    }
}

/// Running bins of [`crowd_ece`] and [`crowd_cw_ece`] over the faces with a label and a crowd.
struct CrowdBins<const K: usize> {
    bins: usize,
    faces: usize,
    /// Per confidence bin: count, Σ conf, Σ c[ŷ].
    conf: Vec<(usize, f64, f64)>,
    /// Per (class, bin of p_k): Σ p_k, Σ c_k.
    class: Vec<(f64, f64)>,
}

impl<const K: usize> CrowdBins<K> {
    fn new(bins: usize) -> Self {
        CrowdBins {
            bins,
            faces: 0,
            conf: vec![(0, 0.0, 0.0); bins],
            class: vec![(0.0, 0.0); bins * K],
        }
    }

    fn push(&mut self, p: &[f32; K], c: &[f32; K], pred: usize, conf: f64) {
        self.faces += 1;
        let slot = &mut self.conf[bin_index(conf, self.bins)];
        slot.0 += 1;
        slot.1 += conf;
        slot.2 += f64::from(c[pred]);
        for k in 0..K {
            let v = f64::from(p[k]);
            let slot = &mut self.class[k * self.bins + bin_index(v, self.bins)];
            slot.0 += v;
            slot.1 += f64::from(c[k]);
        }
    }

    fn ece(&self) -> f64 {
        let sum: f64 = self.conf.iter().map(|&(_, p, c)| (c - p).abs()).sum();
        mean(sum, self.faces)
    }

    fn classwise(&self) -> f64 {
        let sum: f64 = self.class.iter().map(|&(p, c)| (c - p).abs()).sum();
        mean(sum, self.faces * K)
    }
}
