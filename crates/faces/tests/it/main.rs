//! Integration tests of the faces crate on FER+ faces and the shared photos (one test binary).

mod decoding;
mod fer;
mod photo;
mod redetect;
