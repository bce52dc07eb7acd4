//! `ferbayes explore` as a user starts it: it prints its address, answers before any stage
//! has run (each page naming the recipe that makes its data), predicts an uploaded photo with
//! the profile's weights, and stops when killed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferbayes_explore::testing::http;

use crate::support::{artifacts, photos, repo};

#[test]
fn explore_starts_answers_and_predicts_a_photo() {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferbayes"))
        .args(["explore", "--listen", "127.0.0.1:0", "--profile", "smoke"])
        .arg("--artifacts")
        .arg(artifacts())
        .arg("--config")
        .arg(repo().join("pipeline.toml"))
        .env("RAYON_NUM_THREADS", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ferbayes explore");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut addr = None;
    while addr.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("explore prints its address");
        if let Some(at) = line.find("http://") {
            let rest = &line[at + "http://".len()..];
            let end = rest.find('/').expect("a URL");
            addr = Some(
                rest[..end]
                    .parse::<std::net::SocketAddr>()
                    .expect("address"),
            );
        }
    }
    let addr = addr.expect("address");
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
    child.kill().expect("kill");
    child.wait().expect("wait");
}
