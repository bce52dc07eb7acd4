//! Dataset-shift corruptions and generated out-of-distribution sets, as deterministic pure
//! functions of a 48x48 grayscale face and a seed.
//!
//! # Corruptions
//!
//! Seven corruptions at five severities, in the spirit of ImageNet-C (Hendrycks & Dietterich
//! 2019) as used by Ovadia et al. (2019), "Can you trust your model's uncertainty?". The
//! parameters are stated on intensities in `[0, 1]` (a byte `p` is `p / 255`):
//!
//! | corruption       | parameter                  | 1    | 2    | 3    | 4    | 5    |
//! |------------------|----------------------------|------|------|------|------|------|
//! | `gaussian_noise` | noise σ                    | 0.04 | 0.08 | 0.12 | 0.18 | 0.26 |
//! | `gaussian_blur`  | kernel σ (px)              | 0.5  | 1    | 1.5  | 2    | 3    |
//! | `contrast`       | factor c                   | 0.75 | 0.5  | 0.35 | 0.2  | 0.1  |
//! | `brightness`     | offset b                   | 0.1  | 0.2  | 0.3  | 0.4  | 0.5  |
//! | `occlusion`      | black square side (px)     | 8    | 12   | 16   | 20   | 24   |
//! | `rotation`       | angle (degrees, ± seeded)  | 8    | 16   | 24   | 32   | 40   |
//! | `pixelate`       | block side (px)            | 2    | 3    | 4    | 6    | 8    |
//!
//! - **gaussian_noise**: `x' = x + σ·z`, one standard normal `z` per pixel (Marsaglia's polar
//!   method on a ChaCha8 stream).
//! - **gaussian_blur**: separable Gaussian kernel of radius `⌈3σ⌉`, weights `exp(−k²/2σ²)`
//!   normalised to sum 1; pixels outside the image take the value of the nearest edge pixel
//!   (edge clamp, scipy's `nearest` mode). Both passes run in `f64`; only the result is rounded.
//! - **contrast**: `x' = (x − m)·c + m` with `m` the face's own mean intensity.
//! - **brightness**: `x' = x + b` (grayscale, so no HSV round trip as in ImageNet-C).
//! - **occlusion**: a black (0) square of the given side, placed uniformly at random so that it
//!   lies fully inside the image.
//! - **rotation**: rotation about the image centre `(23.5, 23.5)` by `±angle`, the sign drawn
//!   from the seed; positive angles turn the face counter-clockwise as displayed. Each output
//!   pixel samples the input bilinearly at its inverse-rotated position; positions outside the
//!   image are clamped to the nearest edge (edge clamp, so corners repeat border pixels
//!   instead of turning black). See [`rotate`].
//! - **pixelate**: the image is cut into `s x s` blocks from the top-left corner (blocks at the
//!   right and bottom edges would be partial, though every listed side divides 48) and each
//!   block is replaced by its mean, rounded to nearest with halves up (exact integer
//!   arithmetic).
//!
//! Every result is rounded to the nearest byte (halves away from zero) and clamped to `0..=255`.
//! The arithmetic is done on the byte scale (`x' = x + 255·b`, and so on), which is the same map
//! as on `[0, 1]`.
//!
//! # Generated out-of-distribution sets
//!
//! [`GeneratedOod`] builds inputs that are not faces (or, for [`GeneratedOod::UpsideDown`], are
//! near-OOD faces): uniform noise, smooth noise, the face's own pixels shuffled, and the face
//! flipped vertically. See [`generate`].
//!
//! # Reproducibility
//!
//! Every function here is pure: the output depends only on the face, the kind, the severity and
//! `seed` (callers pass `mix(base_seed, face_row)`). The random draws come from
//! `ChaCha8Rng::seed_from_u64(mix(seed, stream_of("shift/<name>")))`, one named stream per
//! corruption or OOD kind, so that two kinds never share draws for the same seed. The draws do
//! not depend on the severity: for one seed, the noise field is the same standard normal field
//! scaled by σ, and the rotation sign is the same at every severity. Results are bit-identical
//! for a given (face, seed) on a given platform; the only floating-point functions used beyond
//! IEEE arithmetic are `ln`, `exp`, `sin` and `cos` from the platform's maths library.

