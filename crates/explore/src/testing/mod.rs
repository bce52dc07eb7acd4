//! Test and bench helpers (feature `testing`; not a stable API): a raw HTTP/1.1 client that
//! sends request targets exactly as written, the hostile requests the safety tests and the load
//! bench send, and headless Chromium over the DevTools protocol.

pub mod attacks;
pub mod cdp;
pub mod http;

/// Whether the browser checks are to be skipped (`FER_NO_BROWSER=1`); says so on stderr.
pub fn no_browser(what: &str) -> bool {
    let skip = std::env::var("FER_NO_BROWSER").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("skipping {what}: FER_NO_BROWSER=1");
    }
    skip
}
