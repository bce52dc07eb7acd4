//! Bad input: no face, truncated, empty and non-image files, and an image too large to decode.

use std::path::Path;

use crate::support::{natural_patches, photos, predict};

fn stderr_of(path: &Path) -> (Option<i32>, String) {
    let out = predict(&[path.as_os_str()]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_natural_patch_has_no_face() {
    // The first crop of scikit-image's `brick` photo (index.csv beside the patches).
    let patch = natural_patches().join("ood00000.png");
    let index = std::fs::read_to_string(natural_patches().join("index.csv")).expect("index.csv");
    assert!(
        index.contains("ood00000.png,brick.png"),
        "index.csv changed"
    );
    let (code, err) = stderr_of(&patch);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains(&format!("no face found in {}", patch.display()))
            && err.contains("use --no-detect"),
        "{err}"
    );
    // With --no-detect the patch is classified as a face.
    let out = predict(&[patch.as_os_str(), "--no-detect".as_ref()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn truncated_empty_and_non_image_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let photo = std::fs::read(photos().join("group.jpg")).expect("group.jpg");
    let truncated = dir.path().join("truncated.jpg");
    std::fs::write(&truncated, &photo[..photo.len() / 3]).expect("write");
    let png = std::fs::read(photos().join("astronaut.png")).expect("astronaut.png");
    let truncated_png = dir.path().join("truncated.png");
    std::fs::write(&truncated_png, &png[..png.len() / 2]).expect("write");
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").expect("write");
    let text = dir.path().join("notes.jpg");
    std::fs::write(&text, "not an image at all").expect("write");
    let missing = dir.path().join("missing.png");
    for (path, why) in [
        (&truncated, "truncated JPEG"),
        (&truncated_png, "cannot decode"),
        (&empty, "file is empty"),
        (&text, "cannot decode"),
        (&missing, "No such file"),
    ] {
        let (code, err) = stderr_of(path);
        assert_eq!(code, Some(1), "{}: {err}", path.display());
        assert!(
            err.contains(&path.display().to_string()) && err.contains(why),
            "{}: {err}",
            path.display()
        );
    }
}

/// A valid PNG header claiming 20000x20000 pixels (400 megapixels) with a few bytes of pixel
/// data: refused from the header, before any pixel is decoded.
#[test]
fn an_enormous_image_is_refused_before_decoding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.png");
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(20_000u32.to_be_bytes());
    ihdr.extend(20_000u32.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // 8-bit grayscale, deflate, no filter, no interlace
    bytes.extend(13u32.to_be_bytes());
    bytes.extend(&ihdr);
    bytes.extend(crc32(&ihdr).to_be_bytes());
    // A short IDAT (the start of a zlib stream) and IEND: a tiny file.
    for (kind, data) in [
        (&b"IDAT"[..], &b"\x78\x9c\xed\xc1\x01\x0d\x00\x00"[..]),
        (b"IEND", b""),
    ] {
        let mut chunk = kind.to_vec();
        chunk.extend(data);
        bytes.extend((data.len() as u32).to_be_bytes());
        bytes.extend(&chunk);
        bytes.extend(crc32(&chunk).to_be_bytes());
    }
    std::fs::write(&path, &bytes).expect("write");
    let (code, err) = stderr_of(&path);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("huge.png")
            && err.contains("20000x20000")
            && err.contains("refused before decoding"),
        "{err}"
    );
    // The refusal comes from the header, not from a failed decode.
    assert!(!err.contains("cannot decode"), "{err}");
}

/// CRC-32 (IEEE) of a PNG chunk's type and data.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
