//! The prediction of a set of samples (MC passes or ensemble members) and its uncertainty: the
//! predicted class, the mean probabilities, and the predictive entropy split into an aleatoric
//! and an epistemic part, per face ([`FaceSplit`]) and as means over faces ([`Uncertainty`]).
//!
//! The one definition of a face's numbers. The mean of n samples is summed in f64, in sample
//! order, and rounded to f32 ([`RunningMean`]); the predictive entropy is the entropy of that f32
//! mean; the aleatoric part is the mean of the samples' entropies (f64, sample order); the
//! epistemic part is their difference. [`mean_prediction`], [`face_splits`] and [`face_split`]
//! (whole sample sets) are folds of the running accumulators ([`RunningMean`],
//! [`RunningSplit`]) that explore uses for n = 1..T, so the value after n samples is bit for bit
//! the batch value on the first n.

/// The predicted class of a distribution: the index of its largest probability, the **first**
/// one when several are equal (a later class must be strictly larger to win; numpy's
/// `argmax`). 0 for an empty slice, and 0 when `p[0]` is NaN (nothing compares larger). Any
/// ordered values: f32 probabilities, ingest's f64 vote shares, train's soft targets.
pub fn argmax<T: PartialOrd>(p: &[T]) -> usize {
    let mut best = 0;
    for (k, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = k;
        }
    }
    best
}

/// The predicted class ([`argmax`]: the first maximum) and the confidence (maximum probability;
/// NaN for an empty slice).
pub fn predict(p: &[f32]) -> (usize, f64) {
    let best = argmax(p);
    (best, p.get(best).map_or(f64::NAN, |&v| f64::from(v)))
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
    crate::mean_or_nan(probs.iter().map(|p| entropy(p)).sum(), probs.len())
}

/// The running mean of one face's samples: per class, the f64 sum of the probabilities in the
/// order they were pushed, divided by the count and rounded to f32.
///
/// The sums start from −0.0, where std's `Sum` for f64 starts, so after n pushes they equal
/// `iter().sum()` over the same n values bit for bit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunningMean<const K: usize> {
    count: usize,
    sums: [f64; K],
}

impl<const K: usize> Default for RunningMean<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const K: usize> RunningMean<K> {
    /// No samples yet.
    pub const fn new() -> Self {
        RunningMean {
            count: 0,
            sums: [-0.0; K],
        }
    }

    /// Adds one sample's probabilities.
    pub fn push(&mut self, p: &[f32; K]) {
        for (sum, &v) in self.sums.iter_mut().zip(p) {
            *sum += f64::from(v);
        }
        self.count += 1;
    }

    /// The samples pushed so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The mean of the samples pushed so far (sum / count in f64, rounded to f32); NaN before
    /// the first.
    pub fn mean(&self) -> [f32; K] {
        let n = self.count as f64;
        std::array::from_fn(|k| (self.sums[k] / n) as f32)
    }
}

/// The running [`FaceSplit`] of one face: its [`RunningMean`] and the f64 sum of its samples'
/// entropies (from −0.0, as [`RunningMean`]'s sums).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunningSplit<const K: usize> {
    mean: RunningMean<K>,
    entropy_sum: f64,
}

impl<const K: usize> Default for RunningSplit<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const K: usize> RunningSplit<K> {
    /// No samples yet.
    pub const fn new() -> Self {
        RunningSplit {
            mean: RunningMean::new(),
            entropy_sum: -0.0,
        }
    }

    /// Adds one sample's probabilities.
    pub fn push(&mut self, p: &[f32; K]) {
        self.mean.push(p);
        self.entropy_sum += entropy(p);
    }

    /// The samples pushed so far.
    pub fn count(&self) -> usize {
        self.mean.count()
    }

    /// The mean prediction so far ([`RunningMean::mean`]).
    pub fn mean(&self) -> [f32; K] {
        self.mean.mean()
    }

    /// The mean entropy of the samples so far, nats (NaN before the first).
    pub fn aleatoric(&self) -> f64 {
        self.entropy_sum / self.count() as f64
    }

    /// The face's split after the samples so far: `FaceSplit::new(self.mean(),
    /// self.aleatoric())`.
    pub fn split(&self) -> FaceSplit<K> {
        FaceSplit::new(self.mean(), self.aleatoric())
    }
}

