//! The JSON API on the smoke run, checked against the run's own tables: the probabilities at n
//! are the mean of the infer table's first n samples and the entropy split is analyze's
//! (`ferbayes_uq::face_splits`, bit for bit), the prediction sets use the q̂ of
//! `analyze/conformal.parquet`, the PNGs are ingest's pixels.

use std::collections::HashMap;

use ferbayes_core::schema::SHOWN_ALPHA;
use ferbayes_core::schema::rows::{ConformalRow, FaceRow, InferRow};
use ferbayes_core::{Arch, EMOTIONS, Method, Split};
use ferbayes_explore::testing::http;
use serde_json::Value;

use crate::support::smoke_server;

/// Each face's samples in order, from an infer table.
fn samples(path: &std::path::Path) -> HashMap<String, Vec<[f32; 8]>> {
    let mut rows: Vec<InferRow> =
        ferbayes_core::io::read_rows(path, None, "just infer").expect("infer table");
    rows.sort_by_key(|r| r.sample);
    let mut out: HashMap<String, Vec<[f32; 8]>> = HashMap::new();
    for r in rows {
        out.entry(r.image).or_default().push(r.probs);
    }
    out
}

fn probs(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("probabilities")
        .iter()
        .map(|p| p[1].as_f64().expect("p"))
        .collect()
}

#[test]
fn faces_are_the_infer_tables_means_with_analyzes_entropy_split() {
    let (run, server) = smoke_server();
    let addr = server.addr();
    let (arch, method) = (Arch::AlexNet, Method::McDropConnect);
    let table = samples(&run.layout.infer_split(arch, method, Split::Test));
    let conformal: Vec<ConformalRow> =
        ferbayes_core::io::read_rows(&run.layout.conformal(), None, "just analyze")
            .expect("conformal");
    for n in [1, 2, 3] {
        let got = http::get(
            addr,
            &format!("/api/faces?arch={arch}&method={method}&split=test&n={n}&per_page=200&page=1"),
        )
        .expect("request");
        assert_eq!(got.status, 200, "{}", got.text());
        let json = got.json();
        assert_eq!(json["n"], n);
        assert_eq!(json["samples"], 3);
        assert_eq!(json["faces_in_split"], 256);
        let faces = json["faces"].as_array().expect("faces");
        assert_eq!(faces.len(), 200, "per_page");
        let qhat = conformal
            .iter()
            .find(|r| {
                r.arch == arch
                    && r.method == method
                    && usize::from(r.n) == n
                    && (r.alpha - SHOWN_ALPHA).abs() < 1e-12
            })
            .map(|r| r.qhat)
            .expect("a conformal row");
        for face in faces {
            let image = face["image"].as_str().expect("image");
            let s = &table[image];
            let first: Vec<&[[f32; 8]]> = s[..n].iter().map(std::slice::from_ref).collect();
            let want = ferbayes_uq::face_splits(&first)[0];
            let p = probs(&face["probabilities"]);
            let want_p: Vec<f64> = want.probs.iter().map(|&v| f64::from(v)).collect();
            assert_eq!(p, want_p, "{image} n={n}");
            let value = |key: &str| face[key].as_f64().expect(key);
            assert_eq!(
                (
                    value("predictive_entropy"),
                    value("aleatoric"),
                    value("epistemic")
                ),
                (want.entropy, want.aleatoric, want.epistemic),
                "{image} n={n}"
            );
            assert_eq!(
                face["predicted"],
                EMOTIONS[want.predicted().0],
                "{image} n={n}"
            );
            let set = &face["prediction_set"];
            assert_eq!(set["qhat"].as_f64(), Some(qhat), "{face}");
            let members: Vec<&str> = set["emotions"]
                .as_array()
                .expect("set")
                .iter()
                .map(|e| e.as_str().expect("name"))
                .collect();
            let want_set: Vec<&str> = (0..8)
                .filter(|&k| 1.0 - p[k] <= qhat)
                .map(|k| EMOTIONS[k])
                .collect();
            assert_eq!(members, want_set, "{image}");
        }
    }
}

