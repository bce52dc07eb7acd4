//! A user's own photo (PNG or JPEG, any size, colour or not) to FER2013-style faces: 8-bit
//! grayscale, a square region resized to 48x48 — the whole image's centre square
//! ([`load_photo`]) or a square around a detected face ([`face_pixels`]). Used by `predict` and
//! `explore` for people's photos and by ingest for the out-of-distribution image folders.

use std::path::Path;

use ferbayes_core::{IMAGE_PIXELS, IMAGE_SIDE};
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage};

use crate::error::{FacesError, Result};

/// Largest image [`open_photo`] decodes, in pixels (120 megapixels: a large camera photo); its
/// header is read first, so a bigger one is refused before any pixel is decoded.
pub const MAX_PIXELS: u64 = 120_000_000;

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

/// A square region of an image in its pixel coordinates; it may reach past the image's edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Square {
    pub x: i64,
    pub y: i64,
    pub side: u32,
}

fn image_error(path: &Path, message: impl Into<String>) -> FacesError {
    FacesError::image(path, message)
}

fn reader(path: &Path) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>> {
    image::ImageReader::open(path)
        .map_err(|e| FacesError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| FacesError::io(path, e))
}

/// Checks an image taken for a JPEG (by content or, failing that, by extension): it must start
/// with the start-of-image marker (FF D8 FF) and have its end-of-image marker (FF D9) in its
/// last 64 KiB (trailing bytes after it are allowed there). The JPEG decoder fills a truncated
/// file's missing part with grey instead of failing, so truncation is checked here. `source`
/// holds the `len` bytes of the image called `path`.
fn check_jpeg<R: std::io::Read + std::io::Seek>(
    path: &Path,
    mut source: R,
    len: u64,
) -> Result<()> {
    use std::io::SeekFrom;
    const TAIL: u64 = 64 * 1024;
    let io = |e| FacesError::io(path, e);
    let mut head = [0u8; 3];
    if source.read_exact(&mut head).is_err() || head != [0xFF, 0xD8, 0xFF] {
        return Err(image_error(
            path,
            "cannot decode image (PNG or JPEG expected): not a JPEG file",
        ));
    }
    source
        .seek(SeekFrom::Start(len.saturating_sub(TAIL)))
        .map_err(io)?;
    let mut tail = Vec::new();
    source.read_to_end(&mut tail).map_err(io)?;
    if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err(image_error(
            path,
            "truncated JPEG: no end-of-image marker at the end of the file",
        ));
    }
    Ok(())
}

/// Decodes `path` (format from its content). Its header is read first: an empty file, a file
/// that is not an image, a JPEG without its end, or an image over [`MAX_PIXELS`] is refused
/// before decoding, and a truncated PNG fails while decoding; every error names the file.
pub fn open_photo(path: &Path) -> Result<DynamicImage> {
    let size = std::fs::metadata(path)
        .map_err(|e| FacesError::io(path, e))?
        .len();
    if size == 0 {
        return Err(image_error(path, "file is empty"));
    }
    let header = reader(path)?;
    if header.format() == Some(image::ImageFormat::Jpeg) {
        let file = std::fs::File::open(path).map_err(|e| FacesError::io(path, e))?;
        check_jpeg(path, file, size)?;
    }
    decode_checked(path, header, || reader(path))
}

/// Decodes a photo held in memory (e.g. uploaded to `ferbayes explore`) with the checks of
/// [`open_photo`]; `name` is the file name its errors give (and, as a file's, its extension
/// names the format when the content does not).
pub fn decode_photo(name: &Path, bytes: &[u8]) -> Result<DynamicImage> {
    if bytes.is_empty() {
        return Err(image_error(name, "file is empty"));
    }
    // The format from the content or, as for a file, from the name's extension.
    let memory = || {
        let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| FacesError::io(name, e))?;
        if reader.format().is_none()
            && let Ok(format) = image::ImageFormat::from_path(name)
        {
            reader.set_format(format);
        }
        Ok(reader)
    };
    let header = memory()?;
    if header.format() == Some(image::ImageFormat::Jpeg) {
        check_jpeg(name, std::io::Cursor::new(bytes), bytes.len() as u64)?;
    }
    decode_checked(name, header, memory)
}

