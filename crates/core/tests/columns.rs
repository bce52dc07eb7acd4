//! Guards the invariant that Parquet tables are read and written through their row structs in
//! `core::schema::rows`: no Rust source of the workspace takes a record batch column by its
//! position (`.column(` followed by a digit).

use std::path::{Path, PathBuf};

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

/// The 1-based lines of `text` where a column is taken by position.
fn positional_columns(text: &str) -> Vec<usize> {
    let needle = concat!(".col", "umn(");
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            line.match_indices(needle).any(|(at, _)| {
                line[at + needle.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit())
            })
        })
        .map(|(i, _)| i + 1)
        .collect()
}

#[test]
fn the_scan_finds_a_positional_column() {
    let line = format!("let x = batch{}3);", concat!(".col", "umn("));
    assert_eq!(positional_columns(&format!("ok\n{line}\n")), vec![2]);
    assert!(positional_columns("batch.column_by_name(\"image\")").is_empty());
}

#[test]
fn no_source_takes_a_column_by_position() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&crates, &mut files);
    assert!(files.len() > 20, "found the workspace sources");
    let found: Vec<String> = files
        .iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            positional_columns(&text)
                .into_iter()
                .map(move |line| format!("{}:{line}", path.display()))
        })
        .collect();
    assert!(
        found.is_empty(),
        "columns taken by position (read them through core::schema::rows): {found:?}"
    );
}
