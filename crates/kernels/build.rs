//! With the `cuda` feature: compiles `src/device/kernels.cu` to PTX with the CUDA toolkit's nvcc
//! (`$NVCC`, else `$CUDA_ROOT/bin/nvcc`, `$CUDA_PATH/bin/nvcc`, `$CUDA_HOME/bin/nvcc`, else `nvcc`
//! on the PATH), for `compute_$CUDA_COMPUTE_CAP` (default 80: the PTX is compiled for the GPU
//! at hand when first loaded, so it runs on every GPU from Ampere on). `-fmad=false`: no
//! multiply-add contraction, the kernels' arithmetic rounded as written (see kernels.cu).
//! Without the feature it does nothing: the CPU build needs no CUDA toolkit.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/device/kernels.cu");
    for var in [
        "NVCC",
        "CUDA_ROOT",
        "CUDA_PATH",
        "CUDA_HOME",
        "CUDA_COMPUTE_CAP",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let nvcc = std::env::var_os("NVCC")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            ["CUDA_ROOT", "CUDA_PATH", "CUDA_HOME"]
                .iter()
                .filter_map(std::env::var_os)
                .map(|root| PathBuf::from(root).join("bin").join("nvcc"))
                .find(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from("nvcc"))
        });
    let cap = std::env::var("CUDA_COMPUTE_CAP")
        .ok()
        .map(|c| c.trim().replace('.', ""))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "80".to_owned());
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("ferbayes_kernels.ptx");
    let status = Command::new(&nvcc)
        .args(["-ptx", "-O3", "-fmad=false", "-std=c++17"])
        .arg(format!("-arch=compute_{cap}"))
        .arg("src/device/kernels.cu")
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "ferbayes-kernels (feature cuda): cannot run nvcc `{}` ({e}); install the CUDA \
                 toolkit or set NVCC / CUDA_ROOT",
                nvcc.display()
            )
        });
    assert!(
        status.success(),
        "ferbayes-kernels (feature cuda): nvcc failed on src/device/kernels.cu ({status})"
    );
}
