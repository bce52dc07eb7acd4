//! Integration tests of `ferbayes explore` on a real smoke run: the JSON API against the run's
//! own tables, safe input, reruns and missing stages, photo uploads, and every page in headless
//! Chromium.

mod api;
mod browser;
mod photo;
mod rerun;
mod safety;
mod support;
