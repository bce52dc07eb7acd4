//! `ferbayes-status` and the plan checks on a synthetic FER+ folder and hand-made artifacts.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferbayes_core::plan::{self, Freshness};
use ferbayes_core::{Layout, PipelineFile, Split, Stage};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A FER+ folder layout with a label file and one (fake) PNG per split.
fn fake_data(root: &Path) -> PathBuf {
    let data = root.join("data");
    for split in Split::ALL {
        let dir = data.join(split.ferplus_folder());
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("label.csv"),
            "fer0000000.png,(0,0,48,48),10,0,0,0,0,0,0,0,0,0\n",
        )
        .expect("label.csv");
        std::fs::write(dir.join("fer0000000.png"), b"not really a png").expect("png");
    }
    data
}

fn status(artifacts: &Path, data: &Path, config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferbayes-status"))
        .args(["--profile", "smoke", "--config"])
        .arg(config)
        .arg("--artifacts")
        .arg(artifacts)
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run ferbayes-status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn line<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find(|l| {
            l.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .starts_with(&format!("{label} "))
        })
        .unwrap_or_else(|| panic!("no line for {label} in\n{out}"))
}

/// Writes the ingest outputs and a manifest with the current key, as a finished ingest would.
fn fake_ingest(layout: &Layout, data: &Path, settings: &ferbayes_core::Settings) {
    let plan = plan::ingest(layout, data, &settings.ingest);
    let check = plan.check().expect("check");
    assert_eq!(check.freshness, Freshness::Missing);
    // Every output the plan lists: the splits, and the shift / OOD tables when enabled.
    for file in &plan.outputs {
        ferbayes_core::io::write_atomic(plan.dir.join(file), b"parquet").expect("write");
    }
    plan.manifest(&check)
        .finish(&Layout::manifest_in(&plan.dir))
        .expect("manifest");
}

#[test]
fn status_reports_missing_up_to_date_and_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = fake_data(dir.path());
    let artifacts = dir.path().join("artifacts");
    let config = repo().join("pipeline.toml");
    let settings = PipelineFile::load(&config)
        .expect("pipeline.toml")
        .settings("smoke")
        .expect("smoke");

    // Fresh root: everything missing.
    let out = status(&artifacts, &data, &config);
    let stages: Vec<&str> = out.lines().skip(1).take_while(|l| !l.is_empty()).collect();
    // ingest, analyze, and train + infer for every combination of the main run and of each
    // soft-label comparison run.
    let combos: usize = plan::variants(&Layout::new(&artifacts, "smoke"), &settings)
        .iter()
        .map(|(_, s)| s.train.archs.len() * s.train.methods.len())
        .sum();
    assert!(combos > settings.train.archs.len() * settings.train.methods.len());
    assert_eq!(stages.len(), 2 + 2 * combos, "{out}");
    assert!(stages.iter().all(|l| l.ends_with(" missing")), "{out}");
    // No manifest names a machine yet; this machine is described.
    let here = ferbayes_core::machine::Machine::detect();
    assert!(!out.contains("made on:"), "{out}");
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.starts_with("this machine: ") && l.contains(&here.cpu)),
        "{out}"
    );

    // After ingest: ingest up to date, the rest missing.
    let layout = Layout::new(&artifacts, "smoke");
    fake_ingest(&layout, &data, &settings);
    let out = status(&artifacts, &data, &config);
    assert!(line(&out, "ingest").ends_with(" up to date"), "{out}");
    assert!(
        line(&out, "train alexnet/mc_dropout").ends_with(" missing"),
        "{out}"
    );
    assert!(line(&out, "analyze").ends_with(" missing"), "{out}");
    // The ingest manifest names the machine that wrote it.
    let made: Vec<&str> = out.lines().skip_while(|l| *l != "made on:").collect();
    assert!(
        made.len() >= 3 && made[1].trim() == here.summary() && made[2].trim() == "wrote: ingest",
        "{out}"
    );

    // A changed setting: stale, with the reason.
    let text = std::fs::read_to_string(&config).expect("read config");
    let changed = dir.path().join("changed.toml");
    std::fs::write(
        &changed,
        text.replacen("zstd_level = 3", "zstd_level = 9", 1),
    )
    .expect("write config");
    let out = status(&artifacts, &data, &changed);
    assert!(
        line(&out, "ingest").ends_with(" stale (settings or version changed)"),
        "{out}"
    );

    // Changed data: stale, naming the input.
    let label = data.join("FER2013Valid/label.csv");
    std::fs::write(&label, "fer0000001.png,(0,0,48,48),0,10,0,0,0,0,0,0,0,0\n").expect("edit");
    let out = status(&artifacts, &data, &config);
    assert!(
        line(&out, "ingest").ends_with(" stale (input FER2013Valid/label.csv changed)"),
        "{out}"
    );

    // A deleted output: stale.
    std::fs::write(&label, "fer0000000.png,(0,0,48,48),10,0,0,0,0,0,0,0,0,0\n").expect("restore");
    std::fs::remove_file(layout.ingest_split(Split::Test)).expect("rm");
    let out = status(&artifacts, &data, &config);
    assert!(
        line(&out, "ingest").ends_with(" stale (output test.parquet missing)"),
        "{out}"
    );
}

