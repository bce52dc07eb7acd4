//! `cargo bench -p ferbayes-explore --bench load` (part of `just bench`): `ferbayes explore`
//! under load on loopback, on a run of the `FER_PROFILE` profile (default `cpu`).
//!
//! The run: `FER_BENCH_ARTIFACTS` (an artifact root holding a finished run of the profile), or
//! else a run of the profile's sizes made without training under `target/tmp/explore-<profile>`
//! (ingest, seeded weights for every arch × method, infer, analyze; about 6 minutes on 2 cores
//! the first time, then reused: each stage skips what is up to date).
//!
//! The server runs as a child process (this bench re-run with `FER_EXPLORE_SERVE=1`), so its
//! memory is its own. Measured: startup (spawn to listening with every table loaded, and to the
//! first faces page), then 8 client threads (`FER_BENCH_CLIENTS`) for 30 s each
//! (`FER_BENCH_SECONDS`) against the faces page (varied sorts, filters, pages and models) and
//! against `/api/photo` (astronaut.png and group.jpg in turn): requests/s, client latency p50 /
//! p99, the server's own time per request (its `Server-Timing`), errors, and the server's peak
//! resident memory (VmHWM). Then 50 malformed uploads and 50 traversal attempts, each of which
//! must get its status, and the server must still answer. Exits non-zero on any error.

#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferbayes_core::{Layout, PipelineFile, Settings};
use ferbayes_explore::testing::attacks::{TRAVERSALS, malformed_uploads};
use ferbayes_explore::testing::http;
use ferbayes_explore::{ExploreOptions, Server};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn profile() -> String {
    std::env::var("FER_PROFILE").unwrap_or_else(|_| "cpu".into())
}

/// The profile's settings, with folders given relative to the repository made absolute (the
/// bench runs in its crate's folder).
fn settings() -> Settings {
    let mut s = PipelineFile::load(&repo().join("pipeline.toml"))
        .expect("pipeline.toml")
        .settings(&profile())
        .expect("profile");
    for f in &mut s.ingest.ood.folders {
        if f.is_relative() {
            *f = repo().join(&*f);
        }
    }
    s
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The artifact root: `FER_BENCH_ARTIFACTS`, or a run made here without training.
fn artifacts(settings: &Settings) -> PathBuf {
    if let Some(root) = std::env::var_os("FER_BENCH_ARTIFACTS") {
        return PathBuf::from(root);
    }
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("explore-{}", profile()));
    let layout = Layout::new(&root, profile());
    let start = Instant::now();
    let data = ferbayes_core::test_data_root();
    ferbayes_ingest::run_checked(&data, &layout, &settings.ingest, false).expect("ingest");
    for (l, s) in ferbayes_core::plan::variants(&layout, settings) {
        for &arch in &s.train.archs {
            for &method in &s.train.methods {
                if !l.member_weights(arch, method, 0).is_file() {
                    ferbayes_models::testing::write_seeded_weights(&l, &s, arch, method)
                        .expect("seeded weights");
                }
            }
        }
        ferbayes_infer::run(&l, &s, &ferbayes_infer::InferOptions::default()).expect("infer");
    }
    ferbayes_analyze::run_checked(&layout, settings, false).expect("analyze");
    eprintln!(
        "artifacts of profile {} ready in {:.0} s: {}",
        profile(),
        start.elapsed().as_secs_f64(),
        root.display()
    );
    root
}

/// Child mode: serve `FER_EXPLORE_SERVE` until stdin closes.
fn serve_child(root: &Path) {
    let settings = settings();
    let mut options = ExploreOptions::new(
        Layout::new(root, profile()),
        settings,
        "127.0.0.1:0".parse().expect("addr"),
    );
    options.data_root = Some(ferbayes_core::test_data_root());
    // The kernel knobs, read once as `ferbayes explore` reads them.
    options.kernels = ferbayes_models::install_kernels(
        &ferbayes_core::cli::KernelArgs::default(),
        &options.device,
    );
    let server = Server::start(options).expect("server");
    println!("LISTENING {}", server.addr());
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(server);
}

