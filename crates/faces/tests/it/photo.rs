//! Users' own photos become 48x48 grayscale faces.

use std::path::Path;

use ferbayes_faces::fer::read_png;
use ferbayes_faces::photo::{decode_photo, header_size, load_photo, open_photo};

fn real_root() -> std::path::PathBuf {
    ferbayes_core::test_data_root()
}

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

#[test]
fn face_pixels_crop_a_square_and_repeat_the_edges_past_the_border() {
    use ferbayes_faces::photo::{Square, face_pixels};
    // 100x80 image whose pixel (x, y) is x + y (mod 256).
    let img = image::GrayImage::from_fn(100, 80, |x, y| image::Luma([(x + y) as u8]));
    // A 48 square inside: exactly those pixels, nothing resampled.
    let inside = face_pixels(
        &img,
        Square {
            x: 10,
            y: 20,
            side: 48,
        },
    );
    for (i, &p) in inside.iter().enumerate() {
        let (x, y) = (10 + i % 48, 20 + i / 48);
        assert_eq!(usize::from(p), x + y);
    }
    // A 48 square reaching 8 px past the left and top edges: those rows and columns repeat the
    // edge, so the first 9 pixels of row 0 all equal pixel (0, 0) = 0.
    let outside = face_pixels(
        &img,
        Square {
            x: -8,
            y: -8,
            side: 48,
        },
    );
    assert!(outside[..9].iter().all(|&p| p == 0), "{:?}", &outside[..10]);
    assert_eq!(outside[9], 1);
    assert_eq!(outside[48 * 47 + 47], 39 + 39);
}

/// The photos of shared/photos (beside the FER+ copy).
fn shared_photo(name: &str) -> std::path::PathBuf {
    real_root().join("../photos").join(name)
}

#[test]
fn a_photo_in_memory_decodes_as_its_file_does() {
    for name in ["group.jpg", "astronaut.png"] {
        let path = shared_photo(name);
        let bytes = std::fs::read(&path).expect("photo");
        let from_file = open_photo(&path).expect("file decodes");
        let from_memory = decode_photo(Path::new(name), &bytes).expect("bytes decode");
        assert_eq!(from_file, from_memory, "{name}");
    }
}

#[test]
fn bad_bytes_get_the_errors_of_bad_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jpeg = std::fs::read(shared_photo("group.jpg")).expect("group.jpg");
    let png = std::fs::read(shared_photo("astronaut.png")).expect("astronaut.png");
    for (bytes, why) in [
        (&jpeg[..jpeg.len() / 3], "truncated JPEG"),
        (&png[..png.len() / 2], "cannot decode"),
        (&b""[..], "file is empty"),
        (&b"not an image at all"[..], "cannot decode"),
    ] {
        let err = decode_photo(Path::new("upload.jpg"), bytes)
            .expect_err(why)
            .to_string();
        assert!(err.contains("upload.jpg") && err.contains(why), "{err}");
        let file = dir.path().join("upload.jpg");
        std::fs::write(&file, bytes).expect("write");
        let from_file = open_photo(&file).expect_err(why).to_string();
        assert_eq!(
            err.replace("upload.jpg", ""),
            from_file.replace(&file.display().to_string(), ""),
            "the same refusal from memory as from a file"
        );
    }
}

#[test]
fn header_sizes_are_read_without_decoding() {
    let png = std::fs::read(shared_photo("astronaut.png")).expect("astronaut.png");
    assert_eq!(header_size(&png), Some((512, 512)));
    // Half the file: the header is whole, the pixels are not.
    assert_eq!(header_size(&png[..png.len() / 2]), Some((512, 512)));
    let jpeg = std::fs::read(shared_photo("group.jpg")).expect("group.jpg");
    assert_eq!(
        header_size(&jpeg),
        Some(image::image_dimensions(shared_photo("group.jpg")).expect("size"))
    );
    assert_eq!(header_size(b"not an image at all"), None);
    assert_eq!(header_size(b""), None);
}
