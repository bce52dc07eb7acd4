//! `cargo bench -p ferbayes-train --bench train` (part of `just bench`): training and inference
//! speed of every architecture at the sizes of the `cpu` and `paper` profiles, next to PyTorch
//! on the same machine.
//!
//! Per row, with seeded random weights, a random batch of 32 faces and random labels:
//! - train img/s: one step as `train_epoch` takes it (forward in `Mode::TRAIN`, log-softmax,
//!   NLL, backward, the project's optimiser step — Adam or SGD as the profile says);
//! - forward img/s: `Mode::EVAL` at batch 32 with the weights loaded as plain tensors, as the
//!   infer stage loads them (no gradient tracking, like `torch.inference_mode()`).
//!
//! `FER_BENCH_ONLY=cpu/densenet121,paper/vgg16` limits the table to those rows.
//!
//! Each rate is the fastest of 3 timed windows after a warm-up (windows of at least 1 s and 2
//! steps; 0.5 s and 1 step at the paper sizes), the rule bench/torch_reference.py follows too.
//!
//! The PyTorch columns and the FLOP counts come from the JSON `bench/torch_reference.py`
//! writes, read from `$FER_TORCH_BENCH` when set and the file exists; otherwise they print `—`.
//! `$FER_TORCH_BENCH` may list several such files (separated like `PATH`): per row the fastest.
//!
//! Rounds: with `$FER_BENCH_RESULTS` set, ferbayes' rates are merged (per row, the fastest)
//! with those the file holds from an earlier run, and the merged rates are written back. `just
//! bench` uses this to measure both sides twice, interleaved (PyTorch, ferbayes, PyTorch,
//! ferbayes), so that a minute of a noisy neighbour does not decide a ratio; the table of the
//! second ferbayes run is the result.
//! The peak is candle's own CPU gemm: best of a few 2048³ f32 matmuls. Threads: candle's (the
//! `RAYON_NUM_THREADS` variable; `just` sets it), which the PyTorch script uses as well.

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use ferbayes_core::cli::KernelArgs;
use ferbayes_core::{Arch, Method, PipelineFile};
use ferbayes_models::{Backend, Mode, Model, Noise, VarRole};
use ferbayes_train::{Network, StepTargets, optim, train_step};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

const PROFILES: [&str; 2] = ["cpu", "paper"];
const BATCH: usize = 32;
/// Steps of a FER+ training epoch (25,045 faces), which the learning-rate schedules other
/// than `constant` need to place each step.
fn fer_steps_per_epoch() -> u64 {
    optim::steps_per_epoch(25_045, BATCH)
}
const CLASSES: usize = 8;
/// Side of the square matmul that measures the peak.
const PEAK_N: usize = 2048;

/// The same rule as bench/torch_reference.py: warm-up steps, then [`WINDOWS`] timed windows of
/// at least `min_seconds` and `min_steps` each; the fastest window counts (on a shared machine,
/// the least disturbed one).
struct Timing {
    warm_up: usize,
    min_seconds: f64,
    min_steps: usize,
}

const WINDOWS: usize = 3;

fn timing(profile: &str) -> Timing {
    if profile == "paper" {
        Timing {
            warm_up: 1,
            min_seconds: 0.5,
            min_steps: 1,
        }
    } else {
        Timing {
            warm_up: 2,
            min_seconds: 1.0,
            min_steps: 2,
        }
    }
}

/// One row of the PyTorch JSON.
#[derive(Debug, Deserialize)]
struct TorchRow {
    profile: String,
    arch: String,
    width: f64,
    input_size: usize,
    train_img_s: f64,
    forward_img_s: f64,
    forward_flops_per_image: f64,
    torch_version: String,
    threads: usize,
    /// `cpu` or `cuda` (absent in CPU-only files).
    #[serde(default)]
    device: Option<String>,
    /// Members of the packed model PyTorch measured (absent in older files).
    #[serde(default)]
    packed_members: Option<usize>,
    #[serde(default)]
    packed_train_member_img_s: Option<f64>,
}

