//! Integration tests of the train stage on real FER+ faces.

mod force;
mod knobs;
mod processes;
mod provenance;
mod support;
mod training;
