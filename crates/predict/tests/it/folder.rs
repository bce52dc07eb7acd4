//! `ferbayes predict DIR`: one long-format Parquet table for a folder of photos.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt16Type, UInt32Type};
use ferbayes_core::schema;

use crate::support::{natural_patches, photos, predict};

#[test]
fn a_folder_becomes_one_table_of_faces_and_samples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("photos");
    std::fs::create_dir_all(folder.join("more")).expect("mkdir");
    std::fs::copy(photos().join("astronaut.png"), folder.join("astronaut.png")).expect("copy");
    std::fs::copy(photos().join("group.jpg"), folder.join("more/group.jpg")).expect("copy");
    std::fs::copy(
        natural_patches().join("ood00000.png"),
        folder.join("brick.png"),
    )
    .expect("copy");
    std::fs::write(folder.join("broken.png"), "not a png").expect("write");
    std::fs::write(folder.join("notes.txt"), "skipped: not an image name").expect("write");
    let out = dir.path().join("faces.parquet");
    let run = predict(&[folder.as_os_str(), "--out".as_ref(), out.as_os_str()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("no face found in") && stderr.contains("brick.png"),
        "{stderr}"
    );
    assert!(stderr.contains("broken.png"), "{stderr}");
    assert!(
        stderr.contains("5 faces from 2 of 4 photos")
            && stderr.contains("1 without a face, 1 unreadable"),
        "{stderr}"
    );

    let batches =
        ferbayes_core::io::read_parquet(&out, &schema::predict_faces(), None, "ferbayes predict")
            .expect("table");
    let t = 3; // smoke profile: infer.samples
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 5 * t, "one row per (image, face, sample)");
    let b = &batches[0];
    let image = b.column_by_name("image").expect("image").as_string::<i32>();
    let face = b
        .column_by_name("face")
        .expect("face")
        .as_primitive::<UInt16Type>();
    let sample = b
        .column_by_name("sample")
        .expect("sample")
        .as_primitive::<UInt16Type>();
    let width = b
        .column_by_name("box_width")
        .expect("w")
        .as_primitive::<UInt32Type>();
    let names: Vec<&str> = image.iter().map(|v| v.expect("name")).collect();
    assert_eq!(names.iter().filter(|n| **n == "astronaut.png").count(), t);
    assert_eq!(
        names.iter().filter(|n| **n == "more/group.jpg").count(),
        4 * t
    );
    for r in 0..rows {
        assert_eq!(usize::from(sample.value(r)), r % t);
        assert!(width.value(r) > 40);
    }
    assert_eq!(face.values().iter().copied().max(), Some(3));
    let probs = b
        .column_by_name("probs")
        .expect("probs")
        .as_fixed_size_list();
    for r in 0..rows {
        let p = probs.value(r);
        let sum: f32 = p.as_primitive::<Float32Type>().values().iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
    }
    let col = |n: &str| {
        b.column_by_name(n)
            .expect(n)
            .as_primitive::<Float32Type>()
            .clone()
    };
    let (h, a, e) = (
        col("predictive_entropy"),
        col("aleatoric"),
        col("epistemic"),
    );
    for r in 0..rows {
        assert!((h.value(r) - a.value(r) - e.value(r)).abs() < 1e-4);
    }
    let verdict = b
        .column_by_name("verdict")
        .expect("verdict")
        .as_string::<i32>();
    assert!(
        verdict
            .iter()
            .all(|v| ["confident", "ambiguous face", "unsure model"].contains(&v.expect("v")))
    );
    // Written atomically: no temporary file is left beside it.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}
