//! Integration tests of the train stage on real FER+ faces.

mod provenance;
mod support;
mod training;
