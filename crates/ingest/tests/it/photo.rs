//! Users' own photos become 48x48 grayscale faces.

use ferbayes_ingest::photo::load_photo;
use ferbayes_ingest::source::read_png;

use crate::support::real_root;

#[test]
fn a_real_face_passes_through_unchanged() {
    let path = real_root().join("FER2013Test/fer0032220.png");
    let photo = load_photo(&path).expect("photo");
    assert!(photo.was_face_sized);
    assert_eq!(photo.original, (48, 48));
    assert_eq!(photo.pixels, read_png(&path).expect("png"));
}

#[test]
fn colour_images_are_grayed_centre_cropped_and_resized() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 96x48 RGB: black margins of 24 px around a white 48x48 centre → the crop is all white.
    let wide = image::RgbImage::from_fn(96, 48, |x, _| {
        if (24..72).contains(&x) {
            image::Rgb([255, 255, 255])
        } else {
            image::Rgb([0, 0, 0])
        }
    });
    let path = dir.path().join("wide.png");
    wide.save(&path).expect("save");
    let photo = load_photo(&path).expect("photo");
    assert!(!photo.was_face_sized);
    assert_eq!(photo.original, (96, 48));
    assert!(
        photo.pixels.iter().all(|&p| p == 255),
        "crop must drop the black margins"
    );

    // A flat colour JPEG of 100x60 → 48x48 of its luma, Rec. 709 weights as the `image` crate:
    // 0.2126·200 + 0.7152·100 + 0.0722·50 = 117.65 (JPEG rounding allows ±3).
    let flat = image::RgbImage::from_pixel(100, 60, image::Rgb([200, 100, 50]));
    let path = dir.path().join("flat.jpg");
    flat.save(&path).expect("save jpeg");
    let photo = load_photo(&path).expect("photo");
    assert_eq!(photo.pixels.len(), 48 * 48);
    assert!(
        photo.pixels.iter().all(|&p| (115..=121).contains(&p)),
        "{:?}",
        &photo.pixels[..4]
    );

    let text = dir.path().join("notes.png");
    std::fs::write(&text, "not an image").expect("write");
    let err = load_photo(&text).expect_err("not an image").to_string();
    assert!(
        err.contains("notes.png") && err.contains("cannot decode"),
        "{err}"
    );
}
