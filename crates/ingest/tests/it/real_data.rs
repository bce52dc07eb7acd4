//! Ingest of the real FER+ data.

use ferbayes_core::{Layout, Split};

use crate::support::{read_faces, real_root, settings, small_copy};

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

    let train = read_faces(&layout, Split::Train);
    assert_eq!(train.len(), 28_558);
    let first = &train[0];
    assert_eq!(first.image, "fer0000000.png");
    assert_eq!(first.row, 0);
    assert_eq!(first.split, ferbayes_core::Split::Train);
    // First pixels of row 0 of the original fer2013.csv ("70 80 82 72 58 58 60 63 ...").
    assert_eq!(&first.pixels[..8], &[70, 80, 82, 72, 58, 58, 60, 63]);
    assert_eq!(first.votes, [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]);

    // Every row: the row number is the name's, the majority class holds more than half of the
    // outlier-filtered votes, and the crowd distribution sums to 1 with a consistent entropy.
    for face in &train {
        let name = &face.image;
        assert_eq!(&format!("fer{:07}.png", face.row), name);
        let v = face.votes;
        let filtered: Vec<u32> = v
            .iter()
            .map(|&c| if c <= 1 { 0 } else { u32::from(c) })
            .collect();
        let total: u32 = filtered.iter().sum();
        if let Some(k) = face.majority {
            let k = usize::from(k);
            assert!(
                k < 8 && 2 * filtered[k] > total,
                "{name}: majority {k} of {v:?}"
            );
        }
        if let Some(c) = face.crowd {
            let sum: f32 = c.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{name}: crowd sums to {sum}");
            let h: f32 = -c
                .iter()
                .filter(|&&p| p > 0.0)
                .map(|&p| p * p.ln())
                .sum::<f32>();
            let entropy = face.crowd_entropy.expect("entropy beside the crowd");
            assert!((h - entropy).abs() < 1e-4, "{name}: entropy");
        } else {
            assert!(
                v[..8].iter().all(|&c| c == 0),
                "{name}: null crowd with emotion votes"
            );
            assert!(face.crowd_entropy.is_none());
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
    // Only the final files, the manifest and the folder's lock file (kept, see core::lock)
    // are left: no temporary files.
    let mut names: Vec<String> = std::fs::read_dir(out.path().join("a/ingest"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".lock",
            "manifest.json",
            "test.parquet",
            "train.parquet",
            "valid.parquet"
        ]
    );
}