#[test]
fn manifests_record_hashes_key_and_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = fake_data(dir.path());
    let layout = Layout::new(dir.path().join("art"), "smoke");
    let settings = PipelineFile::load(&repo().join("pipeline.toml"))
        .expect("pipeline.toml")
        .settings("smoke")
        .expect("smoke");
    fake_ingest(&layout, &data, &settings);
    let m = plan::read_manifest(&layout.stage_dir(Stage::Ingest))
        .expect("read")
        .expect("exists");
    assert_eq!(m.key.len(), 64);
    assert!(!m.git_commit.is_empty());
    let files: Vec<&str> = m.input_hashes.iter().map(|h| h.file.as_str()).collect();
    assert!(files.contains(&"FER2013Train/label.csv"), "{files:?}");
    assert!(files.contains(&"FER2013Test/*.png (1 files)"), "{files:?}");
    let (sha, bytes) = plan::sha256_file(&data.join("FER2013Train/label.csv")).expect("hash");
    let h = &m.input_hashes[0];
    assert_eq!((h.sha256.as_str(), h.bytes), (sha.as_str(), bytes));
    // The key depends on the settings.
    let mut other = settings.ingest.clone();
    other.max_per_split = Some(7);
    let changed = plan::ingest(&layout, &data, &other).check().expect("check");
    assert_ne!(changed.key.as_deref(), Some(m.key.as_str()));
    assert!(matches!(changed.freshness, Freshness::Stale(_)));
}

#[test]
fn inputs_of_another_profile_or_schema_are_refused_with_the_recipe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = fake_data(dir.path());
    let settings = PipelineFile::load(&repo().join("pipeline.toml"))
        .expect("pipeline.toml")
        .settings("smoke")
        .expect("smoke");
    // Ingest made for profile `cpu`, copied into the smoke profile's folder.
    let cpu = Layout::new(dir.path().join("art"), "cpu");
    fake_ingest(&cpu, &data, &settings);
    let smoke = Layout::new(dir.path().join("art"), "smoke");
    std::fs::create_dir_all(smoke.stage_dir(Stage::Ingest)).expect("mkdir");
    for entry in std::fs::read_dir(cpu.stage_dir(Stage::Ingest)).expect("ls") {
        let entry = entry.expect("entry");
        std::fs::copy(
            entry.path(),
            smoke.stage_dir(Stage::Ingest).join(entry.file_name()),
        )
        .expect("copy");
    }
    let arch = settings.train.archs[0];
    let method = settings.train.methods[0];
    let err = plan::train(&smoke, &settings, arch, method)
        .check()
        .expect_err("profile mismatch")
        .to_string();
    assert!(err.contains("train.parquet"), "{err}");
    assert!(
        err.contains("profile `cpu`") && err.contains("just ingest"),
        "{err}"
    );

    // Another schema version.
    let manifest = Layout::manifest_in(&smoke.stage_dir(Stage::Ingest));
    let mut m = plan::read_manifest(&smoke.stage_dir(Stage::Ingest))
        .expect("read")
        .expect("exists");
    m.profile = "smoke".into();
    m.schema_version += 1;
    std::fs::write(&manifest, serde_json::to_vec(&m).expect("json")).expect("write");
    let err = plan::analyze(&smoke, &settings)
        .check()
        .expect_err("schema mismatch")
        .to_string();
    assert!(
        err.contains("schema version") && err.contains("just ingest"),
        "{err}"
    );
}

