//! Integration tests of the ingest stage (one test binary, modules per concern).

mod bad_input;
mod csv_layout;
mod extra;
mod killed;
mod labels;
mod real_data;
mod rerun;
mod shift;
mod support;