/// ferbayes' rates of one row, as `$FER_BENCH_RESULTS` keeps them.
#[derive(Debug, Deserialize, Serialize)]
struct OwnRow {
    profile: String,
    arch: String,
    width: f64,
    input_size: usize,
    train_img_s: f64,
    forward_img_s: f64,
    /// Member-images/s of the packed ensemble (see `measure_packed`) and its member count.
    #[serde(default)]
    packed_members: usize,
    #[serde(default)]
    packed_member_img_s: f64,
}

/// The rates an earlier run left in `$FER_BENCH_RESULTS`, by (profile, arch); none without it.
fn load_own() -> (Option<PathBuf>, HashMap<(String, String), OwnRow>) {
    let Some(path) = std::env::var_os("FER_BENCH_RESULTS").map(PathBuf::from) else {
        return (None, HashMap::new());
    };
    let rows: Vec<OwnRow> = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).expect("parse FER_BENCH_RESULTS"),
        Err(_) => Vec::new(),
    };
    let rows = rows
        .into_iter()
        .map(|r| ((r.profile.clone(), r.arch.clone()), r))
        .collect();
    (Some(path), rows)
}

fn main() {
    // The same process settings as the binaries (CANDLE_NUM_THREADS, malloc thresholds),
    // and like them the work runs on a worker of the kernels' thread pool.
    let tuning = ferbayes_models::tune_cpu_process();
    eprintln!("cpu runtime: {tuning:?}");
    ferbayes_models::run_in_pool(bench);
}

