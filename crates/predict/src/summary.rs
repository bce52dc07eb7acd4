//! One face's prediction: the mean probabilities over the samples, the predictive entropy split
//! into its aleatoric and epistemic parts, and a verdict in plain words.
//!
//! The numbers are `ferbayes_uq`'s per-face split ([`ferbayes_uq::face_split`]), the definition
//! analyze's tables and explore's pages use: the mean of the samples summed in f64 and rounded to
//! f32, the entropy of that mean, the samples' mean entropy, their difference (not clamped, so it
//! can be a hair below 0 when the samples agree), and the first of equal largest probabilities as
//! the predicted class.

use std::path::{Path, PathBuf};

use ferbayes_core::{EMOTIONS, NUM_CLASSES};
use ferbayes_uq::{FaceSplit, argmax, face_split};
use serde::Serialize;

use crate::conformal::{PredictionSet, SetThreshold};
use ferbayes_faces::FaceBox;

/// Mutual information (nats) above which the samples disagree enough to call the input
/// unfamiliar; a quarter of ln 2, the largest MI two equally likely opposite samples could have.
pub const EPISTEMIC_THRESHOLD: f64 = 0.25 * std::f64::consts::LN_2;
/// Largest mean probability below which the face is called ambiguous.
pub const CONFIDENT_PROBABILITY: f64 = 0.6;

/// What the uncertainty says about a face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// One emotion dominates and the samples agree.
    #[serde(rename = "confident")]
    Confident,
    /// The samples agree, but on a spread over emotions: the face itself is ambiguous.
    #[serde(rename = "ambiguous face")]
    AmbiguousFace,
    /// The samples disagree: the input may look unlike the training faces.
    #[serde(rename = "unsure model")]
    UnsureModel,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Confident => "confident",
            Verdict::AmbiguousFace => "ambiguous face",
            Verdict::UnsureModel => "unsure model",
        }
    }
}

/// The prediction for one face of one image.
#[derive(Debug, Clone, Serialize)]
pub struct FacePrediction {
    pub image: PathBuf,
    /// Index of the face in its image (left to right).
    pub face: usize,
    /// Where the face is, in pixels of the original image.
    #[serde(rename = "box")]
    pub bbox: FaceBox,
    /// Mean probability of each emotion over the samples, FER+ order: f32 values (the mean is
    /// rounded to f32, as analyze rounds it) widened to f64.
    pub probabilities: Vec<(String, f64)>,
    /// The emotion with the largest mean probability (the first of equal ones).
    pub emotion: String,
    pub confidence: f64,
    /// Entropy of the mean prediction (nats) = aleatoric + epistemic.
    pub predictive_entropy: f64,
    /// Mean entropy of the individual samples: ambiguity in the face itself (nats).
    pub aleatoric: f64,
    /// Mutual information between prediction and model: disagreement of the samples (nats);
    /// predictive entropy − aleatoric, not clamped at 0.
    pub epistemic: f64,
    pub samples: usize,
    pub verdict: Verdict,
    /// The verdict in a sentence.
    pub explanation: String,
    /// Set when a whole image (`--no-detect`) was not already a 48x48 grayscale face.
    pub warning: Option<String>,
    /// The split-conformal prediction set at α = 0.1, when the profile's analyze tables
    /// calibrate one for this model (see [`crate::conformal`]).
    pub prediction_set: Option<PredictionSet>,
    /// Every sample's probabilities (for the folder table).
    #[serde(skip)]
    pub sample_probs: Vec<[f32; NUM_CLASSES]>,
}

/// Where a face is and how it was found.
#[derive(Debug, Clone)]
pub struct FaceSource<'a> {
    pub image: &'a Path,
    pub face: usize,
    pub bbox: FaceBox,
    pub warning: Option<String>,
}

