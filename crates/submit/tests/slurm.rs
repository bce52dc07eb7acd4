//! The smoke chain through a real single-node Slurm cluster, started and stopped by
//! `tests/slurm-cluster.sh` (Debian's slurmctld, slurmd, slurm-client and munge, as root):
//! `ferbayes-submit --wait` must produce the same bytes as the stage binaries run one after
//! another; a damaged input must fail its task, cancel its dependents and make `--wait` exit
//! non-zero naming the task; after the repair a second submission finishes the chain and
//! skips what was complete.
//!
//! Skipped (with the reason printed) where Slurm is not installed, unless FER_REQUIRE_SLURM=1.
//! Uses the stage binaries beside `ferbayes-submit` in the target folder (`cargo test
//! --workspace` builds them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const PROFILE: &str = "smoke";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_ferbayes-submit"))
        .parent()
        .expect("target folder")
        .to_owned()
}

fn installed(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}

/// A running test cluster; stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Cluster {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm-cluster.sh")
    }

    /// Starts the cluster, or None (reason printed) when Slurm is not installed.
    fn start() -> Option<Cluster> {
        let missing: Vec<&str> = ["sbatch", "slurmctld", "slurmd", "munged"]
            .into_iter()
            .filter(|p| !installed(p))
            .collect();
        if !missing.is_empty() {
            let why = format!(
                "Slurm is not installed ({} missing; apt-get install slurmctld slurmd slurm-client munge)",
                missing.join(", ")
            );
            assert!(
                std::env::var("FER_REQUIRE_SLURM").as_deref() != Ok("1"),
                "{why}"
            );
            eprintln!("skipped: {why}");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(Self::script())
            .arg("start")
            .arg(dir.path())
            .output()
            .expect("run slurm-cluster.sh");
        assert!(
            out.status.success(),
            "the test cluster did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "cluster started in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let conf = dir.path().join("slurm.conf");
        Some(Cluster { dir, conf })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Self::script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// A stage binary (or `ferbayes-submit`) with the smoke profile on `artifacts`.
fn stage(name: &str, artifacts: &Path) -> Command {
    let mut cmd = Command::new(bin_dir().join(name));
    cmd.current_dir(workspace())
        .env("FER_PROFILE", PROFILE)
        .env("FER_DATA", ferbayes_core::test_data_root())
        .env("FER_ARTIFACTS", artifacts)
        .env("FER_CONFIG", workspace().join("pipeline.toml"));
    cmd
}

fn run_ok(mut cmd: Command) -> Output {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The chain without Slurm: each stage binary once, in order.
fn local_chain(artifacts: &Path) {
    for name in [
        "ferbayes-ingest",
        "ferbayes-train",
        "ferbayes-infer",
        "ferbayes-analyze",
    ] {
        run_ok(stage(name, artifacts));
    }
}

fn submit(artifacts: &Path, cluster: &Cluster) -> Output {
    let mut cmd = stage("ferbayes-submit", artifacts);
    cmd.args(["--wait", "--poll", "0.5"])
        .env("SLURM_CONF", &cluster.conf);
    cmd.output().expect("run ferbayes-submit")
}

/// Every Parquet table and weight file under `dir`, relative to it (histories record
/// seconds per epoch, so they are left out; so are the weights' metadata, see [`weights`]).
fn compared_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e == "parquet" || e == "safetensors")
                && !path.ends_with("history.parquet")
                && !path.components().any(|c| c.as_os_str() == ".resume")
            {
                out.push(path.strip_prefix(dir).expect("under dir").to_owned());
            }
        }
    }
    out.sort();
    out
}

/// A safetensors file's tensors (header entries and data bytes) and the fingerprint of what
/// trained them, without the metadata that records seconds per epoch.
fn weights(bytes: &[u8]) -> (serde_json::Value, String, &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors header");
    let meta = header
        .as_object_mut()
        .and_then(|h| h.remove("__metadata__"))
        .expect("metadata");
    let fingerprint = meta["ferbayes.fingerprint"].as_str().expect("fingerprint");
    (header, fingerprint.to_owned(), &bytes[8 + n..])
}

