//! Safe input: no request path reaches a file outside the artifact root (`..`, absolute
//! paths, their percent-encoded forms), malformed and oversized uploads are refused with a 4xx
//! and a message, the server answers after all of them, and it never writes under the
//! artifact root.

use ferbayes_explore::testing::http;

use crate::support::{photos, smoke, smoke_server, snapshot};

/// Request targets that try to leave the artifact root, and the status each must get: 400 for
/// a name the server refuses to look up, 404 for a route or name that does not exist.
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

#[test]
fn traversal_attempts_are_refused_and_leak_nothing() {
    let (_, server) = smoke_server();
    let addr = server.addr();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for (target, status) in TRAVERSALS {
        let got = http::get(addr, target).expect("request");
        assert_eq!(got.status, status, "{target}: {}", got.text());
        let body = got.text();
        assert!(!body.contains("root:x:0:0"), "{target} leaked /etc/passwd");
        assert!(
            passwd.is_empty() || !body.contains(passwd.lines().next().unwrap_or("-")),
            "{target}"
        );
        assert!(!body.contains("PAR1"), "{target} leaked a Parquet file");
        assert!(!body.contains("\"key\":"), "{target} leaked a manifest");
    }
    let alive = http::get(addr, "/api/health").expect("health");
    assert_eq!(alive.status, 200);
}

/// A PNG header claiming 20000 x 20000 pixels with a valid CRC and a few bytes of data.
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

#[test]
fn malformed_uploads_get_a_4xx_with_a_message() {
    let (_, server) = smoke_server();
    let addr = server.addr();
    let jpeg = std::fs::read(photos().join("group.jpg")).expect("group.jpg");
    let truncated = &jpeg[..jpeg.len() / 3];
    let (big, oversized) = http::multipart(
        "photo",
        "big.jpg",
        "image/jpeg",
        &vec![0xFF; ferbayes_explore::MAX_UPLOAD_BYTES + 1024],
    );
    let (form, form_body) = http::multipart("photo", "a.jpg", "image/jpeg", truncated);
    let (other_field, other_body) = http::multipart("picture", "a.jpg", "image/jpeg", &jpeg);
    let patch = ferbayes_core::test_data_root().join("../ood/natural-patches/ood00000.png");
    let no_face = std::fs::read(&patch).expect("a natural patch");
    let cases: Vec<(&str, Vec<(&str, String)>, Vec<u8>, u16, &str)> = vec![
        (
            "truncated JPEG",
            vec![("Content-Type", form.clone())],
            form_body,
            400,
            "truncated JPEG",
        ),
        (
            "not multipart",
            vec![("Content-Type", "image/jpeg".into())],
            jpeg.clone(),
            415,
            "multipart/form-data",
        ),
        (
            "no content type",
            vec![],
            jpeg.clone(),
            415,
            "multipart/form-data",
        ),
        (
            "no photo field",
            vec![("Content-Type", other_field)],
            other_body,
            400,
            "photo",
        ),
        (
            "broken boundary",
            vec![("Content-Type", "multipart/form-data; boundary=zzz".into())],
            b"--yyy\r\nnonsense".to_vec(),
            400,
            "",
        ),
        (
            "too large a body",
            vec![("Content-Type", big)],
            oversized,
            413,
            "",
        ),
    ];
    for (what, headers, body, status, word) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let got = http::request(addr, "POST", "/api/photo", &headers, &body).expect(what);
        assert_eq!(got.status, status, "{what}: {}", got.text());
        let json = got.json();
        let err = json["error"].as_str().expect("a message");
        assert!(!err.is_empty() && err.contains(word), "{what}: {err}");
    }
    for (what, name, bytes, status, word) in [
        ("empty file", "empty.png", Vec::new(), 400, "empty"),
        (
            "text file",
            "notes.jpg",
            b"not an image at all".to_vec(),
            415,
            "not a PNG or JPEG",
        ),
        (
            "GIF",
            "a.gif",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
            415,
            "PNG or JPEG",
        ),
        (
            "truncated PNG",
            "t.png",
            {
                let png = std::fs::read(photos().join("astronaut.png")).expect("png");
                png[..png.len() / 2].to_vec()
            },
            400,
            "cannot decode",
        ),
        (
            "400 megapixels",
            "huge.png",
            huge_png(),
            413,
            "megapixel limit",
        ),
        (
            "no face",
            "brick.png",
            no_face,
            422,
            "no face found in brick.png",
        ),
    ] {
        let got = http::upload(addr, "/api/photo", name, &bytes).expect(what);
        assert_eq!(got.status, status, "{what}: {}", got.text());
        let err = got.json()["error"].as_str().expect("a message").to_owned();
        assert!(err.contains(word), "{what}: {err}");
    }
    let bad_query = http::upload(addr, "/api/photo?min_face=2", "a.jpg", &jpeg).expect("query");
    assert_eq!(bad_query.status, 400);
    let alive = http::get(addr, "/api/health").expect("health");
    assert_eq!(alive.status, 200);
}

#[test]
fn binds_to_loopback_by_default_and_writes_nothing() {
    let addr: std::net::SocketAddr = ferbayes_explore::DEFAULT_LISTEN.parse().expect("addr");
    assert!(addr.ip().is_loopback());
    let (run, server) = smoke_server();
    assert!(server.addr().ip().is_loopback());
    // Every page and API once, then the artifact tree is as the chain left it.
    for target in [
        "/faces",
        "/api/faces?split=valid&n=2",
        "/run",
        "/api/run",
        "/photo",
        "/face/test/x.png",
    ] {
        let _ = http::get(server.addr(), target).expect(target);
    }
    let jpeg = std::fs::read(photos().join("group.jpg")).expect("group.jpg");
    let got =
        http::upload(server.addr(), "/api/photo?annotate=1", "group.jpg", &jpeg).expect("upload");
    assert_eq!(got.status, 200, "{}", got.text());
    drop(server);
    assert_eq!(
        snapshot(&smoke().layout.profile_dir()),
        run.files,
        "the artifact tree changed under the server"
    );
}