/// The width and height that a PNG or JPEG held in memory claims in its header, if readable;
/// nothing is decoded (so a caller can tell an image refused for its size from a broken one).
pub fn header_size(bytes: &[u8]) -> Option<(u32, u32)> {
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}

/// The size check of the image whose header `header` reads, then its decoding through a fresh
/// reader from `open`, limited to that size.
fn decode_checked<R: std::io::BufRead + std::io::Seek>(
    path: &Path,
    header: image::ImageReader<R>,
    open: impl Fn() -> Result<image::ImageReader<R>>,
) -> Result<DynamicImage> {
    let (w, h) = header.into_dimensions().map_err(|e| {
        image_error(
            path,
            format!("cannot decode image (PNG or JPEG expected): {e}"),
        )
    })?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_PIXELS {
        return Err(image_error(
            path,
            format!(
                "image of {w}x{h} = {:.0} megapixels is over the {} megapixel limit; refused before decoding",
                pixels as f64 / 1e6,
                MAX_PIXELS / 1_000_000
            ),
        ));
    }
    if pixels == 0 {
        return Err(image_error(path, "image is empty"));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    let mut reader = open()?;
    reader.limits(limits);
    reader.decode().map_err(|e| {
        image_error(
            path,
            format!("cannot decode image (PNG or JPEG expected): {e}"),
        )
    })
}

/// The 8-bit grayscale of an image (Rec. 709 luma, as the `image` crate computes it); every
/// photo path converts through here.
pub fn to_gray(image: &DynamicImage) -> GrayImage {
    image.to_luma8()
}

/// The 48x48 face of `square` in `gray`: the square cropped (pixels past the image's edges
/// repeat its nearest edge pixel) and resized with a triangle filter, unless already 48 wide.
pub fn face_pixels(gray: &GrayImage, square: Square) -> Vec<u8> {
    let (w, h) = gray.dimensions();
    let inside = square.x >= 0
        && square.y >= 0
        && square.x + i64::from(square.side) <= i64::from(w)
        && square.y + i64::from(square.side) <= i64::from(h);
    let crop = if inside {
        image::imageops::crop_imm(
            gray,
            square.x as u32,
            square.y as u32,
            square.side,
            square.side,
        )
        .to_image()
    } else {
        let clamp = |v: i64, len: u32| v.clamp(0, i64::from(len) - 1) as u32;
        GrayImage::from_fn(square.side, square.side, |cx, cy| {
            let x = clamp(square.x + i64::from(cx), w);
            let y = clamp(square.y + i64::from(cy), h);
            *gray.get_pixel(x, y)
        })
    };
    let side = IMAGE_SIDE as u32;
    let face = if square.side == side {
        crop
    } else {
        image::imageops::resize(&crop, side, side, FilterType::Triangle)
    };
    let pixels = face.into_raw();
    debug_assert_eq!(pixels.len(), IMAGE_PIXELS);
    pixels
}

/// The largest centred square of a `w` × `h` image.
pub fn centre_square(w: u32, h: u32) -> Square {
    let side = w.min(h);
    Square {
        x: i64::from((w - side) / 2),
        y: i64::from((h - side) / 2),
        side,
    }
}

/// Decodes `path` ([`open_photo`]) and converts its centre square to a 48x48 face.
pub fn load_photo(path: &Path) -> Result<Photo> {
    let img = open_photo(path)?;
    let original = (img.width(), img.height());
    let was_face_sized = original == (IMAGE_SIDE as u32, IMAGE_SIDE as u32)
        && matches!(img.color(), image::ColorType::L8);
    let gray = to_gray(&img);
    let pixels = face_pixels(&gray, centre_square(original.0, original.1));
    Ok(Photo {
        pixels,
        original,
        was_face_sized,
    })
}
