//! Ingest of the real FER+ data.

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt8Type, UInt32Type};
use ferbayes_core::{Layout, Split};

use crate::support::{read_split, real_root, settings, small_copy};

#[test]
fn full_real_data_gives_the_ferplus_counts() {
    let out = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(out.path(), "test");
    let summaries = ferbayes_ingest::run(&real_root(), &layout, &settings(None)).expect("ingest");
    let counts: Vec<(usize, usize, usize)> = summaries
        .iter()
        .map(|s| (s.faces, s.majority, s.soft))
        .collect();
    // FER+ sanity numbers: majority keeps 25,045 / 3,191 / 3,137 faces, crossentropy keeps
    // 27,947 / 3,508 / 3,507, out of 28,558 / 3,579 / 3,573.
    assert_eq!(
        counts,
        [
            (28_558, 25_045, 27_947),
            (3_579, 3_191, 3_508),
            (3_573, 3_137, 3_507)
        ]
    );

    let train = read_split(&layout, Split::Train);
    assert_eq!(train.num_rows(), 28_558);
    let image = train
        .column_by_name("image")
        .expect("image")
        .as_string::<i32>();
    let row = train
        .column_by_name("row")
        .expect("row")
        .as_primitive::<UInt32Type>();
    let split = train
        .column_by_name("split")
        .expect("split")
        .as_string::<i32>();
    let pixels = train
        .column_by_name("pixels")
        .expect("pixels")
        .as_fixed_size_list();
    let votes = train
        .column_by_name("votes")
        .expect("votes")
        .as_fixed_size_list();
    let majority = train
        .column_by_name("majority")
        .expect("majority")
        .as_primitive::<UInt8Type>();
    let crowd = train
        .column_by_name("crowd")
        .expect("crowd")
        .as_fixed_size_list();
    let entropy = train
        .column_by_name("crowd_entropy")
        .expect("crowd_entropy")
        .as_primitive::<Float32Type>();

    assert_eq!(image.value(0), "fer0000000.png");
    assert_eq!(row.value(0), 0);
    assert_eq!(split.value(0), "train");
    // First pixels of row 0 of the original fer2013.csv ("70 80 82 72 58 58 60 63 ...").
    let p0 = pixels.value(0);
    let p0 = p0.as_primitive::<UInt8Type>().values();
    assert_eq!(&p0[..8], &[70, 80, 82, 72, 58, 58, 60, 63]);
    let v0 = votes.value(0);
    assert_eq!(
        v0.as_primitive::<UInt8Type>().values().as_ref(),
        &[4, 0, 0, 1, 3, 2, 0, 0, 0, 0]
    );

    // Every row: the row number is the name's, the majority class holds more than half of the
    // outlier-filtered votes, and the crowd distribution sums to 1 with a consistent entropy.
    for i in 0..train.num_rows() {
        let name = image.value(i);
        assert_eq!(format!("fer{:07}.png", row.value(i)), name);
        let v = votes.value(i);
        let v = v.as_primitive::<UInt8Type>().values();
        let filtered: Vec<u32> = v
            .iter()
            .map(|&c| if c <= 1 { 0 } else { u32::from(c) })
            .collect();
        let total: u32 = filtered.iter().sum();
        if majority.is_valid(i) {
            let k = usize::from(majority.value(i));
            assert!(
                k < 8 && 2 * filtered[k] > total,
                "{name}: majority {k} of {v:?}"
            );
        }
        if crowd.is_valid(i) {
            let c = crowd.value(i);
            let c = c.as_primitive::<Float32Type>().values();
            let sum: f32 = c.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{name}: crowd sums to {sum}");
            let h: f32 = -c
                .iter()
                .filter(|&&p| p > 0.0)
                .map(|&p| p * p.ln())
                .sum::<f32>();
            assert!((h - entropy.value(i)).abs() < 1e-4, "{name}: entropy");
        } else {
            assert!(
                v[..8].iter().all(|&c| c == 0),
                "{name}: null crowd with emotion votes"
            );
            assert!(entropy.is_null(i));
        }
    }
}

#[test]
fn limit_is_applied_per_split_and_output_is_deterministic() {
    let data = tempfile::tempdir().expect("tempdir");
    let root = small_copy(data.path(), 40);
    let out = tempfile::tempdir().expect("tempdir");
    let a = Layout::new(out.path(), "a");
    let b = Layout::new(out.path(), "b");
    let sa = ferbayes_ingest::run(&root, &a, &settings(Some(25))).expect("ingest a");
    ferbayes_ingest::run(&root, &b, &settings(Some(25))).expect("ingest b");
    for (s, split) in sa.iter().zip(Split::ALL) {
        assert_eq!(s.faces, 25, "{split}");
        let bytes_a = std::fs::read(a.ingest_split(split)).expect("read a");
        let bytes_b = std::fs::read(b.ingest_split(split)).expect("read b");
        assert!(bytes_a == bytes_b, "{split}: two runs differ");
    }
    // Only the final files and the manifest are left: no temporary files.
    let mut names: Vec<String> = std::fs::read_dir(out.path().join("a/ingest"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "manifest.json",
            "test.parquet",
            "train.parquet",
            "valid.parquet"
        ]
    );
}
