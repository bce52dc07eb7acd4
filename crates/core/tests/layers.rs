//! The workspace's structure, checked from every crate's `Cargo.toml`:
//!
//! - the stage crates (ingest, train, infer, analyze, submit) are leaves: no crate names one in
//!   its `[dependencies]` or `[build-dependencies]` (tests and benches may, through
//!   `[dev-dependencies]`, to run the chain);
//! - every edge between ferbayes crates is one this table allows, so a new edge is a decision
//!   made here and in ARCHITECTURE.md, not an accident of a `use`.

use std::collections::BTreeMap;
use std::path::Path;

/// The stage crates: leaves of the dependency graph.
const STAGES: [&str; 5] = [
    "ferbayes-ingest",
    "ferbayes-train",
    "ferbayes-infer",
    "ferbayes-analyze",
    "ferbayes-submit",
];

/// The ferbayes crates each crate may depend on (normal and build dependencies).
const ALLOWED: [(&str, &[&str]); 15] = [
    ("ferbayes-core", &[]),
    ("ferbayes-kernels", &[]),
    ("ferbayes-uq", &[]),
    ("ferbayes-posterior", &[]),
    ("ferbayes-render", &[]),
    ("ferbayes-faces", &["ferbayes-core"]),
    (
        "ferbayes-models",
        &["ferbayes-core", "ferbayes-kernels", "ferbayes-posterior"],
    ),
    (
        "ferbayes-ingest",
        &["ferbayes-core", "ferbayes-faces", "ferbayes-uq"],
    ),
    (
        "ferbayes-train",
        &[
            "ferbayes-core",
            "ferbayes-models",
            "ferbayes-posterior",
            "ferbayes-uq",
        ],
    ),
    ("ferbayes-infer", &["ferbayes-core", "ferbayes-models"]),
    (
        "ferbayes-analyze",
        &["ferbayes-core", "ferbayes-uq", "ferbayes-render"],
    ),
    ("ferbayes-submit", &["ferbayes-core"]),
    (
        "ferbayes-predict",
        &[
            "ferbayes-core",
            "ferbayes-faces",
            "ferbayes-models",
            "ferbayes-uq",
            "ferbayes-render",
        ],
    ),
    (
        "ferbayes-explore",
        &[
            "ferbayes-core",
            "ferbayes-faces",
            "ferbayes-models",
            "ferbayes-predict",
            "ferbayes-uq",
            "ferbayes-render",
        ],
    ),
    (
        "ferbayes",
        &[
            "ferbayes-core",
            "ferbayes-models",
            "ferbayes-predict",
            "ferbayes-explore",
        ],
    ),
];

/// (package name, ferbayes crates named in `[dependencies]` / `[build-dependencies]`) of every
/// crate under `crates/`.
fn workspace() -> BTreeMap<String, Vec<String>> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&crates).expect("crates/") {
        let manifest = entry.expect("entry").path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let (mut section, mut name, mut deps) = (String::new(), None, Vec::new());
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_owned();
                continue;
            }
            if section == "[package]" && line.starts_with("name") {
                name = line.split('"').nth(1).map(str::to_owned);
            }
            if (section == "[dependencies]" || section == "[build-dependencies]")
                && line.starts_with("ferbayes")
            {
                let dep = line.split(['=', '.', ' ']).next().unwrap_or("").trim();
                deps.push(dep.to_owned());
            }
        }
        let name = name.unwrap_or_else(|| panic!("{} has no package name", manifest.display()));
        out.insert(name, deps);
    }
    out
}

#[test]
fn stage_crates_are_leaves() {
    let graph = workspace();
    assert!(graph.len() >= 15, "found only {:?}", graph.keys());
    for (krate, deps) in &graph {
        for d in deps {
            assert!(
                !STAGES.contains(&d.as_str()),
                "{krate} depends on the stage crate {d}: stages share only artifacts on disk; \
                 move what it needs into a library crate (core, models, uq, faces, render)"
            );
        }
    }
}

#[test]
fn every_edge_between_ferbayes_crates_is_an_allowed_one() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.into_iter().collect();
    for (krate, deps) in workspace() {
        let Some(ok) = allowed.get(krate.as_str()) else {
            panic!("{krate} is not in this test's table: add it, with the crates it may use");
        };
        for d in deps {
            assert!(
                ok.contains(&d.as_str()),
                "{krate} depends on {d}, an edge ARCHITECTURE.md does not draw"
            );
        }
    }
}