#[test]
fn sorting_filtering_and_paging() {
    let (run, server) = smoke_server();
    let addr = server.addr();
    let faces: Vec<FaceRow> = ferbayes_core::io::read_rows(
        &run.layout.ingest_split(Split::Valid),
        Some(&["image", "majority", "crowd_entropy"]),
        "just ingest",
    )
    .expect("ingest");
    let get = |q: &str| {
        let got = http::get(addr, &format!("/api/faces?{q}")).expect("request");
        assert_eq!(got.status, 200, "{q}: {}", got.text());
        got.json()
    };
    let values = |json: &Value, key: &str| -> Vec<f64> {
        json["faces"]
            .as_array()
            .expect("faces")
            .iter()
            .filter_map(|f| f[key].as_f64())
            .collect()
    };
    // Default: the profile's first combination, the test split, sorted by entropy, descending.
    let first = get("");
    assert_eq!(
        (
            &first["arch"],
            &first["method"],
            &first["split"],
            &first["sort"]
        ),
        (
            &Value::from("alexnet"),
            &Value::from("mc_dropout"),
            &Value::from("test"),
            &Value::from("entropy")
        )
    );
    let h = values(&first, "predictive_entropy");
    assert_eq!(h.len(), 48, "the default page size");
    assert!(h.windows(2).all(|w| w[0] >= w[1]), "{h:?}");
    // Every page of the valid split, ascending crowd entropy: each face once, in order.
    let mut seen = Vec::new();
    let mut last = f64::NEG_INFINITY;
    for page in 1..=3 {
        let json = get(&format!(
            "split=valid&sort=crowd_entropy&order=asc&per_page=100&page={page}"
        ));
        assert_eq!(json["pages"], 3);
        for f in json["faces"].as_array().expect("faces") {
            if let Some(c) = f["crowd_entropy"].as_f64() {
                assert!(c >= last, "ascending");
                last = c;
            }
            seen.push(f["image"].as_str().expect("image").to_owned());
        }
    }
    seen.sort();
    let mut all: Vec<String> = faces.iter().map(|f| f.image.clone()).collect();
    all.sort();
    assert_eq!(seen, all, "paging shows every face exactly once");
    // Filters.
    let wrong = get("split=valid&correct=wrong&per_page=200");
    let right = get("split=valid&correct=correct&per_page=200");
    let unlabelled = get("split=valid&correct=unlabelled&per_page=200");
    let count = |j: &Value| j["matching"].as_u64().expect("matching") as usize;
    let labelled = faces.iter().filter(|f| f.majority.is_some()).count();
    assert_eq!(count(&wrong) + count(&right), labelled);
    assert_eq!(count(&unlabelled), faces.len() - labelled);
    for f in wrong["faces"].as_array().expect("faces") {
        assert_eq!(f["correct"], false);
        assert_ne!(f["predicted"], f["majority"]);
    }
    let happy = get("split=valid&majority=happiness&per_page=200");
    let want = faces.iter().filter(|f| f.majority == Some(1)).count();
    assert_eq!(count(&happy), want);
    let band =
        get("split=valid&min_entropy=0.5&max_entropy=1.0&min_share=0&max_share=0.5&per_page=200");
    for f in band["faces"].as_array().expect("faces") {
        let h = f["predictive_entropy"].as_f64().expect("h");
        let share = f["epistemic_share"].as_f64().expect("share");
        assert!((0.5..=1.0).contains(&h) && share <= 0.5, "{f}");
    }
    let crowd = get("split=valid&min_crowd_entropy=1&per_page=200");
    let want = faces
        .iter()
        .filter(|f| f.crowd_entropy.is_some_and(|c| c >= 1.0))
        .count();
    assert_eq!(count(&crowd), want);
    // Refusals name the parameter.
    for (q, word) in [
        ("n=4", "n"),
        ("n=0", "n"),
        ("arch=resnet", "resnet"),
        ("split=train", "split"),
        ("sort=pixels", "sort"),
        ("min_entropy=high", "min_entropy"),
    ] {
        let got = http::get(addr, &format!("/api/faces?{q}")).expect("request");
        assert_eq!(got.status, 400, "{q}");
        let err = got.json()["error"].as_str().expect("error").to_owned();
        assert!(err.contains(word), "{q}: {err}");
    }
}

