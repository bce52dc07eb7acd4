//! The two real photos of shared/photos: detection, boxes, JSON and the annotated PNG.

use crate::support::{face_box, photos, predict, predict_json};

/// Where the face of `astronaut.png` is (by inspection of the 512x512 image: her face, from
/// hairline to chin and cheek to cheek, spans about x 175..265, y 70..165).
const ASTRONAUT_FACE: (f64, f64, f64, f64) = (175.0, 70.0, 90.0, 95.0);

#[test]
fn astronaut_has_one_face_and_its_box_is_on_it() {
    let faces = predict_json(&[photos().join("astronaut.png").as_os_str()]);
    assert_eq!(faces.len(), 1, "{faces:?}");
    let (x, y, w, h) = face_box(&faces[0]);
    let (fx, fy, fw, fh) = ASTRONAUT_FACE;
    // The box's centre lies inside the central half of the face, and its size is within a
    // quarter of the face's.
    let (cx, cy) = (x + w / 2.0, y + h / 2.0);
    assert!(
        (cx - (fx + fw / 2.0)).abs() < fw / 4.0 && (cy - (fy + fh / 2.0)).abs() < fh / 4.0,
        "box {:?} is off the face",
        (x, y, w, h)
    );
    assert!(
        (w - fw).abs() < fw / 4.0 && (h - fh).abs() < fh / 4.0,
        "box {:?} is not face-sized",
        (x, y, w, h)
    );
}

/// `group.jpg`: four 48x48 FER+ faces upscaled to 168x168 and pasted at these top-left corners
/// (shared/photos/README.md).
const GROUP: [(f64, f64); 4] = [(60.0, 80.0), (330.0, 60.0), (600.0, 120.0), (250.0, 330.0)];
const GROUP_SIDE: f64 = 168.0;

#[test]
fn group_photo_gives_the_four_faces_where_they_are() {
    let faces = predict_json(&[photos().join("group.jpg").as_os_str()]);
    assert_eq!(faces.len(), 4, "{faces:?}");
    for &(tx, ty) in &GROUP {
        // The detected box widened to FER2013's crop (CROP_SCALE, centred) should be the pasted
        // 48x48 frame: every edge within a quarter of its side.
        let found = faces.iter().any(|f| {
            let (x, y, w, _) = face_box(f);
            let side = w * ferbayes_faces::CROP_SCALE;
            let (cx, cy) = (x + w / 2.0, y + w / 2.0);
            let (x0, y0) = (cx - side / 2.0, cy - side / 2.0);
            let tol = GROUP_SIDE / 4.0;
            (x0 - tx).abs() < tol
                && (y0 - ty).abs() < tol
                && (x0 + side - tx - GROUP_SIDE).abs() < tol
                && (y0 + side - ty - GROUP_SIDE).abs() < tol
        });
        assert!(found, "no face box at {:?}: {faces:?}", (tx, ty));
    }
}

#[test]
fn json_lists_each_face_with_probabilities_entropy_parts_and_verdict() {
    let faces = predict_json(&[photos().join("group.jpg").as_os_str()]);
    for (i, f) in faces.iter().enumerate() {
        assert_eq!(f["face"], i);
        assert!(f["image"].as_str().expect("image").ends_with("group.jpg"));
        let probs = f["probabilities"].as_array().expect("probabilities");
        assert_eq!(probs.len(), 8);
        let sum: f64 = probs.iter().map(|e| e[1].as_f64().expect("p")).sum();
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
        assert_eq!(f["samples"], 3, "smoke profile: T = 3");
        let h = f["predictive_entropy"].as_f64().expect("h");
        let a = f["aleatoric"].as_f64().expect("a");
        let e = f["epistemic"].as_f64().expect("e");
        assert!((h - a - e).abs() < 1e-9 && e >= 0.0 && a >= 0.0);
        let verdict = f["verdict"].as_str().expect("verdict");
        assert!(
            ["confident", "ambiguous face", "unsure model"].contains(&verdict),
            "{verdict}"
        );
        assert!(f["box"]["score"].as_f64().expect("score") > 0.0);
    }
}

