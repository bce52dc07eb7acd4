# ferbayes: `just` lists the recipes; `just all` reproduces the study for $FER_PROFILE (default cpu).
#
# Every stage honours FER_PROFILE, FER_DATA and FER_ARTIFACTS (see README.md); extra arguments
# after a recipe name go to its binary, e.g. `just ingest --max-per-split 100`.

set positional-arguments := false

# candle's CPU matmul re-reads /proc/cpuinfo on every call unless the thread count is given.
export RAYON_NUM_THREADS := env("RAYON_NUM_THREADS", num_cpus())

# FER_CARGO_FEATURES=avx512: every recipe (all, train, infer, submit, predict, explore, bench,
# verify) builds and runs the binaries with gemm's AVX-512 kernels, in their own target folder
# (target/avx512), so the default build stays as it is. Off by default: on CPUs where it pays
# (AMD Zen 5, not Zen 4) it is faster, and its results differ from the default build's at
# rounding level (README, "AVX-512").
features := env("FER_CARGO_FEATURES", "")
target_dir := if features == "" { "" } else { "--target-dir " + env("CARGO_TARGET_DIR", "target") + "/" + features + " " }
with_features := if features == "" { "" } else { "--features " + features + " " }
cargo := "cargo run --release --quiet " + target_dir + "--bin"
# The binaries on the kernels (train, infer, the ferbayes command), with the features.
kcargo := "cargo run --release --quiet " + target_dir + with_features + "--bin"

# List the recipes.
default:
    @just --list --unsorted

# Run every stage the profile lists, in order.
all: ingest train infer analyze

# FER+ (FER_DATA) to artifacts/<profile>/ingest/{train,valid,test}.parquet.
ingest *ARGS:
    {{cargo}} ferbayes-ingest -- {{ARGS}}

# On the CPU, FER_TRAIN_JOBS processes (default: one per core) each train every N-th member on one
# core, which beats one process on all cores for the small cpu-profile networks (1.7x in one probe
# while another job held some CPU, about 1.5x on a quiet machine); a last pass (`--finish`, which
# trains nothing) then writes each combination's history and manifest. `--force` goes to both:
# the shards retrain their members, the last pass rewrites the histories and manifests. With `device = "cuda"` (or FER_DEVICE=cuda) it builds and
# runs the CUDA binary (FER_CUDA_FEATURES: cudnn, the default, or cuda; its own target folder),
# one process unless FER_TRAIN_JOBS says more (processes sharing the GPU).
# Train the profile's architectures x methods; e.g. `just train --arch vgg16 --method ensemble`.
train *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    device="$({{cargo}} ferbayes-status -- --print-device)"
    if [ "$device" = cuda ]; then
        run=(cargo run --release --quiet --target-dir "${CARGO_TARGET_DIR:-target}/cuda" \
            --features "ferbayes-train/${FER_CUDA_FEATURES:-cudnn}" --bin ferbayes-train --)
        jobs="${FER_TRAIN_JOBS:-1}"
    else
        run=({{kcargo}} ferbayes-train --)
        jobs="${FER_TRAIN_JOBS:-{{num_cpus()}}}"
    fi
    if [ "$jobs" -le 1 ]; then exec "${run[@]}" {{ARGS}}; fi
    "${run[@]}" --help > /dev/null
    pids=()
    for k in $(seq 0 $((jobs - 1))); do
        if [ "$device" = cuda ]; then
            "${run[@]}" --shard "$k/$jobs" {{ARGS}} &
        else
            RAYON_NUM_THREADS=1 "${run[@]}" --shard "$k/$jobs" {{ARGS}} &
        fi
        pids+=($!)
    done
    status=0
    for p in "${pids[@]}"; do wait "$p" || status=$?; done
    if [ "$status" -ne 0 ]; then exit "$status"; fi
    "${run[@]}" --finish {{ARGS}}

# On the profile's device, as `just train` (the CUDA binary for `cuda`).
# T stochastic passes / N members per valid and test face, cached as probability tables.
infer *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ "$({{cargo}} ferbayes-status -- --print-device)" = cuda ]; then
        exec cargo run --release --quiet --target-dir "${CARGO_TARGET_DIR:-target}/cuda" \
            --features "ferbayes-infer/${FER_CUDA_FEATURES:-cudnn}" --bin ferbayes-infer -- {{ARGS}}
    fi
    exec {{kcargo}} ferbayes-infer -- {{ARGS}}

# Metrics vs n, the study's figures and ours, and analyze/report.{html,md}.
analyze *ARGS:
    {{cargo}} ferbayes-analyze -- {{ARGS}}