/// A stage's manifest entries come from the plan's outputs: a file the layout gives is named
/// relative to the plan's folder, and a file the plan does not list (a layout that disagreed
/// with the plan) is an error naming it, not a silently wrong manifest.
#[test]
fn manifest_outputs_come_from_the_plan() {
    use ferbayes_core::{Arch, Method};
    let file = PipelineFile::load(&repo().join("pipeline.toml")).expect("pipeline.toml");
    let settings = file.settings("smoke").expect("smoke");
    let layout = Layout::new("/tmp/artifacts-of-a-test", "smoke");
    let p = plan::train(&layout, &settings, Arch::Vgg16, Method::Ensemble);
    let out = p
        .output(&layout.member_weights(Arch::Vgg16, Method::Ensemble, 2), 1)
        .expect("member 2 is an output");
    assert_eq!((out.file.as_str(), out.rows), ("member-02.safetensors", 1));
    let history = p
        .output(&layout.history(Arch::Vgg16, Method::Ensemble), 6)
        .expect("history");
    assert_eq!(history.file, "history.parquet");
    let beyond = layout.member_weights(
        Arch::Vgg16,
        Method::Ensemble,
        settings.train.ensemble_members,
    );
    let err = p.output(&beyond, 1).expect_err("not an output").to_string();
    assert!(
        err.contains("member-03.safetensors") && err.contains("not among the outputs"),
        "{err}"
    );
    let elsewhere = layout.history(Arch::AlexNet, Method::Ensemble);
    let err = p
        .output(&elsewhere, 1)
        .expect_err("other folder")
        .to_string();
    assert!(err.contains("lies outside"), "{err}");
}

