//! The train stage as processes: one writer per artifact root (a second `ferbayes-train` stops
//! at once naming the folder and the first one's pid), a SIGKILLed run's lock blocks nothing,
//! and a profile with nothing to train is refused before anything is touched.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use ferbayes_core::compare::{Verdict, compare_trees};
use ferbayes_core::lock::Holder;
use ferbayes_core::{Layout, PipelineFile, Stage};

use crate::support::ingested;

/// Faces per split: the smoke profile's own 256, so a run lasts long enough to be caught.
const FACES: usize = 256;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `ferbayes-train` on the smoke profile of `root`, settings from `config`.
fn train(root: &Path, config: &Path, profile: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferbayes-train"));
    c.arg("--profile")
        .arg(profile)
        .arg("--config")
        .arg(config)
        .arg("--artifacts")
        .arg(root)
        .env("RUST_LOG", "warn")
        .env("RAYON_NUM_THREADS", "1");
    c
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until `child` holds the lock at `lock` (the file names its pid).
fn wait_for_lock(child: &mut Child, lock: &Path) {
    let t0 = Instant::now();
    loop {
        let holder = std::fs::read(lock)
            .ok()
            .and_then(|b| serde_json::from_slice::<Holder>(&b).ok());
        if holder.is_some_and(|h| h.pid == child.id()) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("ferbayes-train ended ({status}) before it was seen holding {lock:?}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no lock at {lock:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The train folders of two roots hold the same data (weights tensor by tensor, histories but
/// for their seconds, manifests but for times and paths).
fn same_training(a: &Layout, b: &Layout) {
    let got =
        compare_trees(&a.stage_dir(Stage::Train), &b.stage_dir(Stage::Train)).expect("compare");
    assert!(got.len() > 20, "{got:?}");
    let differ: Vec<_> = got.iter().filter(|c| !c.verdict.same()).collect();
    assert!(differ.is_empty(), "{differ:?}");
    assert!(
        got.iter()
            .any(|c| c.file.ends_with(".safetensors") && c.verdict != Verdict::Identical),
        "weights are compared by their tensors, not their bytes alone"
    );
}

#[test]
fn one_writer_per_root_a_killed_run_blocks_nothing_and_empty_lists_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = repo().join("pipeline.toml");
    let settings = PipelineFile::load(&config)
        .expect("pipeline.toml")
        .settings("smoke")
        .expect("smoke");
    let (arch, method) = (settings.train.archs[0], settings.train.methods[0]);

    // A lone run: the reference.
    let lone = ingested(&dir.path().join("lone"), "smoke", FACES);
    ok(
        &train(&dir.path().join("lone"), &config, "smoke")
            .output()
            .expect("run"),
        "lone run",
    );

    // Two at once on one root: the second stops at once, naming the folder and the first's
    // pid; the first finishes with what a lone run writes.
    let root = dir.path().join("two");
    let two = ingested(&root, "smoke", FACES);
    let mut first = train(&root, &config, "smoke").spawn().expect("spawn");
    wait_for_lock(&mut first, &two.member_lock(arch, method, 0));
    let t0 = Instant::now();
    let second = train(&root, &config, "smoke").output().expect("run");
    let refused_in = t0.elapsed();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second writer ran: {stderr}");
    assert!(
        stderr.contains(&two.train_dir(arch, method).display().to_string())
            && stderr.contains(&format!("pid {}", first.id()))
            && stderr.contains("is being written by another process"),
        "{stderr}"
    );
    assert!(
        first.try_wait().expect("poll").is_none(),
        "the second was refused while the first ran ({refused_in:?})"
    );
    let status = first.wait().expect("wait");
    assert!(status.success(), "the first run failed: {status}");
    same_training(&lone, &two);

    // SIGKILLed while it holds its locks: its lock file stays, names a dead process, and
    // blocks nothing; the next run resumes and ends with a lone run's weights.
    let root = dir.path().join("killed");
    let killed = ingested(&root, "smoke", FACES);
    let mut victim = train(&root, &config, "smoke").spawn().expect("spawn");
    let lock = killed.member_lock(arch, method, 0);
    wait_for_lock(&mut victim, &lock);
    // Let it write something (a first checkpoint or member) before the kill.
    let t0 = Instant::now();
    while ferbayes_core::test_snapshot(&killed.stage_dir(Stage::Train)).is_empty()
        && !killed.train_dir(arch, method).join(".resume").is_dir()
        && t0.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    victim.kill().expect("SIGKILL");
    let status = victim.wait().expect("wait");
    assert_eq!(status.signal(), Some(9), "{status}");
    let stale: Holder =
        serde_json::from_slice(&std::fs::read(&lock).expect("lock file stays")).expect("holder");
    assert_eq!(stale.pid, victim.id());
    ok(
        &train(&root, &config, "smoke").output().expect("run"),
        "the run after a SIGKILL",
    );
    same_training(&lone, &killed);

    // Nothing to train: `train.archs` or `train.methods` empty is refused naming the key, and
    // the artifacts stay byte for byte.
    let before = ferbayes_core::test_snapshot(&lone.profile_dir());
    let text = std::fs::read_to_string(&config).expect("read");
    for key in ["archs", "methods"] {
        let bad = dir.path().join(format!("empty-{key}.toml"));
        std::fs::write(
            &bad,
            format!("{text}\n[profiles.nothing]\n[profiles.nothing.train]\n{key} = []\n"),
        )
        .expect("write");
        let out = train(&dir.path().join("lone"), &bad, "nothing")
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("train.{key}")) && stderr.contains("is empty"),
            "{stderr}"
        );
    }
    assert!(
        ferbayes_core::test_snapshot(&lone.profile_dir()) == before,
        "a refused run changed the artifacts"
    );
}