/// Peak and current resident memory of `pid` (VmHWM, VmRSS) in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[derive(Default)]
struct Tally {
    client_ms: Vec<f64>,
    server_ms: Vec<f64>,
    errors: Vec<String>,
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// `clients` threads for `seconds`, thread c sending `make(c, i)` as its i-th request.
fn load(
    clients: usize,
    seconds: u64,
    send: impl Fn(usize, usize) -> std::io::Result<http::Answer> + Sync,
) -> (Tally, f64) {
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let send = &send;
                s.spawn(move || {
                    let mut t = Tally::default();
                    let mut i = 0;
                    while Instant::now() < end {
                        let sent = Instant::now();
                        match send(c, i) {
                            Ok(a) if a.status == 200 => {
                                t.client_ms.push(sent.elapsed().as_secs_f64() * 1e3);
                                t.server_ms.extend(a.server_ms());
                            }
                            Ok(a) => t.errors.push(format!("status {}: {}", a.status, a.text())),
                            Err(e) => t.errors.push(e.to_string()),
                        }
                        i += 1;
                    }
                    t
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = Tally::default();
    for t in tallies {
        all.client_ms.extend(t.client_ms);
        all.server_ms.extend(t.server_ms);
        all.errors.extend(t.errors);
    }
    (all, elapsed)
}

struct Spawned {
    child: Child,
    addr: SocketAddr,
    listening_s: f64,
}

fn spawn_server(root: &Path) -> Spawned {
    let start = Instant::now();
    let mut child = Command::new(std::env::current_exe().expect("this bench"))
        .env("FER_EXPLORE_SERVE", root)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the server's address");
    let addr = line
        .trim()
        .strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("unexpected server output: {line}"))
        .parse()
        .expect("address");
    Spawned {
        child,
        addr,
        listening_s: start.elapsed().as_secs_f64(),
    }
}

/// The faces-page queries the clients cycle through: sorts, filters, pages, splits, models.
fn faces_queries(settings: &Settings) -> Vec<String> {
    let combos: Vec<(String, String)> = settings
        .train
        .archs
        .iter()
        .flat_map(|a| {
            settings
                .train
                .methods
                .iter()
                .map(move |m| (a.to_string(), m.to_string()))
        })
        .collect();
    let mut out = Vec::new();
    for (i, (a, m)) in combos.iter().enumerate() {
        let split = if i % 2 == 0 { "test" } else { "valid" };
        out.push(format!(
            "/faces?arch={a}&method={m}&split={split}&sort=entropy&order=desc"
        ));
        out.push(format!(
            "/faces?arch={a}&method={m}&split={split}&sort=epistemic_share&page=3"
        ));
        out.push(format!(
            "/faces?arch={a}&method={m}&split={split}&correct=wrong&sort=crowd_entropy&n=5"
        ));
        out.push(format!(
            "/faces?arch={a}&method={m}&split={split}&min_entropy=0.5&majority=happiness&per_page=100"
        ));
    }
    out
}

fn row(what: &str, t: &mut Tally, elapsed: f64) -> String {
    let n = t.client_ms.len();
    format!(
        "| {what} | {n} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {} |",
        n as f64 / elapsed,
        percentile(&mut t.client_ms, 0.5),
        percentile(&mut t.client_ms, 0.99),
        percentile(&mut t.server_ms, 0.5),
        percentile(&mut t.server_ms, 0.99),
        t.errors.len()
    )
}

fn main() {
    if let Some(root) = std::env::var_os("FER_EXPLORE_SERVE") {
        serve_child(Path::new(&root));
        return;
    }
    let settings = settings();
    let root = artifacts(&settings);
    let clients = env_number("FER_BENCH_CLIENTS", 8) as usize;
    let seconds = env_number("FER_BENCH_SECONDS", 30);
    let photos = ferbayes_core::test_data_root().join("../photos");
    let uploads: Vec<(&str, Vec<u8>)> = ["astronaut.png", "group.jpg"]
        .into_iter()
        .map(|n| (n, std::fs::read(photos.join(n)).expect("photo")))
        .collect();

    let started = Instant::now();
    let mut server = spawn_server(&root);
    let addr = server.addr;
    let first = http::get(addr, "/faces").expect("first faces page");
    assert_eq!(first.status, 200, "{}", first.text());
    let first_page_s = started.elapsed().as_secs_f64();
    let health = http::get(addr, "/api/health").expect("health").json();
    let loaded_s = health["loaded_in_s"].as_f64().unwrap_or(f64::NAN);
    let (startup_mib, _) = memory(server.child.id());

    // Warm-up: the photo model loads on first use.
    let warm = http::upload(addr, "/api/photo", uploads[0].0, &uploads[0].1).expect("warm-up");
    assert_eq!(warm.status, 200, "{}", warm.text());

    let queries = faces_queries(&settings);
    let (mut faces, faces_s) = load(clients, seconds, |c, i| {
        http::get(addr, &queries[(c * 7 + i) % queries.len()])
    });
    let (faces_mib, _) = memory(server.child.id());
    let (mut photo, photo_s) = load(clients, seconds, |c, i| {
        let (name, bytes) = &uploads[(c + i) % uploads.len()];
        http::upload(addr, "/api/photo", name, bytes)
    });
    let (peak_mib, rss_mib) = memory(server.child.id());

    // 50 malformed uploads and 50 traversal attempts, each with its status.
    let patch = ferbayes_core::test_data_root().join("../ood/natural-patches/ood00000.png");
    let cases = malformed_uploads(&photos, &patch).expect("malformed uploads");
    let mut wrong = Vec::new();
    for k in 0..50 {
        let case = &cases[k % cases.len()];
        match case.send(addr) {
            Ok(a) if a.status == case.status => {}
            Ok(a) => wrong.push(format!(
                "{}: {} (want {})",
                case.what, a.status, case.status
            )),
            Err(e) => wrong.push(format!("{}: {e}", case.what)),
        }
    }
    let malformed_wrong = wrong.len();
    for k in 0..50 {
        let (target, status) = TRAVERSALS[k % TRAVERSALS.len()];
        match http::get(addr, target) {
            Ok(a) if a.status == status => {}
            Ok(a) => wrong.push(format!("{target}: {} (want {status})", a.status)),
            Err(e) => wrong.push(format!("{target}: {e}")),
        }
    }
    let traversal_wrong = wrong.len() - malformed_wrong;
    let alive = http::get(addr, "/faces").map(|a| a.status).unwrap_or(0);
    let (final_peak_mib, _) = memory(server.child.id());
    drop(server.child.stdin.take());
    let _ = server.child.wait();

    println!(
        "\n## ferbayes explore under load (profile {}, {}; {clients} clients, {seconds} s per load, loopback, one connection per request)\n",
        profile(),
        root.display()
    );
    println!(
        "Startup: listening after {:.2} s (tables loaded in {loaded_s:.2} s), first faces page after {first_page_s:.2} s; resident memory then {startup_mib:.0} MiB.\n",
        server.listening_s
    );
    println!(
        "| load | requests | req/s | p50 ms | p99 ms | server p50 ms | server p99 ms | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "{}",
        row("faces page (`GET /faces`, 48 faces)", &mut faces, faces_s)
    );
    println!(
        "{}",
        row(
            "photo API (`POST /api/photo`, astronaut.png / group.jpg)",
            &mut photo,
            photo_s
        )
    );
    println!(
        "\nServer peak resident memory (VmHWM): {faces_mib:.0} MiB after the faces load, {peak_mib:.0} MiB after the photo load (resident then {rss_mib:.0} MiB), {final_peak_mib:.0} MiB at the end.\n"
    );
    println!("| hostile requests | sent | right status | server answers after |");
    println!("|---|---|---|---|");
    println!(
        "| malformed uploads ({} kinds) | 50 | {} | {} |",
        cases.len(),
        50 - malformed_wrong,
        if alive == 200 { "yes" } else { "no" }
    );
    println!(
        "| traversal attempts ({} kinds) | 50 | {} | {} |",
        TRAVERSALS.len(),
        50 - traversal_wrong,
        if alive == 200 { "yes" } else { "no" }
    );
    let mut failed = false;
    for (what, t) in [("faces", &faces), ("photo", &photo)] {
        for e in t.errors.iter().take(5) {
            eprintln!("{what} error: {e}");
            failed = true;
        }
    }
    for w in &wrong {
        eprintln!("wrong status: {w}");
        failed = true;
    }
    if alive != 200 {
        eprintln!("the server stopped answering");
        failed = true;
    }
    if failed {
        std::process::exit(1);
    }
}