# The profile's chain as Slurm jobs (sbatch arrays with afterok dependencies; settings in the
# [slurm] tables of pipeline.toml); e.g. `just submit --dry-run`, `just submit --wait`.
submit *ARGS:
    cargo build --release --quiet {{target_dir}}--bin ferbayes-ingest --bin ferbayes-analyze
    cargo build --release --quiet {{target_dir}}{{with_features}}--bin ferbayes-train --bin ferbayes-infer
    {{cargo}} ferbayes-submit -- {{ARGS}}

# Which stages (and arch x method) of the profile are up to date, stale (and why) or missing.
status *ARGS:
    {{cargo}} ferbayes-status -- {{ARGS}}

# Find the faces in your photos and predict each one's emotion, e.g. `just predict me.jpg --arch alexnet`.
predict *ARGS:
    {{kcargo}} ferbayes -- predict {{ARGS}}

# A local web page over the profile's artifacts and your photos (read-only), on
# http://127.0.0.1:7878/ unless `--listen` says otherwise; e.g. `just explore --listen 127.0.0.1:8000`.
explore *ARGS:
    {{kcargo}} ferbayes -- explore {{ARGS}}

# The test suite (what CI runs): every crate, optimised build.
test:
    cargo test --release --workspace

# The smoke chain (FER_PROFILE=smoke) twice into fresh temporary roots (kept, and named, when
# anything fails), then every Parquet table, weight file and manifest compared by ferbayes-compare.
# Reproducibility check: do two runs agree bit for bit? Exit status 1 naming what differs.
verify:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release --quiet {{target_dir}}--bin ferbayes-ingest --bin ferbayes-analyze --bin ferbayes-compare
    cargo build --release --quiet {{target_dir}}{{with_features}}--bin ferbayes-train --bin ferbayes-infer
    tmp="$(mktemp -d -t ferbayes-verify.XXXXXX)"
    start=$SECONDS
    for run in a b; do
        echo "verify: smoke chain, run $run of 2 into $tmp/$run" >&2
        if ! FER_PROFILE=smoke FER_ARTIFACTS="$tmp/$run" "{{just_executable()}}" --justfile "{{justfile()}}" all > "$tmp/$run.log" 2>&1; then
            tail -n 40 "$tmp/$run.log" >&2
            echo "verify: run $run failed; its log and artifacts are in $tmp" >&2
            exit 1
        fi
    done
    if ! {{cargo}} ferbayes-compare -- "$tmp/a/smoke" "$tmp/b/smoke"; then
        echo "verify: the two runs differ; both are kept in $tmp" >&2
        exit 1
    fi
    rm -rf "$tmp"
    echo "verify: the two runs agree ($((SECONDS - start)) s)" >&2

# On a CPU without AVX-512F the `avx512` build falls back to the same AVX2 kernels, so its smoke
# chain must be bit for bit the default build's: both chains into fresh roots, every Parquet table
# and weight file compared (ferbayes-compare). On an AVX-512 CPU the builds differ by design, and
# the recipe says it skipped and why.
# The avx512 build gives the default build's results where the CPU has no AVX-512.
verify-avx512:
    #!/usr/bin/env bash
    set -euo pipefail
    if grep -qw avx512f /proc/cpuinfo; then
        echo "verify-avx512: skipped: this CPU has AVX-512F, where the avx512 build runs gemm's AVX-512 kernels and rounds differently by design (README, AVX-512)" >&2
        exit 0
    fi
    tmp="$(mktemp -d -t ferbayes-avx512.XXXXXX)"
    for build in default avx512; do
        features=""; [ "$build" = avx512 ] && features=avx512
        echo "verify-avx512: smoke chain with the $build build into $tmp/$build" >&2
        if ! FER_CARGO_FEATURES="$features" FER_PROFILE=smoke FER_ARTIFACTS="$tmp/$build" "{{just_executable()}}" --justfile "{{justfile()}}" all > "$tmp/$build.log" 2>&1; then
            tail -n 40 "$tmp/$build.log" >&2
            echo "verify-avx512: the $build chain failed; its log and artifacts are in $tmp" >&2
            exit 1
        fi
    done
    if ! {{cargo}} ferbayes-compare -- "$tmp/default/smoke" "$tmp/avx512/smoke"; then
        echo "verify-avx512: the avx512 build's results differ on a CPU without AVX-512; both are kept in $tmp" >&2
        exit 1
    fi
    rm -rf "$tmp"
    echo "verify-avx512: the avx512 build gives the default build's results bit for bit (no AVX-512F on this CPU)" >&2

