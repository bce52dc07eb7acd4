//! The bundled font, DejaVu Sans, so that no system font (or fontconfig) is needed to draw text.

use std::sync::OnceLock;

use plotters::style::{FontStyle, register_font};

use crate::error::{RenderError, Result};

/// DejaVu Sans (Bitstream Vera licence, see assets/DejaVu-LICENSE.txt).
pub const FONT_BYTES: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");

/// The family name text is drawn with (plotters' `sans-serif`, registered to the bundled font);
/// SVG files name it too, so viewers fall back to their own sans-serif font.
pub const FAMILY: &str = "sans-serif";

/// Registers the bundled font with plotters as [`FAMILY`] (once per process).
pub fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok =
        *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok { Ok(()) } else { Err(RenderError::Font) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_font_registers() {
        ensure_font().expect("DejaVu Sans parses");
    }
}
