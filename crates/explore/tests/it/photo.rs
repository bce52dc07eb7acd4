//! `/api/photo`: an upload gets exactly what `ferbayes predict` computes on the same file (the
//! same detector, crop, model and seeds), plus the annotated picture.

use base64::Engine as _;
use ferbayes_core::{Arch, Method};
use ferbayes_explore::testing::http;
use ferbayes_predict::{FaceDetector, Faces};

use crate::support::{photos, smoke_server};

#[test]
fn an_upload_gets_what_predict_computes_on_the_file() {
    let (run, server) = smoke_server();
    let predictor = ferbayes_models::Predictor::load(
        &run.layout,
        &run.settings,
        Arch::Vgg16,
        Method::Ensemble,
        &candle_core::Device::Cpu,
    )
    .expect("model");
    let mut detector = FaceDetector::new().expect("detector");
    for (name, faces) in [("group.jpg", 4), ("astronaut.png", 1)] {
        let path = photos().join(name);
        let bytes = std::fs::read(&path).expect("photo");
        let got = http::upload(
            server.addr(),
            "/api/photo?arch=vgg16&method=ensemble&annotate=1",
            name,
            &bytes,
        )
        .expect("upload");
        assert_eq!(got.status, 200, "{name}: {}", got.text());
        let json = got.json();
        let list = json["faces"].as_array().expect("faces");
        assert_eq!(list.len(), faces, "{name}");
        assert_eq!(json["samples"], 3);
        let want = ferbayes_predict::predict_photo(
            &predictor,
            &mut detector,
            &path,
            Faces::Detect { min_face: 40 },
        )
        .expect("predict");
        for (got, want) in list.iter().zip(&want.faces) {
            assert_eq!(got["box"]["x"], want.bbox.x);
            assert_eq!(got["box"]["width"], want.bbox.width);
            let p: Vec<f64> = got["probabilities"]
                .as_array()
                .expect("probabilities")
                .iter()
                .map(|e| e[1].as_f64().expect("p"))
                .collect();
            let q: Vec<f64> = want.probabilities.iter().map(|e| e.1).collect();
            assert_eq!(p, q, "{name}: the same probabilities as predict");
            assert_eq!(got["verdict"], want.verdict.name());
            assert!(got["prediction_set"]["emotions"].is_array(), "{got}");
        }
        let uri = json["annotated_png"].as_str().expect("annotated");
        let png = base64::engine::general_purpose::STANDARD
            .decode(
                uri.strip_prefix("data:image/png;base64,")
                    .expect("data URI"),
            )
            .expect("base64");
        let img = image::load_from_memory(&png).expect("decodes");
        let original = image::image_dimensions(&path).expect("size");
        assert_eq!((img.width(), img.height()), original);
    }
    // Without `annotate`, no picture; with no_detect, one face.
    let jpeg = std::fs::read(photos().join("group.jpg")).expect("jpeg");
    let plain = http::upload(server.addr(), "/api/photo?no_detect=1", "group.jpg", &jpeg)
        .expect("upload")
        .json();
    assert!(plain["annotated_png"].is_null());
    assert_eq!(plain["faces"].as_array().expect("faces").len(), 1);
    assert_eq!(
        plain["arch"], "alexnet",
        "the profile's first model by default"
    );
}
