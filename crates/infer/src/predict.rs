//! `ferbayes predict`: a user's own face photos through a trained model, with the prediction's
//! uncertainty split into its aleatoric and epistemic parts and a verdict in plain words.

use std::path::{Path, PathBuf};

use ferbayes_core::{EMOTIONS, NUM_CLASSES};
use serde::Serialize;

use crate::{Predictor, Result};

/// Mutual information (nats) above which the samples disagree enough to call the input
/// unfamiliar; a quarter of ln 2, the largest MI two equally likely opposite samples could have.
pub const EPISTEMIC_THRESHOLD: f64 = 0.25 * std::f64::consts::LN_2;
/// Largest mean probability below which the face is called ambiguous.
pub const CONFIDENT_PROBABILITY: f64 = 0.6;

/// The prediction for one image.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub image: PathBuf,
    /// Mean probability of each emotion over the samples, FER+ order.
    pub probabilities: Vec<(String, f64)>,
    pub emotion: String,
    pub confidence: f64,
    /// Entropy of the mean prediction (nats).
    pub predictive_entropy: f64,
    /// Mean entropy of the individual samples: ambiguity in the face itself (nats).
    pub aleatoric: f64,
    /// Mutual information between prediction and model: disagreement of the samples (nats).
    pub epistemic: f64,
    pub samples: usize,
    pub verdict: String,
    /// Set when the image was not already a 48x48 grayscale face.
    pub warning: Option<String>,
}

fn entropy(p: &[f64]) -> f64 {
    -p.iter()
        .filter(|&&v| v > 0.0)
        .map(|&v| v * v.ln())
        .sum::<f64>()
}

/// Summarises the samples of one face (each a probability vector).
pub fn summarise(
    image: &Path,
    samples: &[[f32; NUM_CLASSES]],
    warning: Option<String>,
) -> Prediction {
    let s = samples.len().max(1) as f64;
    let mut mean = [0.0f64; NUM_CLASSES];
    let mut aleatoric = 0.0;
    for p in samples {
        let p64: Vec<f64> = p.iter().map(|&v| f64::from(v)).collect();
        aleatoric += entropy(&p64) / s;
        for k in 0..NUM_CLASSES {
            mean[k] += p64[k] / s;
        }
    }
    let total = entropy(&mean);
    let epistemic = (total - aleatoric).max(0.0);
    let (best, &confidence) = mean
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap_or((0, &0.0));
    let emotion = EMOTIONS[best].to_owned();
    let verdict = if epistemic > EPISTEMIC_THRESHOLD {
        format!(
            "unsure: the samples disagree (epistemic {epistemic:.2} nats), so this input may look unlike the training faces; treat `{emotion}` with caution"
        )
    } else if confidence < CONFIDENT_PROBABILITY {
        let second = mean
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != best)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, _)| EMOTIONS[k])
            .unwrap_or("another emotion");
        format!(
            "ambiguous face: mostly `{emotion}` but also `{second}`; people would likely disagree about it too (aleatoric {aleatoric:.2} nats)"
        )
    } else {
        format!("clear `{emotion}` ({:.0}% probability)", 100.0 * confidence)
    };
    Prediction {
        image: image.to_owned(),
        probabilities: EMOTIONS
            .iter()
            .zip(mean)
            .map(|(e, p)| ((*e).to_owned(), p))
            .collect(),
        emotion,
        confidence,
        predictive_entropy: total,
        aleatoric,
        epistemic,
        samples: samples.len(),
        verdict,
        warning,
    }
}

/// Predicts every image in `paths` (PNG or JPEG; converted to a 48x48 grayscale face).
pub fn predict_images(predictor: &Predictor, paths: &[PathBuf]) -> Result<Vec<Prediction>> {
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let photo = ferbayes_ingest::photo::load_photo(path)?;
        let warning = (!photo.was_face_sized).then(|| {
            format!(
                "{}x{} image converted to a 48x48 grayscale face (centre crop, resize): a cropped, roughly frontal face is expected",
                photo.original.0, photo.original.1
            )
        });
        let samples = predictor.predict(&photo.pixels, 0)?;
        out.push(summarise(path, &samples, warning));
    }
    Ok(out)
}

/// The terminal rendering of a prediction: a bar per emotion and the verdict.
pub fn render(p: &Prediction) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "{}", p.image.display());
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
    let _ = writeln!(s, "  verdict: {}", p.verdict);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_hot(k: usize) -> [f32; NUM_CLASSES] {
        let mut p = [0.0; NUM_CLASSES];
        p[k] = 1.0;
        p
    }

    #[test]
    fn entropy_splits_into_aleatoric_and_epistemic() {
        // Two confident samples that disagree: mean (0.5, 0.5) → H = ln 2, aleatoric 0,
        // epistemic ln 2.
        let p = summarise(Path::new("x.png"), &[one_hot(0), one_hot(1)], None);
        assert!((p.predictive_entropy - std::f64::consts::LN_2).abs() < 1e-9);
        assert!(p.aleatoric.abs() < 1e-9);
        assert!((p.epistemic - std::f64::consts::LN_2).abs() < 1e-9);
        assert!(p.verdict.starts_with("unsure"), "{}", p.verdict);

        // Two identical uncertain samples (0.5, 0.5): all aleatoric, no epistemic.
        let mut half = [0.0; NUM_CLASSES];
        half[3] = 0.5;
        half[4] = 0.5;
        let p = summarise(Path::new("x.png"), &[half, half], None);
        assert!((p.aleatoric - std::f64::consts::LN_2).abs() < 1e-6);
        assert!(p.epistemic.abs() < 1e-6);
        assert!(
            p.verdict.starts_with("ambiguous") && p.verdict.contains("anger"),
            "{}",
            p.verdict
        );

        let p = summarise(Path::new("x.png"), &[one_hot(1); 3], None);
        assert_eq!(p.emotion, "happiness");
        assert!(p.verdict.starts_with("clear"), "{}", p.verdict);
        assert!(render(&p).contains("happiness 100.0%"));
    }
}
