//! Every raw image that enters ferbayes comes in through this crate, as 48x48 8-bit grayscale
//! faces: FER+'s own face PNGs ([`fer`], for the ingest stage), and people's PNG/JPEG photos of
//! any size, colour or not ([`photo`], for the out-of-distribution image folders of ingest and
//! for `ferbayes predict` and `ferbayes explore`), with the frontal face detector that finds the
//! faces in a photo ([`detect`]).
//!
//! Architecture invariant: no other ferbayes crate decodes a raw image; the stages after ingest
//! read ingest's Parquet, and predict and explore call this crate for people's photos.

pub mod detect;
pub mod error;
pub mod fer;
pub mod photo;

pub use detect::{CROP_SCALE, FaceBox, FaceDetector};
pub use error::{FacesError, Result};
pub use photo::{MAX_PIXELS, Photo, Square};
