#!/usr/bin/env bash
# Smoke run of the CUDA build (gpu/build.sh) on a GPU machine. Run from the repository root:
#   bash gpu/run.sh
# Needs: gpu/bin/*.xz (this folder), pipeline.toml, artifacts/smoke/ingest/*.parquet (copied there).
# Writes gpu-run logs and small outputs to $OUT (default ./gpu-out); full log in $OUT/log.txt.
set -euo pipefail

OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
TEE_PID=$!

CU13_LIB="${CU13_LIB:-/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib}"
BIN=/tmp/fb
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
mkdir -p "$BIN"
for f in gpu/bin/*.xz; do
    name="$(basename "$f" .xz)"
    if command -v xz >/dev/null; then
        xz -dc "$f" > "$BIN/$name"
    else
        python3 -c 'import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' "$f" > "$BIN/$name"
    fi
    chmod +x "$BIN/$name"
done
ls -l "$BIN"

step "library path ($CU13_LIB)"
[ -d "$CU13_LIB" ] || { echo "!! $CU13_LIB does not exist"; exit 1; }
export LD_LIBRARY_PATH="$CU13_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ls "$CU13_LIB"
ldd "$BIN/ferbayes-train" || true
if ldd "$BIN/ferbayes-train" "$BIN/ferbayes-infer" "$BIN/ferbayes" | grep -q "not found"; then
    echo "!! a needed library is missing (see 'not found' above)"
    exit 1
fi

step "GPU"
nvidia-smi -L
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true

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

export FER_PROFILE=smoke RUST_BACKTRACE=1

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
