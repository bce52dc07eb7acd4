//! Integration tests of `ferbayes predict` on real photos, bad input and FER+ faces.

mod bad_input;
mod conformal;
mod crops;
mod folder;
mod photos;
mod redetect;
mod support;
