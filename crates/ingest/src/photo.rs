//! A user's own photo (PNG or JPEG, any size, colour or not) to a FER2013-style face: 8-bit
//! grayscale, centre-cropped to a square and resized to 48x48. Used by `predict` and by the
//! out-of-distribution sets, so that every raw image enters ferbayes through this crate.

use std::path::Path;

use ferbayes_core::{IMAGE_PIXELS, IMAGE_SIDE};
use image::imageops::FilterType;

use crate::error::{IngestError, Result};

/// A photo converted to a 48x48 face.
#[derive(Debug, Clone, PartialEq)]
pub struct Photo {
    /// Row-major 48x48 grayscale pixels.
    pub pixels: Vec<u8>,
    /// Width and height of the original image.
    pub original: (u32, u32),
    /// Whether the original already was a 48x48 grayscale image (nothing was cropped or resized).
    pub was_face_sized: bool,
}

/// Decodes `path` (format from its content) and converts it as described in the module docs.
pub fn load_photo(path: &Path) -> Result<Photo> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| IngestError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| IngestError::io(path, e))?;
    let img = reader.decode().map_err(|e| IngestError::Image {
        path: path.to_owned(),
        message: format!("cannot decode image (PNG or JPEG expected): {e}"),
    })?;
    let original = (img.width(), img.height());
    let was_face_sized = original == (IMAGE_SIDE as u32, IMAGE_SIDE as u32)
        && matches!(img.color(), image::ColorType::L8);
    let gray = img.into_luma8();
    let side = original.0.min(original.1);
    if side == 0 {
        return Err(IngestError::Image {
            path: path.to_owned(),
            message: "image is empty".into(),
        });
    }
    let (x, y) = ((original.0 - side) / 2, (original.1 - side) / 2);
    let square = image::imageops::crop_imm(&gray, x, y, side, side).to_image();
    let face = if side as usize == IMAGE_SIDE {
        square
    } else {
        image::imageops::resize(
            &square,
            IMAGE_SIDE as u32,
            IMAGE_SIDE as u32,
            FilterType::Triangle,
        )
    };
    let pixels = face.into_raw();
    debug_assert_eq!(pixels.len(), IMAGE_PIXELS);
    Ok(Photo {
        pixels,
        original,
        was_face_sized,
    })
}
