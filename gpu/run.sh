#!/usr/bin/env bash
# The CUDA build of gpu/build.sh on a GPU machine without a Rust toolchain. Run from the
# repository root:
#   bash gpu/run.sh          the CUDA kernels checked against their CPU twins, the smoke
#                            profile trained and inferred with --device cuda, one combination
#                            timed on cuda and on the CPU; logs and small outputs to $OUT
#   bash gpu/run.sh bench    the GPU train bench (FER_BENCH_DEVICE=cuda) next to PyTorch on the
#                            same GPU (bench/torch_reference.py; needs a Python with torch)
# Needs gpu/bin/*.xz (gpu/build.sh), pipeline.toml, and for the smoke run
# artifacts/smoke/ingest/*.parquet (copied there).
#
# The binaries need libcuda.so.1 (the driver), libcudart.so.13, libcublas.so.13,
# libcublasLt.so.13, libcurand.so.10 and, for a cudnn build, libcudnn.so.9: FER_CUDA_LIB_PATH
# (folders separated by ':') names where they are; without it they are looked for in the NVIDIA
# wheels of `$PYTHON` (default python3), e.g. a PyTorch installation's.
set -euo pipefail

MODE="${1:-smoke}"
OUT="${OUT:-$PWD/gpu-out}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
TEE_PID=$!

BIN="${FER_GPU_BIN:-/tmp/ferbayes-gpu-bin}"
STEP_TIMEOUT="${STEP_TIMEOUT:-240}"   # seconds per step, so a hang still leaves time to collect
CURRENT="start"

collect() {
    local rc=$?
    set +e
    echo "== collect outputs into $OUT"
    for root in artifacts-gpu artifacts-gpu-one artifacts-cpu; do
        [ -d "$root" ] || continue
        find "$root" \( -path "*/train/*/*/history.parquet" -o -path "*/train/*/*/manifest.json" \
            -o -path "*/infer/*/*/*.parquet" -o -path "*/infer/*/*/manifest.json" \) -print0 |
            while IFS= read -r -d '' f; do
                mkdir -p "$OUT/$(dirname "$f")" && cp "$f" "$OUT/$f"
            done
    done
    if [ "$rc" -ne 0 ]; then
        echo "!! FAILED at step: $CURRENT (exit $rc)"
    else
        echo "== all steps passed"
    fi
    exec >&- 2>&-   # let tee finish writing log.txt before the script ends
    wait "$TEE_PID" 2>/dev/null
    exit "$rc"
}
trap collect EXIT

step() {
    CURRENT="$1"
    shift
    echo
    echo "== [$(date -u +%H:%M:%S)] $CURRENT"
}

step "decompress binaries to $BIN"
[ -f gpu/bin/ferbayes-train.xz ] || { echo "!! gpu/bin/*.xz missing: run 'just gpu-build' on a machine with a Rust toolchain"; exit 1; }
mkdir -p "$BIN"
for f in gpu/bin/*.xz; do
    name="$(basename "$f" .xz)"
    if command -v xz >/dev/null; then
        xz -dc "$f" > "$BIN/$name"
    else
        "$PYTHON" -c 'import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' "$f" > "$BIN/$name"
    fi
    chmod +x "$BIN/$name"
done
ls -l "$BIN"

step "library path"
LIBS="${FER_CUDA_LIB_PATH:-}"
if [ -z "$LIBS" ]; then
    # The NVIDIA wheels of $PYTHON (nvidia/*/lib and nvidia/cu13/lib), if it has them.
    LIBS="$("$PYTHON" - <<'EOF' 2>/dev/null || true
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
dirs = set()
for root in nvidia.__path__:
    for lib in glob.glob(os.path.join(root, "**", "lib*.so*"), recursive=True):
        dirs.add(os.path.dirname(lib))
print(":".join(sorted(dirs)))
EOF
)"
fi
if [ -z "$LIBS" ]; then
    echo "!! no CUDA libraries found: set FER_CUDA_LIB_PATH to the folders holding libcudart.so.13,"
    echo "   libcublas.so.13, libcublasLt.so.13, libcurand.so.10 (and libcudnn.so.9 for a cudnn build),"
    echo "   or PYTHON to a Python whose NVIDIA wheels have them (e.g. a PyTorch environment's)"
    exit 1