#[test]
fn one_face_across_every_combination_and_n() {
    let (run, server) = smoke_server();
    let addr = server.addr();
    let list = http::get(addr, "/api/faces?split=test&per_page=1").expect("list");
    let image = list.json()["faces"][0]["image"]
        .as_str()
        .expect("image")
        .to_owned();
    let got = http::get(addr, &format!("/api/face/test/{image}")).expect("face");
    assert_eq!(got.status, 200, "{}", got.text());
    let face = got.json();
    let combos = face["combos"].as_array().expect("combos");
    assert_eq!(combos.len(), 9, "every arch × method of the smoke profile");
    assert!(face["missing"].as_array().expect("missing").is_empty());
    for c in combos {
        let (arch, method) = (
            c["arch"].as_str().expect("a"),
            c["method"].as_str().expect("m"),
        );
        let by_n = c["by_n"].as_array().expect("by_n");
        assert_eq!(by_n.len(), 3);
        let table = samples(&run.layout.infer_split(
            arch.parse().expect("arch"),
            method.parse().expect("method"),
            Split::Test,
        ));
        for (i, at) in by_n.iter().enumerate() {
            let n = i + 1;
            let p = probs(&at["probabilities"]);
            for (k, got) in p.iter().enumerate() {
                let mean: f64 = table[&image][..n]
                    .iter()
                    .map(|s| f64::from(s[k]))
                    .sum::<f64>()
                    / n as f64;
                assert!((got - mean).abs() < 1e-6, "{arch}/{method} n={n}");
            }
        }
    }
    // The 48x48 PNG is ingest's face.
    let png = http::get(addr, &format!("/img/test/{image}")).expect("png");
    assert_eq!(png.status, 200);
    assert_eq!(png.header("content-type"), Some("image/png"));
    let decoded = image::load_from_memory(&png.body)
        .expect("decodes")
        .to_luma8();
    let rows: Vec<FaceRow> = ferbayes_core::io::read_rows(
        &run.layout.ingest_split(Split::Test),
        Some(&["image", "pixels"]),
        "just ingest",
    )
    .expect("ingest");
    let want = rows.iter().find(|r| r.image == image).expect("face");
    assert_eq!(decoded.dimensions(), (48, 48));
    assert_eq!(decoded.as_raw(), &want.pixels);
    // Its ETag is honoured.
    let etag = png.header("etag").expect("etag").to_owned();
    let again = http::request(
        addr,
        "GET",
        &format!("/img/test/{image}"),
        &[("If-None-Match", etag.as_str())],
        &[],
    )
    .expect("png again");
    assert_eq!(again.status, 304);
    // Unknown faces are 404s.
    let none = http::get(addr, "/api/face/test/fer9999999.png").expect("face");
    assert_eq!(none.status, 404);
}

#[test]
fn the_run_api_has_the_status_table_summary_and_figures() {
    let (run, server) = smoke_server();
    let got = http::get(server.addr(), "/api/run").expect("run");
    assert_eq!(got.status, 200, "{}", got.text());
    let json = got.json();
    let status = json["status"].as_array().expect("status");
    let plans =
        ferbayes_core::plan::all(&run.layout, &ferbayes_core::test_data_root(), &run.settings);
    assert_eq!(status.len(), plans.len());
    for (line, plan) in status.iter().zip(&plans) {
        assert_eq!(line["stage"], plan.label.as_str());
        assert_eq!(line["state"], "up to date", "{line}");
    }
    assert!(
        json["summary_html"]
            .as_str()
            .expect("summary")
            .starts_with("<h2 id=\"summary\">Summary</h2>")
    );
    let figures = json["figures"].as_array().expect("figures");
    assert!(figures.len() >= 5, "{figures:?}");
    let name = figures
        .iter()
        .filter_map(|f| f.as_str())
        .find(|f| f.ends_with(".png"))
        .expect("a PNG figure");
    let fig = http::get(server.addr(), &format!("/run/figures/{name}")).expect("figure");
    assert_eq!(fig.status, 200);
    let on_disk = std::fs::read(run.layout.figure(name)).expect("figure file");
    assert_eq!(fig.body, on_disk);
    let report = http::get(server.addr(), "/run/report").expect("report");
    assert_eq!(report.status, 200);
    assert_eq!(
        report.body,
        std::fs::read(run.layout.report_html()).expect("report.html")
    );
    let health = http::get(server.addr(), "/api/health").expect("health");
    assert_eq!(health.json()["status"], "ok");
}
