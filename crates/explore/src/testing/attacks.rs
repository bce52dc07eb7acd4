//! Hostile requests, shared by the safety tests and the load bench: request targets that try to
//! leave the artifact root, and malformed uploads, each with the status it must get.

use std::path::Path;

use super::http;

/// Request targets that try to reach files outside the artifact root (`..`, absolute paths,
/// percent-encoded `.`, `/` and `\`), and the status each must get: 400 for a name the server
/// refuses to look up, 404 for a route or name that does not exist.
pub const TRAVERSALS: [(&str, u16); 16] = [
    ("/img/test/..%2F..%2F..%2Fetc%2Fpasswd", 400),
    ("/img/test/%2e%2e%2f%2e%2e%2fpipeline.toml", 400),
    ("/img/test/%2Fetc%2Fpasswd", 400),
    ("/img/test/..", 400),
    ("/img/..%2F..%2Fingest/test.parquet", 400),
    ("/img/test/../../ingest/test.parquet", 404),
    ("/img/test//etc/passwd", 404),
    ("/face/test/..%5C..%5Cmanifest.json", 400),
    ("/api/face/test/%2e%2e", 400),
    ("/run/figures/..%2Freport.md", 400),
    ("/run/figures/%2e%2e%2f%2e%2e%2fingest%2fmanifest.json", 400),
    ("/run/figures/..", 400),
    ("/run/figures/report.md", 404),
    ("/faces?split=..%2F..%2Fetc", 400),
    ("/api/faces?arch=..%2Fvgg16", 400),
    ("/../../../../etc/passwd", 404),
];

/// A malformed upload to `/api/photo`.
#[derive(Debug, Clone)]
pub struct Malformed {
    pub what: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// The status it must get, and a word its message must hold.
    pub status: u16,
    pub says: &'static str,
}

impl Malformed {
    /// Sends it; the answer.
    pub fn send(&self, addr: std::net::SocketAddr) -> std::io::Result<http::Answer> {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http::request(addr, "POST", "/api/photo", &headers, &self.body)
    }
}

/// A PNG header claiming 20000 x 20000 pixels (400 megapixels), with valid CRCs and a few
/// bytes of data: refused from its header.
pub fn huge_png() -> Vec<u8> {
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
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(20_000u32.to_be_bytes());
    ihdr.extend(20_000u32.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    bytes.extend(13u32.to_be_bytes());
    bytes.extend(&ihdr);
    bytes.extend(crc32(&ihdr).to_be_bytes());
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
    bytes
}

fn file_upload(
    what: &'static str,
    name: &str,
    bytes: &[u8],
    status: u16,
    says: &'static str,
) -> Malformed {
    let (content_type, body) = http::multipart("photo", name, "image/jpeg", bytes);
    Malformed {
        what,
        headers: vec![("Content-Type", content_type)],
        body,
        status,
        says,
    }
}

/// Malformed uploads: wrong types, broken forms, truncated and empty files, a body over
/// [`crate::MAX_UPLOAD_BYTES`], an image over the pixel limit and a photo without a face.
/// `photos` is shared/photos; `no_face` a face-free PNG.
pub fn malformed_uploads(photos: &Path, no_face: &Path) -> std::io::Result<Vec<Malformed>> {
    let jpeg = std::fs::read(photos.join("group.jpg"))?;
    let png = std::fs::read(photos.join("astronaut.png"))?;
    let patch = std::fs::read(no_face)?;
    let (wrong_field, wrong_field_body) = http::multipart("picture", "a.jpg", "image/jpeg", &jpeg);
    Ok(vec![
        file_upload(
            "truncated JPEG",
            "a.jpg",
            &jpeg[..jpeg.len() / 3],
            400,
            "truncated JPEG",
        ),
        file_upload(
            "truncated PNG",
            "t.png",
            &png[..png.len() / 2],
            400,
            "cannot decode",
        ),
        file_upload("empty file", "empty.png", &[], 400, "empty"),
        file_upload(
            "text file",
            "notes.jpg",
            b"not an image at all",
            415,
            "not a PNG or JPEG",
        ),
        file_upload(
            "GIF",
            "a.gif",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
            415,
            "PNG or JPEG",
        ),
        file_upload(
            "400 megapixels",
            "huge.png",
            &huge_png(),
            413,
            "megapixel limit",
        ),
        file_upload(
            "no face",
            "brick.png",
            &patch,
            422,
            "no face found in brick.png",
        ),
        file_upload(
            "body over the limit",
            "big.jpg",
            &vec![0xFF; crate::MAX_UPLOAD_BYTES + 1024],
            413,
            "",
        ),
        Malformed {
            what: "not multipart",
            headers: vec![("Content-Type", "image/jpeg".into())],
            body: jpeg.clone(),
            status: 415,
            says: "multipart/form-data",
        },
        Malformed {
            what: "no content type",
            headers: Vec::new(),
            body: jpeg.clone(),
            status: 415,
            says: "multipart/form-data",
        },
        Malformed {
            what: "no photo field",
            headers: vec![("Content-Type", wrong_field)],
            body: wrong_field_body,
            status: 400,
            says: "photo",
        },
        Malformed {
            what: "broken multipart",
            headers: vec![("Content-Type", "multipart/form-data; boundary=zzz".into())],
            body: b"--yyy\r\nnonsense".to_vec(),
            status: 400,
            says: "",
        },
    ])
}
