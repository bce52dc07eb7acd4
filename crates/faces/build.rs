//! Embeds rustface's face-detection model, `model/seeta_fd_frontal_v1.0.bin`, which ships inside
//! the rustface package: the package folder comes from `cargo metadata --offline` (this build's
//! own lock file and sources, vendored or not), with the Cargo registry's source folders as a
//! fallback. The file is copied to `$OUT_DIR/seeta_fd_frontal_v1.0.bin` for `include_bytes!`.

use std::path::{Path, PathBuf};
use std::process::Command;

const MODEL: &str = "model/seeta_fd_frontal_v1.0.bin";

fn from_metadata() -> Option<PathBuf> {
    let cargo = std::env::var_os("CARGO")?;
    let manifest = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR")?).join("Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--offline",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    json["packages"].as_array()?.iter().find_map(|p| {
        (p["name"] == "rustface")
            .then(|| p["manifest_path"].as_str())
            .flatten()
            .and_then(|m| Path::new(m).parent().map(|d| d.join(MODEL)))
    })
}

fn from_registry() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(home.join("registry/src"))
        .ok()?
        .flatten()
        .flat_map(|index| {
            std::fs::read_dir(index.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|p| p.file_name().to_string_lossy().starts_with("rustface-"))
        .map(|p| p.path().join(MODEL))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let model = from_metadata()
        .filter(|p| p.is_file())
        .or_else(from_registry)
        .unwrap_or_else(|| {
            panic!("cannot find rustface's {MODEL} (run `cargo fetch` so the rustface package is downloaded)")
        });
    println!("cargo:rerun-if-changed={}", model.display());
    let out =
        Path::new(&std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("seeta_fd_frontal_v1.0.bin");
    std::fs::copy(&model, &out)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", model.display(), out.display()));
}
