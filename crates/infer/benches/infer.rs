//! `cargo bench -p ferbayes-infer --bench infer` (part of `just bench`): sampling speed of every
//! architecture × method at the sizes of a profile (`FER_PROFILE`, default `cpu`), on real test
//! faces, with seeded random weights (speed does not depend on the weights' values).
//!
//! Prints faces/s with T = 1 (one deterministic-cost pass) and T = `infer.samples` (each the
//! fastest of 3 timed passes over the faces after a warm-up), and their cost ratio; the study's requirement is ratio ≤ 2 for AlexNet and VGG16 (prefix cached).

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use ferbayes_core::cli::KernelArgs;
use ferbayes_core::{Arch, Layout, Method, PipelineFile, Split};
use ferbayes_infer::Faces;
use ferbayes_models::Backend;
use ferbayes_models::Predictor;

const FACES: usize = 256;
/// Timed passes per cell; the fastest counts.
const RUNS: usize = 3;

fn main() {
    // The same process settings as the binaries (CANDLE_NUM_THREADS, malloc thresholds),
    // and like them the work runs on a worker of the kernels' thread pool.
    let tuning = ferbayes_models::tune_cpu_process();
    eprintln!("cpu runtime: {tuning:?}");
    ferbayes_models::run_in_pool(bench);
}

fn bench() {
    let profile = std::env::var("FER_PROFILE").unwrap_or_else(|_| "cpu".into());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let file = PipelineFile::load(&repo.join("pipeline.toml")).expect("pipeline.toml");
    let settings = file.settings(&profile).expect("profile");
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path(), &profile);
    let ingest = ferbayes_core::IngestSettings {
        max_per_split: Some(FACES),
        zstd_level: 1,
        ..Default::default()
    };
    ferbayes_ingest::run(&ferbayes_core::test_data_root(), &layout, &ingest).expect("ingest");
    let faces = Faces::load(&layout.ingest_split(Split::Test)).expect("faces");
    let t_full = settings.infer.samples;
    // The kernel knobs, read once as the binaries read them (FER_REFERENCE_OPS, FER_WINOGRAD,
    // FER_SIMD; the CPU's default kernels otherwise).
    let kernels = ferbayes_models::install_kernels(&KernelArgs::default(), &Device::Cpu);

    println!(
        "| arch | width | input | method | faces/s T=1 | faces/s T={t_full} | cost ratio T={t_full}/T=1 | prefix cached |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for arch in Arch::ALL {
        let a = settings.train.arch(arch).clone();
        for method in Method::STUDY {
            ferbayes_models::testing::write_seeded_weights(&layout, &settings, arch, method)
                .expect("seeded weights");
            let full_members = settings.train.ensemble_members;
            let combo = (arch, method);
            let (one, _) = time(&layout, &settings, combo, &faces, (1, 1), kernels);
            let (full, cached) = time(
                &layout,
                &settings,
                combo,
                &faces,
                (t_full, full_members),
                kernels,
            );
            let label = if method == Method::Ensemble {
                format!("N={full_members}")
            } else {
                format!("T={t_full}")
            };
            println!(
                "| {arch} | {} | {} | {method} | {one:.0} | {full:.0} ({label}) | {:.2} | {} |",
                a.width,
                a.input_size,
                one / full,
                if method == Method::Ensemble {
                    "n/a"
                } else if cached {
                    "yes"
                } else {
                    "no"
                }
            );
        }
    }
}

/// Faces/s of one predictor with `samples` passes (MC) or `members` members (ensemble), and
/// whether its prefix is cached.
fn time(
    layout: &Layout,
    settings: &ferbayes_core::Settings,
    (arch, method): (Arch, Method),
    faces: &Faces,
    (samples, members): (usize, usize),
    kernels: Backend,
) -> (f64, bool) {
    let mut s = settings.clone();
    s.infer.samples = samples;
    s.train.ensemble_members = members;
    let p = Predictor::load_on(layout, &s, arch, method, &Device::Cpu, kernels).expect("load");
    let warm = Faces {
        images: faces.images[..32].to_vec(),
        pixels: faces.pixels[..32 * ferbayes_core::IMAGE_PIXELS].to_vec(),
    };
    ferbayes_infer::infer_split(&p, &warm, 32, "warm-up").expect("warm-up");
    // Fastest of RUNS passes over the faces: one pass moved ±30 % between runs.
    let best = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            ferbayes_infer::infer_split(&p, faces, s.infer.batch_size, "bench").expect("infer");
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    (faces.len() as f64 / best, p.cache_prefix)
}
