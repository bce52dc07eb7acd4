//! Process-wide CPU settings the training and inference speed depends on.
//!
//! Three measured effects (`cargo bench -p ferbayes-train --bench train`, quiet
//! 2-core machine, `docs/perf-notes.md`):
//!
//! * candle runs elementwise ops of ≥ 64k elements on its own "barrier pool",
//!   whose worker spins for 25,000 iterations after every op. The fast kernels
//!   run on rayon's pool, so on a machine with as many threads as cores that
//!   spinning worker takes a core from them. With `CANDLE_NUM_THREADS=1` the pool
//!   has no worker (candle's elementwise ops run on the calling thread) and
//!   forward passes measured 1.3–1.5x faster, training steps up to 1.3x.
//! * glibc returns freed blocks over its dynamic mmap threshold to the kernel, so
//!   the next step's buffers of the same size are mapped and page-faulted in
//!   again. Fixed thresholds (mmap 32 MiB, trim 1 GiB) keep them on the heap:
//!   paper-size AlexNet training measured 1.46x faster.
//! * The fast kernels split each op over rayon's pool. Called from the main
//!   thread, every such op hands its work to sleeping pool threads and puts the
//!   main thread to sleep until they finish: three threads taking turns on two
//!   cores, with a wake-up per op. Run on a pool worker instead
//!   ([`run_in_pool`]), the caller does its share and the other worker joins
//!   in: cpu-profile training steps measured 3–12 % faster.
//!
//! [`tune_cpu_process`] applies the first two unless the user set them.

// `mallopt` is a C function: calling it is `unsafe` (an FFI call with two ints).
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::sync::OnceLock;

/// glibc's mmap threshold set by [`tune_cpu_process`] (its 64-bit maximum).
const MMAP_THRESHOLD: i32 = 32 << 20;
/// glibc's trim threshold set by [`tune_cpu_process`].
const TRIM_THRESHOLD: i32 = 1 << 30;

/// What [`tune_cpu_process`] did, for the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tuning {
    /// Why `CANDLE_NUM_THREADS` was left alone; `None`: this call set it to 1.
    pub candle_threads_skipped: Option<&'static str>,
    /// The malloc thresholds were set by this call.
    pub malloc_set: bool,
}

/// Sets `CANDLE_NUM_THREADS=1` (unless the variable is set) and glibc's malloc
/// mmap / trim thresholds (unless `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`
/// or `MALLOC_TOP_PAD_` are set). Call it first thing in `main`: the environment
/// is only changed while this is the process's only thread (checked on Linux;
/// elsewhere it is left alone), since changing it while another thread reads it
/// is undefined behaviour.
pub fn tune_cpu_process() -> Tuning {
    let mut t = Tuning::default();
    if std::env::var_os("CANDLE_NUM_THREADS").is_some() {
        t.candle_threads_skipped = Some("CANDLE_NUM_THREADS is set");
    } else if !single_threaded() {
        t.candle_threads_skipped = Some("other threads are running");
    } else {
        // SAFETY: this process has one thread (the caller's; checked just above from
        // /proc/self/task), so no other thread can read or write the environment
        // concurrently.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
    let user_set = [
        "MALLOC_MMAP_THRESHOLD_",
        "MALLOC_TRIM_THRESHOLD_",
        "MALLOC_TOP_PAD_",
    ]
    .iter()
    .any(|v| std::env::var_os(OsStr::new(v)).is_some());
    if !user_set {
        t.malloc_set = set_malloc_thresholds();
    }
    t
}

/// Stack size of the pool's threads: the main thread's usual 8 MiB (rayon's
/// default is 2 MiB, and autograd walks the graph recursively).
const POOL_STACK: usize = 8 << 20;

/// Runs `f` on a worker of a process-wide rayon pool (`RAYON_NUM_THREADS`
/// threads, else one per core) and returns its result; panics propagate. Parallel
/// ops inside `f` then run on that pool without a hand-off from a thread outside
/// it. Falls back to calling `f` here if the pool cannot be built.
pub fn run_in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .stack_size(POOL_STACK)
            .thread_name(|i| format!("ferbayes-worker-{i}"))
            .build()
            .ok()
    });
    match pool {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// Whether the process has exactly one thread (Linux: entries of /proc/self/task).
fn single_threaded() -> bool {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() == 1)
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_malloc_thresholds() -> bool {
    // SAFETY: `mallopt` takes two ints and is MT-safe in glibc (it locks the arenas);
    // both values are within glibc's documented ranges (mmap ≤ 32 MiB on 64-bit).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_malloc_thresholds() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc accepts both thresholds (mallopt returns 1); the test harness has other
    /// threads, so the environment is left alone and says why.
    #[test]
    fn thresholds_are_accepted_and_env_is_left_alone_with_threads_running() {
        let _other = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(2)));
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            let t = tune_cpu_process();
            assert_eq!(t.candle_threads_skipped, Some("other threads are running"));
            assert!(std::env::var_os("CANDLE_NUM_THREADS").is_none());
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert!(set_malloc_thresholds());
    }

    /// `run_in_pool` runs its closure on a pool worker, returns its value, and the
    /// parallel iterators inside it use that pool (same thread count).
    #[test]
    fn run_in_pool_runs_on_a_worker_of_the_pool() {
        use rayon::prelude::*;
        assert!(rayon::current_thread_index().is_none());
        let (index, threads, sum) = run_in_pool(|| {
            let sum: u64 = (1..=1000u64).into_par_iter().sum();
            (
                rayon::current_thread_index(),
                rayon::current_num_threads(),
                sum,
            )
        });
        assert!(index.is_some());
        assert_eq!(sum, 500_500);
        let expected = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        assert_eq!(threads, expected);
    }
}