fn bench() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // FER_CONFIG: the settings file when the bench runs away from its checkout (a GPU machine).
    let config = std::env::var_os("FER_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("pipeline.toml"));
    let file = PipelineFile::load(&config).expect("pipeline.toml");
    let threads = candle_core::utils::get_num_threads();
    let torch = load_torch(&repo);
    let (own_path, mut own) = load_own();
    // The CPU's gemm peak (the GPU rows compare with PyTorch on the same GPU instead).
    let peak = if bench_device().is_cpu() {
        peak_gflops()
    } else {
        f64::NAN
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0x00be_4c4d);
    // The kernel knobs, read once as the binaries read them (FER_REFERENCE_OPS, FER_WINOGRAD,
    // FER_SIMD, FER_TF32; the device's default kernels otherwise).
    let backend = ferbayes_models::install_kernels(&KernelArgs::default(), &bench_device());
    // FER_BENCH_ONLY=cpu/alexnet,paper/vgg16 measures only those rows (e.g. for a profiler).
    let only = std::env::var("FER_BENCH_ONLY").ok();

    // Rows are printed together at the end, after the progress lines on stderr.
    let mut rows = Vec::new();
    rows.push(
        "| profile | arch | width | input | ferbayes train ms/step | ferbayes train img/s | ferbayes fwd img/s | PyTorch train img/s | PyTorch fwd img/s | train ratio | fwd ratio | fwd GFLOP/img | ferbayes train GFLOP/s | ferbayes fwd GFLOP/s | train % peak | fwd % peak |"
            .to_owned(),
    );
    rows.push("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|".to_owned());
    let mut packed_rows = vec![
        "| profile | arch | members | one at a time img/s | packed member-img/s | packed / one at a time | PyTorch packed member-img/s | packed ratio | packed % peak |".to_owned(),
        "|---|---|---|---|---|---|---|---|---|".to_owned(),
    ];
    let count_ops = std::env::var("FER_BENCH_OPS").map_or(true, |v| v != "0");
    let mut ops_rows = vec![
        format!(
            "| profile | arch | {} |",
            OPS_BACKENDS.map(|b| format!("{b} ops/step")).join(" | ")
        ),
        format!("|---|---|{}", "---|".repeat(OPS_BACKENDS.len())),
    ];
    for profile in PROFILES {
        let settings = file.settings(profile).expect("profile");
        for arch in Arch::ALL {
            if !only
                .as_ref()
                .is_none_or(|f| f.contains(&format!("{profile}/{arch}")))
            {
                continue;
            }
            let s = settings.train.arch(arch).clone();
            if count_ops {
                let counts: Vec<String> = OPS_BACKENDS
                    .iter()
                    .map(|&b| step_ops(arch, &s, b).to_string())
                    .collect();
                ops_rows.push(format!("| {profile} | {arch} | {} |", counts.join(" | ")));
            }
            let (mut train, mut fwd) = measure(arch, &s, profile, backend, &mut rng);
            let members = packed_members(profile, settings.train.ensemble_members);
            let mut packed = if members > 1 {
                measure_packed(arch, &s, profile, backend, members, &mut rng)
            } else {
                0.0
            };
            let key = (profile.to_owned(), arch.as_str().to_owned());
            if let Some(earlier) = own.get(&key)
                && earlier.width == s.width
                && earlier.input_size == s.input_size
            {
                train = train.max(earlier.train_img_s);
                fwd = fwd.max(earlier.forward_img_s);
                if earlier.packed_members == members {
                    packed = packed.max(earlier.packed_member_img_s);
                }
            }
            own.insert(
                key,
                OwnRow {
                    profile: profile.to_owned(),
                    arch: arch.as_str().to_owned(),
                    width: s.width,
                    input_size: s.input_size,
                    train_img_s: train,
                    forward_img_s: fwd,
                    packed_members: members,
                    packed_member_img_s: packed,
                },
            );
            let t = torch.get(&(profile.to_owned(), arch.as_str().to_owned()));
            let t = t.filter(|t| {
                let same = t.width == s.width && t.input_size == s.input_size;
                if !same {
                    eprintln!(
                        "PyTorch row {profile}/{arch} is for width {} input {}, not {} {}: ignored",
                        t.width, t.input_size, s.width, s.input_size
                    );
                }
                same
            });
            let dash = || "—".to_owned();
            // A share of the CPU's peak; a dash on a GPU.
            let pct = |share: f64| {
                if share.is_finite() {
                    format!("{:.0} %", 100.0 * share)
                } else {
                    dash()
                }
            };
            let num = |v: f64| {
                if v >= 100.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                }
            };
            let (t_train, t_fwd, r_train, r_fwd) = match t {
                Some(t) => (
                    num(t.train_img_s),
                    num(t.forward_img_s),
                    format!("{:.2}", train / t.train_img_s),
                    format!("{:.2}", fwd / t.forward_img_s),
                ),
                None => (dash(), dash(), dash(), dash()),
            };
            let (flop, g_train, g_fwd, p_train, p_fwd) = match t {
                Some(t) => {
                    let f = t.forward_flops_per_image;
                    // A training step counted as 3 forward passes (forward + 2x for backward).
                    let gt = 3.0 * f * train / 1e9;
                    let gf = f * fwd / 1e9;
                    (
                        format!("{:.3}", f / 1e9),
                        format!("{gt:.1}"),
                        format!("{gf:.1}"),
                        pct(gt / peak),
                        pct(gf / peak),
                    )
                }
                None => (dash(), dash(), dash(), dash(), dash()),
            };
            rows.push(format!(
                "| {profile} | {arch} | {} | {} | {:.1} | {} | {} | {t_train} | {t_fwd} | {r_train} | {r_fwd} | {flop} | {g_train} | {g_fwd} | {p_train} | {p_fwd} |",
                s.width,
                s.input_size,
                1000.0 * BATCH as f64 / train,
                num(train),
                num(fwd),
            ));
            if members > 1 {
                let torch_packed = t.and_then(|t| {
                    (t.packed_members == Some(members))
                        .then_some(t.packed_train_member_img_s)
                        .flatten()
                });
                let (tp, rp) = match torch_packed {
                    Some(v) => (num(v), format!("{:.2}", packed / v)),
                    None => (dash(), dash()),
                };
                let gp = match t {
                    Some(t) => pct(3.0 * t.forward_flops_per_image * packed / 1e9 / peak),
                    None => dash(),
                };
                packed_rows.push(format!(
                    "| {profile} | {arch} | {members} | {} | {} | {:.2} | {tp} | {rp} | {gp} |",
                    num(train),
                    num(packed),
                    packed / train,
                ));
            }
        }
    }
    let torch_note = match torch.values().next() {
        Some(t) if t.threads != threads => format!(
            "PyTorch {} with {} threads (NOT the same thread count: rerun both with the same \
             RAYON_NUM_THREADS)",
            t.torch_version, t.threads
        ),
        Some(t) if t.device.as_deref().is_some_and(|d| d != "cpu") => format!(
            "PyTorch {} on {}",
            t.torch_version,
            t.device.as_deref().unwrap_or("cpu")
        ),
        Some(t) => format!("PyTorch {} with {} threads", t.torch_version, t.threads),
        None => {
            "no PyTorch results (set FER_TORCH_BENCH to bench/torch_reference.py's JSON)".to_owned()
        }
    };
    if let Some(path) = &own_path {
        let mut all: Vec<&OwnRow> = own.values().collect();
        all.sort_by(|a, b| (&a.profile, &a.arch).cmp(&(&b.profile, &b.arch)));
        let text = serde_json::to_string_pretty(&all).expect("rates as JSON");
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
    let rounds = match (torch_files(), own_path.is_some()) {
        (n, true) if n > 1 => format!(
            ", over {n} PyTorch runs and the ferbayes runs merged through FER_BENCH_RESULTS"
        ),
        (n, _) if n > 1 => format!(", over {n} PyTorch runs"),
        (_, true) => ", merged with earlier ferbayes runs through FER_BENCH_RESULTS".to_owned(),
        _ => String::new(),
    };
    if bench_device().is_cpu() {
        // Which kernels ran (the same record the manifests keep): the backend, gemm's
        // microkernels (AVX-512 only in a build with the `avx512` feature) and the SIMD loops.
        let paths: Vec<String> = ferbayes_models::simd_paths(backend)
            .into_iter()
            .map(|(family, path)| format!("{family}: {path}"))
            .collect();
        println!("Kernels: {}.", paths.join("; "));
        println!();
    }
    println!("{}", rows.join("\n"));
    println!();
    if packed_rows.len() > 2 {
        println!("{}", packed_rows.join("\n"));
        println!();
        println!(
            "Packed ensembles: the members trained as one packed network (train.pack_members), \
             each on its own batch of {BATCH}, against the same members one at a time (the \
             train img/s above) and PyTorch's packed model (grouped convolutions, \
             bench/torch_reference.py). FER_BENCH_PACK sets the members (0: no packed rows)."
        );
        println!();
    }
    if ops_rows.len() > 2 {
        println!("{}", ops_rows.join("\n"));
        println!();
        println!(
            "Ops per training step (batch {BATCH}, one network, MC-Dropout): the candle tensors \
             one step creates (forward, loss, backward, optimiser; counted by candle's tensor \
             ids after a warm-up step, views included) plus the in-place ops (running \
             statistics, the optimiser's update: one multi-tensor launch each on a GPU), on the \
             CPU with each kernel backend; reference counts the optimiser as the chain of candle \
             ops a GPU ran before the device ops. On a GPU every op that is not a view is one \
             kernel launch (two for the device ops' two-stage reductions). FER_BENCH_OPS=0 \
             skips this table."
        );
        println!();
    }
    if !bench_device().is_cpu() {
        println!(
            "Device: {:?} (FER_BENCH_DEVICE); batch {BATCH}; each step waits for the device; \
             {torch_note}.{}",
            bench_device(),
            ferbayes_models::device_ops::gpu_kernels()
                .map(|k| format!(" Kernels: {k}."))
                .unwrap_or_default()
        );
        return;
    }
    println!(
        "Batch {BATCH}, {threads} threads; {torch_note}. Peak = {peak:.1} GFLOP/s: the machine's \
         peak as candle's gemm reaches it, best of 5 {PEAK_N}x{PEAK_N}x{PEAK_N} f32 matmuls \
         through candle on the CPU with the same thread count. FLOPs per image: PyTorch's \
         FlopCounterMode on the forward pass (convs and matmuls, a multiply-add = 2 FLOPs); a \
         training step is counted as 3x the forward FLOPs. Ratios: ferbayes / PyTorch. Rates: \
         fastest of {WINDOWS} timed windows after a warm-up{rounds}, both sides."
    );
}

