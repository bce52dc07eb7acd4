//! The kernel knobs as `ferbayes-train` reads them, once, at its edge: `--kernels` and `--simd`
//! with their `FER_*` fallbacks (set here for the child process only), and what ran recorded
//! in the manifest's machine and in each member's weights.

use std::path::Path;
use std::process::Command;

use ferbayes_core::{Arch, Layout, Method};

use crate::support::ingested;

/// `ferbayes-train` on alexnet/mc_dropconnect of the smoke profile, with `flags` and `env` (the
/// kernel variables of this process removed first).
fn train(root: &Path, flags: &[&str], env: &[(&str, &str)]) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferbayes-train"));
    c.args([
        "--profile",
        "smoke",
        "--arch",
        "alexnet",
        "--method",
        "mc_dropconnect",
    ])
    .arg("--config")
    .arg(repo.join("pipeline.toml"))
    .arg("--artifacts")
    .arg(root)
    .args(flags)
    .env("RUST_LOG", "warn")
    .env("RAYON_NUM_THREADS", "1");
    for name in [
        "FER_REFERENCE_OPS",
        "FER_WINOGRAD",
        "FER_SIMD",
        "FER_TF32",
        "FER_DEVICE",
    ] {
        c.env_remove(name);
    }
    let out = c.envs(env.iter().copied()).output().expect("run");
    assert!(
        out.status.success(),
        "{flags:?} {env:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (backend, pooling and BatchNorm path) of the manifest's machine, and the machine line the
/// member's weights record.
fn recorded(layout: &Layout) -> (String, String, String) {
    let (arch, method) = (Arch::AlexNet, Method::McDropConnect);
    let m = ferbayes_core::plan::read_manifest(&layout.train_dir(arch, method))
        .expect("manifest")
        .expect("a manifest");
    let bytes = std::fs::read(layout.member_weights(arch, method, 0)).expect("weights");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("safetensors");
    let meta = meta.metadata().clone().expect("metadata");
    (
        m.machine.kernels["backend"].clone(),
        m.machine.kernels["pool, batchnorm"].clone(),
        meta["ferbayes.machine"].clone(),
    )
}

#[test]
fn the_binary_reads_the_kernel_knobs_once_and_records_what_ran() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = ingested(dir.path(), "smoke", 48);
    let root = dir.path();

    // The environment's fallbacks: FER_WINOGRAD=0 turns the CPU's winograd into im2col,
    // FER_SIMD=scalar takes the scalar loops.
    train(root, &[], &[("FER_WINOGRAD", "0"), ("FER_SIMD", "scalar")]);
    let (backend, simd, member) = recorded(&layout);
    assert_eq!(backend, "im2col");
    assert!(simd.starts_with("scalar"), "{simd}");
    assert!(
        member.contains("backend: im2col") && member.contains("batchnorm: scalar"),
        "{member}"
    );

    // The flags beat them.
    train(
        root,
        &["--force", "--kernels", "winograd", "--simd", "auto"],
        &[("FER_WINOGRAD", "0"), ("FER_SIMD", "scalar")],
    );
    let (backend, simd, member) = recorded(&layout);
    assert_eq!(backend, "winograd");
    assert!(!simd.contains("the simd setting"), "{simd}");
    assert!(member.contains("backend: winograd"), "{member}");

    // FER_REFERENCE_OPS=1: candle's own ops.
    train(root, &["--force"], &[("FER_REFERENCE_OPS", "1")]);
    let (backend, _, member) = recorded(&layout);
    assert_eq!(backend, "reference");
    assert!(member.contains("backend: reference"), "{member}");
}