use std::fmt;
use std::str::FromStr;

use ferbayes_core::seed::{mix, stream_of};
use ferbayes_core::{IMAGE_PIXELS, IMAGE_SIDE};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Number of severity levels; valid severities are `1..=SEVERITIES`.
pub const SEVERITIES: u8 = 5;

/// Why a corruption or generated set could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShiftError {
    /// A severity outside `1..=SEVERITIES`.
    #[error("severity {0} is outside 1..={SEVERITIES}")]
    Severity(u8),
    /// A face that is not `IMAGE_PIXELS` bytes long.
    #[error("a face must have {IMAGE_PIXELS} pixels (48x48), got {0}")]
    FaceLength(usize),
    /// A parameter of [`rotate`] or [`gaussian_blur`] that is not a finite number.
    #[error("{what} must be a finite number, got {value}")]
    NotFinite {
        /// Which parameter.
        what: &'static str,
        /// The value given.
        value: f64,
    },
    /// An unknown corruption or OOD-set name.
    #[error("unknown {what} `{name}` (expected one of: {expected})")]
    UnknownName {
        /// The kind of name (`corruption` or `generated OOD set`).
        what: &'static str,
        /// The name given.
        name: String,
        /// The known names, comma-separated.
        expected: String,
    },
}

/// Result alias of this module.
pub type Result<T, E = ShiftError> = std::result::Result<T, E>;

/// A dataset-shift corruption (see the [module documentation](self) for the severity table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Corruption {
    /// Additive Gaussian noise.
    GaussianNoise,
    /// Separable Gaussian blur with edge-clamped borders.
    GaussianBlur,
    /// Contrast reduction towards the face's mean.
    Contrast,
    /// Additive brightness offset.
    Brightness,
    /// A black square patch at a seeded position.
    Occlusion,
    /// Rotation about the centre by a seeded-sign angle, bilinear, edge clamp.
    Rotation,
    /// Block averaging.
    Pixelate,
}

/// Noise σ on `[0, 1]` intensities, per severity.
const NOISE_SIGMA: [f64; 5] = [0.04, 0.08, 0.12, 0.18, 0.26];
/// Blur kernel σ in pixels, per severity.
const BLUR_SIGMA: [f64; 5] = [0.5, 1.0, 1.5, 2.0, 3.0];
/// Contrast factor, per severity.
const CONTRAST_FACTOR: [f64; 5] = [0.75, 0.5, 0.35, 0.2, 0.1];
/// Brightness offset on `[0, 1]` intensities, per severity.
const BRIGHTNESS_OFFSET: [f64; 5] = [0.1, 0.2, 0.3, 0.4, 0.5];
/// Side of the occluding square in pixels, per severity.
const OCCLUSION_SIDE: [usize; 5] = [8, 12, 16, 20, 24];
/// Rotation angle in degrees, per severity.
const ROTATION_DEGREES: [f64; 5] = [8.0, 16.0, 24.0, 32.0, 40.0];
/// Pixelation block side in pixels, per severity.
const PIXELATE_BLOCK: [usize; 5] = [2, 3, 4, 6, 8];

/// Kernel σ (pixels) of the blur behind [`GeneratedOod::SmoothNoise`].
pub const SMOOTH_NOISE_SIGMA: f64 = 2.0;

impl Corruption {
    /// Every corruption, in canonical order.
    pub const ALL: [Corruption; 7] = [
        Corruption::GaussianNoise,
        Corruption::GaussianBlur,
        Corruption::Contrast,
        Corruption::Brightness,
        Corruption::Occlusion,
        Corruption::Rotation,
        Corruption::Pixelate,
    ];

