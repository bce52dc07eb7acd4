//! Integration tests of the infer stage on real faces.

mod inference;
mod provenance;
