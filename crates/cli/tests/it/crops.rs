//! `--no-detect` on images that already are face crops, and the kernel backends.

use std::ffi::OsStr;

use crate::support::{predict, predict_json};

fn real_face() -> std::path::PathBuf {
    ferbayes_core::test_data_root().join("FER2013Test/fer0032220.png")
}

#[test]
fn a_real_face_crop_needs_no_warning_and_a_colour_photo_gets_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let photo = dir.path().join("photo.jpg");
    image::RgbImage::from_fn(120, 90, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 2) as u8, 90])
    })
    .save(&photo)
    .expect("save jpeg");
    let real = real_face();
    let faces = predict_json(&[real.as_os_str(), photo.as_os_str(), "--no-detect".as_ref()]);
    assert_eq!(faces.len(), 2);
    assert!(
        faces[0]["warning"].is_null(),
        "a 48x48 gray face needs no warning"
    );
    assert!(
        faces[1]["warning"]
            .as_str()
            .expect("warning")
            .contains("120x90")
    );
    assert_eq!(faces[0]["box"]["width"], 48);
    assert!(faces[0]["box"]["score"].is_null());
}

/// `--kernels` picks the kernel backend: candle's reference ops give the probabilities of the
/// default fused kernels (within 1e-4), and an unknown name is refused naming the choices.
#[test]
fn each_kernel_backend_gives_the_same_probabilities() {
    let real = real_face();
    let probs = |kernels: &str| -> Vec<f64> {
        let faces = predict_json(&[
            real.as_os_str(),
            "--no-detect".as_ref(),
            "--kernels".as_ref(),
            OsStr::new(kernels),
        ]);
        faces[0]["probabilities"]
            .as_array()
            .expect("probs")
            .iter()
            .map(|e| e[1].as_f64().expect("p"))
            .collect()
    };
    let fused = probs("winograd");
    let reference = probs("reference");
    for (a, b) in fused.iter().zip(&reference) {
        assert!((a - b).abs() < 1e-4, "{fused:?} vs {reference:?}");
    }
    let out = predict(&[real.as_os_str(), "--kernels".as_ref(), "fastest".as_ref()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown kernels `fastest`"), "{err}");
}