    /// The snake_case name used in settings, artifact paths and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Corruption::GaussianNoise => "gaussian_noise",
            Corruption::GaussianBlur => "gaussian_blur",
            Corruption::Contrast => "contrast",
            Corruption::Brightness => "brightness",
            Corruption::Occlusion => "occlusion",
            Corruption::Rotation => "rotation",
            Corruption::Pixelate => "pixelate",
        }
    }

    /// Whether the output depends on the seed (noise, occlusion position, rotation sign);
    /// the other corruptions ignore it.
    pub fn uses_seed(self) -> bool {
        matches!(
            self,
            Corruption::GaussianNoise | Corruption::Occlusion | Corruption::Rotation
        )
    }

    /// The parameter of this corruption at `severity` (the module's severity table), or
    /// [`ShiftError::Severity`] outside `1..=SEVERITIES`.
    pub fn parameter(self, severity: u8) -> Result<f64> {
        let i = severity_index(severity)?;
        Ok(match self {
            Corruption::GaussianNoise => NOISE_SIGMA[i],
            Corruption::GaussianBlur => BLUR_SIGMA[i],
            Corruption::Contrast => CONTRAST_FACTOR[i],
            Corruption::Brightness => BRIGHTNESS_OFFSET[i],
            Corruption::Occlusion => OCCLUSION_SIDE[i] as f64,
            Corruption::Rotation => ROTATION_DEGREES[i],
            Corruption::Pixelate => PIXELATE_BLOCK[i] as f64,
        })
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Corruption {
    type Err = ShiftError;

    fn from_str(s: &str) -> Result<Self> {
        Corruption::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| unknown("corruption", s, Corruption::ALL.map(Corruption::as_str)))
    }
}

/// A generated out-of-distribution set (see [`generate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GeneratedOod {
    /// I.i.d. uniform bytes; ignores the face.
    UniformNoise,
    /// Uniform noise blurred with σ = 2 px and stretched to `0..=255`; ignores the face.
    SmoothNoise,
    /// A seeded random permutation of the face's own pixels (same histogram).
    ShuffledPixels,
    /// The face flipped vertically (ignores the seed).
    UpsideDown,
}

impl GeneratedOod {
    /// Every generated set, in canonical order.
    pub const ALL: [GeneratedOod; 4] = [
        GeneratedOod::UniformNoise,
        GeneratedOod::SmoothNoise,
        GeneratedOod::ShuffledPixels,
        GeneratedOod::UpsideDown,
    ];

    /// The snake_case name used in settings, artifact paths and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            GeneratedOod::UniformNoise => "uniform_noise",
            GeneratedOod::SmoothNoise => "smooth_noise",
            GeneratedOod::ShuffledPixels => "shuffled_pixels",
            GeneratedOod::UpsideDown => "upside_down",
        }
    }

    /// Near-OOD: still a face, only transformed (true for [`GeneratedOod::UpsideDown`]); the
    /// others are far-OOD.
    pub fn is_near_ood(self) -> bool {
        matches!(self, GeneratedOod::UpsideDown)
    }

    /// Whether the output depends on the seed (false only for [`GeneratedOod::UpsideDown`]).
    pub fn uses_seed(self) -> bool {
        !matches!(self, GeneratedOod::UpsideDown)
    }

    /// Whether the output depends on the face (false for the two noise sets).
    pub fn uses_face(self) -> bool {
        matches!(
            self,
            GeneratedOod::ShuffledPixels | GeneratedOod::UpsideDown
        )
    }
}

impl fmt::Display for GeneratedOod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GeneratedOod {
    type Err = ShiftError;

    fn from_str(s: &str) -> Result<Self> {
        GeneratedOod::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                unknown(
                    "generated OOD set",
                    s,
                    GeneratedOod::ALL.map(GeneratedOod::as_str),
                )
            })
    }
}

fn unknown<const N: usize>(what: &'static str, name: &str, known: [&str; N]) -> ShiftError {
    ShiftError::UnknownName {
        what,
        name: name.to_owned(),
        expected: known.join(", "),
    }
}

/// `severity - 1` for a valid severity.
fn severity_index(severity: u8) -> Result<usize> {
    if (1..=SEVERITIES).contains(&severity) {
        Ok(usize::from(severity - 1))
    } else {
        Err(ShiftError::Severity(severity))
    }
}

fn check_face(face: &[u8]) -> Result<()> {
    if face.len() == IMAGE_PIXELS {
        Ok(())
    } else {
        Err(ShiftError::FaceLength(face.len()))
    }
}

/// The named random stream of one corruption or OOD kind for `seed`.
fn stream(seed: u64, name: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(seed, stream_of(&format!("shift/{name}"))))
}