# The train table sets ferbayes against PyTorch CPU (bench/torch_reference.py), installed from
# PyPI on first use into target/bench-venv; FER_BENCH_TORCH=0 skips PyTorch, FER_BENCH_PYTHON
# picks a Python that already has torch.
# Benchmarks on the real data; prints one table per benchmark (train: ferbayes vs PyTorch CPU).
bench:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo bench --quiet -p ferbayes-ingest --bench ingest
    cargo bench --quiet {{target_dir}}{{with_features}}-p ferbayes-infer --bench infer
    RAYON_NUM_THREADS=1 cargo bench --quiet {{target_dir}}{{with_features}}-p ferbayes-predict --bench predict
    # ferbayes explore on loopback: 8 clients for 30 s against the faces page and the photo API
    # (FER_BENCH_SECONDS to shorten), then malformed uploads and traversal attempts.
    cargo bench --quiet {{target_dir}}{{with_features}}-p ferbayes-explore --bench load
    cargo bench --quiet {{target_dir}}{{with_features}}-p ferbayes-kernels --bench conv
    # Training speed against PyTorch, both measured twice and interleaved (PyTorch, ferbayes,
    # PyTorch, ferbayes); the final table takes each side's fastest (see benches/train.rs).
    dir="$PWD/target/bench"
    mkdir -p "$dir"
    rm -f "$dir"/torch-1.json "$dir"/torch-2.json "$dir"/ferbayes-rates.json
    export FER_BENCH_RESULTS="$dir/ferbayes-rates.json"
    if [ "${FER_BENCH_TORCH:-1}" != 0 ]; then
        py="${FER_BENCH_PYTHON:-target/bench-venv/bin/python}"
        if ! "$py" -c 'import torch' 2>/dev/null; then
            echo "installing PyTorch (CPU use) into target/bench-venv ..." >&2
            python3 -m venv target/bench-venv
            target/bench-venv/bin/pip install --quiet torch numpy
            py=target/bench-venv/bin/python
        fi
        "$py" bench/torch_reference.py "$dir/torch-1.json"
        FER_TORCH_BENCH="$dir/torch-1.json" cargo bench --quiet {{target_dir}}{{with_features}}-p ferbayes-train --bench train \
            > "$dir/train-round-1.md"
        echo "round 1 of 2 done (its table: target/bench/train-round-1.md)" >&2
        "$py" bench/torch_reference.py "$dir/torch-2.json"
        export FER_TORCH_BENCH="$dir/torch-1.json:$dir/torch-2.json"
    fi
    cargo bench --quiet {{target_dir}}{{with_features}}-p ferbayes-train --bench train

# Needs the CUDA toolkit, cuDNN and a Python with torch (FER_BENCH_PYTHON, default python3);
# FER_BENCH_ONLY picks rows (default the paper sizes). ferbayes' packed rows (a pack of
# FER_BENCH_PACK members against one at a time) are on, PyTorch's off (FER_BENCH_PACKED=1).
# On a machine without a Rust toolchain:
# `just gpu-build` elsewhere, then `bash gpu/run.sh bench` here (gpu/README.md).
# The train bench on the first GPU next to PyTorch on the same GPU (FP32, TF32 off), ms per step.
bench-gpu:
    #!/usr/bin/env bash
    set -euo pipefail
    dir="$PWD/target/bench-gpu"
    mkdir -p "$dir"
    rm -f "$dir"/torch.json "$dir"/ferbayes-rates.json
    export FER_BENCH_DEVICE=cuda FER_BENCH_RESULTS="$dir/ferbayes-rates.json"
    export FER_BENCH_ONLY="${FER_BENCH_ONLY:-paper/alexnet,paper/vgg16,paper/densenet121}"
    FER_BENCH_PACKED="${FER_BENCH_PACKED:-0}" "${FER_BENCH_PYTHON:-python3}" \
        bench/torch_reference.py "$dir/torch.json"
    FER_TORCH_BENCH="$dir/torch.json" cargo bench --quiet \
        --target-dir "${CARGO_TARGET_DIR:-target}/cuda" -p ferbayes-train \
        --features "ferbayes-train/${FER_CUDA_FEATURES:-cudnn}" --bench train

# For a GPU machine without a Rust toolchain (see gpu/README.md; FER_GPU_FEATURES=cuda|cudnn).
# CUDA build of the binaries and the train bench on a machine without a GPU.
gpu-build:
    bash gpu/build.sh

# Formatting and lints.
lint:
    cargo fmt --all --check
    cargo clippy --release --workspace --all-targets -- -D warnings
