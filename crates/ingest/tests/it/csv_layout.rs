//! The `fer2013.csv` + `fer2013new.csv` layout, built here from real faces, gives the same faces,
//! pixels and votes as the folder layout.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use ferbayes_core::{Layout, Split};

use crate::support::{read_faces, real_root, settings};

/// Row ranges of the real fer2013new.csv used: the start of each Usage block (rows 17, 23, 59
/// and 170 of the training block are non-face rows with an empty image name).
const RANGES: [(usize, usize); 3] = [(0, 180), (28_709, 28_769), (32_298, 32_358)];

/// Writes `fer2013.csv` and `fer2013new.csv` holding the rows of [`RANGES`], pixels taken from
/// the real PNGs (non-face rows get a flat grey image). Returns the number of face rows.
fn write_csv_pair(dest: &Path) -> usize {
    let real = real_root();
    let new = std::fs::read_to_string(real.join("fer2013new.csv")).expect("read fer2013new.csv");
    let mut lines = new.lines();
    let header = lines.next().expect("header");
    let rows: Vec<&str> = lines.collect();
    let mut pix_out = String::from("emotion,pixels,Usage\n");
    let mut new_out = format!("{header}\n");
    let mut faces = 0;
    for &(start, end) in &RANGES {
        for line in &rows[start..end] {
            let mut fields = line.split(',');
            let usage = fields.next().expect("usage");
            let name = fields.next().expect("name");
            let pixels: Vec<u8> = if name.is_empty() {
                vec![128; 2304]
            } else {
                faces += 1;
                let split = Split::from_usage(usage).expect("known usage");
                ferbayes_faces::fer::read_png(&real.join(split.ferplus_folder()).join(name))
                    .expect("real png")
            };
            let text: Vec<String> = pixels.iter().map(u8::to_string).collect();
            writeln!(pix_out, "3,{},{usage}", text.join(" ")).expect("write");
            writeln!(new_out, "{line}").expect("write");
        }
    }
    std::fs::write(dest.join("fer2013.csv"), pix_out).expect("write fer2013.csv");
    std::fs::write(dest.join("fer2013new.csv"), new_out).expect("write fer2013new.csv");
    faces
}

/// name → votes of the fixture's fer2013new.csv (this copy's label.csv files disagree with its
/// fer2013new.csv on the votes of 1,602 faces, so each layout is checked against its own file).
fn csv_votes(root: &Path) -> HashMap<String, Vec<u8>> {
    let text = std::fs::read_to_string(root.join("fer2013new.csv")).expect("fer2013new.csv");
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let votes = fields[2..]
                .iter()
                .map(|v| v.parse::<u8>().expect("vote"))
                .collect();
            (!fields[1].is_empty()).then(|| (fields[1].to_owned(), votes))
        })
        .collect()
}

#[test]
fn csv_layout_matches_the_folder_layout() {
    let data = tempfile::tempdir().expect("tempdir");
    let faces = write_csv_pair(data.path());
    assert_eq!(
        ferbayes_ingest::source::detect(data.path()).expect("detect"),
        ferbayes_ingest::SourceLayout::Csv
    );
    let out = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(out.path(), "csv");
    let summaries = ferbayes_ingest::run(data.path(), &layout, &settings(None)).expect("ingest");
    let total: usize = summaries.iter().map(|s| s.faces).sum();
    assert_eq!(total, faces);
    assert_eq!(
        summaries[0].faces, 176,
        "180 training rows minus 4 non-faces"
    );

    let votes = csv_votes(data.path());
    let real = real_root();
    for split in Split::ALL {
        for face in read_faces(&layout, split) {
            let name = &face.image;
            assert_eq!(face.split, split);
            let png = ferbayes_faces::fer::read_png(&real.join(split.ferplus_folder()).join(name))
                .expect("png");
            assert_eq!(face.pixels, png, "{name}");
            assert_eq!(
                face.votes.as_slice(),
                votes.get(name).expect("face in fer2013new.csv").as_slice(),
                "{name}"
            );
        }
    }
}

#[test]
fn csv_layout_limit_and_errors() {
    let data = tempfile::tempdir().expect("tempdir");
    write_csv_pair(data.path());
    let out = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(out.path(), "csv");
    let summaries = ferbayes_ingest::run(data.path(), &layout, &settings(Some(7))).expect("ingest");
    assert!(summaries.iter().all(|s| s.faces == 7));

    // A pixel row with too few values: the error names fer2013.csv and the line.
    let path = data.path().join("fer2013.csv");
    let text = std::fs::read_to_string(&path).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[3] = "3,1 2 3,Training".to_owned();
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    let err = ferbayes_ingest::run(data.path(), &layout, &settings(None))
        .expect_err("short pixel row")
        .to_string();
    assert!(
        err.contains("fer2013.csv") && err.contains("line 4") && err.contains("2304"),
        "{err}"
    );

    // Usage that differs between the two files: they are not row-aligned.
    lines[3] = text
        .lines()
        .nth(3)
        .expect("line")
        .replace("Training", "PublicTest");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    let err = ferbayes_ingest::run(data.path(), &layout, &settings(None))
        .expect_err("misaligned")
        .to_string();
    assert!(
        err.contains("line 4") && err.contains("row-aligned"),
        "{err}"
    );
}

#[test]
fn duplicate_image_names_are_refused() {
    let data = tempfile::tempdir().expect("tempdir");
    write_csv_pair(data.path());
    let path = data.path().join("fer2013new.csv");
    let text = std::fs::read_to_string(&path).expect("read");
    // line 11 (data row 9) takes the name of line 3 (data row 1).
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let name3 = lines[2].split(',').nth(1).expect("name").to_owned();
    let name11 = lines[10].split(',').nth(1).expect("name").to_owned();
    lines[10] = lines[10].replace(&name11, &name3);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    let out = tempfile::tempdir().expect("tempdir");
    let err = ferbayes_ingest::run(
        data.path(),
        &Layout::new(out.path(), "dup"),
        &settings(None),
    )
    .expect_err("duplicate names")
    .to_string();
    assert!(
        err.contains("line 11")
            && err.contains(&name3)
            && err.contains("line 3")
            && err.contains("unique"),
        "{err}"
    );
}