/// Rounds to the nearest byte (halves away from zero) and clamps to `0..=255`.
fn to_byte(v: f64) -> u8 {
    // `as` saturates, and NaN (which no function here produces) would become 0.
    v.round().clamp(0.0, 255.0) as u8
}

fn to_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().map(|&v| to_byte(v)).collect()
}

fn to_f64(face: &[u8]) -> Vec<f64> {
    face.iter().map(|&p| f64::from(p)).collect()
}

/// Applies `corruption` at `severity` (`1..=SEVERITIES`) to a 48x48 face (row-major,
/// `IMAGE_PIXELS` bytes). `seed` drives the random parts (noise, patch position, rotation
/// sign); pass `mix(base_seed, face_row)` for per-face randomness.
///
/// Errors: [`ShiftError::Severity`] for a severity outside `1..=SEVERITIES`,
/// [`ShiftError::FaceLength`] for a face of the wrong size. The output always has
/// `IMAGE_PIXELS` bytes.
pub fn corrupt(face: &[u8], corruption: Corruption, severity: u8, seed: u64) -> Result<Vec<u8>> {
    let i = severity_index(severity)?;
    check_face(face)?;
    Ok(match corruption {
        Corruption::GaussianNoise => gaussian_noise(face, NOISE_SIGMA[i], seed),
        Corruption::GaussianBlur => to_bytes(&blur_f64(&to_f64(face), BLUR_SIGMA[i])),
        Corruption::Contrast => contrast(face, CONTRAST_FACTOR[i]),
        Corruption::Brightness => {
            let offset = 255.0 * BRIGHTNESS_OFFSET[i];
            face.iter()
                .map(|&p| to_byte(f64::from(p) + offset))
                .collect()
        }
        Corruption::Occlusion => occlude(face, OCCLUSION_SIDE[i], seed),
        Corruption::Rotation => {
            let mut rng = stream(seed, Corruption::Rotation.as_str());
            let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
            rotate_unchecked(face, sign * ROTATION_DEGREES[i])
        }
        Corruption::Pixelate => pixelate(face, PIXELATE_BLOCK[i]),
    })
}

/// Rotates a 48x48 face by `degrees` about its centre `(23.5, 23.5)`; positive angles turn it
/// counter-clockwise as displayed (rows top to bottom). Output pixel `(x, y)` samples the input
/// bilinearly at `R(−degrees)·((x, y) − centre) + centre`, with the sampling position clamped to
/// the image (edge clamp). A constant image is unchanged at any angle, and 0° is the identity.
///
/// Errors: [`ShiftError::FaceLength`], or [`ShiftError::NotFinite`] for a NaN or infinite
/// angle.
pub fn rotate(face: &[u8], degrees: f64) -> Result<Vec<u8>> {
    check_face(face)?;
    if !degrees.is_finite() {
        return Err(ShiftError::NotFinite {
            what: "rotation angle",
            value: degrees,
        });
    }
    Ok(rotate_unchecked(face, degrees))
}

/// Blurs a 48x48 face with a separable Gaussian kernel of standard deviation `sigma` pixels
/// (radius `⌈3σ⌉`, normalised weights, edge-clamped borders), then rounds. `sigma <= 0` returns
/// the face unchanged.
///
/// Errors: [`ShiftError::FaceLength`], or [`ShiftError::NotFinite`] for a NaN or infinite σ.
pub fn gaussian_blur(face: &[u8], sigma: f64) -> Result<Vec<u8>> {
    check_face(face)?;
    if !sigma.is_finite() {
        return Err(ShiftError::NotFinite {
            what: "blur sigma",
            value: sigma,
        });
    }
    Ok(to_bytes(&blur_f64(&to_f64(face), sigma)))
}

