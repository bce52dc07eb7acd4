//! Integration tests of the `ferbayes` binary: `ferbayes predict` on real photos, bad input and
//! FER+ faces, and `ferbayes explore` starting, answering and stopping; one face's numbers the
//! same through both.

mod agreement;
mod bad_input;
mod conformal;
mod crops;
mod explore;
mod folder;
mod photos;
mod support;
