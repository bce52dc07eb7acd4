//! Process-wide CPU settings the training and inference speed depends on.
//!
//! Two measured effects (`cargo bench -p ferbayes-train --bench train`, quiet
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
//!
//! [`tune_cpu_process`] applies both unless the user set them.

// `mallopt` is a C function: calling it is `unsafe` (an FFI call with two ints).
#![allow(unsafe_code)]

use std::ffi::OsStr;

/// glibc's mmap threshold set by [`tune_cpu_process`] (its 64-bit maximum).
pub const MMAP_THRESHOLD: i32 = 32 << 20;
/// glibc's trim threshold set by [`tune_cpu_process`].
pub const TRIM_THRESHOLD: i32 = 1 << 30;

/// What [`tune_cpu_process`] did, for the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tuning {
    /// `CANDLE_NUM_THREADS=1` was set by this call.
    pub candle_threads_set: bool,
    /// Why `CANDLE_NUM_THREADS` was left alone, if it was.
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
        t.candle_threads_set = true;
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
            assert!(!t.candle_threads_set);
            assert_eq!(t.candle_threads_skipped, Some("other threads are running"));
            assert!(std::env::var_os("CANDLE_NUM_THREADS").is_none());
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert!(set_malloc_thresholds());
    }
}
