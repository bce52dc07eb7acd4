#!/usr/bin/env bash
# CUDA build of the ferbayes binaries (ferbayes-train, ferbayes-infer, ferbayes) on a machine
# without a GPU, for an H100/H200 machine with driver 580 (CUDA 13.0). Writes stripped,
# xz-compressed binaries to gpu/bin/. Run from the repository root: `just gpu-build`.
#
# Compiler and headers come from PyPI, pinned to CUDA 13.0 (newer nvcc emits PTX a 13.0 driver
# may not load). candle links cudarc against libcuda, which no wheel ships: a link-time stub
# (never shipped; the driver provides the real one) defines the cu* symbols.
set -euo pipefail

WORK="${CUDA_WORK:-/tmp/ferbayes-cuda}"
TARGET="${CARGO_TARGET_DIR:-$WORK/target}"
mkdir -p "$WORK"
if [ ! -x "$WORK/venv/bin/pip" ]; then
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install --quiet nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 \
        nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 \
        nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88
fi
P="$(echo "$WORK"/venv/lib/python3*/site-packages/nvidia/cu13)"
R="$WORK/cuda"
if [ ! -e "$R/lib64/libcuda.so" ]; then
    rm -rf "$R" && mkdir -p "$R/lib64"
    ln -s "$P/bin" "$R/bin"; ln -s "$P/include" "$R/include"; ln -s "$P/nvvm" "$R/nvvm"
    ln -s "$P"/lib/*.so* "$R/lib64/"
    for l in cudart.so.13 cublas.so.13 cublasLt.so.13 curand.so.10 nvrtc.so.13; do
        ln -sf "lib$l" "$R/lib64/lib${l%.so.*}.so"
    done
    grep -ohE "^\s+fn (cu[A-Za-z0-9_]+)\(" ~/.cargo/registry/src/*/cudarc-*/src/driver/sys/mod.rs |
        sed -E 's/^\s+fn (cu[A-Za-z0-9_]+)\(/\1/' | sort -u |
        sed 's/.*/int &(void){return 999;}/' > "$WORK/cuda_stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$R/lib64/libcuda.so.1" "$WORK/cuda_stub.c"
    ln -s libcuda.so.1 "$R/lib64/libcuda.so"
fi

export CUDA_ROOT="$R" CUDA_PATH="$R" CUDA_HOME="$R" PATH="$R/bin:$PATH"
export CUDA_COMPUTE_CAP=90 CARGO_TARGET_DIR="$TARGET"
cargo fetch --locked
cargo build --locked --release -p ferbayes-train -p ferbayes-infer -p ferbayes \
    --features ferbayes-train/cuda,ferbayes-infer/cuda,ferbayes/cuda --bins

mkdir -p gpu/bin
for b in ferbayes-train ferbayes-infer ferbayes; do
    strip -o "$WORK/$b" "$TARGET/release/$b"
    xz -T0 -6 -c "$WORK/$b" > "gpu/bin/$b.xz"
done
ls -l gpu/bin
