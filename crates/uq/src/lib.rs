//! ferbayes' uncertainty numerics over plain slices: the one definition of every number the
//! analyze stage writes and `ferbayes predict` and `ferbayes explore` show for a face.
//!
//! Pure numerics: no I/O, no tensors, no Parquet, no other ferbayes crate. The analyze stage
//! aggregates these over its tables (its one-pass `Evaluator`, the curves over n, the Parquet
//! tables); predict and explore call the per-face functions, so one face's probabilities,
//! entropy split, predicted class and prediction set are the same bits wherever they are shown.
//!
//! A prediction is a row `[f32; K]` of class probabilities (K = 8 in the pipeline; the functions
//! are generic so tests can use fewer classes). `probs[i]` is face i's prediction, `labels[i]` its
//! majority class, `crowd[i]` its crowd vote distribution. Sums are accumulated in f64.
//!
//! Conventions every function follows:
//! - the predicted class is the first arg-max ([`argmax`]), the confidence the maximum
//!   probability;
//! - the prediction of n samples is the mean of their probabilities, summed in f64 in sample
//!   order and rounded to f32 ([`mean_prediction`], [`RunningMean`]);
//! - an empty input gives NaN (written as null in analyze's tables);
//! - logarithms are natural (nats) except the Jensen–Shannon divergence (base 2, in [0, 1]);
//! - NLL and KL clamp the predicted probability at [`PROB_FLOOR`]; 0·log 0 = 0;
//! - calibration bins are equal-width and half-open on the left, (lo, hi], with a value of exactly
//!   0 in the first bin (see [`calibration::bin_index`]);
//! - AURC ranks faces by confidence, descending; ties keep face order (a stable sort).
//!
//! Modules:
//! - [`predictive`]: arg-max, entropy, the mean prediction (batch and running), the per-face
//!   split of the predictive entropy into aleatoric and epistemic parts ([`FaceSplit`]);
//! - [`calibration`]: error, NLL, Brier, reliability bins and ECE, classwise ECE, crowd ECE and
//!   crowd reliability, AURC;
//! - [`temperature`]: temperature scaling (a golden-section search on log T of the NLL);
//! - [`crowd`]: agreement with the crowd (JSD, KL, soft accuracy) and correlations (Pearson,
//!   Spearman with average ranks, entropy correlation);
//! - [`conformal`]: split-conformal prediction sets and their metrics against the crowd;
//! - [`detection`]: selective prediction (risk–coverage) and OOD detection (AUROC, AUPR, FPR at
//!   95 % TPR).

pub mod calibration;
pub mod conformal;
pub mod crowd;
pub mod detection;
pub mod predictive;
pub mod temperature;

pub use predictive::{
    FaceSplit, RunningMean, RunningSplit, argmax, entropy, face_split, face_splits,
    mean_prediction, predict,
};

/// Floor of a predicted probability inside a logarithm (NLL, KL).
pub const PROB_FLOOR: f64 = 1e-12;

/// `sum / count`, NaN when `count` is 0: the mean of `count` values summing to `sum`.
pub fn mean_or_nan(sum: f64, count: usize) -> f64 {
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}
