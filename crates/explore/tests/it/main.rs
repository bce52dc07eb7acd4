//! Integration tests of `ferbayes explore` on a real smoke run: the JSON API against the run's
//! own tables, one face's numbers bit for bit as analyze and predict compute them, safe input,
//! reruns and missing stages, photo uploads, and every page in headless Chromium.

mod agreement;
mod api;
mod browser;
mod photo;
mod rerun;
mod safety;
mod support;
