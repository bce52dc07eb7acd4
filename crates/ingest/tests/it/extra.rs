//! `ingest/shift.parquet` and `ingest/ood.parquet`: the dataset-shift and out-of-distribution
//! sets built from real test faces, generated sets and image folders.

use ferbayes_core::schema::Row;
use ferbayes_core::schema::rows::{FaceRow, OodImageRow, ShiftFaceRow};
use ferbayes_core::{IngestSettings, Layout, OodSettings, ShiftSettings};
use ferbayes_ingest::shift::{Corruption, corrupt};

use crate::support;

fn settings(
    shift_faces: usize,
    ood_faces: usize,
    folders: Vec<std::path::PathBuf>,
) -> IngestSettings {
    IngestSettings {
        max_per_split: Some(64),
        zstd_level: 3,
        shift: ShiftSettings {
            faces: shift_faces,
            corruptions: Corruption::ALL
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            seed: 7,
        },
        ood: OodSettings {
            faces: ood_faces,
            generated: ["uniform_noise", "upside_down"].map(String::from).to_vec(),
            folders,
            seed: 7,
        },
    }
}

fn read<R: Row>(path: &std::path::Path) -> Vec<R> {
    ferbayes_core::io::read_rows(path, None, "just ingest").expect("read")
}

#[test]
fn shift_table_holds_clean_and_corrupted_copies_of_labelled_test_faces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path(), "t");
    ferbayes_ingest::run(&support::real_root(), &layout, &settings(5, 0, vec![])).expect("ingest");
    let shift: Vec<ShiftFaceRow> = read(&layout.ingest_shift());
    let test = support::read_faces(&layout, ferbayes_core::Split::Test);
    // 5 faces × (1 clean + 7 corruptions × 5 severities).
    assert_eq!(shift.len(), 5 * 36);
    assert!(!layout.ingest_ood().exists(), "ood is off");
    assert!(
        shift.iter().all(|r| r.majority.is_some()),
        "only faces with a majority label"
    );
    // The chosen faces are the first labelled test faces, in order.
    let labelled: Vec<&FaceRow> = test
        .iter()
        .filter(|f| f.majority.is_some())
        .take(5)
        .collect();
    for (k, face) in labelled.iter().enumerate() {
        let r = k * 36;
        assert_eq!(shift[r].image, face.image);
        assert_eq!(
            (shift[r].corruption.as_str(), shift[r].severity),
            ("none", 0)
        );
        assert_eq!(shift[r].pixels, face.pixels, "clean copy");
        assert_eq!(shift[r].majority, face.majority);
        // The brightness copy at severity 2 is exactly `corrupt` of the clean face (brightness
        // draws no random numbers, so the seed does not matter).
        let c = Corruption::ALL
            .iter()
            .position(|c| *c == Corruption::Brightness)
            .expect("brightness");
        let row = &shift[r + 1 + c * 5 + 1];
        assert_eq!((row.corruption.as_str(), row.severity), ("brightness", 2));
        let expected = corrupt(&face.pixels, Corruption::Brightness, 2, 0).expect("corrupt");
        assert_eq!(row.pixels, expected);
    }

    // A face's copies do not depend on how many faces are corrupted.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let layout2 = Layout::new(dir2.path(), "t");
    ferbayes_ingest::run(&support::real_root(), &layout2, &settings(2, 0, vec![])).expect("ingest");
    let small: Vec<ShiftFaceRow> = read(&layout2.ingest_shift());
    assert_eq!(small.len(), 2 * 36);
    for (i, row) in small.iter().enumerate() {
        assert_eq!(row.pixels, shift[i].pixels, "row {i}");
    }
}

#[test]
fn ood_table_holds_generated_sets_and_an_image_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A folder of 5 images: 4 PNG (one of them RGB and 96x64, converted) and a non-image file.
    let folder = dir.path().join("my-photos");
    std::fs::create_dir_all(&folder).expect("mkdir");
    for i in 0..3 {
        support::write_png(
            &folder.join(format!("p{i}.png")),
            48,
            48,
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
        );
    }
    support::write_png(
        &folder.join("wide.png"),
        96,
        64,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
    );
    std::fs::write(folder.join("notes.txt"), "not an image").expect("write");
    let layout = Layout::new(dir.path().join("art"), "t");
    ferbayes_ingest::run(
        &support::real_root(),
        &layout,
        &settings(0, 6, vec![folder.clone()]),
    )
    .expect("ingest");
    assert!(!layout.ingest_shift().exists(), "shift is off");
    let ood: Vec<OodImageRow> = read(&layout.ingest_ood());
    // 6 uniform noise + 6 upside-down + the folder's 4 images.
    assert_eq!(ood.len(), 16);
    let count = |name: &str| ood.iter().filter(|r| r.set == name).count();
    assert_eq!(count("uniform_noise"), 6);
    assert_eq!(count("upside_down"), 6);
    assert_eq!(count("my-photos"), 4);
    let test = support::read_faces(&layout, ferbayes_core::Split::Test);
    for row in &ood {
        match row.set.as_str() {
            "upside_down" => {
                assert!(row.near);
                // Image k is test face k flipped vertically.
                let k: usize = row.image["upside_down-".len()..].parse().expect("index");
                let face = &test[k].pixels;
                let flipped: Vec<u8> = face.chunks(48).rev().flatten().copied().collect();
                assert_eq!(row.pixels, flipped);
            }
            "my-photos" => {
                assert!(!row.near);
                // write_png fills with 128: every converted pixel is 128.
                assert!(row.pixels.iter().all(|&p| p == 128), "{}", row.image);
            }
            _ => assert!(!row.near),
        }
    }
    // Same settings, same bytes.
    let again = Layout::new(dir.path().join("art2"), "t");
    ferbayes_ingest::run(&support::real_root(), &again, &settings(0, 6, vec![folder]))
        .expect("ingest");
    assert_eq!(
        std::fs::read(layout.ingest_ood()).expect("read"),
        std::fs::read(again.ingest_ood()).expect("read")
    );
}