#[test]
fn text_output_names_each_face_and_its_verdict() {
    let out = predict(&[photos().join("group.jpg").as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for k in 1..=4 {
        assert!(
            text.contains(&format!("group.jpg face {k} at x ")),
            "{text}"
        );
    }
    assert_eq!(text.matches("  verdict: ").count(), 4, "{text}");
    assert_eq!(text.matches("= aleatoric ").count(), 4, "{text}");
}

#[test]
fn annotate_writes_a_png_of_the_photo_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, size) in [("astronaut.png", (512, 512)), ("group.jpg", (900, 600))] {
        let out = dir.path().join(format!("{name}.annotated.png"));
        let run = predict(&[
            photos().join(name).as_os_str(),
            "--annotate".as_ref(),
            out.as_os_str(),
        ]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let img = image::open(&out).expect("annotated PNG");
        assert_eq!((img.width(), img.height()), size);
        // The photo is drawn on: the output differs from the photo (boxes, charts).
        let photo = image::open(photos().join(name)).expect("photo").to_rgb8();
        let changed = photo
            .pixels()
            .zip(img.to_rgb8().pixels())
            .filter(|(a, b)| a != b)
            .count();
        assert!(changed > 1000, "only {changed} pixels drawn");
    }
}

#[test]
fn no_detect_keeps_the_whole_image_as_one_face() {
    let faces = predict_json(&[
        photos().join("group.jpg").as_os_str(),
        "--no-detect".as_ref(),
    ]);
    assert_eq!(faces.len(), 1);
    // The centre square of 900x600.
    assert_eq!(face_box(&faces[0]), (150.0, 0.0, 600.0, 600.0));
    assert!(
        faces[0]["warning"]
            .as_str()
            .expect("warning")
            .contains("900x600")
    );
}

/// `group.jpg` shrunk 5x (faces about 34 px wide): not all are found at the default
/// `--min-face` of 40 px, and all four with `--min-face 24`, found on an upscaled copy, with
/// boxes in the small photo's pixels.
#[test]
fn small_faces_are_found_on_an_upscaled_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = dir.path().join("small.png");
    let group = image::open(photos().join("group.jpg")).expect("group.jpg");
    group
        .resize_exact(180, 120, image::imageops::FilterType::Triangle)
        .save(&small)
        .expect("save");
    let out = predict(&[small.as_os_str(), "--json".as_ref()]);
    let found = serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0);
    assert!(found < 4, "{found} faces at the default --min-face");
    let faces = predict_json(&[small.as_os_str(), "--min-face".as_ref(), "24".as_ref()]);
    assert_eq!(faces.len(), 4, "{faces:?}");
    for &(tx, ty) in &GROUP {
        let (tx, ty, side) = (tx / 5.0, ty / 5.0, GROUP_SIDE / 5.0);
        let near = faces.iter().any(|f| {
            let (x, y, w, h) = face_box(f);
            ((x + w / 2.0) - (tx + side / 2.0)).abs() < side / 4.0
                && ((y + h / 2.0) - (ty + side / 2.0)).abs() < side / 4.0
        });
        assert!(near, "no face near {:?}: {faces:?}", (tx, ty));
    }
}

/// The annotated photo has each face's box where the JSON puts it, in its verdict's colour.
#[test]
fn annotated_boxes_are_where_the_json_says_in_the_verdict_colour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("group.png");
    let faces = predict_json(&[
        photos().join("group.jpg").as_os_str(),
        "--annotate".as_ref(),
        out.as_os_str(),
    ]);
    let img = image::open(&out).expect("annotated PNG").to_rgb8();
    for f in &faces {
        let (x, y, w, h) = face_box(f);
        let verdict = match f["verdict"].as_str().expect("verdict") {
            "confident" => ferbayes_predict::Verdict::Confident,
            "ambiguous face" => ferbayes_predict::Verdict::AmbiguousFace,
            _ => ferbayes_predict::Verdict::UnsureModel,
        };
        let c = ferbayes_predict::annotate::verdict_color(verdict);
        // Midpoints of the left and bottom edges (the top and right ones may sit under a chart).
        for (px, py) in [(x, y + h / 2.0), (x + w / 2.0, y + h)] {
            let p = img.get_pixel(px as u32, (py as u32).min(img.height() - 1));
            assert_eq!(p.0, [c.0, c.1, c.2], "face {} at {:?}", f["face"], (px, py));
        }
    }
}
