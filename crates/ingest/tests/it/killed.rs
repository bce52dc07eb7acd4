//! The ingest binary SIGKILLed at seeded random moments: the split files are always the previous
//! complete version (byte-identical) or absent, temporary files never pass for artifacts, and a
//! normal rerun succeeds.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferbayes_core::{Layout, Split, Stage};

use crate::support::small_copy;

fn ingest(data: &Path, artifacts: &Path, extra: &[&str]) -> Command {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferbayes-ingest"));
    cmd.args(["--profile", "smoke", "--max-per-split", "1000", "--data"])
        .arg(data)
        .arg("--artifacts")
        .arg(artifacts)
        .arg("--config")
        .arg(config)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A small seeded generator (xorshift) for the kill delays.
fn delays(seed: u64, n: usize, max: Duration) -> Vec<Duration> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            max.mul_f64((x % 10_000) as f64 / 10_000.0)
        })
        .collect()
}

#[test]
fn killed_ingest_never_leaves_a_torn_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = small_copy(&dir.path().join("data"), 400);
    let artifacts = dir.path().join("art");
    let layout = Layout::new(&artifacts, "smoke");
    let ingest_dir = layout.stage_dir(Stage::Ingest);

    let t0 = Instant::now();
    let out = ingest(&data, &artifacts, &[]).output().expect("first run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The kill delays are fractions of a warm run's time: the first, cold run is slower than
    // the forced reruns below, and scaling by it let most of them finish before their kill.
    let t1 = Instant::now();
    let warm = ingest(&data, &artifacts, &["--force"])
        .output()
        .expect("warm run");
    assert!(warm.status.success());
    let full = t1.elapsed().min(t1 - t0);
    let reference: Vec<Vec<u8>> = Split::ALL
        .iter()
        .map(|s| std::fs::read(layout.ingest_split(*s)).expect("reference"))
        .collect();

    // Kill delays: seeded fractions of a window that starts at 1.2 warm runs and shrinks by 30 %
    // after every run that finished before its kill (a fixed window let most runs finish when
    // the machine sped up after the warm run), until 4 runs were killed or 24 ran.
    let fractions = delays(0x5eed, 24, Duration::from_secs(1));
    let mut window = full.mul_f64(1.2);
    let (mut killed, mut runs) = (0, 0);
    for (i, fraction) in fractions.into_iter().enumerate() {
        if killed >= 4 {
            break;
        }
        runs += 1;
        let delay = window.mul_f64(fraction.as_secs_f64());
        let mut child = ingest(&data, &artifacts, &["--force"])
            .spawn()
            .expect("spawn");
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL (it may have finished already)
        let status = child.wait().expect("wait");
        if std::os::unix::process::ExitStatusExt::signal(&status) == Some(9) {
            killed += 1;
        } else {
            window = window.mul_f64(0.7);
        }
        for (split, want) in Split::ALL.iter().zip(&reference) {
            let path = layout.ingest_split(*split);
            if let Ok(got) = std::fs::read(&path) {
                assert!(
                    &got == want,
                    "kill {i} after {delay:?}: {} is torn",
                    path.display()
                );
            }
        }
        for entry in std::fs::read_dir(&ingest_dir).expect("ls") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            let artifact = [
                "train.parquet",
                "valid.parquet",
                "test.parquet",
                "shift.parquet",
                "ood.parquet",
                "manifest.json",
            ]
            .contains(&name.as_str());
            let temporary = name.starts_with('.') && name.ends_with(".tmp");
            // The folder's lock file stays; a killed run's lock blocks nothing (the next run
            // here takes it).
            let lock = name == ".lock";
            assert!(
                artifact || temporary || lock,
                "kill {i}: unexpected file {name}"
            );
            assert!(!(artifact && temporary));
        }
    }

    assert!(
        killed >= 3,
        "only {killed} of {runs} runs were killed before they finished"
    );

    // Leftover temporary files are not artifacts: a normal run finds the stage up to date (or
    // rewrites it), and the artifacts read back as the reference.
    let out = ingest(&data, &artifacts, &[]).output().expect("rerun");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (split, want) in Split::ALL.iter().zip(&reference) {
        assert!(&std::fs::read(layout.ingest_split(*split)).expect("read") == want);
    }
    let out = ingest(&data, &artifacts, &[]).output().expect("third run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("ingest: up to date"),
        "{stderr}"
    );
}