#[test]
fn the_shared_natural_patches_are_spread_over_every_source_photo() {
    let folder = support::real_root().join("../ood/natural-patches");
    if !folder.is_dir() {
        eprintln!("skipping: {} not found", folder.display());
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path(), "t");
    let mut s = settings(0, 36, vec![folder.clone()]);
    s.ood.generated.clear();
    ferbayes_ingest::run(&support::real_root(), &layout, &s).expect("ingest");
    let ood: Vec<OodImageRow> = read(&layout.ingest_ood());
    assert_eq!(ood.len(), 36);
    // index.csv: image,source,...; 36 of 1,800 spread evenly → 2 per each of the 18 sources.
    let index = std::fs::read_to_string(folder.join("index.csv")).expect("index.csv");
    let source: std::collections::HashMap<&str, &str> = index
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            Some((f.next()?, f.next()?))
        })
        .collect();
    let mut per_source = std::collections::BTreeMap::new();
    for row in &ood {
        *per_source.entry(source[row.image.as_str()]).or_insert(0) += 1;
        // The PNGs are 48x48 grayscale already: taken over unchanged.
        let raw = image::open(folder.join(&row.image))
            .expect("png")
            .into_luma8();
        assert_eq!(row.pixels, raw.into_raw());
    }
    assert_eq!(per_source.len(), 18, "{per_source:?}");
    assert!(per_source.values().all(|&n| n == 2), "{per_source:?}");
}

#[test]
fn bad_extra_settings_name_the_key_and_leave_earlier_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path(), "t");
    let good = settings(2, 2, vec![]);
    ferbayes_ingest::run(&support::real_root(), &layout, &good).expect("ingest");
    let before = std::fs::read(layout.ingest_split(ferbayes_core::Split::Test)).expect("read");

    let mut unknown = good.clone();
    unknown.shift.corruptions.push("sepia".into());
    let err = ferbayes_ingest::run(&support::real_root(), &layout, &unknown)
        .expect_err("unknown corruption")
        .to_string();
    assert!(
        err.contains("ingest.shift.corruptions") && err.contains("sepia"),
        "{err}"
    );

    let mut missing = good.clone();
    missing.ood.folders.push(dir.path().join("no-such-folder"));
    let err = ferbayes_ingest::run(&support::real_root(), &layout, &missing)
        .expect_err("missing folder")
        .to_string();
    assert!(
        err.contains("ingest.ood.folders") && err.contains("no-such-folder"),
        "{err}"
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let mut none = good;
    none.ood.folders.push(empty);
    let err = ferbayes_ingest::run(&support::real_root(), &layout, &none)
        .expect_err("empty folder")
        .to_string();
    assert!(err.contains("no PNG or JPEG"), "{err}");

    assert_eq!(
        std::fs::read(layout.ingest_split(ferbayes_core::Split::Test)).expect("read"),
        before,
        "a failed run leaves the earlier outputs"
    );
}

#[test]
fn ferbayes_ingest_refuses_an_empty_ood_folder_naming_it_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let base = std::fs::read_to_string(repo.join("pipeline.toml")).expect("pipeline.toml");
    let empty = dir.path().join("no-photos");
    std::fs::create_dir_all(&empty).expect("mkdir");
    std::fs::write(empty.join("readme.txt"), "not an image").expect("write");
    let config = |folders: &str, name: &str| {
        let path = dir.path().join(name);
        let text = format!(
            "{base}\n[profiles.t]\n[profiles.t.ingest]\nmax_per_split = 32\n\
             [profiles.t.ingest.shift]\nfaces = 2\n[profiles.t.ingest.ood]\nfaces = 4\n\
             folders = [{folders}]\n"
        );
        std::fs::write(&path, text).expect("write config");
        path
    };
    let ingest = |config: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferbayes-ingest"))
            .args(["--profile", "t", "--config"])
            .arg(config)
            .arg("--artifacts")
            .arg(dir.path().join("art"))
            .arg("--data")
            .arg(support::real_root())
            .output()
            .expect("run ferbayes-ingest")
    };
    let good = ingest(&config("", "good.toml"));
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let before = ferbayes_core::test_snapshot(&dir.path().join("art"));
    assert!(before.len() >= 6, "{:?}", before.keys());

    let bad = ingest(&config(
        &format!("{:?}", empty.display().to_string()),
        "bad.toml",
    ));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "{stderr}");
    assert!(
        stderr.contains("ingest.ood.folders")
            && stderr.contains(&empty.display().to_string())
            && stderr.contains("no PNG or JPEG"),
        "{stderr}"
    );
    assert!(
        ferbayes_core::test_snapshot(&dir.path().join("art")) == before,
        "the refused run changed the artifacts"
    );
}
