//! FER+'s own face PNGs: 48x48 8-bit grayscale, anything else refused naming the file.

use ferbayes_faces::fer::read_png;

#[test]
fn only_48x48_8_bit_grayscale_pngs_are_faces() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A face: pixel (x, y) = x + 2y, read back as it was written.
    let face = image::GrayImage::from_fn(48, 48, |x, y| image::Luma([(x + 2 * y) as u8]));
    let ok = dir.path().join("fer0000001.png");
    face.save(&ok).expect("save");
    let pixels = read_png(&ok).expect("a face");
    assert_eq!(pixels.len(), 48 * 48);
    assert_eq!((pixels[0], pixels[47], pixels[48 * 10 + 3]), (0, 47, 23));

    let big = dir.path().join("big.png");
    image::GrayImage::new(64, 48).save(&big).expect("save");
    let rgb = dir.path().join("rgb.png");
    image::RgbImage::new(48, 48).save(&rgb).expect("save");
    let deep = dir.path().join("deep.png");
    image::ImageBuffer::<image::Luma<u16>, _>::new(48, 48)
        .save(&deep)
        .expect("save");
    let text = dir.path().join("text.png");
    std::fs::write(&text, "not a png").expect("write");
    let cut = dir.path().join("cut.png");
    let bytes = std::fs::read(&ok).expect("read");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    for (path, says) in [
        (&big, "image is 64x48, expected 48x48"),
        (
            &rgb,
            "image is Rgb with 8 bits per sample, expected 8-bit grayscale",
        ),
        (&deep, "image is Grayscale with 16 bits per sample"),
        (&text, "not a readable PNG"),
        (&cut, "PNG data is truncated or corrupt"),
        (&dir.path().join("missing.png"), "No such file"),
    ] {
        let err = read_png(path).expect_err(says).to_string();
        assert!(
            err.starts_with(&path.display().to_string()) && err.contains(says),
            "{err}"
        );
    }
}
