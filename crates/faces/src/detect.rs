//! Face detection with rustface (SeetaFace's funnel-structured cascade for frontal faces, its
//! model file embedded at build time), and the FER2013-style crop around each detected face.

use image::GrayImage;
use image::imageops::FilterType;
use serde::Serialize;

use crate::error::{FacesError, Result};
use crate::photo::Square;

/// The embedded `seeta_fd_frontal_v1.0.bin` of the rustface package (see build.rs).
const MODEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seeta_fd_frontal_v1.0.bin"));

/// Side of a FER2013 crop over the side of the detector's box around the same face: measured by
/// detecting faces in FER+ test images upscaled 4x (median ratio of the 48x48 frame to the box;
/// see the `fer_crop_margin` test). The crop is centred on the box.
pub const CROP_SCALE: f64 = 1.097;

/// Faces smaller than this (pixels) are found by upscaling the photo for the detector, whose
/// cascade works best on faces at least this large.
pub const DETECTOR_FACE: u32 = 40;

/// Largest photo (pixels) the upscaling for small faces may produce.
const MAX_UPSCALED_PIXELS: f64 = 16e6;

/// A detected face in pixel coordinates of the original image (clipped to it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FaceBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    /// The detector's score (higher is surer); `None` for a whole image (`--no-detect`).
    pub score: Option<f64>,
}

impl FaceBox {
    /// The square FER2013 would have cropped around this face: [`CROP_SCALE`] times the box's
    /// side, on the same centre.
    pub fn fer_square(&self) -> Square {
        let side = f64::from(self.width.max(self.height)) * CROP_SCALE;
        let cx = f64::from(self.x) + f64::from(self.width) / 2.0;
        let cy = f64::from(self.y) + f64::from(self.height) / 2.0;
        Square {
            x: (cx - side / 2.0).round() as i64,
            y: (cy - side / 2.0).round() as i64,
            side: side.round().max(1.0) as u32,
        }
    }
}

/// A frontal face detector.
pub struct FaceDetector {
    inner: Box<dyn rustface::Detector>,
}

impl std::fmt::Debug for FaceDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceDetector").finish_non_exhaustive()
    }
}

impl FaceDetector {
    /// The detector with the embedded model and SeetaFace's recommended settings (score
    /// threshold 2.0, pyramid factor 0.8, window step 4).
    pub fn new() -> Result<Self> {
        let model =
            rustface::read_model(MODEL).map_err(|e| FacesError::DetectorModel(e.to_string()))?;
        let mut inner = rustface::create_detector_with_model(model);
        inner.set_score_thresh(2.0);
        inner.set_pyramid_scale_factor(0.8);
        inner.set_slide_window_step(4, 4);
        Ok(FaceDetector { inner })
    }

    /// The faces of at least `min_face` pixels in `gray`, left to right. Below
    /// [`DETECTOR_FACE`] pixels the photo is upscaled so such faces reach that size.
    pub fn detect(&mut self, gray: &GrayImage, min_face: u32) -> Vec<FaceBox> {
        let (w, h) = gray.dimensions();
        if w == 0 || h == 0 {
            return Vec::new();
        }
        let min_face = min_face.max(1);
        let wanted = f64::from(DETECTOR_FACE) / f64::from(min_face);
        let room = (MAX_UPSCALED_PIXELS / (f64::from(w) * f64::from(h))).sqrt();
        let scale = wanted.min(room).max(1.0);
        let scaled;
        let input = if scale > 1.0 {
            let (sw, sh) = (
                (f64::from(w) * scale).round() as u32,
                (f64::from(h) * scale).round() as u32,
            );
            scaled = image::imageops::resize(gray, sw, sh, FilterType::Triangle);
            &scaled
        } else {
            gray
        };
        let window = ((f64::from(min_face) * scale).round() as u32).max(20);
        if window > input.width().min(input.height()) {
            return Vec::new();
        }
        self.inner.set_min_face_size(window);
        let data = rustface::ImageData::new(input.as_raw(), input.width(), input.height());
        let mut faces: Vec<FaceBox> = self
            .inner
            .detect(&data)
            .iter()
            .filter_map(|f| to_original(f, scale, w, h))
            .collect();
        faces.sort_by_key(|f| (f.x, f.y));
        faces
    }
}

/// A detection in the (possibly upscaled) detector input back in the original's pixels,
/// clipped to the image; `None` if nothing of it is inside.
fn to_original(face: &rustface::FaceInfo, scale: f64, w: u32, h: u32) -> Option<FaceBox> {
    let b = face.bbox();
    let x0 = (f64::from(b.x()) / scale).max(0.0);
    let y0 = (f64::from(b.y()) / scale).max(0.0);
    let x1 = (f64::from(b.x() + b.width() as i32) / scale).min(f64::from(w));
    let y1 = (f64::from(b.y() + b.height() as i32) / scale).min(f64::from(h));
    (x1 > x0 && y1 > y0).then(|| FaceBox {
        x: x0.round() as u32,
        y: y0.round() as u32,
        width: ((x1 - x0).round() as u32).max(1),
        height: ((y1 - y0).round() as u32).max(1),
        score: Some(face.score()),
    })
}
