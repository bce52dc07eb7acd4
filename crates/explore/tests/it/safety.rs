//! Safe input: no request path reaches a file outside the artifact root (`..`, absolute
//! paths, their percent-encoded forms), malformed and oversized uploads are refused with a 4xx
//! and a message, the server answers after all of them, and it never writes under the
//! artifact root.

use ferbayes_explore::testing::attacks::{TRAVERSALS, malformed_uploads};
use ferbayes_explore::testing::http;

use crate::support::{photos, smoke, smoke_server, snapshot};

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

#[test]
fn malformed_uploads_get_a_4xx_with_a_message() {
    let (_, server) = smoke_server();
    let addr = server.addr();
    let patch = ferbayes_core::test_data_root().join("../ood/natural-patches/ood00000.png");
    let cases = malformed_uploads(&photos(), &patch).expect("the photos");
    for case in &cases {
        let got = case.send(addr).expect(case.what);
        assert_eq!(got.status, case.status, "{}: {}", case.what, got.text());
        let json = got.json();
        let err = json["error"].as_str().expect("a message");
        assert!(
            !err.is_empty() && err.contains(case.says),
            "{}: {err}",
            case.what
        );
    }
    let jpeg = std::fs::read(photos().join("group.jpg")).expect("group.jpg");
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