/// One face's prediction from a set of samples and the split of its uncertainty, in nats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceSplit<const K: usize> {
    /// The mean prediction p̄ ([`RunningMean::mean`]: f64 sums in sample order, rounded to f32).
    pub probs: [f32; K],
    /// Predictive entropy H[p̄] of the f32 mean.
    pub entropy: f64,
    /// Expected entropy (aleatoric): the mean over samples of H\[p_t\].
    pub aleatoric: f64,
    /// Mutual information (epistemic): `entropy − aleatoric`, not clamped. It is ≥ 0 for the
    /// exact mean, but `entropy` is that of p̄ rounded to f32, so when the samples (almost)
    /// agree it can come out slightly below 0: rounding moves H[p̄] by at most about
    /// 2⁻²⁴ (H + 1) (≈ 2e-7 nats for K = 8), and the tests' example of two samples a few ulps
    /// apart comes out 1.6e-8 below 0. Identical samples give exactly 0.
    pub epistemic: f64,
}

impl<const K: usize> FaceSplit<K> {
    /// The split of a face whose mean prediction is `probs` and whose samples' mean entropy is
    /// `aleatoric`: entropy = H\[`probs`\], epistemic = entropy − aleatoric.
    pub fn new(probs: [f32; K], aleatoric: f64) -> Self {
        let entropy = entropy(&probs);
        FaceSplit {
            probs,
            entropy,
            aleatoric,
            epistemic: entropy - aleatoric,
        }
    }

    /// The predicted class of the mean and its probability ([`predict`]).
    pub fn predicted(&self) -> (usize, f64) {
        predict(&self.probs)
    }

    /// The epistemic share of the predictive entropy, clamped to [0, 1] (0 when the entropy is
    /// not positive).
    pub fn epistemic_share(&self) -> f64 {
        if self.entropy > 0.0 {
            (self.epistemic / self.entropy).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// The prediction of the first `samples.len()` samples: the mean of their probabilities, face by
/// face (computed in f64, rounded to f32; [`RunningMean`]). Every sample slice holds the same
/// faces in order.
pub fn mean_prediction<const K: usize>(samples: &[&[[f32; K]]]) -> Vec<[f32; K]> {
    let faces = samples.first().map_or(0, |s| s.len());
    (0..faces)
        .map(|i| {
            let mut acc = RunningMean::new();
            for s in samples {
                acc.push(&s[i]);
            }
            acc.mean()
        })
        .collect()
}

/// The [`FaceSplit`] of every face under a set of samples (each slice one sample over all faces,
/// every slice the same faces in order), face by face.
pub fn face_splits<const K: usize>(samples: &[&[[f32; K]]]) -> Vec<FaceSplit<K>> {
    let faces = samples.first().map_or(0, |s| s.len());
    (0..faces)
        .map(|i| {
            let mut acc = RunningSplit::new();
            for s in samples {
                acc.push(&s[i]);
            }
            acc.split()
        })
        .collect()
}

/// The [`FaceSplit`] of one face from its samples (each row one sample's probabilities), equal
/// to [`face_splits`]'s entry for the face.
pub fn face_split<const K: usize>(samples: &[[f32; K]]) -> FaceSplit<K> {
    let mut acc = RunningSplit::new();
    for p in samples {
        acc.push(p);
    }
    acc.split()
}

/// The decomposition of predictive uncertainty, each a mean over faces, in nats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Uncertainty {
    /// Predictive entropy H[p̄] of the mean prediction.
    pub entropy: f64,
    /// Expected entropy (aleatoric): the mean over samples of H\[p_t\].
    pub aleatoric: f64,
    /// Mutual information (epistemic): H\[p̄\] − mean_t H\[p_t\].
    pub epistemic: f64,
}

/// The uncertainty of the prediction made of `samples` (each slice one sample over all faces).
pub fn uncertainty<const K: usize>(samples: &[&[[f32; K]]]) -> Uncertainty {
    let pbar = mean_prediction(samples);
    let entropy = mean_entropy(&pbar);
    let aleatoric =
        crate::mean_or_nan(samples.iter().map(|s| mean_entropy(s)).sum(), samples.len());
    Uncertainty {
        entropy,
        aleatoric,
        epistemic: entropy - aleatoric,
    }
}
