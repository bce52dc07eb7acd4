//! Reading FER+ from either accepted layout into [`Face`] records.
//!
//! 1. The Microsoft FER+ folders: `FER2013{Train,Valid,Test}/label.csv` plus the 48x48 PNGs
//!    (decoded by `ferbayes_faces::fer::read_png`).
//! 2. The original `fer2013.csv` (emotion, pixels, Usage) beside `fer2013new.csv` (Usage, Image
//!    name, 10 vote counts), row for row; rows with an empty image name are non-faces, skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ferbayes_core::{IMAGE_PIXELS, NUM_VOTES, Split};
use rayon::prelude::*;
use tracing_indicatif::span_ext::IndicatifSpanExt;

use crate::error::{IngestError, Result};

/// One face as read from the source, before labels are derived.
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    /// File name, e.g. `fer0000000.png`.
    pub image: String,
    /// Row index in `fer2013.csv`, parsed from the name.
    pub row: u32,
    /// Row-major 48x48 grayscale pixels.
    pub pixels: Vec<u8>,
    /// Vote counts in FER+ order.
    pub votes: [u8; NUM_VOTES],
    /// 1-based line of the face in its label file (for error messages).
    pub line: usize,
}

/// Which of the two layouts a data root holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceLayout {
    /// `FER2013{Train,Valid,Test}/label.csv` + PNGs.
    Folders,
    /// `fer2013.csv` + `fer2013new.csv`.
    Csv,
}

/// The FER+ file names, defined once in core (whose plans hash these files).
pub use ferbayes_core::plan::{FER2013_CSV, FER2013NEW_CSV, LABEL_CSV};

/// Detects the layout of `root`: any `FER2013*` split folder means the folder layout (and then
/// all three must be there); otherwise both CSV files must be.
pub fn detect(root: &Path) -> Result<SourceLayout> {
    if !root.is_dir() {
        return Err(IngestError::Layout {
            root: root.to_owned(),
            message: "not a folder".into(),
        });
    }
    let has_folder = Split::ALL
        .iter()
        .any(|s| root.join(s.ferplus_folder()).exists());
    if has_folder {
        for split in Split::ALL {
            let dir = root.join(split.ferplus_folder());
            if !dir.is_dir() {
                return Err(IngestError::Layout {
                    root: root.to_owned(),
                    message: format!(
                        "split folder {} is missing (the FER+ layout needs FER2013Train, FER2013Valid and FER2013Test)",
                        dir.display()
                    ),
                });
            }
        }
        return Ok(SourceLayout::Folders);
    }
    let csv = root.join(FER2013_CSV);
    let new = root.join(FER2013NEW_CSV);
    if csv.is_file() && new.is_file() {
        return Ok(SourceLayout::Csv);
    }
    Err(IngestError::Layout {
        root: root.to_owned(),
        message: format!(
            "no FER+ data: expected the folders FER2013Train/, FER2013Valid/, FER2013Test/ (each with {LABEL_CSV} and PNGs), or {FER2013_CSV} next to {FER2013NEW_CSV}"
        ),
    })
}

/// The file a face's `line` refers to.
pub fn label_file(root: &Path, layout: SourceLayout, split: Split) -> PathBuf {
    match layout {
        SourceLayout::Folders => root.join(split.ferplus_folder()).join(LABEL_CSV),
        SourceLayout::Csv => root.join(FER2013NEW_CSV),
    }
}

/// Reads every split of `root` (at most `limit` faces each, in file order).
pub fn read_all(
    root: &Path,
    layout: SourceLayout,
    limit: Option<usize>,
) -> Result<Vec<(Split, Vec<Face>)>> {
    let splits = match layout {
        SourceLayout::Folders => Split::ALL
            .into_iter()
            .map(|split| Ok((split, read_folder(root, split, limit)?)))
            .collect::<Result<Vec<_>>>()?,
        SourceLayout::Csv => read_csv_pair(root, limit)?,
    };
    check_unique(root, layout, &splits)?;
    Ok(splits)
}

