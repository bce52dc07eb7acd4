//! Fixtures the tests build from the real FER+ data.

use std::path::{Path, PathBuf};

use ferbayes_core::schema::rows::FaceRow;
use ferbayes_core::{IngestSettings, Layout, Split};

/// The real FER+ copy (`FER_DATA` or `../shared/ferplus`).
pub fn real_root() -> PathBuf {
    ferbayes_core::test_data_root()
}

/// Copies the first `n` rows of each split's `label.csv`, and their PNGs, into `dest`.
pub fn small_copy(dest: &Path, n: usize) -> PathBuf {
    let src = real_root();
    for split in Split::ALL {
        let from = src.join(split.ferplus_folder());
        let to = dest.join(split.ferplus_folder());
        std::fs::create_dir_all(&to).expect("create split folder");
        let labels = std::fs::read_to_string(from.join("label.csv")).expect("read label.csv");
        let kept: Vec<&str> = labels.lines().take(n).collect();
        for line in &kept {
            let name = line.split(',').next().expect("name column");
            std::fs::copy(from.join(name), to.join(name)).expect("copy png");
        }
        std::fs::write(to.join("label.csv"), kept.join("\n") + "\n").expect("write label.csv");
    }
    dest.to_owned()
}

pub fn settings(max_per_split: Option<usize>) -> IngestSettings {
    IngestSettings {
        max_per_split,
        zstd_level: 3,
        ..Default::default()
    }
}

/// Reads one split's ingest output back as rows.
pub fn read_faces(layout: &Layout, split: Split) -> Vec<FaceRow> {
    ferbayes_core::io::read_rows(&layout.ingest_split(split), None, "just ingest")
        .expect("ingest output is readable")
}

/// Writes a PNG with the given geometry and colour type (for the bad-input tests).
pub fn write_png(
    path: &Path,
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
) {
    let file = std::fs::File::create(path).expect("create png");
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(color);
    encoder.set_depth(depth);
    let samples = match color {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::GrayscaleAlpha => 2,
        _ => 1,
    };
    let bytes_per = if depth == png::BitDepth::Sixteen {
        2
    } else {
        1
    };
    let data = vec![128u8; (width * height) as usize * samples * bytes_per];
    let mut writer = encoder.write_header().expect("png header");
    writer.write_image_data(&data).expect("png data");
}