fi
export LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "FER_CUDA_LIB_PATH=$LIBS"
if ldd "$BIN"/* | grep "not found"; then
    echo "!! a library the binaries need is missing (see 'not found' above): set FER_CUDA_LIB_PATH"
    exit 1
fi

step "GPU"
nvidia-smi -L
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
echo "build features: $(cat gpu/bin/features 2>/dev/null || echo unknown)"

export RUST_BACKTRACE=1 FER_CONFIG="$PWD/pipeline.toml"

if [ "$MODE" = bench ]; then
    step "ferbayes train bench on cuda"
    FER_BENCH_DEVICE=cuda FER_BENCH_ONLY="${FER_BENCH_ONLY:-paper/alexnet,paper/vgg16,paper/densenet121}" \
        FER_BENCH_RESULTS="$OUT/ferbayes-rates.json" timeout -k 10 "$STEP_TIMEOUT" \
        "$BIN/train-bench" --bench > "$OUT/train-bench-1.md"
    step "PyTorch on cuda"
    FER_BENCH_DEVICE=cuda FER_BENCH_PACKED="${FER_BENCH_PACKED:-0}" \
        FER_BENCH_ONLY="${FER_BENCH_ONLY:-paper/alexnet,paper/vgg16,paper/densenet121}" \
        timeout -k 10 "$STEP_TIMEOUT" "$PYTHON" bench/torch_reference.py "$OUT/torch-cuda.json"
    step "ferbayes train bench on cuda, with the PyTorch rows"
    FER_BENCH_DEVICE=cuda FER_BENCH_ONLY="${FER_BENCH_ONLY:-paper/alexnet,paper/vgg16,paper/densenet121}" \
        FER_BENCH_RESULTS="$OUT/ferbayes-rates.json" FER_TORCH_BENCH="$OUT/torch-cuda.json" \
        timeout -k 10 "$STEP_TIMEOUT" "$BIN/train-bench" --bench | tee "$OUT/train-bench.md"
    exit 0
fi

step "CUDA kernels against their CPU twins, and whole networks on the GPU against the CPU"
timeout -k 10 "$STEP_TIMEOUT" "$BIN/kernels-tests" cuda_ops_match_their_cpu_twins --nocapture
timeout -k 10 "$STEP_TIMEOUT" "$BIN/models-tests" device_ops_on_a_gpu --nocapture

step "binaries start"
"$BIN/ferbayes-train" --version
"$BIN/ferbayes-infer" --version
"$BIN/ferbayes" --version

step "prepare artifact roots from artifacts/smoke/ingest"
[ -f artifacts/smoke/ingest/train.parquet ] || { echo "!! artifacts/smoke/ingest/*.parquet was not copied here"; exit 1; }
rm -rf artifacts-gpu artifacts-gpu-one artifacts-cpu
for root in artifacts-gpu artifacts-gpu-one artifacts-cpu; do
    mkdir -p "$root/smoke" && cp -r artifacts/smoke/ingest "$root/smoke/"
done

export FER_PROFILE=smoke

step "train, all archs x methods, --device cuda"
time FER_ARTIFACTS=artifacts-gpu timeout -k 10 "$STEP_TIMEOUT" "$BIN/ferbayes-train" --device cuda

step "infer, --device cuda"
time FER_ARTIFACTS=artifacts-gpu timeout -k 10 "$STEP_TIMEOUT" "$BIN/ferbayes-infer" --device cuda

step "train alexnet/ensemble only, --device cuda (for the CPU comparison)"
time FER_ARTIFACTS=artifacts-gpu-one timeout -k 10 "$STEP_TIMEOUT" \
    "$BIN/ferbayes-train" --device cuda --arch alexnet --method ensemble

step "train alexnet/ensemble only, --device cpu ($(nproc) cores)"
time FER_ARTIFACTS=artifacts-cpu timeout -k 10 "$STEP_TIMEOUT" \
    "$BIN/ferbayes-train" --device cpu --arch alexnet --method ensemble
