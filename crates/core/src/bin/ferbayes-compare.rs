//! `ferbayes-compare A B`: compares two runs' artifacts file by file (what `just verify` runs
//! after making the smoke chain twice) and exits non-zero when any file's data differ.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ferbayes_core::cli::init_tracing;

/// Compare every file under folder A with the same file under folder B: Parquet tables column
/// by column (bit for bit; `seconds` columns are timings), weight files tensor by tensor (their
/// metadata key by key, the history's seconds and the machine excepted), manifests field by
/// field (times, paths, the machine and the hashes of inputs whose data are equal excepted),
/// reports up to their machines appendix, every other file byte for byte. Prints what differs; exit status 1 when any data differ.
#[derive(Debug, Parser)]
#[command(name = "ferbayes-compare", version)]
struct Args {
    /// The first run's folder (an artifact root's profile folder, e.g. artifacts/smoke).
    a: PathBuf,
    /// The second run's folder.
    b: PathBuf,
}

#[allow(clippy::print_stdout)]
fn main() -> anyhow::Result<ExitCode> {
    init_tracing();
    let args = Args::parse();
    let results = ferbayes_core::compare::compare_trees(&args.a, &args.b)?;
    anyhow::ensure!(
        !results.is_empty(),
        "{} and {} hold no files to compare",
        args.a.display(),
        args.b.display()
    );
    let (text, same) = ferbayes_core::compare::report(&args.a, &args.b, &results);
    print!("{text}");
    Ok(if same {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
