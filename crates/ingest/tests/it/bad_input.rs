//! Every kind of bad input gives a clear error naming the file (and line), and never touches the
//! artifacts of an earlier good run.

use std::path::Path;
use std::process::Command;

use ferbayes_core::{Layout, Split};

use crate::support::{settings, small_copy, write_png};

/// Ingests a good small copy, applies `damage`, ingests again and checks the error contains every
/// string of `expected`, and that the earlier artifacts are byte-for-byte unchanged.
fn check(damage: impl FnOnce(&Path), expected: &[&str]) {
    let data = tempfile::tempdir().expect("tempdir");
    let root = small_copy(data.path(), 12);
    let out = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(out.path(), "bad");
    ferbayes_ingest::run(&root, &layout, &settings(None)).expect("good run");
    let before: Vec<Vec<u8>> = Split::ALL
        .iter()
        .map(|&s| std::fs::read(layout.ingest_split(s)).expect("artifact"))
        .collect();

    damage(&root);
    let err = ferbayes_ingest::run(&root, &layout, &settings(None))
        .expect_err("bad input must fail")
        .to_string();
    for want in expected {
        assert!(err.contains(want), "error `{err}` lacks `{want}`");
    }
    for (split, old) in Split::ALL.iter().zip(before) {
        let now = std::fs::read(layout.ingest_split(*split)).expect("artifact still there");
        assert!(now == old, "{split} artifact changed by a failed run");
    }
    let leftovers: Vec<_> = std::fs::read_dir(layout.stage_dir(ferbayes_core::Stage::Ingest))
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn label_csv(root: &Path) -> std::path::PathBuf {
    root.join("FER2013Valid/label.csv")
}

fn edit_line(root: &Path, line: usize, f: impl FnOnce(&str) -> String) {
    let path = label_csv(root);
    let text = std::fs::read_to_string(&path).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[line - 1] = f(&lines[line - 1]);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
}

/// The PNG named on line `line` of the valid label.csv.
fn png_of(root: &Path, line: usize) -> std::path::PathBuf {
    let text = std::fs::read_to_string(label_csv(root)).expect("read");
    let name = text
        .lines()
        .nth(line - 1)
        .expect("line")
        .split(',')
        .next()
        .expect("name");
    root.join("FER2013Valid").join(name)
}

#[test]
fn missing_split_folder() {
    check(
        |root| std::fs::remove_dir_all(root.join("FER2013Test")).expect("rm"),
        &["FER2013Test", "missing"],
    );
}

#[test]
fn empty_label_csv() {
    check(
        |root| std::fs::write(label_csv(root), "").expect("write"),
        &["FER2013Valid/label.csv", "empty"],
    );
}

#[test]
fn wrong_column_count() {
    check(
        |root| edit_line(root, 3, |l| l.rsplit_once(',').expect("comma").0.to_owned()),
        &[
            "FER2013Valid/label.csv",
            "line 3",
            "expected 12 columns",
            "found 11",
        ],
    );
}

#[test]
fn non_integer_votes() {
    check(
        |root| {
            edit_line(root, 5, |l| {
                format!("{},x", l.rsplit_once(',').expect("comma").0)
            })
        },
        &["FER2013Valid/label.csv", "line 5", "`NF`", "not an integer"],
    );
    check(
        |root| edit_line(root, 2, |l| l.replacen(",0", ",-1", 1)),
        &["line 2", "not an integer"],
    );
}

#[test]
fn image_name_must_be_a_plain_file_name() {
    check(
        |root| edit_line(root, 4, |l| format!("../FER2013Train/{l}")),
        &["FER2013Valid/label.csv", "line 4", "not a plain file name"],
    );
    check(
        |root| edit_line(root, 4, |l| format!("sub/{l}")),
        &["line 4", "not a plain file name"],
    );
}

#[test]
fn missing_png() {
    let mut missing = String::new();
    check(
        |root| {
            let png = png_of(root, 6);
            missing = png
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            std::fs::remove_file(png).expect("rm");
        },
        &["FER2013Valid/fer", "No such file"],
    );
    assert!(!missing.is_empty());
}

#[test]
fn truncated_png() {
    check(
        |root| {
            let png = png_of(root, 7);
            let bytes = std::fs::read(&png).expect("read");
            std::fs::write(&png, &bytes[..bytes.len() / 2]).expect("write");
        },
        &["FER2013Valid/fer", "truncated or corrupt"],
    );
}

#[test]
fn not_a_png() {
    check(
        |root| std::fs::write(png_of(root, 7), "hello, I am text").expect("write"),
        &["FER2013Valid/fer", "not a readable PNG"],
    );
}

#[test]
fn wrong_size_or_colour() {
    check(
        |root| {
            write_png(
                &png_of(root, 8),
                40,
                48,
                png::ColorType::Grayscale,
                png::BitDepth::Eight,
            )
        },
        &["FER2013Valid/fer", "40x48", "expected 48x48"],
    );
    check(
        |root| {
            write_png(
                &png_of(root, 8),
                48,
                48,
                png::ColorType::Rgb,
                png::BitDepth::Eight,
            )
        },
        &["FER2013Valid/fer", "expected 8-bit grayscale"],
    );
    check(
        |root| {
            write_png(
                &png_of(root, 8),
                48,
                48,
                png::ColorType::Grayscale,
                png::BitDepth::Sixteen,
            )
        },
        &["16 bits", "expected 8-bit grayscale"],
    );
}

#[test]
fn no_data_at_all() {
    let empty = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let err = ferbayes_ingest::run(empty.path(), &Layout::new(out.path(), "x"), &settings(None))
        .expect_err("nothing to read")
        .to_string();
    assert!(
        err.contains("FER2013Train") && err.contains("fer2013.csv"),
        "{err}"
    );
}

#[test]
fn binary_exits_non_zero_with_the_file_named() {
    let data = tempfile::tempdir().expect("tempdir");
    let root = small_copy(data.path(), 5);
    std::fs::write(label_csv(&root), "fer0032220.png,box,1,2\n").expect("write");
    let out = tempfile::tempdir().expect("tempdir");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml");
    let result = Command::new(env!("CARGO_BIN_EXE_ferbayes-ingest"))
        .args(["--profile", "smoke", "--data"])
        .arg(&root)
        .arg("--artifacts")
        .arg(out.path())
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run binary");
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("label.csv") && stderr.contains("line 1"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.path().join("smoke/ingest/valid.parquet").exists());
}