/// Builds the `kind` OOD input from a 48x48 face and `seed`:
///
/// - [`GeneratedOod::UniformNoise`]: `IMAGE_PIXELS` i.i.d. uniform bytes (`fill_bytes` of the
///   stream); the face is ignored.
/// - [`GeneratedOod::SmoothNoise`]: uniform bytes (from its own stream), blurred in `f64` with
///   σ = [`SMOOTH_NOISE_SIGMA`] px (edge clamp, as [`gaussian_blur`]), then stretched linearly
///   so the minimum maps to 0 and the maximum to 255, and rounded (a flat field, which cannot
///   practically occur, becomes all 128); the face is ignored.
/// - [`GeneratedOod::ShuffledPixels`]: the face's pixels under a seeded uniform permutation
///   (Fisher–Yates), so the histogram is kept and the spatial structure destroyed.
/// - [`GeneratedOod::UpsideDown`]: the face with its rows in reverse order; the seed is
///   ignored.
///
/// The face's length is checked for every kind ([`ShiftError::FaceLength`]), also for those
/// that ignore its content. The output always has `IMAGE_PIXELS` bytes.
pub fn generate(kind: GeneratedOod, face: &[u8], seed: u64) -> Result<Vec<u8>> {
    check_face(face)?;
    Ok(match kind {
        GeneratedOod::UniformNoise => {
            let mut out = vec![0u8; IMAGE_PIXELS];
            stream(seed, kind.as_str()).fill_bytes(&mut out);
            out
        }
        GeneratedOod::SmoothNoise => {
            let mut noise = vec![0u8; IMAGE_PIXELS];
            stream(seed, kind.as_str()).fill_bytes(&mut noise);
            stretch(&blur_f64(&to_f64(&noise), SMOOTH_NOISE_SIGMA))
        }
        GeneratedOod::ShuffledPixels => {
            let mut rng = stream(seed, kind.as_str());
            let mut out = face.to_vec();
            for i in (1..out.len()).rev() {
                // `i` < IMAGE_PIXELS, so it fits a u32 (portable uniform sampling).
                let j = rng.random_range(0..=i as u32) as usize;
                out.swap(i, j);
            }
            out
        }
        GeneratedOod::UpsideDown => face
            .chunks_exact(IMAGE_SIDE)
            .rev()
            .flatten()
            .copied()
            .collect(),
    })
}

/// One standard normal pair by Marsaglia's polar method.
fn normal_pair(rng: &mut ChaCha8Rng) -> (f64, f64) {
    loop {
        let u = 2.0 * rng.random::<f64>() - 1.0;
        let v = 2.0 * rng.random::<f64>() - 1.0;
        let s = u * u + v * v;
        if s > 0.0 && s < 1.0 {
            let f = (-2.0 * s.ln() / s).sqrt();
            return (u * f, v * f);
        }
    }
}

fn gaussian_noise(face: &[u8], sigma: f64, seed: u64) -> Vec<u8> {
    let mut rng = stream(seed, Corruption::GaussianNoise.as_str());
    let scale = 255.0 * sigma;
    let mut out = Vec::with_capacity(face.len());
    for pair in face.chunks(2) {
        let (z0, z1) = normal_pair(&mut rng);
        for (&p, z) in pair.iter().zip([z0, z1]) {
            out.push(to_byte(f64::from(p) + scale * z));
        }
    }
    out
}

fn contrast(face: &[u8], factor: f64) -> Vec<u8> {
    let sum: u64 = face.iter().map(|&p| u64::from(p)).sum();
    let mean = sum as f64 / face.len() as f64;
    face.iter()
        .map(|&p| to_byte((f64::from(p) - mean) * factor + mean))
        .collect()
}

fn occlude(face: &[u8], side: usize, seed: u64) -> Vec<u8> {
    let mut rng = stream(seed, Corruption::Occlusion.as_str());
    // `side` <= IMAGE_SIDE, so the ranges are non-empty.
    let last = (IMAGE_SIDE - side) as u32;
    let x0 = rng.random_range(0..=last) as usize;
    let y0 = rng.random_range(0..=last) as usize;
    let mut out = face.to_vec();
    for row in out.chunks_exact_mut(IMAGE_SIDE).skip(y0).take(side) {
        row[x0..x0 + side].fill(0);
    }
    out
}