/// `ferbayes-status` with extra flags and a kernel environment of its own (the `FER_*` kernel
/// variables of this process removed first).
fn status_with(artifacts: &Path, data: &Path, flags: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferbayes-status"));
    c.args(["--profile", "smoke", "--config"])
        .arg(repo().join("pipeline.toml"))
        .arg("--artifacts")
        .arg(artifacts)
        .arg("--data")
        .arg(data)
        .args(flags)
        .env("RUST_LOG", "warn");
    for name in [
        "FER_REFERENCE_OPS",
        "FER_WINOGRAD",
        "FER_SIMD",
        "FER_TF32",
        "FER_DEVICE",
    ] {
        c.env_remove(name);
    }
    c.envs(env.iter().copied());
    let out = c.output().expect("run ferbayes-status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Artifacts made with other kernels than train and infer would run now get a line each (the
/// stage states are untouched: kernels are provenance); `--kernels` beats the `FER_*` fallbacks,
/// and on a GPU's device ops TF32 counts too.
#[test]
fn status_names_artifacts_made_with_other_kernels_than_the_current_setting() {
    use ferbayes_core::manifest::Manifest;
    use ferbayes_core::{Arch, Method};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = fake_data(dir.path());
    let artifacts = dir.path().join("artifacts");
    let settings = PipelineFile::load(&repo().join("pipeline.toml"))
        .expect("pipeline.toml")
        .settings("smoke")
        .expect("smoke");
    let layout = Layout::new(&artifacts, "smoke");
    let (arch, method) = (Arch::AlexNet, Method::McDropout);
    // infer: its manifest's machine ran im2col on the CPU.
    let infer = plan::infer(&layout, &settings, arch, method);
    let mut m = Manifest::start("infer", "smoke", serde_json::json!({}));
    m.machine = ferbayes_core::machine::Machine::detect();
    m.machine.kernels.insert("backend".into(), "im2col".into());
    m.finish(&Layout::manifest_in(&infer.dir))
        .expect("manifest");
    // train: written on a CPU, its member trained on a GPU's device ops without TF32.
    let train = plan::train(&layout, &settings, arch, method);
    let gpu = "NVIDIA H100 (x86_64), 16 logical cores, 16 threads (candle unset), device \
               cuda:0; kernels: backend: device on cuda:0; gpu: ferbayes device ops (CUDA); \
               cuDNN 9.8.0; conv forward IMPLICIT_PRECOMP_GEMM; TF32 off";
    let mut m = Manifest::start(
        "train",
        "smoke",
        serde_json::json!({"trained_on": [{"machine": gpu, "members": [0]}]}),
    );
    m.machine = ferbayes_core::machine::Machine::detect();
    m.machine
        .kernels
        .insert("backend".into(), "winograd".into());
    m.finish(&Layout::manifest_in(&train.dir))
        .expect("manifest");

    let notes = |out: &str, label: &str| -> Option<String> {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{label}: made with ")))
            .map(|n| format!("made with {n}"))
    };
    let (t, i) = ("train alexnet/mc_dropout", "infer alexnet/mc_dropout");
    let rounding = "results can differ at rounding level";

    // The CPU's default, winograd.
    let out = status_with(&artifacts, &data, &[], &[]);
    assert_eq!(
        notes(&out, i).as_deref(),
        Some(
            format!("made with kernels im2col, the current setting is winograd: {rounding}")
                .as_str()
        ),
        "{out}"
    );
    assert_eq!(
        notes(&out, t).as_deref(),
        Some(
            format!("made with kernels device, the current setting is winograd: {rounding}")
                .as_str()
        ),
        "{out}"
    );
    // The table itself is the plans' checks, whatever the kernels.
    assert!(!line(&out, t).contains("made with"), "{out}");
    // FER_WINOGRAD=0: im2col, as infer's; the flag beats it.
    let out = status_with(&artifacts, &data, &[], &[("FER_WINOGRAD", "0")]);
    assert_eq!(notes(&out, i), None, "{out}");
    assert!(notes(&out, t).is_some_and(|n| n.ends_with("setting is im2col: results can differ at rounding level")), "{out}");
    let out = status_with(
        &artifacts,
        &data,
        &["--kernels", "winograd"],
        &[("FER_WINOGRAD", "0")],
    );
    assert!(
        notes(&out, i).is_some_and(|n| n.contains("current setting is winograd")),
        "{out}"
    );
    // FER_REFERENCE_OPS=1: reference.
    let out = status_with(&artifacts, &data, &[], &[("FER_REFERENCE_OPS", "1")]);
    assert!(
        notes(&out, i).is_some_and(|n| n.contains("current setting is reference")),
        "{out}"
    );
    // On the GPU (device ops): the train member agrees until TF32 is allowed.
    let out = status_with(&artifacts, &data, &["--device", "cuda"], &[]);
    assert_eq!(notes(&out, t), None, "{out}");
    assert!(
        notes(&out, i).is_some_and(|n| n.contains("current setting is device")),
        "{out}"
    );
    for (flags, env) in [
        (&["--device", "cuda", "--tf32"][..], &[][..]),
        (&["--device", "cuda"][..], &[("FER_TF32", "1")][..]),
    ] {
        let out = status_with(&artifacts, &data, flags, env);
        assert!(
            notes(&out, t).is_some_and(
                |n| n.starts_with("made with TF32 off, the current setting is TF32 on")
            ),
            "{out}"
        );
    }
}
