//! A rerun is noticed without a restart (the manifest key changed), and a missing stage gives
//! a page that names the recipe making it.

use std::path::Path;
use std::time::Duration;

use ferbayes_core::schema::rows::InferRow;
use ferbayes_core::{Arch, Layout, Method, Split, schema};
use ferbayes_explore::server::KEY_TTL;
use ferbayes_explore::testing::http;

use crate::support::{serve, smoke, smoke_settings};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        let dest = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).expect("copy");
        }
    }
}

fn first_face(addr: std::net::SocketAddr) -> (String, f64) {
    let got = http::get(
        addr,
        "/api/faces?arch=alexnet&method=mc_dropout&sort=image&order=asc&per_page=1",
    )
    .expect("faces");
    assert_eq!(got.status, 200, "{}", got.text());
    let face = &got.json()["faces"][0];
    (
        face["image"].as_str().expect("image").to_owned(),
        face["probabilities"][0][1].as_f64().expect("p"),
    )
}

#[test]
fn a_rerun_stage_is_picked_up_and_a_missing_one_names_its_recipe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("art");
    copy_dir(&smoke().root, &root);
    let settings = smoke_settings();
    let layout = Layout::new(&root, "smoke");
    let server = serve(&layout, &settings);
    let addr = server.addr();
    let (image, before) = first_face(addr);

    // "Rerun" infer for alexnet/mc_dropout: every sample now says neutral with probability
    // 0.25, and the manifest gets a new key (as a rerun with other settings would).
    let (a, m) = (Arch::AlexNet, Method::McDropout);
    let path = layout.infer_split(a, m, Split::Test);
    let mut rows: Vec<InferRow> =
        ferbayes_core::io::read_rows(&path, None, "just infer").expect("infer");
    for r in &mut rows {
        r.probs = [
            0.25,
            0.25,
            0.25,
            0.25 / 5.0,
            0.25 / 5.0,
            0.25 / 5.0,
            0.25 / 5.0,
            0.25 / 5.0,
        ];
    }
    let batch = ferbayes_core::io::rows_batch(&path, &rows).expect("batch");
    ferbayes_core::io::write_parquet(&path, &schema::infer(), [batch], 3)
        .expect("write")
        .commit()
        .expect("commit");
    let manifest = Layout::manifest_in(&layout.infer_dir(a, m));
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("json");
    json["key"] = "a-new-key-after-a-rerun".into();
    std::fs::write(&manifest, json.to_string()).expect("manifest");
    std::thread::sleep(KEY_TTL + Duration::from_millis(100));
    let (again, after) = first_face(addr);
    assert_eq!(again, image);
    assert!(
        (before - 0.25).abs() > 1e-6,
        "the test needs another value first"
    );
    assert!(
        (after - 0.25).abs() < 1e-6,
        "the rerun's table is served: {after}"
    );

    // Its infer table gone: the faces page and API say so and name `just infer`.
    std::fs::remove_file(&path).expect("remove");
    std::fs::remove_file(&manifest).expect("remove manifest");
    std::thread::sleep(KEY_TTL + Duration::from_millis(100));
    let page = http::get(addr, "/faces?arch=alexnet&method=mc_dropout").expect("page");
    assert_eq!(page.status, 404);
    let text = page.text();
    assert!(
        text.contains("test.parquet does not exist") && text.contains("<code>just infer</code>"),
        "{text}"
    );
    let api = http::get(addr, "/api/faces?arch=alexnet&method=mc_dropout").expect("api");
    assert_eq!(api.status, 404);
    assert_eq!(api.json()["recipe"], "just infer");
    // Other combinations still answer, and the face page lists the missing one.
    let other = http::get(addr, "/api/faces?arch=vgg16&method=ensemble").expect("api");
    assert_eq!(other.status, 200);
    let face = http::get(addr, &format!("/api/face/test/{image}"))
        .expect("face")
        .json();
    assert_eq!(face["combos"].as_array().expect("combos").len(), 8);
    assert_eq!(face["missing"][0]["recipe"], "just infer");
}

#[test]
fn before_ingest_every_page_names_just_ingest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path(), "smoke");
    let server = serve(&layout, &smoke_settings());
    for target in ["/faces", "/face/test/fer0000001.png", "/api/faces"] {
        let got = http::get(server.addr(), target).expect(target);
        assert_eq!(got.status, 404, "{target}");
        assert!(
            got.text().contains("just ingest"),
            "{target}: {}",
            got.text()
        );
    }
    let run = http::get(server.addr(), "/run").expect("run");
    assert_eq!(run.status, 200);
    let text = run.text();
    assert!(
        text.contains("missing") && text.contains("just analyze"),
        "{text}"
    );
    assert!(
        std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
        "the server wrote into an empty artifact root"
    );
}
