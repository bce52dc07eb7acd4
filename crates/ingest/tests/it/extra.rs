//! `ingest/shift.parquet` and `ingest/ood.parquet`: the dataset-shift and out-of-distribution
//! sets built from real test faces, generated sets and image folders.

use arrow_array::cast::AsArray;
use arrow_array::types::UInt8Type;
use arrow_array::{Array, RecordBatch};
use ferbayes_core::{IMAGE_PIXELS, IngestSettings, Layout, OodSettings, ShiftSettings, schema};
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

fn read(path: &std::path::Path, schema: &arrow_schema::SchemaRef) -> RecordBatch {
    let batches = ferbayes_core::io::read_parquet(path, schema, None, "just ingest").expect("read");
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).expect("concat")
}

fn pixels(batch: &RecordBatch, col: usize, i: usize) -> Vec<u8> {
    let list = batch.column(col).as_fixed_size_list();
    let values = list.values().as_primitive::<UInt8Type>().values();
    let at = list.value_offset_at(i);
    values[at..at + IMAGE_PIXELS].to_vec()
}

#[test]
fn shift_table_holds_clean_and_corrupted_copies_of_labelled_test_faces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path(), "t");
    ferbayes_ingest::run(&support::real_root(), &layout, &settings(5, 0, vec![])).expect("ingest");
    let shift = read(&layout.ingest_shift(), &schema::ingest_shift());
    let test = support::read_split(&layout, ferbayes_core::Split::Test);
    // 5 faces × (1 clean + 7 corruptions × 5 severities).
    assert_eq!(shift.num_rows(), 5 * 36);
    assert!(!layout.ingest_ood().exists(), "ood is off");

    let names = shift.column(0).as_string::<i32>();
    let kinds = shift.column(1).as_string::<i32>();
    let severity = shift.column(2).as_primitive::<UInt8Type>();
    let majority = shift.column(4).as_primitive::<UInt8Type>();
    assert_eq!(majority.null_count(), 0, "only faces with a majority label");
    // The chosen faces are the first labelled test faces, in order.
    let test_names = test.column(0).as_string::<i32>();
    let test_major = test.column(5).as_primitive::<UInt8Type>();
    let labelled: Vec<usize> = (0..test.num_rows())
        .filter(|&i| test_major.is_valid(i))
        .take(5)
        .collect();
    for (k, &ti) in labelled.iter().enumerate() {
        let r = k * 36;
        assert_eq!(names.value(r), test_names.value(ti));
        assert_eq!((kinds.value(r), severity.value(r)), ("none", 0));
        assert_eq!(pixels(&shift, 3, r), pixels(&test, 3, ti), "clean copy");
        assert_eq!(majority.value(r), test_major.value(ti));
        // The brightness copy at severity 2 is exactly `corrupt` of the clean face (brightness
        // draws no random numbers, so the seed does not matter).
        let c = Corruption::ALL
            .iter()
            .position(|c| *c == Corruption::Brightness)
            .expect("brightness");
        let row = r + 1 + c * 5 + 1;
        assert_eq!((kinds.value(row), severity.value(row)), ("brightness", 2));
        let expected =
            corrupt(&pixels(&test, 3, ti), Corruption::Brightness, 2, 0).expect("corrupt");
        assert_eq!(pixels(&shift, 3, row), expected);
    }

    // A face's copies do not depend on how many faces are corrupted.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let layout2 = Layout::new(dir2.path(), "t");
    ferbayes_ingest::run(&support::real_root(), &layout2, &settings(2, 0, vec![])).expect("ingest");
    let small = read(&layout2.ingest_shift(), &schema::ingest_shift());
    assert_eq!(small.num_rows(), 2 * 36);
    for i in 0..small.num_rows() {
        assert_eq!(pixels(&small, 3, i), pixels(&shift, 3, i), "row {i}");
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
    let ood = read(&layout.ingest_ood(), &schema::ingest_ood());
    let set = ood.column(0).as_string::<i32>();
    let image = ood.column(1).as_string::<i32>();
    let near = ood.column(2).as_boolean();
    // 6 uniform noise + 6 upside-down + the folder's 4 images.
    assert_eq!(ood.num_rows(), 16);
    let count = |name: &str| {
        (0..ood.num_rows())
            .filter(|&i| set.value(i) == name)
            .count()
    };
    assert_eq!(count("uniform_noise"), 6);
    assert_eq!(count("upside_down"), 6);
    assert_eq!(count("my-photos"), 4);
    let test = support::read_split(&layout, ferbayes_core::Split::Test);
    for i in 0..ood.num_rows() {
        match set.value(i) {
            "upside_down" => {
                assert!(near.value(i));
                // Image k is test face k flipped vertically.
                let k: usize = image.value(i)["upside_down-".len()..]
                    .parse()
                    .expect("index");
                let face = pixels(&test, 3, k);
                let flipped: Vec<u8> = face.chunks(48).rev().flatten().copied().collect();
                assert_eq!(pixels(&ood, 3, i), flipped);
            }
            "my-photos" => {
                assert!(!near.value(i));
                // write_png fills with 128: every converted pixel is 128.
                assert!(
                    pixels(&ood, 3, i).iter().all(|&p| p == 128),
                    "{}",
                    image.value(i)
                );
            }
            _ => assert!(!near.value(i)),
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
    let ood = read(&layout.ingest_ood(), &schema::ingest_ood());
    assert_eq!(ood.num_rows(), 36);
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
    let image = ood.column(1).as_string::<i32>();
    let mut per_source = std::collections::BTreeMap::new();
    for i in 0..ood.num_rows() {
        *per_source.entry(source[image.value(i)]).or_insert(0) += 1;
        // The PNGs are 48x48 grayscale already: taken over unchanged.
        let raw = image::open(folder.join(image.value(i)))
            .expect("png")
            .into_luma8();
        assert_eq!(pixels(&ood, 3, i), raw.into_raw());
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
