#!/usr/bin/env bash
# CUDA build of the ferbayes binaries (ferbayes-train, ferbayes-infer, ferbayes) and of the train
# bench on a machine without a GPU, for a GPU machine with driver 580 (CUDA 13.0) and no Rust
# toolchain. Writes stripped, xz-compressed executables to gpu/bin/. Run from the repository
# root: `just gpu-build`.
#
# FER_GPU_FEATURES picks the build: `cudnn` (default: convolutions through cuDNN) or `cuda`
# (candle's convolutions). CUDA_COMPUTE_CAP (default 90: H100/H200) is the GPU generation the
# kernels are compiled for.
#
# Compiler, headers and libraries come from PyPI, pinned to CUDA 13.0 (newer nvcc emits PTX a
# 13.0 driver may not load). candle links cudarc against libcuda, which no wheel ships: a
# link-time stub (never shipped; the driver provides the real one) defines the cu* symbols; it is
# generated from cudarc's sources, which `cargo fetch` brings first.
set -euo pipefail

WORK="${CUDA_WORK:-/tmp/ferbayes-cuda}"
TARGET="${CARGO_TARGET_DIR:-$WORK/target}"
FEATURES="${FER_GPU_FEATURES:-cudnn}"
case "$FEATURES" in
    cuda | cudnn) ;;
    *) echo "FER_GPU_FEATURES must be cuda or cudnn, not '$FEATURES'" >&2; exit 2 ;;
esac
mkdir -p "$WORK"

# Every crate's sources, cudarc's included (the stub below is read from them).
cargo fetch --locked

if [ ! -x "$WORK/venv/bin/pip" ]; then
    python3 -m venv "$WORK/venv"
fi
"$WORK/venv/bin/pip" install --quiet --disable-pip-version-check nvidia-cuda-nvcc==13.0.88 \
    nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96 \
    nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 \
    nvidia-cuda-nvrtc==13.0.88
if [ "$FEATURES" = cudnn ]; then
    # cuDNN 9 for CUDA 13 (the binary links libcudnn.so.9; any cuDNN 9 serves at run time).
    "$WORK/venv/bin/pip" install --quiet --disable-pip-version-check nvidia-cudnn-cu13==9.28.1.4
fi
SITE="$(echo "$WORK"/venv/lib/python3*/site-packages)"
P="$SITE/nvidia/cu13"
R="$WORK/cuda"
if [ ! -e "$R/lib64/libcuda.so" ]; then
    rm -rf "$R" && mkdir -p "$R/lib64"
    ln -s "$P/bin" "$R/bin"; ln -s "$P/include" "$R/include"; ln -s "$P/nvvm" "$R/nvvm"
    ln -s "$P"/lib/*.so* "$R/lib64/"
    for l in cudart.so.13 cublas.so.13 cublasLt.so.13 curand.so.10 nvrtc.so.13; do
        ln -sf "lib$l" "$R/lib64/lib${l%.so.*}.so"
    done
    registry="$(cargo metadata --format-version 1 --locked --all-features |
        python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"))')"
    grep -ohE "^\s+fn (cu[A-Za-z0-9_]+)\(" "$(dirname "$registry")/src/driver/sys/mod.rs" |
        sed -E 's/^\s+fn (cu[A-Za-z0-9_]+)\(/\1/' | sort -u |
        sed 's/.*/int &(void){return 999;}/' > "$WORK/cuda_stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$R/lib64/libcuda.so.1" "$WORK/cuda_stub.c"
    ln -s libcuda.so.1 "$R/lib64/libcuda.so"
fi
if [ "$FEATURES" = cudnn ] && [ ! -e "$R/lib64/libcudnn.so" ]; then
    ln -sf "$SITE"/nvidia/cudnn/lib/libcudnn*.so.9 "$R/lib64/"
    ln -sf libcudnn.so.9 "$R/lib64/libcudnn.so"
fi

export CUDA_ROOT="$R" CUDA_PATH="$R" CUDA_HOME="$R" PATH="$R/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" CARGO_TARGET_DIR="$TARGET"
export LIBRARY_PATH="$R/lib64${LIBRARY_PATH:+:$LIBRARY_PATH}"
features="ferbayes-train/$FEATURES,ferbayes-infer/$FEATURES,ferbayes/$FEATURES"
cargo build --locked --release -p ferbayes-train -p ferbayes-infer -p ferbayes \
    --features "$features" --bins
# The train bench (`FER_BENCH_DEVICE=cuda`), as an executable the GPU machine can run.
bench="$(cargo bench --locked -p ferbayes-train --features "ferbayes-train/$FEATURES" \
    --bench train --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "train" and m.get("executable"):
        print(m["executable"])')"

# The GPU checks (the CUDA kernels against their CPU twins, whole networks on the GPU against
# the CPU), as test executables: kernels-tests and models-tests.
tests="$(cargo test --locked --release -p ferbayes-kernels -p ferbayes-models \
    --features "ferbayes-models/$FEATURES" --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        name = {"ferbayes_kernels": "kernels-tests", "models": "models-tests"}.get(m["target"]["name"])
        if name:
            print(name, m["executable"])')"

mkdir -p gpu/bin
while read -r name exe; do
    strip -o "$WORK/$name" "$exe"
    xz -T0 -6 -c "$WORK/$name" > "gpu/bin/$name.xz"
done <<< "$tests"
for b in ferbayes-train ferbayes-infer ferbayes; do
    strip -o "$WORK/$b" "$TARGET/release/$b"
    xz -T0 -6 -c "$WORK/$b" > "gpu/bin/$b.xz"
done
strip -o "$WORK/train-bench" "$bench"
xz -T0 -6 -c "$WORK/train-bench" > gpu/bin/train-bench.xz
echo "$FEATURES" > gpu/bin/features
ls -l gpu/bin
