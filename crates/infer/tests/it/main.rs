//! Integration tests of the infer stage and of `ferbayes predict` on real faces.

mod inference;
mod provenance;