fn pixelate(face: &[u8], block: usize) -> Vec<u8> {
    let mut out = face.to_vec();
    for by in (0..IMAGE_SIDE).step_by(block) {
        let rows = by..(by + block).min(IMAGE_SIDE);
        for bx in (0..IMAGE_SIDE).step_by(block) {
            let cols = bx..(bx + block).min(IMAGE_SIDE);
            let count = (rows.len() * cols.len()) as u32;
            let sum: u32 = rows
                .clone()
                .flat_map(|y| face[y * IMAGE_SIDE + cols.start..y * IMAGE_SIDE + cols.end].iter())
                .map(|&p| u32::from(p))
                .sum();
            // Nearest, halves up: ⌊(2·sum + count) / (2·count)⌋.
            let mean = ((2 * sum + count) / (2 * count)) as u8;
            for y in rows.clone() {
                out[y * IMAGE_SIDE + cols.start..y * IMAGE_SIDE + cols.end].fill(mean);
            }
        }
    }
    out
}

/// Normalised Gaussian weights for offsets `-r..=r`, `r = ⌈3σ⌉`.
fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    let radius = (3.0 * sigma).ceil() as i64;
    let weights: Vec<f64> = (-radius..=radius)
        .map(|k| (-((k * k) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    weights.into_iter().map(|w| w / total).collect()
}

/// Separable Gaussian blur of a 48x48 `f64` image with edge-clamped borders; `sigma <= 0` (or
/// NaN) is the identity.
fn blur_f64(image: &[f64], sigma: f64) -> Vec<f64> {
    if sigma.is_nan() || sigma <= 0.0 {
        return image.to_vec();
    }
    let kernel = gaussian_kernel(sigma);
    let radius = (kernel.len() / 2) as isize;
    let side = IMAGE_SIDE as isize;
    let at = |i: isize| i.clamp(0, side - 1) as usize;
    let mut horizontal = vec![0.0; IMAGE_PIXELS];
    for y in 0..IMAGE_SIDE {
        for x in 0..IMAGE_SIDE {
            horizontal[y * IMAGE_SIDE + x] = kernel
                .iter()
                .enumerate()
                .map(|(k, w)| w * image[y * IMAGE_SIDE + at(x as isize + k as isize - radius)])
                .sum();
        }
    }
    let mut out = vec![0.0; IMAGE_PIXELS];
    for y in 0..IMAGE_SIDE {
        for x in 0..IMAGE_SIDE {
            out[y * IMAGE_SIDE + x] = kernel
                .iter()
                .enumerate()
                .map(|(k, w)| w * horizontal[at(y as isize + k as isize - radius) * IMAGE_SIDE + x])
                .sum();
        }
    }
    out
}

/// Linear stretch of the values' range onto `0..=255`, then rounding; a flat field is all 128.
fn stretch(values: &[f64]) -> Vec<u8> {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if hi <= lo {
        return vec![128; values.len()];
    }
    values
        .iter()
        .map(|&v| to_byte((v - lo) / (hi - lo) * 255.0))
        .collect()
}

fn rotate_unchecked(face: &[u8], degrees: f64) -> Vec<u8> {
    let centre = (IMAGE_SIDE - 1) as f64 / 2.0;
    let max = (IMAGE_SIDE - 1) as f64;
    let (sin, cos) = degrees.to_radians().sin_cos();
    let pixel = |x: usize, y: usize| f64::from(face[y * IMAGE_SIDE + x]);
    let mut out = Vec::with_capacity(IMAGE_PIXELS);
    for y in 0..IMAGE_SIDE {
        for x in 0..IMAGE_SIDE {
            let u = x as f64 - centre;
            let v = y as f64 - centre;
            // Inverse of the counter-clockwise (as displayed, y down) rotation.
            let sx = (u * cos - v * sin + centre).clamp(0.0, max);
            let sy = (u * sin + v * cos + centre).clamp(0.0, max);
            let x0 = sx.floor() as usize;
            let y0 = sy.floor() as usize;
            let x1 = (x0 + 1).min(IMAGE_SIDE - 1);
            let y1 = (y0 + 1).min(IMAGE_SIDE - 1);
            let fx = sx - x0 as f64;
            let fy = sy - y0 as f64;
            let top = (1.0 - fx) * pixel(x0, y0) + fx * pixel(x1, y0);
            let bottom = (1.0 - fx) * pixel(x0, y1) + fx * pixel(x1, y1);
            out.push(to_byte((1.0 - fy) * top + fy * bottom));
        }
    }
    out
}