/// Summarises the samples of one face (each a probability vector; at least one, else the numbers
/// are NaN) through [`ferbayes_uq::face_split`].
pub fn summarise(source: FaceSource<'_>, samples: &[[f32; NUM_CLASSES]]) -> FacePrediction {
    let split = face_split(samples);
    let (best, confidence) = split.predicted();
    let (verdict, explanation) = judge(&split);
    FacePrediction {
        image: source.image.to_owned(),
        face: source.face,
        bbox: source.bbox,
        probabilities: EMOTIONS
            .iter()
            .zip(split.probs)
            .map(|(e, p)| ((*e).to_owned(), f64::from(p)))
            .collect(),
        emotion: EMOTIONS[best].to_owned(),
        confidence,
        predictive_entropy: split.entropy,
        aleatoric: split.aleatoric,
        epistemic: split.epistemic,
        samples: samples.len(),
        verdict,
        explanation,
        warning: source.warning,
        prediction_set: None,
        sample_probs: samples.to_vec(),
    }
}

/// The verdict on a face.
fn judge(split: &FaceSplit<NUM_CLASSES>) -> (Verdict, String) {
    let (best, confidence) = split.predicted();
    let (aleatoric, epistemic) = (split.aleatoric, split.epistemic);
    let emotion = EMOTIONS[best];
    if epistemic > EPISTEMIC_THRESHOLD {
        (
            Verdict::UnsureModel,
            format!(
                "unsure: the samples disagree (epistemic {epistemic:.2} nats), so this input may look unlike the training faces; treat `{emotion}` with caution"
            ),
        )
    } else if confidence < CONFIDENT_PROBABILITY {
        // The runner-up: the largest of the other classes (the first of equal ones).
        let mut others = split.probs;
        others[best] = f32::NEG_INFINITY;
        let second = EMOTIONS[argmax(&others)];
        (
            Verdict::AmbiguousFace,
            format!(
                "ambiguous face: mostly `{emotion}` but also `{second}`; people would likely disagree about it too (aleatoric {aleatoric:.2} nats)"
            ),
        )
    } else {
        (
            Verdict::Confident,
            format!("clear `{emotion}` ({:.0}% probability)", 100.0 * confidence),
        )
    }
}

/// The terminal rendering of a prediction: where the face is, a bar per emotion and the verdict.
pub fn render(p: &FacePrediction) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let b = &p.bbox;
    let _ = writeln!(
        s,
        "{} face {} at x {}, y {}, {}x{} px",
        p.image.display(),
        p.face + 1,
        b.x,
        b.y,
        b.width,
        b.height
    );
    if let Some(w) = &p.warning {
        let _ = writeln!(s, "  note: {w}");
    }
    for (name, prob) in &p.probabilities {
        let width = (prob * 40.0).round() as usize;
        let _ = writeln!(
            s,
            "  {name:>10} {:>5.1}% {}",
            100.0 * prob,
            "█".repeat(width)
        );
    }
    let _ = writeln!(
        s,
        "  predicted: {} ({:.1}%)",
        p.emotion,
        100.0 * p.confidence
    );
    let _ = writeln!(
        s,
        "  uncertainty: predictive entropy {:.3} nats = aleatoric {:.3} + epistemic {:.3} ({} samples)",
        p.predictive_entropy, p.aleatoric, p.epistemic, p.samples
    );
    let _ = writeln!(s, "  verdict: {} — {}", p.verdict.name(), p.explanation);
    if let Some(set) = &p.prediction_set {
        let _ = writeln!(
            s,
            "  prediction set (α = {}, holds the crowd's majority label for ≥ {:.0}% of faces): {{{}}}",
            set.alpha,
            100.0 * (1.0 - set.alpha),
            set.emotions.join(", ")
        );
    }
    s
}

impl FacePrediction {
    /// The mean probabilities as the f32 values they were computed as (narrowing the widened
    /// values gives them back exactly).
    pub fn mean(&self) -> [f32; NUM_CLASSES] {
        std::array::from_fn(|k| {
            self.probabilities
                .get(k)
                .map_or(f32::NAN, |(_, p)| *p as f32)
        })
    }

