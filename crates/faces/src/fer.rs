//! FER2013's own faces: the 48x48 8-bit grayscale PNGs of the FER+ folders, decoded as they are
//! (no conversion: any other size, colour type or bit depth is refused).

use std::io::Cursor;
use std::path::Path;

use ferbayes_core::{IMAGE_PIXELS, IMAGE_SIDE};

use crate::error::{FacesError, Result};

/// Decodes a FER2013 face PNG, which must be 48x48 8-bit grayscale.
pub fn read_png(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| FacesError::io(path, e))?;
    let bad = |message: String| FacesError::image(path, message);
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder
        .read_info()
        .map_err(|e| bad(format!("not a readable PNG: {e}")))?;
    let info = reader.info();
    if (info.width as usize, info.height as usize) != (IMAGE_SIDE, IMAGE_SIDE) {
        return Err(bad(format!(
            "image is {}x{}, expected {IMAGE_SIDE}x{IMAGE_SIDE}",
            info.width, info.height
        )));
    }
    if info.color_type != png::ColorType::Grayscale || info.bit_depth != png::BitDepth::Eight {
        return Err(bad(format!(
            "image is {:?} with {} bits per sample, expected 8-bit grayscale",
            info.color_type, info.bit_depth as u8
        )));
    }
    let mut pixels = vec![0u8; IMAGE_PIXELS];
    reader
        .next_frame(&mut pixels)
        .map_err(|e| bad(format!("PNG data is truncated or corrupt: {e}")))?;
    Ok(pixels)
}
