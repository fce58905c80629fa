#!/usr/bin/env bash
# loom model checks of the racing pairs (tests/loom.rs). Bounded preemptions
# keep the run to seconds; raise LOOM_MAX_PREEMPTIONS for a deeper search.
set -euxo pipefail
cd "$(dirname "$0")"/..

export RUSTFLAGS="--cfg loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
# The child-list lock spins; each spin is a branch for loom.
export LOOM_MAX_BRANCHES="${LOOM_MAX_BRANCHES:-100000}"
# A separate target dir: loom builds must not invalidate the normal ones.
cargo test --release --target-dir target/loom --test loom