    /// Adds the prediction set under `threshold` (nothing when none is calibrated): the classes
    /// of [`ferbayes_uq::conformal::prediction_set`], the rule of analyze's conformal table.
    pub fn with_set(mut self, threshold: &SetThreshold) -> Self {
        if let SetThreshold::Calibrated { alpha, qhat } = *threshold {
            let set = ferbayes_uq::conformal::prediction_set(&self.mean(), qhat);
            let emotions = ferbayes_uq::conformal::set_classes(set)
                .map(|k| EMOTIONS[k].to_owned())
                .collect();
            self.prediction_set = Some(PredictionSet {
                alpha,
                qhat,
                emotions,
            });
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_hot(k: usize) -> [f32; NUM_CLASSES] {
        let mut p = [0.0; NUM_CLASSES];
        p[k] = 1.0;
        p
    }

    fn source() -> FaceSource<'static> {
        FaceSource {
            image: Path::new("x.png"),
            face: 0,
            bbox: FaceBox {
                x: 1,
                y: 2,
                width: 30,
                height: 30,
                score: None,
            },
            warning: None,
        }
    }

    #[test]
    fn entropy_splits_into_aleatoric_and_epistemic() {
        // Two confident samples that disagree: mean (0.5, 0.5) → H = ln 2, aleatoric 0,
        // epistemic ln 2.
        let p = summarise(source(), &[one_hot(0), one_hot(1)]);
        assert!((p.predictive_entropy - std::f64::consts::LN_2).abs() < 1e-9);
        assert!(p.aleatoric.abs() < 1e-9);
        assert!((p.epistemic - std::f64::consts::LN_2).abs() < 1e-9);
        assert_eq!(p.verdict, Verdict::UnsureModel);
        assert!(p.explanation.starts_with("unsure"), "{}", p.explanation);

        // Two identical uncertain samples (0.5, 0.5): all aleatoric, no epistemic.
        let mut half = [0.0; NUM_CLASSES];
        half[3] = 0.5;
        half[4] = 0.5;
        let p = summarise(source(), &[half, half]);
        assert!((p.aleatoric - std::f64::consts::LN_2).abs() < 1e-6);
        assert!(p.epistemic.abs() < 1e-6);
        assert_eq!(p.verdict, Verdict::AmbiguousFace);
        assert!(p.explanation.contains("anger"), "{}", p.explanation);

        let p = summarise(source(), &[one_hot(1); 3]);
        assert_eq!(p.emotion, "happiness");
        assert_eq!(p.verdict, Verdict::Confident);
        let text = render(&p);
        assert!(text.contains("happiness 100.0%"), "{text}");
        assert!(
            text.contains("x.png face 1 at x 1, y 2, 30x30 px"),
            "{text}"
        );
        let json = serde_json::to_value(&p).expect("json");
        assert_eq!(json["verdict"], "confident");
        assert_eq!(json["box"]["width"], 30);
    }

    #[test]
    fn the_numbers_are_the_uq_split_of_the_samples() {
        // Three samples whose mean (0.4, 0.4, 0.2) ties neutral and happiness: the first wins,
        // and the runner-up named in the verdict is the other one.
        let mut a = [0.0; NUM_CLASSES];
        a[..3].copy_from_slice(&[0.5, 0.3, 0.2]);
        let mut b = [0.0; NUM_CLASSES];
        b[..3].copy_from_slice(&[0.3, 0.5, 0.2]);
        let samples = [a, b, [0.4, 0.4, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0]];
        let p = summarise(source(), &samples);
        let want = face_split(&samples);
        assert_eq!(p.emotion, "neutral");
        assert_eq!(p.confidence, f64::from(want.probs[0]));
        assert_eq!(
            p.mean(),
            want.probs,
            "the f32 mean, widened and narrowed back exactly"
        );
        for ((_, got), want) in p.probabilities.iter().zip(want.probs) {
            assert_eq!(*got, f64::from(want));
        }
        assert_eq!(
            (p.predictive_entropy, p.aleatoric, p.epistemic),
            (want.entropy, want.aleatoric, want.epistemic)
        );
        assert_eq!(p.verdict, Verdict::AmbiguousFace);
        assert!(
            p.explanation.contains("but also `happiness`"),
            "{}",
            p.explanation
        );
    }
}
