//! Integration tests of the train stage on real FER+ faces.

mod support;
mod training;