/// The files `$FER_TORCH_BENCH` lists.
fn torch_files() -> usize {
    std::env::var_os("FER_TORCH_BENCH").map_or(0, |v| std::env::split_paths(&v).count())
}

/// The PyTorch rows by (profile, arch), or none without `$FER_TORCH_BENCH`. A relative path is
/// taken from the current directory or, failing that, the repository root (`cargo bench` runs
/// benches in the package's directory).
fn load_torch(repo: &Path) -> HashMap<(String, String), TorchRow> {
    let Some(paths) = std::env::var_os("FER_TORCH_BENCH") else {
        return HashMap::new();
    };
    let mut out: HashMap<(String, String), TorchRow> = HashMap::new();
    for path in std::env::split_paths(&paths) {
        let path = if path.is_relative() && !path.is_file() {
            repo.join(path)
        } else {
            path
        };
        if !path.is_file() {
            eprintln!(
                "FER_TORCH_BENCH: {} does not exist: not used",
                path.display()
            );
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read FER_TORCH_BENCH");
        let rows: Vec<TorchRow> = serde_json::from_str(&text).expect("parse FER_TORCH_BENCH");
        for r in rows {
            let key = (r.profile.clone(), r.arch.clone());
            match out.get_mut(&key) {
                // The fastest of the runs, per rate (same sizes only).
                Some(t) if t.width == r.width && t.input_size == r.input_size => {
                    t.train_img_s = t.train_img_s.max(r.train_img_s);
                    t.forward_img_s = t.forward_img_s.max(r.forward_img_s);
                }
                Some(_) => eprintln!("FER_TORCH_BENCH: {key:?} has different sizes across files"),
                None => {
                    out.insert(key, r);
                }
            }
        }
    }
    out
}

/// GFLOP/s of candle's CPU f32 matmul: best of 5 after one warm-up.
fn peak_gflops() -> f64 {
    let n = PEAK_N;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut rand = || -> Tensor {
        let v: Vec<f32> = (0..n * n).map(|_| rng.random::<f32>()).collect();
        Tensor::from_vec(v, (n, n), &Device::Cpu).expect("tensor")
    };
    let (a, b) = (rand(), rand());
    a.matmul(&b).expect("matmul");
    let best = (0..5)
        .map(|_| {
            let start = Instant::now();
            a.matmul(&b).expect("matmul");
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    2.0 * (n as f64).powi(3) / best / 1e9
}

/// The device the rows run on: `FER_BENCH_DEVICE` (`cpu`, the default, or `cuda` with the
/// `cuda` feature).
fn bench_device() -> Device {
    let name = std::env::var("FER_BENCH_DEVICE").unwrap_or_else(|_| "cpu".to_owned());
    ferbayes_models::device(name.trim()).expect("FER_BENCH_DEVICE")
}

/// Steps per second of `step` under the profile's timing rule; on a GPU each step waits for
/// the device, so that a window times the work and not the queueing.
fn steps_per_second(profile: &str, mut step: impl FnMut()) -> f64 {
    let device = bench_device();
    let mut step = move || {
        step();
        device.synchronize().expect("synchronize");
    };
    let t = timing(profile);
    for _ in 0..t.warm_up {
        step();
    }
    let mut best = 0.0f64;
    for _ in 0..WINDOWS {
        let start = Instant::now();
        let mut n = 0;
        let rate = loop {
            step();
            n += 1;
            let elapsed = start.elapsed().as_secs_f64();
            if n >= t.min_steps && elapsed >= t.min_seconds {
                break n as f64 / elapsed;
            }
        };
        best = best.max(rate);
    }
    best
}

/// (train img/s, forward img/s) of one architecture at the profile's size.
fn measure(
    arch: Arch,
    s: &ferbayes_core::ArchTrainSettings,
    profile: &str,
    backend: Backend,
    rng: &mut ChaCha8Rng,
) -> (f64, f64) {
    let device = bench_device();
    // mc_dropout trains like ensemble members (dropout on activations).
    let Network {
        config: cfg,
        model,
        named_vars,
        mut optimizer,
    } = Network::packed_on(arch, Method::McDropout, s, &device, &[7], backend).expect("network");
    optimizer.set_steps_per_epoch(fer_steps_per_epoch());
    let params: usize = named_vars
        .iter()
        .filter(|(name, var)| VarRole::of(name, var.rank()).is_trainable())
        .map(|(_, v)| v.elem_count())
        .sum();

    let size = s.input_size;
    let pixels: Vec<f32> = (0..BATCH * size * size).map(|_| rng.random()).collect();
    let xs = Tensor::from_vec(pixels, (BATCH, 1, size, size), &device).expect("xs");
    let labels: Vec<u32> = (0..BATCH)
        .map(|_| rng.random_range(0..CLASSES as u32))
        .collect();
    let target = Tensor::new(labels.as_slice(), &device).expect("labels");
    let targets = StepTargets::Classes(target.clone());
    let mut noise = Noise::new(11);

    // As train_epoch, less the batch gathering (the tally stays on the device, as there).
    let train = steps_per_second(profile, || {
        train_step(
            &model,
            &mut optimizer,
            &xs,
            &targets,
            &target,
            std::slice::from_mut(&mut noise),
        )
        .expect("train step");
    }) * BATCH as f64;

    // The infer stage loads weights as plain tensors (VarBuilder::from_tensors).
    let tensors: HashMap<String, Tensor> = named_vars
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
        .collect();
    let eval_model = Model::with_backend(
        &cfg,
        backend,
        VarBuilder::from_tensors(tensors, DType::F32, &device),
    )
    .expect("eval model");
    let forward = steps_per_second(profile, || {
        let logits = eval_model
            .forward(&xs, Mode::EVAL, &mut noise)
            .expect("forward");
        let _: Vec<Vec<f32>> = logits.to_vec2().expect("logits");
    }) * BATCH as f64;
    eprintln!(
        "ferbayes {profile:5} {arch:11} width {:<5} input {size:3}: train {train:8.1} img/s, forward {forward:8.1} img/s, {params} parameters",
        s.width
    );
    (train, forward)
}

/// The kernel backends the ops table counts.
const OPS_BACKENDS: [Backend; 3] = [Backend::Reference, Backend::Winograd, Backend::Device];

/// The ops one training step of `arch` (batch [`BATCH`], the profile's size) runs on
/// `backend`'s kernels on the bench's device ([`ferbayes_train::step_ops`]).
fn step_ops(arch: Arch, s: &ferbayes_core::ArchTrainSettings, backend: Backend) -> usize {
    let ops = ferbayes_train::step_ops(arch, s, &bench_device(), backend, BATCH).expect("step");
    eprintln!(
        "ferbayes {arch:11} width {:<5} input {:3}: {ops} ops per step on {backend}",
        s.width, s.input_size
    );
    ops
}

/// Members of the packed rows: `$FER_BENCH_PACK` when set, else the profile's ensemble size
/// (at most 5 at the paper size: a 15-member paper-size pack takes minutes a step on 2 cores).
fn packed_members(profile: &str, ensemble: usize) -> usize {
    match std::env::var("FER_BENCH_PACK")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => n,
        None if profile == "paper" => ensemble.min(5),
        None => ensemble,
    }
}

/// Member-images/s of `members` ensemble members trained as one packed network, each on its
/// own batch: a step as `train_epoch` takes it (packed forward, each member's NLL summed,
/// backward, one optimiser step over the packed variables).
fn measure_packed(
    arch: Arch,
    s: &ferbayes_core::ArchTrainSettings,
    profile: &str,
    backend: Backend,
    members: usize,
    rng: &mut ChaCha8Rng,
) -> f64 {
    let device = bench_device();
    let seeds: Vec<u64> = (0..members as u64).map(|k| 7 + k).collect();
    let Network {
        model,
        mut optimizer,
        ..
    } = Network::packed_on(arch, Method::Ensemble, s, &device, &seeds, backend)
        .expect("packed network");
    optimizer.set_steps_per_epoch(fer_steps_per_epoch());
    let size = s.input_size;
    let n = members * BATCH;
    let pixels: Vec<f32> = (0..n * size * size).map(|_| rng.random()).collect();
    let xs = Tensor::from_vec(pixels, (n, 1, size, size), &device).expect("xs");
    let labels: Vec<u32> = (0..n)
        .map(|_| rng.random_range(0..CLASSES as u32))
        .collect();
    let target = Tensor::new(labels.as_slice(), &device).expect("labels");
    let targets = StepTargets::Classes(target.clone());
    let mut noise: Vec<Noise> = seeds.iter().map(|&k| Noise::new(k)).collect();
    let rate = steps_per_second(profile, || {
        train_step(&model, &mut optimizer, &xs, &targets, &target, &mut noise).expect("train step");
    }) * n as f64;
    eprintln!("ferbayes {profile:5} {arch:11} packed x{members}: train {rate:8.1} member-img/s");
    rate
}
