//! What ferbayes draws and serves with, shared by analyze's figures and report, predict's
//! annotated photos and explore's pages: PNG encoding ([`png`]), base64 ([`base64`],
//! [`png_data_uri`]), HTML escaping and the page frame ([`html`]), the bundled DejaVu Sans font
//! ([`font`]) and the bitmap backend that lays text out with it correctly ([`glyphs`]).
//!
//! Which figure shows what stays with its stage (analyze's `figures` and `plots`, predict's
//! `annotate`); this crate holds only the drawing and encoding primitives.

pub mod error;
pub mod font;
pub mod glyphs;
pub mod html;
pub mod png;

use ::base64::Engine as _;

pub use error::{RenderError, Result};

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    ::base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A PNG as a `data:image/png;base64,...` URI, for pages and SVG files that embed their images.
pub fn png_data_uri(png: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64(png))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_examples() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        // The alphabet's last two characters (not URL-safe `-` and `_`).
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
        assert_eq!(png_data_uri(b"foo"), "data:image/png;base64,Zm9v");
    }
}
