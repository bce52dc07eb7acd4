//! Errors of drawing and encoding.

/// Result alias of the render crate.
pub type Result<T, E = RenderError> = std::result::Result<T, E>;

/// Why something could not be drawn or encoded.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The bundled font could not be loaded.
    #[error("the bundled font assets/DejaVuSans.ttf is not a valid font")]
    Font,
    /// The PNG encoder refused the image (its size does not match its pixels, say).
    #[error("cannot encode the PNG: {0}")]
    Png(String),
}
