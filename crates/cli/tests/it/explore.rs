//! `ferbayes explore` as a user starts it: it prints its address, answers before any stage
//! has run (each page naming the recipe that makes its data), predicts an uploaded photo with
//! the profile's weights, and stops when killed.

use std::time::Instant;

use ferbayes_explore::testing::http;

use crate::support::{artifacts, photos, repo, spawn_explore};

#[test]
fn explore_starts_answers_and_predicts_a_photo() {
    let started = Instant::now();
    let explore = spawn_explore("smoke", artifacts(), &repo().join("pipeline.toml"));
    let addr = explore.addr;
    eprintln!(
        "explore answered after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert!(addr.ip().is_loopback());

    let faces = http::get(addr, "/faces").expect("faces");
    assert_eq!(faces.status, 404);
    assert!(faces.text().contains("just ingest"), "{}", faces.text());
    let jpeg = std::fs::read(photos().join("group.jpg")).expect("group.jpg");
    let got = http::upload(addr, "/api/photo", "group.jpg", &jpeg).expect("upload");
    assert_eq!(got.status, 200, "{}", got.text());
    let json = got.json();
    assert_eq!(json["faces"].as_array().expect("faces").len(), 4);
    assert_eq!(
        (&json["arch"], &json["method"]),
        (&"alexnet".into(), &"mc_dropout".into())
    );
    assert!(
        json["prediction_sets"]
            .as_str()
            .is_some_and(|why| why.contains("just all")),
        "{json}"
    );
    drop(explore);
}
