//! `ferbayes predict`: a user's photos through a trained model. The faces of each photo are found
//! by the frontal face detector of `ferbayes-faces` ([`FaceDetector`]), cropped with FER2013's
//! margin and converted to 48x48 grayscale by that crate's photo path, and sampled by the models' [`Predictor`] (T passes or N
//! members); each face gets its mean probabilities, the predictive entropy split into aleatoric
//! and epistemic parts, a verdict ([`summary`]) and, when the profile's analyze stage has
//! calibrated one, a split-conformal prediction set ([`conformal`]). [`annotate`] draws the answer on the photo
//! and [`table`] writes a folder's faces as one Parquet table.

pub mod annotate;
pub mod conformal;
pub mod error;
pub mod summary;
pub mod table;

use std::path::Path;

use ferbayes_core::IMAGE_SIDE;
use ferbayes_faces::photo::{self, Square};
use ferbayes_models::Predictor;
use image::DynamicImage;

pub use conformal::{PredictionSet, SetThreshold};
pub use error::{PredictError, Result};
pub use ferbayes_faces::{FaceBox, FaceDetector};
pub use summary::{FacePrediction, Verdict};

/// How faces are found in a photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Faces {
    /// Detect faces of at least this many pixels.
    Detect { min_face: u32 },
    /// The whole image is one face (its centre square), as for images that already are crops.
    WholeImage,
}

/// A photo and the predictions for its faces.
#[derive(Debug)]
pub struct PhotoPrediction {
    pub image: DynamicImage,
    pub faces: Vec<FacePrediction>,
}

/// Where the faces of `image` are: boxes in its pixels and the squares to crop.
fn locate(
    path: &Path,
    image: &DynamicImage,
    gray: &image::GrayImage,
    faces: Faces,
    detector: &mut FaceDetector,
) -> Result<Vec<(FaceBox, Square, Option<String>)>> {
    let (w, h) = (image.width(), image.height());
    match faces {
        Faces::Detect { min_face } => {
            let found = detector.detect(gray, min_face);
            if found.is_empty() {
                return Err(PredictError::NoFace {
                    path: path.to_owned(),
                });
            }
            Ok(found
                .into_iter()
                .map(|b| (b, b.fer_square(), None))
                .collect())
        }
        Faces::WholeImage => {
            let square = photo::centre_square(w, h);
            let side = IMAGE_SIDE as u32;
            let face_sized = (w, h) == (side, side) && matches!(image, DynamicImage::ImageLuma8(_));
            let warning = (!face_sized).then(|| {
                format!(
                    "{w}x{h} image converted to a 48x48 grayscale face (centre crop, resize): a cropped, roughly frontal face is expected"
                )
            });
            let bbox = FaceBox {
                x: square.x as u32,
                y: square.y as u32,
                width: square.side,
                height: square.side,
                score: None,
            };
            Ok(vec![(bbox, square, warning)])
        }
    }
}

/// Finds the faces of the photo at `path` and predicts each (all faces in one batch).
pub fn predict_photo(
    predictor: &Predictor,
    detector: &mut FaceDetector,
    path: &Path,
    faces: Faces,
) -> Result<PhotoPrediction> {
    let image = photo::open_photo(path)?;
    predict_image(predictor, detector, path, image, faces)
}

/// [`predict_photo`] for a photo already decoded (e.g. by [`photo::decode_photo`] from an
/// upload); `name` is what the faces and errors call it.
pub fn predict_image(
    predictor: &Predictor,
    detector: &mut FaceDetector,
    name: &Path,
    image: DynamicImage,
    faces: Faces,
) -> Result<PhotoPrediction> {
    let gray = photo::to_gray(&image);
    let located = locate(name, &image, &gray, faces, detector)?;
    let mut pixels = Vec::with_capacity(located.len() * ferbayes_core::IMAGE_PIXELS);
    for (_, square, _) in &located {
        pixels.extend(photo::face_pixels(&gray, *square));
    }
    let probs = predictor.predict(&pixels, 0)?;
    let t = predictor.samples();
    let faces = located
        .into_iter()
        .enumerate()
        .map(|(i, (bbox, _, warning))| {
            let source = summary::FaceSource {
                image: name,
                face: i,
                bbox,
                warning,
            };
            summary::summarise(source, &probs[i * t..(i + 1) * t])
        })
        .collect();
    Ok(PhotoPrediction { image, faces })
}
