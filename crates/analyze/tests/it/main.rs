//! Integration tests of the analyze stage (one test binary, modules per concern).

mod browser;
mod chain;
mod extras;
mod metrics;
mod pipeline;
mod provenance;
mod support;
