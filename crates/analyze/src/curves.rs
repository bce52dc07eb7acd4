//! Metrics as a function of the number of samples n, with running sums over the samples.

use ferbayes_core::seed::{mix, stream_of};
use ferbayes_core::{Arch, Method, NUM_CLASSES, Split};
use ferbayes_uq::RunningMean;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::data::Samples;
use crate::metrics::{Evaluator, Metrics};

/// The metrics of one (arch, method, split) for n = 1..T.
#[derive(Debug, Clone)]
pub struct Curve {
    pub arch: Arch,
    pub method: Method,
    pub split: Split,
    /// T: samples (MC passes or ensemble members) in the infer file.
    pub samples: usize,
    /// `index[n - 1]`: the prediction of samples 0..n−1 in index order (the main curve).
    pub index: Vec<Metrics>,
    /// Random member orderings behind `ordering_mean`/`ordering_std` (0 for the MC methods).
    pub orderings: usize,
    /// Mean over the random orderings (ensembles); the index curve for the MC methods.
    pub ordering_mean: Vec<Metrics>,
    /// Population standard deviation over the random orderings (ensembles); 0 for the MC methods
    /// (NaN, i.e. null, wherever the metric itself is undefined).
    pub ordering_std: Vec<Metrics>,
}

impl Curve {
    /// The n (1-based) with the lowest error (the best accuracy); the smallest such n on ties.
    pub fn best_accuracy_n(&self) -> usize {
        argmin(self.index.iter().map(|m| m.error))
    }

    /// The n with the lowest ECE; the smallest such n on ties.
    pub fn best_ece_n(&self) -> usize {
        argmin(self.index.iter().map(|m| m.ece))
    }

    /// The metrics at n (1-based), if n ≤ T.
    pub fn at(&self, n: usize) -> Option<&Metrics> {
        n.checked_sub(1).and_then(|i| self.index.get(i))
    }

    /// The metrics at n = T.
    pub fn last(&self) -> Option<&Metrics> {
        self.index.last()
    }
}

/// 1-based position of the smallest non-NaN value (1 when all are NaN).
fn argmin(values: impl Iterator<Item = f64>) -> usize {
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in values.enumerate() {
        if !v.is_nan() && best.is_none_or(|(_, b)| v < b) {
            best = Some((i, v));
        }
    }
    best.map_or(1, |(i, _)| i + 1)
}

/// `count` random permutations of 0..samples for (arch, method), from ChaCha8 seeded with
/// `seed` mixed with a hash of `analyze/<arch>/<method>`; the same on both splits and every run.
pub fn orderings(
    seed: u64,
    arch: Arch,
    method: Method,
    samples: usize,
    count: usize,
) -> Vec<Vec<usize>> {
    let stream = stream_of(&format!("analyze/{arch}/{method}"));
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, stream));
    (0..count)
        .map(|_| {
            let mut order: Vec<usize> = (0..samples).collect();
            order.shuffle(&mut rng);
            order
        })
        .collect()
}

/// The metrics for n = 1..order.len(), adding the samples in `order` one at a time to each face's
/// [`RunningMean`] (the prediction at n is the mean of the first n samples of `order`).
/// `sample_entropy[t]` is the labelled faces' mean entropy under sample t
/// ([`Evaluator::labelled_entropy`]).
pub fn curve(
    samples: &Samples,
    evaluator: &Evaluator<NUM_CLASSES>,
    sample_entropy: &[f64],
    order: &[usize],
) -> Vec<Metrics> {
    let faces = samples.faces;
    let mut running = vec![RunningMean::<NUM_CLASSES>::new(); faces];
    let mut mean = vec![[0.0f32; NUM_CLASSES]; faces];
    let mut entropy_sum = 0.0;
    let mut out = Vec::with_capacity(order.len());
    for (j, &t) in order.iter().enumerate() {
        let n = (j + 1) as f64;
        for ((acc, avg), p) in running
            .iter_mut()
            .zip(mean.iter_mut())
            .zip(samples.sample(t))
        {
            acc.push(p);
            *avg = acc.mean();
        }
        entropy_sum += sample_entropy[t];
        out.push(evaluator.evaluate(&mean, entropy_sum / n));
    }
    out
}

/// Zero standard deviations, NaN where the metric itself is NaN.
pub fn zero_std(index: &[Metrics]) -> Vec<Metrics> {
    index
        .iter()
        .map(|m| Metrics::from_array(m.to_array().map(|v| if v.is_nan() { v } else { 0.0 })))
        .collect()
}

/// Per-n mean and standard deviation over several runs of the same length.
pub fn spread(runs: &[Vec<Metrics>]) -> (Vec<Metrics>, Vec<Metrics>) {
    let len = runs.iter().map(Vec::len).min().unwrap_or(0);
    (0..len)
        .map(|n| {
            let at: Vec<Metrics> = runs.iter().map(|r| r[n]).collect();
            Metrics::mean_std(&at)
        })
        .unzip()
}
