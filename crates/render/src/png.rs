//! PNG encoding for every picture ferbayes writes or serves: 8-bit grayscale or RGB, two
//! compression settings (the ones the figures and the served pictures used before they shared
//! this function, so no file changed).

use crate::error::{RenderError, Result};

/// The pixels' layout, 8 bits per sample, rows top to bottom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    /// One byte per pixel.
    Gray,
    /// Three bytes per pixel (red, green, blue).
    Rgb,
}

/// How hard to compress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zlib at its best level (9), adaptive filtering: the smallest files, for artifacts written
    /// once and kept (analyze's figures and the faces embedded in their SVGs).
    Small,
    /// fdeflate's fast mode, adaptive filtering (the `image` crate's PNG encoder's default): for
    /// pictures made per request, large photos included (predict's and explore's annotated
    /// photos, explore's face images).
    Fast,
}

/// `pixels` (`width` × `height` pixels of `channels`) as a PNG file.
pub fn encode(
    pixels: &[u8],
    width: u32,
    height: u32,
    channels: Channels,
    compression: Compression,
) -> Result<Vec<u8>> {
    let err = |e: png::EncodingError| RenderError::Png(e.to_string());
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(match channels {
            Channels::Gray => png::ColorType::Grayscale,
            Channels::Rgb => png::ColorType::Rgb,
        });
        enc.set_depth(png::BitDepth::Eight);
        match compression {
            Compression::Small => enc.set_compression(png::Compression::High),
            Compression::Fast => {
                enc.set_compression(png::Compression::Fast);
                enc.set_filter(png::Filter::Adaptive);
            }
        }
        let mut writer = enc.write_header().map_err(err)?;
        writer.write_image_data(pixels).map_err(err)?;
        writer.finish().map_err(err)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageEncoder as _;

    /// A 97x61 RGB picture with gradients, flat areas and noise, so every filter has work.
    fn picture() -> (Vec<u8>, u32, u32) {
        let (w, h) = (97u32, 61u32);
        let mut state = 12345u32;
        let mut px = Vec::new();
        for y in 0..h {
            for x in 0..w {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let noise = (state >> 24) as u8 & 15;
                let flat = x > 60;
                px.extend([
                    if flat { 200 } else { (x * 2) as u8 ^ noise },
                    if flat { 200 } else { (y * 4) as u8 },
                    ((x + y) as u8).wrapping_mul(3),
                ]);
            }
        }
        (px, w, h)
    }

    fn decode(png: &[u8]) -> (Vec<u8>, u32, u32, png::ColorType) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .expect("decodes");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("frame");
        buf.truncate(info.buffer_size());
        (buf, info.width, info.height, info.color_type)
    }

    #[test]
    fn both_settings_round_trip_and_small_is_smaller() {
        let (rgb, w, h) = picture();
        let gray: Vec<u8> = rgb.chunks(3).map(|p| p[1]).collect();
        for compression in [Compression::Small, Compression::Fast] {
            let png = encode(&rgb, w, h, Channels::Rgb, compression).expect("rgb");
            assert_eq!(decode(&png), (rgb.clone(), w, h, png::ColorType::Rgb));
            let png = encode(&gray, w, h, Channels::Gray, compression).expect("gray");
            assert_eq!(
                decode(&png),
                (gray.clone(), w, h, png::ColorType::Grayscale)
            );
        }
        let small = encode(&rgb, w, h, Channels::Rgb, Compression::Small).expect("small");
        let fast = encode(&rgb, w, h, Channels::Rgb, Compression::Fast).expect("fast");
        assert!(
            small.len() < fast.len(),
            "{} vs {}",
            small.len(),
            fast.len()
        );
    }

    /// `Fast` writes the bytes that `image`'s `PngEncoder::new`, which predict and explore used
    /// before, wrote.
    #[test]
    fn fast_is_the_image_crates_default_encoder() {
        let (rgb, w, h) = picture();
        let gray: Vec<u8> = rgb.chunks(3).map(|p| p[0]).collect();
        for (pixels, channels, extended) in [
            (&rgb, Channels::Rgb, image::ExtendedColorType::Rgb8),
            (&gray, Channels::Gray, image::ExtendedColorType::L8),
        ] {
            let mut theirs = Vec::new();
            image::codecs::png::PngEncoder::new(&mut theirs)
                .write_image(pixels, w, h, extended)
                .expect("image encodes");
            let ours = encode(pixels, w, h, channels, Compression::Fast).expect("encodes");
            assert_eq!(ours, theirs, "{channels:?}");
        }
    }

    #[test]
    fn pixels_that_do_not_fill_the_size_are_refused() {
        let err = encode(&[0; 10], 4, 4, Channels::Gray, Compression::Small).expect_err("short");
        assert!(matches!(err, RenderError::Png(_)), "{err}");
    }
}
