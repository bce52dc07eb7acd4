//! The metrics of the study for one prediction, in one pass over the faces: [`Metrics`] (one row
//! of `metrics.parquet`) and [`Evaluator`], which computes all of them at once, sharing the
//! logarithms.
//!
//! The definitions are `ferbayes_uq`'s (plain numerics over slices, with the conventions listed
//! there: the first arg-max, NaN for an empty input, nats except the JSD in bits, probabilities
//! floored at [`PROB_FLOOR`] inside logarithms, (lo, hi] calibration bins); the tests check that
//! [`Evaluator::evaluate`] agrees with its single-metric functions.

use ferbayes_uq::calibration::{aurc_of, bin_index, brier_row};
use ferbayes_uq::crowd::Pearson;
use ferbayes_uq::{PROB_FLOOR, entropy, mean_or_nan as mean, predict};

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
    /// ECE against the crowd's vote share on the predicted class
    /// ([`ferbayes_uq::calibration::crowd_ece`]).
    pub crowd_ece: f64,
    /// Classwise ECE against the crowd distribution
    /// ([`ferbayes_uq::calibration::crowd_cw_ece`]).
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

/// Running bins of [`ferbayes_uq::calibration::crowd_ece`] and
/// [`ferbayes_uq::calibration::crowd_cw_ece`] over the faces with a label and a crowd.
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
