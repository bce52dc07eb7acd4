//! The architecture invariant of this crate: no other crate's library or binary code decodes a
//! raw image (tests and benches may, to check what was written). Scans every `src/` of the
//! workspace except this crate's, each file up to its `#[cfg(test)]` module, for the decoders'
//! entry points.

use std::path::{Path, PathBuf};

/// Calls that read pixels or an image header from a file or from bytes.
const DECODERS: [&str; 8] = [
    "png::Decoder",
    "ImageReader",
    "image::open(",
    "load_from_memory",
    "PngDecoder",
    "JpegDecoder",
    "image_dimensions(",
    "image::io::Reader",
];

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `path:line: call` for each decoder call in `text` before its unit tests.
fn decoder_calls(path: &Path, text: &str) -> Vec<String> {
    text.lines()
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .enumerate()
        .flat_map(|(i, line)| {
            DECODERS
                .iter()
                .filter(|d| line.contains(*d))
                .map(move |d| format!("{}:{}: {d}", path.display(), i + 1))
        })
        .collect()
}

#[test]
fn the_scan_finds_a_decoder() {
    let text = "let a = 1;\nlet img = image::ImageReader::open(path)?;\n";
    assert_eq!(
        decoder_calls(Path::new("x.rs"), text),
        vec!["x.rs:2: ImageReader".to_owned()]
    );
    assert!(decoder_calls(Path::new("x.rs"), "png::Encoder::new(out, 1, 1)").is_empty());
    let tested = "fn f() {}\n#[cfg(test)]\nmod tests {\n    fn g() { png::Decoder::new(r); }\n}\n";
    assert!(decoder_calls(Path::new("x.rs"), tested).is_empty());
}

#[test]
fn only_this_crate_decodes_raw_images() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&crates).expect("crates").flatten() {
        if entry.file_name() != "faces" {
            rust_files(&entry.path().join("src"), &mut files);
        }
    }
    assert!(files.len() > 20, "found the workspace sources");
    let found: Vec<String> = files
        .iter()
        .flat_map(|path| decoder_calls(path, &std::fs::read_to_string(path).unwrap_or_default()))
        .collect();
    assert!(
        found.is_empty(),
        "raw images decoded outside ferbayes-faces (call its fer or photo module): {found:?}"
    );
    // And this crate does decode: the scan looks for what is really there.
    let mut own = Vec::new();
    rust_files(&crates.join("faces/src"), &mut own);
    assert!(
        own.iter()
            .any(|p| !decoder_calls(p, &std::fs::read_to_string(p).unwrap_or_default()).is_empty()),
        "no decoder found in crates/faces/src"
    );
}