fn assert_same_bytes(local: &Path, slurm: &Path) {
    let (local, slurm) = (local.join(PROFILE), slurm.join(PROFILE));
    let files = compared_files(&local);
    for must in [
        "ingest/train.parquet",
        "infer/alexnet/ensemble/test.parquet",
        "analyze/metrics.parquet",
    ] {
        assert!(
            files.contains(&PathBuf::from(must)),
            "local run wrote no {must}"
        );
    }
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "safetensors"))
    );
    assert_eq!(files, compared_files(&slurm), "the same files");
    for f in &files {
        let a = std::fs::read(local.join(f)).expect("read local");
        let b = std::fs::read(slurm.join(f)).expect("read slurm");
        if f.extension().is_some_and(|e| e == "safetensors") {
            let (wa, wb) = (weights(&a), weights(&b));
            assert_eq!(wa.1, wb.1, "{}: fingerprints differ", f.display());
            assert_eq!(wa.0, wb.0, "{}: tensor headers differ", f.display());
            assert!(wa.2 == wb.2, "{}: weights differ", f.display());
        } else {
            assert!(
                a == b,
                "{} differs between the local and the Slurm run",
                f.display()
            );
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn smoke_chain_through_slurm_fails_cleanly_and_resumes() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let (local, slurm) = (root.path().join("local"), root.path().join("slurm"));

    let t = Instant::now();
    local_chain(&local);
    eprintln!("local chain: {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let out = submit(&slurm, &cluster);
    eprintln!("Slurm chain: {:.1} s", t.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "submit --wait failed:\n{}",
        text(&out)
    );
    assert!(text(&out).contains("all jobs completed"), "{}", text(&out));
    assert_same_bytes(&local, &slurm);
    assert!(
        slurm.join(PROFILE).join("slurm/train.sh").is_file(),
        "scripts are kept"
    );

    // Lost infer outputs and a damaged member: the rerun of that combination must fail.
    let layout = ferbayes_core::Layout::new(&slurm, PROFILE);
    let (arch, method) = (
        ferbayes_core::Arch::AlexNet,
        ferbayes_core::Method::Ensemble,
    );
    let member = layout.member_weights(arch, method, 1);
    let good = std::fs::read(&member).expect("member weights");
    std::fs::remove_dir_all(layout.infer_dir(arch, method)).expect("remove infer outputs");
    std::fs::write(&member, &good[..good.len() / 2]).expect("damage the member");
    let out = submit(&slurm, &cluster);
    let said = text(&out);
    assert!(!out.status.success(), "a damaged member must fail:\n{said}");
    assert!(
        said.contains("# ingest   skip") && said.contains("# train    skip"),
        "{said}"
    );
    let failed = said
        .lines()
        .find(|l| l.starts_with("infer task") && l.contains("alexnet/ensemble"))
        .unwrap_or_else(|| panic!("no line names the failed infer task:\n{said}"));
    assert!(failed.contains("FAILED"), "{failed}");
    let log = failed.rsplit("log ").next().expect("log path").trim();
    let log_text = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{log}: {e}"));
    assert!(
        log_text.contains("member-01"),
        "the log names the damaged file:\n{log_text}"
    );
    assert!(
        said.lines()
            .any(|l| l.starts_with("analyze job") && l.contains("CANCELLED")),
        "analyze must be cancelled, not left pending:\n{said}"
    );
    assert!(
        !layout.infer_dir(arch, method).join("test.parquet").exists(),
        "nothing torn"
    );

    // Repaired: only that combination's infer and analyze run again.
    std::fs::write(&member, &good).expect("repair the member");
    let out = submit(&slurm, &cluster);
    let said = text(&out);
    assert!(out.status.success(), "after the repair:\n{said}");
    assert!(
        said.contains("# ingest   skip") && said.contains("# train    skip"),
        "{said}"
    );
    assert!(said.contains("# finish   skip"), "{said}");
    assert!(said.contains("# infer    tasks [2] of 9"), "{said}");
    assert!(said.contains("# analyze  submit"), "{said}");
    assert_same_bytes(&local, &slurm);
}
