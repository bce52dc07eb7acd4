//! `cargo bench -p ferbayes-predict --bench predict` (part of `just bench`, which runs it on one
//! core with RAYON_NUM_THREADS=1): the time of `ferbayes predict` on `astronaut.png` (512x512,
//! one face) from the decoded photo's file to the face's probabilities — decode, detect, crop,
//! T = `infer.samples` passes (or N members) — for every architecture × method at the sizes of
//! a profile (`FER_PROFILE`, default `cpu`), with seeded random weights (speed does not depend
//! on the weights' values). Target: at most 0.5 s per photo.
//!
//! Each cell is the median of RUNS timed runs after a warm-up; the detector alone is timed too.

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use ferbayes_core::cli::KernelArgs;
use ferbayes_core::{Arch, Layout, Method, PipelineFile};
use ferbayes_models::Predictor;
use ferbayes_predict::{FaceDetector, Faces};

const RUNS: usize = 7;
const TARGET_S: f64 = 0.5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn timed(mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let tuning = ferbayes_models::tune_cpu_process();
    eprintln!("cpu runtime: {tuning:?}");
    let profile = std::env::var("FER_PROFILE").unwrap_or_else(|_| "cpu".into());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let file = PipelineFile::load(&repo.join("pipeline.toml")).expect("pipeline.toml");
    let settings = file.settings(&profile).expect("profile");
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path(), &profile);
    let photo = ferbayes_core::test_data_root().join("../photos/astronaut.png");
    let mut detector = FaceDetector::new().expect("detector");
    let gray = ferbayes_faces::photo::to_gray(
        &ferbayes_faces::photo::open_photo(&photo).expect("astronaut.png"),
    );
    let detect = timed(|| {
        assert_eq!(detector.detect(&gray, 40).len(), 1);
    });
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    // The kernel knobs, read once as `ferbayes predict` reads them.
    let kernels = ferbayes_models::install_kernels(&KernelArgs::default(), &Device::Cpu);
    println!(
        "astronaut.png (512x512, one face), profile `{profile}`, RAYON_NUM_THREADS={threads}; detection alone {detect:.3} s"
    );
    println!();
    println!(
        "| arch | width | input | method | samples | s/photo (decode, detect, crop, sample) | target ≤ {TARGET_S} s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for arch in Arch::ALL {
        let a = settings.train.arch(arch);
        for method in Method::STUDY {
            ferbayes_models::testing::write_seeded_weights(&layout, &settings, arch, method)
                .expect("weights");
            let p = Predictor::load_on(&layout, &settings, arch, method, &Device::Cpu, kernels)
                .expect("load");
            let faces = Faces::Detect { min_face: 40 };
            let s = timed(|| {
                let got = ferbayes_predict::predict_photo(&p, &mut detector, &photo, faces)
                    .expect("predict");
                assert_eq!(got.faces.len(), 1);
            });
            let label = if method == Method::Ensemble { "N" } else { "T" };
            println!(
                "| {arch} | {} | {} | {method} | {label}={} | {s:.3} | {} |",
                a.width,
                a.input_size,
                p.samples(),
                if s <= TARGET_S { "met" } else { "missed" }
            );
        }
    }
}
