//! `ferbayes predict DIR`: one long-format Parquet table for a folder of photos.

use ferbayes_core::schema::rows::PredictRow;

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

    let table: Vec<PredictRow> =
        ferbayes_core::io::read_rows(&out, None, "ferbayes predict").expect("table");
    let t = 3; // smoke profile: infer.samples
    assert_eq!(table.len(), 5 * t, "one row per (image, face, sample)");
    let count = |name: &str| table.iter().filter(|r| r.image == name).count();
    assert_eq!(count("astronaut.png"), t);
    assert_eq!(count("more/group.jpg"), 4 * t);
    for (i, r) in table.iter().enumerate() {
        assert_eq!(usize::from(r.sample), i % t);
        assert!(r.box_width > 40);
        let sum: f32 = r.probs.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
        assert!((r.predictive_entropy - r.aleatoric - r.epistemic).abs() < 1e-4);
        assert!(["confident", "ambiguous face", "unsure model"].contains(&r.verdict.as_str()));
    }
    assert_eq!(table.iter().map(|r| r.face).max(), Some(3));
    // Written atomically: no temporary file is left beside it.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

#[test]
fn a_folder_without_images_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("holiday");
    std::fs::create_dir_all(empty.join("sub")).expect("mkdir");
    // Files that are not PNG or JPEG by name do not count.
    std::fs::write(empty.join("notes.txt"), "no photos here").expect("write");
    let before = ferbayes_core::test_snapshot(crate::support::artifacts());
    let out_file = dir.path().join("faces.parquet");
    for args in [
        vec![empty.as_os_str(), "--out".as_ref(), out_file.as_os_str()],
        vec![empty.as_os_str()],
    ] {
        let run = crate::support::predict_command(&args)
            .current_dir(dir.path())
            .output()
            .expect("run ferbayes");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{stderr}");
        assert!(
            stderr.contains(&empty.display().to_string()) && stderr.contains("no PNG or JPEG"),
            "{stderr}"
        );
    }
    // Neither the named table nor the default `holiday-faces.parquet` exists.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["holiday"], "{left:?}");
    assert!(
        ferbayes_core::test_snapshot(crate::support::artifacts()) == before,
        "the artifacts changed"
    );
}
