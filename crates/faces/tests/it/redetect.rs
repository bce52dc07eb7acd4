//! FER2013's crop margin, and the crop of a re-detected FER face against FER+'s own 48x48 pixels.
//!
//! Each of the first FACES FER+ test faces is upscaled 4x (bicubic, as `group.jpg` was made) to
//! 192x192 and pasted in the middle of a 384x384 mid-grey canvas; the detector then looks for it.

use ferbayes_core::IMAGE_SIDE;
use ferbayes_faces::FaceDetector;
use ferbayes_faces::detect::CROP_SCALE;
use ferbayes_faces::photo::{Square, face_pixels};
use image::GrayImage;
use image::imageops::FilterType;

const FACES: usize = 120;
const UP: u32 = 4;
const CANVAS: u32 = 384;
const AT: u32 = 96;

struct Measured {
    /// 192 / detected box side, per detected face.
    ratios: Vec<f64>,
    /// (box centre − frame centre) / 192, x and y, per detected face.
    offsets: Vec<(f64, f64)>,
    /// Mean |difference| (grey levels) of the re-detected crop against the face's own pixels.
    redetected: Vec<f64>,
    /// The same for the exact frame (the 192 square where the face was pasted): resampling only.
    resampled: Vec<f64>,
    /// (re-detected, resampling-only) differences of the faces whose crop lies within one
    /// 48x48 pixel (4 px here) of the frame on every edge.
    aligned: Vec<(f64, f64)>,
    tried: usize,
}

fn mean_abs(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x.abs_diff(y)))
        .sum::<f64>()
        / a.len() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn measure() -> Measured {
    let dir = ferbayes_core::test_data_root().join("FER2013Test");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("FER2013Test")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    files.truncate(FACES);
    let mut detector = FaceDetector::new().expect("detector");
    let side = IMAGE_SIDE as u32 * UP;
    let frame = Square {
        x: i64::from(AT),
        y: i64::from(AT),
        side,
    };
    let mut m = Measured {
        ratios: Vec::new(),
        offsets: Vec::new(),
        redetected: Vec::new(),
        resampled: Vec::new(),
        aligned: Vec::new(),
        tried: files.len(),
    };
    for path in &files {
        let pixels = ferbayes_faces::fer::read_png(path).expect("png");
        let face = GrayImage::from_raw(48, 48, pixels.clone()).expect("48x48");
        let big = image::imageops::resize(&face, side, side, FilterType::CatmullRom);
        let mut canvas = GrayImage::from_pixel(CANVAS, CANVAS, image::Luma([128]));
        image::imageops::replace(&mut canvas, &big, i64::from(AT), i64::from(AT));
        m.resampled
            .push(mean_abs(&face_pixels(&canvas, frame), &pixels));
        let found = detector.detect(&canvas, 40);
        let [b] = found.as_slice() else { continue };
        m.ratios.push(f64::from(side) / f64::from(b.width));
        let centre = f64::from(AT) + f64::from(side) / 2.0;
        m.offsets.push((
            (f64::from(b.x) + f64::from(b.width) / 2.0 - centre) / f64::from(side),
            (f64::from(b.y) + f64::from(b.height) / 2.0 - centre) / f64::from(side),
        ));
        let crop = b.fer_square();
        let diff = mean_abs(&face_pixels(&canvas, crop), &pixels);
        m.redetected.push(diff);
        let edges = [
            crop.x - frame.x,
            crop.y - frame.y,
            crop.x + i64::from(crop.side) - frame.x - i64::from(side),
            crop.y + i64::from(crop.side) - frame.y - i64::from(side),
        ];
        if edges.iter().all(|e| e.abs() <= i64::from(UP)) {
            m.aligned
                .push((diff, *m.resampled.last().expect("resampled")));
        }
    }
    m
}

#[test]
fn fer_crop_margin_and_redetected_crops() {
    let m = measure();
    let n = m.ratios.len();
    let ratio = median(m.ratios.clone());
    let dx = median(m.offsets.iter().map(|o| o.0).collect());
    let dy = median(m.offsets.iter().map(|o| o.1).collect());
    let resampled_max = m.resampled.iter().copied().fold(0.0, f64::max);
    let redetected_median = median(m.redetected.clone());
    let redetected_mean = m.redetected.iter().sum::<f64>() / n as f64;
    let redetected_max = m.redetected.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "detected one face in {n} of {} upscaled FER test faces; frame/box ratio median {ratio:.3} \
         (CROP_SCALE {CROP_SCALE}); centre offset median ({dx:.3}, {dy:.3}) of the side; \
         mean |Δ| resampling only: median {:.2}, max {resampled_max:.2}; \
         re-detected crop: median {redetected_median:.2}, mean {redetected_mean:.2}, max {redetected_max:.2} grey levels",
        m.tried,
        median(m.resampled.clone()),
    );
    let aligned_excess = m
        .aligned
        .iter()
        .map(|(d, r)| d - r)
        .fold(f64::NEG_INFINITY, f64::max);
    eprintln!(
        "{} crops within one 48x48 pixel of the frame: re-detected minus resampling-only |Δ| at most {aligned_excess:.2}",
        m.aligned.len()
    );
    assert!(n * 10 >= m.tried * 8, "only {n} of {} detected", m.tried);
    // CROP_SCALE is this measurement (within 3 %), and the crop needs no shift (< 3 % of the side).
    assert!((ratio / CROP_SCALE - 1.0).abs() < 0.03, "ratio {ratio}");
    assert!(dx.abs() < 0.03 && dy.abs() < 0.03, "offset ({dx}, {dy})");
    // Upscaling 4x and resizing back with the photo path's filter, on the exact frame: the resampling
    // error (a triangle filter over 4x is a blur, so it is not zero).
    let resampled_median = median(m.resampled.clone());
    assert!(
        resampled_median < 4.0 && resampled_max < 12.0,
        "resampling error {resampled_median} / {resampled_max}"
    );
    // Where the detector's box matches FER2013's crop to within one 48x48 pixel (2 of 100 faces
    // here), the re-detected face is the original within the resampling error plus what a shift of
    // under one pixel costs (measured 6.7 grey levels at most).
    assert!(!m.aligned.is_empty(), "no aligned crop");
    assert!(aligned_excess < 8.0, "aligned excess {aligned_excess}");
    // In general it is NOT: FER2013's own crops frame faces at different scales (the detector's
    // box is 0.5x to 1.5x of the 48x48 frame), so one fixed margin misses most of them by several
    // pixels, which on 48x48 faces costs tens of grey levels. Measured (README, "Your own
    // photos"): median 32, max 80 grey levels; this bounds it against regressions.
    assert!(
        redetected_median < 40.0 && redetected_max < 100.0,
        "re-detected {redetected_median} / {redetected_max}"
    );
}
