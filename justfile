# ferbayes: `just` lists the recipes; `just all` reproduces the study for $FER_PROFILE (default cpu).
#
# Every stage honours FER_PROFILE, FER_DATA and FER_ARTIFACTS (see README.md); extra arguments
# after a recipe name go to its binary, e.g. `just ingest --max-per-split 100`.

set positional-arguments := false

# candle's CPU matmul re-reads /proc/cpuinfo on every call unless the thread count is given.
export RAYON_NUM_THREADS := env("RAYON_NUM_THREADS", num_cpus())

cargo := "cargo run --release --quiet --bin"

# List the recipes.
default:
    @just --list --unsorted

# Run every stage the profile lists, in order.
all: ingest train infer analyze

# FER+ (FER_DATA) to artifacts/<profile>/ingest/{train,valid,test}.parquet.
ingest *ARGS:
    {{cargo}} ferbayes-ingest -- {{ARGS}}

# Train the profile's architectures x methods; e.g. `just train --arch vgg16 --method ensemble`.
train *ARGS:
    {{cargo}} ferbayes-train -- {{ARGS}}

# T stochastic passes / N members per valid and test face, cached as probability tables.
infer *ARGS:
    {{cargo}} ferbayes-infer -- {{ARGS}}

# Metrics vs n, the study's figures and ours, and analyze/report.{html,md}.
analyze *ARGS:
    {{cargo}} ferbayes-analyze -- {{ARGS}}

# Which stages (and arch x method) of the profile are up to date, stale (and why) or missing.
status *ARGS:
    {{cargo}} ferbayes-status -- {{ARGS}}

# Predict the emotion of your own face photos, e.g. `just predict me.jpg --arch alexnet`.
predict *ARGS:
    {{cargo}} ferbayes -- predict {{ARGS}}

# The test suite (what CI runs): every crate, optimised build.
test:
    cargo test --release --workspace

# Benchmarks on the real data; prints one table per benchmark.
bench:
    cargo bench --quiet -p ferbayes-ingest --bench ingest
    cargo bench --quiet -p ferbayes-infer --bench infer

# CUDA build of the binaries for the lent GPU machine (see gpu/README.md).
gpu-build:
    bash gpu/build.sh

# Formatting and lints.
lint:
    cargo fmt --all --check
    cargo clippy --release --workspace --all-targets -- -D warnings
