//! The FER+ label rules (microsoft/FERPlus, `ferplus.py`), applied to the 10 vote counts of a face.
//!
//! 1. Outlier removal: every count <= 1 becomes 0. `S` is the sum after that.
//! 2. `majority`: if the largest count is > 0.5·S, one-hot on the first largest; else unknown.
//! 3. `crossentropy`: repeatedly take every class tied at the current largest remaining count,
//!    stopping once the taken counts reach 0.75·S, or 3 classes were taken, or unknown/NF was
//!    taken (an unknown/NF taken after some emotion is put back to 0). If the taken counts are
//!    <= 0.5·S or more than 3 classes were taken: unknown. Normalise.
//! 4. `multi_target`: keep classes with count >= 0.3·S; if they sum to <= 0.5·S: unknown.
//! 5. A target that peaks (first maximum) at unknown or NF drops the face; otherwise the two
//!    entries are removed and the 8 emotions renormalised.
//!
//! Besides the FER+ targets we keep the plain crowd distribution over the 8 emotions (no outlier
//! removal), which the analysis compares predictions against.

use ferbayes_core::classes::{NOT_A_FACE, UNKNOWN};
use ferbayes_core::{NUM_CLASSES, NUM_VOTES};
use ferbayes_uq::{argmax, entropy};

/// The FER+ target modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Majority,
    CrossEntropy,
    MultiTarget,
}

/// Every label derived from one face's votes.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    /// Majority class; `None` when FER+ drops the face under the majority rule.
    pub majority: Option<u8>,
    /// The `crossentropy` target; `None` when dropped.
    pub soft: Option<[f32; NUM_CLASSES]>,
    /// The `multi_target` set as 0/1; `None` when dropped.
    pub multi_target: Option<[f32; NUM_CLASSES]>,
    /// Plain vote distribution over the 8 emotions; `None` when they got no votes.
    pub crowd: Option<[f32; NUM_CLASSES]>,
    /// Entropy of `crowd` in nats.
    pub crowd_entropy: Option<f32>,
}

impl Labels {
    /// All labels of a face with the given vote counts (FER+ column order).
    pub fn from_votes(votes: &[u8; NUM_VOTES]) -> Labels {
        let majority = target(votes, Mode::Majority).map(|t| argmax(&t) as u8);
        let soft = target(votes, Mode::CrossEntropy).map(to_f32);
        let multi_target = target(votes, Mode::MultiTarget).map(|t| t.map(|v| f32::from(v > 0.0)));
        let crowd = crowd(votes);
        let crowd_entropy = crowd.map(|c| entropy(&c) as f32);
        Labels {
            majority,
            soft,
            multi_target,
            crowd,
            crowd_entropy,
        }
    }
}

/// The FER+ target of `mode` over the 8 emotions, or `None` when FER+ drops the face.
pub fn target(votes: &[u8; NUM_VOTES], mode: Mode) -> Option<[f64; NUM_CLASSES]> {
    let processed = process(votes, mode);
    if argmax(&processed) >= NUM_CLASSES {
        return None;
    }
    let mut out = [0.0; NUM_CLASSES];
    out.copy_from_slice(&processed[..NUM_CLASSES]);
    let sum: f64 = out.iter().sum();
    Some(out.map(|v| v / sum))
}

/// FER+ `_process_data`: the 10-entry target, normalised, or one-hot on unknown when rejected.
fn process(votes: &[u8; NUM_VOTES], mode: Mode) -> [f64; NUM_VOTES] {
    let mut unknown = [0.0; NUM_VOTES];
    unknown[UNKNOWN] = 1.0;
    // Outlier removal: a class with a single vote is noise.
    let mut raw = votes.map(|v| if v <= 1 { 0.0 } else { f64::from(v) });
    let total: f64 = raw.iter().sum();
    let mut emotion = [0.0; NUM_VOTES];
    match mode {
        Mode::Majority => {
            let i = argmax(&raw);
            if raw[i] > 0.5 * total {
                emotion[i] = raw[i];
            } else {
                emotion = unknown;
            }
        }
        Mode::CrossEntropy => {
            let (mut taken_sum, mut count, mut valid) = (0.0, 0usize, true);
            while taken_sum < 0.75 * total && count < 3 && valid {
                let max = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if max <= 0.0 {
                    break;
                }
                for i in 0..NUM_VOTES {
                    if raw[i] == max {
                        emotion[i] = max;
                        raw[i] = 0.0;
                        taken_sum += max;
                        count += 1;
                        if i == UNKNOWN || i == NOT_A_FACE {
                            valid = false;
                            // unknown/NF after some emotion was taken: put it back.
                            if emotion.iter().sum::<f64>() > max {
                                emotion[i] = 0.0;
                                count -= 1;
                            }
                            break;
                        }
                    }
                }
            }
            if emotion.iter().sum::<f64>() <= 0.5 * total || count > 3 {
                emotion = unknown;
            }
        }
        Mode::MultiTarget => {
            for i in 0..NUM_VOTES {
                if raw[i] >= 0.3 * total {
                    emotion[i] = raw[i];
                }
            }
            if emotion.iter().sum::<f64>() <= 0.5 * total {
                emotion = unknown;
            }
        }
    }
    let sum: f64 = emotion.iter().sum();
    emotion.map(|v| v / sum)
}

/// The plain vote distribution over the 8 emotions.
fn crowd(votes: &[u8; NUM_VOTES]) -> Option<[f32; NUM_CLASSES]> {
    let sum: u32 = votes[..NUM_CLASSES].iter().map(|&v| u32::from(v)).sum();
    (sum > 0).then(|| std::array::from_fn(|i| f32::from(votes[i]) / sum as f32))
}

fn to_f32<const N: usize>(values: [f64; N]) -> [f32; N] {
    values.map(|v| v as f32)
}
