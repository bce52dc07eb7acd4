//! `cargo bench -p ferbayes-ingest` (or `just bench`): ingest of the whole real FER+ data set.
//!
//! Prints one table row per run plus the median; the data root is `FER_DATA` or
//! `../shared/ferplus`. The first run may include cold file-cache reads.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use ferbayes_core::{IngestSettings, Layout};

fn main() {
    let root = ferbayes_core::test_data_root();
    let out = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(out.path(), "bench");
    let settings = IngestSettings {
        max_per_split: None,
        zstd_level: 3,
        ..Default::default()
    };
    let threads = rayon::current_num_threads();
    println!("| ingest run | faces | seconds | faces/s | threads |");
    println!("|---|---|---|---|---|");
    let mut times = Vec::new();
    for run in 1..=3 {
        let start = Instant::now();
        let summaries = ferbayes_ingest::run(&root, &layout, &settings).expect("ingest");
        let secs = start.elapsed().as_secs_f64();
        let faces: usize = summaries.iter().map(|s| s.faces).sum();
        println!(
            "| {run} | {faces} | {secs:.2} | {:.0} | {threads} |",
            faces as f64 / secs
        );
        times.push(secs);
    }
    times.sort_by(f64::total_cmp);
    println!("| median | | {:.2} | | |", times[1]);
}