/// `image` is the key later stages join on: two faces may not share a name.
fn check_unique(root: &Path, layout: SourceLayout, splits: &[(Split, Vec<Face>)]) -> Result<()> {
    let mut seen: HashMap<&str, (Split, usize)> = HashMap::new();
    for (split, faces) in splits {
        for face in faces {
            if let Some((first_split, first_line)) = seen.insert(&face.image, (*split, face.line)) {
                let first = label_file(root, layout, first_split);
                return Err(IngestError::csv(
                    &label_file(root, layout, *split),
                    face.line,
                    format!(
                        "image name `{}` was already used at {} line {first_line}; image names must be unique",
                        face.image,
                        first.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// One row of a `label.csv`, before its image is read.
struct LabelRow {
    image: String,
    row: u32,
    votes: [u8; NUM_VOTES],
    line: usize,
}

/// Reads `FER2013<Split>/label.csv` and the PNGs it names.
pub fn read_folder(root: &Path, split: Split, limit: Option<usize>) -> Result<Vec<Face>> {
    let dir = root.join(split.ferplus_folder());
    let label_path = dir.join(LABEL_CSV);
    let rows = read_label_csv(&label_path, limit)?;
    let span = ferbayes_core::cli::progress_span(split.name(), rows.len() as u64);
    let _enter = span.enter();
    rows.into_par_iter()
        .map(|r| {
            let pixels = ferbayes_faces::fer::read_png(&dir.join(&r.image))?;
            span.pb_inc(1);
            Ok(Face {
                image: r.image,
                row: r.row,
                pixels,
                votes: r.votes,
                line: r.line,
            })
        })
        .collect()
}

fn read_label_csv(path: &Path, limit: Option<usize>) -> Result<Vec<LabelRow>> {
    let file = std::fs::File::open(path).map_err(|e| IngestError::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(std::io::BufReader::new(file));
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        if limit.is_some_and(|n| rows.len() >= n) {
            break;
        }
        let line = i + 1;
        let record = record.map_err(|e| IngestError::csv(path, line, e.to_string()))?;
        if record.len() != 2 + NUM_VOTES {
            return Err(IngestError::csv(
                path,
                line,
                format!(
                    "expected {} columns (image name, face box, {NUM_VOTES} vote counts), found {}",
                    2 + NUM_VOTES,
                    record.len()
                ),
            ));
        }
        let (image, row) =
            parse_image_name(&record[0]).map_err(|m| IngestError::csv(path, line, m))?;
        let votes = parse_votes(record.iter().skip(2), VOTE_NAMES)
            .map_err(|m| IngestError::csv(path, line, m))?;
        rows.push(LabelRow {
            image,
            row,
            votes,
            line,
        });
    }
    if rows.is_empty() {
        return Err(IngestError::csv(path, 0, "no face rows (empty label file)"));
    }
    Ok(rows)
}

const VOTE_NAMES: [&str; NUM_VOTES] = ferbayes_core::VOTE_COLUMNS;

/// Checks an image name is a plain file name `fer<digits>.png` and returns it with its row.
pub fn parse_image_name(name: &str) -> std::result::Result<(String, u32), String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("empty image name".into());
    }
    if name.contains(['/', '\\']) || name.contains("..") || Path::new(name).is_absolute() {
        return Err(format!(
            "image name `{name}` is not a plain file name (no path separators or `..` allowed)"
        ));
    }
    let digits = name
        .strip_prefix("fer")
        .and_then(|s| s.strip_suffix(".png"))
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("image name `{name}` is not of the form ferNNNNNNN.png"))?;
    let row = digits
        .parse::<u32>()
        .map_err(|_| format!("image name `{name}`: row number out of range"))?;
    Ok((name.to_owned(), row))
}

fn parse_votes<'a>(
    fields: impl Iterator<Item = &'a str>,
    names: [&str; NUM_VOTES],
) -> std::result::Result<[u8; NUM_VOTES], String> {
    let mut votes = [0u8; NUM_VOTES];
    let mut n = 0;
    for (slot, (field, name)) in votes.iter_mut().zip(fields.zip(names)) {
        *slot = field.trim().parse::<u8>().map_err(|_| {
            format!("vote count for `{name}` is `{field}`, not an integer in 0..=255")
        })?;
        n += 1;
    }
    if n != NUM_VOTES {
        return Err(format!("expected {NUM_VOTES} vote counts, found {n}"));
    }
    Ok(votes)
}

type CsvReader = csv::Reader<std::io::BufReader<std::fs::File>>;

fn open_csv(path: &Path) -> Result<CsvReader> {
    let file = std::fs::File::open(path).map_err(|e| IngestError::io(path, e))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(std::io::BufReader::new(file)))
}

/// A face of the CSV pair whose pixel text is still to be parsed (in parallel, afterwards).
struct PendingFace {
    split: Split,
    image: String,
    row: u32,
    votes: [u8; NUM_VOTES],
    pixel_text: String,
    line: usize,
}

/// The two files, their paths and the columns this reader needs.
struct CsvPair {
    pix_path: PathBuf,
    new_path: PathBuf,
    /// `emotion`, `pixels`, `Usage` in fer2013.csv.
    pix_cols: Vec<usize>,
    /// `Usage`, `Image name` in fer2013new.csv.
    new_cols: Vec<usize>,
}

impl CsvPair {
    fn vote_start(&self) -> usize {
        self.new_cols[1] + 1
    }

    /// Checks one row of each file against the other and returns the row's split.
    fn check_rows(
        &self,
        line: usize,
        new_rec: &csv::StringRecord,
        pix_rec: &csv::StringRecord,
    ) -> Result<Split> {
        let vote_start = self.vote_start();
        if new_rec.len() != vote_start + NUM_VOTES {
            return Err(IngestError::csv(
                &self.new_path,
                line,
                format!(
                    "expected {} columns (Usage, Image name, {NUM_VOTES} vote counts), found {}",
                    vote_start + NUM_VOTES,
                    new_rec.len()
                ),
            ));
        }
        if pix_rec.len() != 3 {
            return Err(IngestError::csv(
                &self.pix_path,
                line,
                format!(
                    "expected 3 columns (emotion, pixels, Usage), found {}",
                    pix_rec.len()
                ),
            ));
        }
        let usage = new_rec[self.new_cols[0]].trim();
        let split = Split::from_usage(usage).ok_or_else(|| {
            IngestError::csv(
                &self.new_path,
                line,
                format!("unknown Usage `{usage}` (expected Training, PublicTest or PrivateTest)"),
            )
        })?;
        let pix_usage = pix_rec[self.pix_cols[2]].trim();
        if pix_usage != usage {
            return Err(IngestError::csv(
                &self.pix_path,
                line,
                format!(
                    "Usage `{pix_usage}` differs from `{usage}` in {FER2013NEW_CSV}: the files are not row-aligned"
                ),
            ));
        }
        Ok(split)
    }

    /// The face a checked row pair describes; `None` for FER2013's non-face rows, which FER+
    /// gives no image name.
    fn face(
        &self,
        line: usize,
        split: Split,
        new_rec: &csv::StringRecord,
        pix_rec: &csv::StringRecord,
    ) -> Result<Option<PendingFace>> {
        let name = new_rec[self.new_cols[1]].trim();
        if name.is_empty() {
            return Ok(None);
        }
        let (image, row) =
            parse_image_name(name).map_err(|m| IngestError::csv(&self.new_path, line, m))?;
        let votes = parse_votes(new_rec.iter().skip(self.vote_start()), VOTE_NAMES)
            .map_err(|m| IngestError::csv(&self.new_path, line, m))?;
        Ok(Some(PendingFace {
            split,
            image,
            row,
            votes,
            pixel_text: pix_rec[self.pix_cols[1]].to_owned(),
            line,
        }))
    }
}

/// Reads `fer2013.csv` and `fer2013new.csv` row for row.
fn read_csv_pair(root: &Path, limit: Option<usize>) -> Result<Vec<(Split, Vec<Face>)>> {
    let pix_path = root.join(FER2013_CSV);
    let new_path = root.join(FER2013NEW_CSV);
    let mut pix = open_csv(&pix_path)?;
    let mut new = open_csv(&new_path)?;
    let pair = CsvPair {
        pix_cols: header_index(&mut pix, &pix_path, &["emotion", "pixels", "Usage"])?,
        new_cols: header_index(&mut new, &new_path, &["Usage", "Image name"])?,
        pix_path,
        new_path,
    };
    let mut pending: Vec<PendingFace> = Vec::new();
    let mut kept = [0usize; 3];
    let mut pix_records = pix.records();
    for (i, new_rec) in new.records().enumerate() {
        let line = i + 2; // 1-based, after the header
        let new_rec = new_rec.map_err(|e| IngestError::csv(&pair.new_path, line, e.to_string()))?;
        let pix_rec = match pix_records.next() {
            Some(r) => r.map_err(|e| IngestError::csv(&pair.pix_path, line, e.to_string()))?,
            None => {
                return Err(IngestError::csv(
                    &pair.pix_path,
                    line,
                    format!(
                        "ends before {FER2013NEW_CSV} does (the two files must have the same rows)"
                    ),
                ));
            }
        };
        let split = pair.check_rows(line, &new_rec, &pix_rec)?;
        if limit.is_some_and(|n| kept[split as usize] >= n) {
            continue;
        }
        if let Some(face) = pair.face(line, split, &new_rec, &pix_rec)? {
            kept[split as usize] += 1;
            pending.push(face);
        }
    }
    group_by_split(parse_pending(pending, &pair.pix_path)?, &pair.new_path)
}

/// Parses the pending faces' pixel text, in parallel.
fn parse_pending(pending: Vec<PendingFace>, pix_path: &Path) -> Result<Vec<(Split, Face)>> {
    pending
        .into_par_iter()
        .map(|p| {
            let pixels =
                parse_pixels(&p.pixel_text).map_err(|m| IngestError::csv(pix_path, p.line, m))?;
            Ok((
                p.split,
                Face {
                    image: p.image,
                    row: p.row,
                    pixels,
                    votes: p.votes,
                    line: p.line,
                },
            ))
        })
        .collect()
}

/// The faces of each split, in file order; an error names a split without faces.
fn group_by_split(faces: Vec<(Split, Face)>, new_path: &Path) -> Result<Vec<(Split, Vec<Face>)>> {
    let mut out: Vec<(Split, Vec<Face>)> = Split::ALL.iter().map(|&s| (s, Vec::new())).collect();
    for (split, face) in faces {
        out[split as usize].1.push(face);
    }
    for (split, faces) in &out {
        if faces.is_empty() {
            return Err(IngestError::csv(
                new_path,
                0,
                format!("no faces with Usage `{}`", split.usage()),
            ));
        }
    }
    Ok(out)
}

fn header_index(reader: &mut CsvReader, path: &Path, wanted: &[&str]) -> Result<Vec<usize>> {
    let headers = reader
        .headers()
        .map_err(|e| IngestError::csv(path, 1, e.to_string()))?
        .clone();
    wanted
        .iter()
        .map(|w| {
            headers
                .iter()
                .position(|h| h.trim() == *w)
                .ok_or_else(|| IngestError::csv(path, 1, format!("header has no `{w}` column")))
        })
        .collect()
}

fn parse_pixels(text: &str) -> std::result::Result<Vec<u8>, String> {
    let mut pixels = Vec::with_capacity(IMAGE_PIXELS);
    for token in text.split_ascii_whitespace() {
        let v = token
            .parse::<u8>()
            .map_err(|_| format!("pixel value `{token}` is not an integer in 0..=255"))?;
        pixels.push(v);
    }
    if pixels.len() != IMAGE_PIXELS {
        return Err(format!(
            "expected {IMAGE_PIXELS} pixel values (48x48), found {}",
            pixels.len()
        ));
    }
    Ok(pixels)
}
