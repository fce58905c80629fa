#!/usr/bin/env bash
# loom model checks of the racing pairs (tests/loom.rs). Each model bounds
# its preemptions (see the file); LOOM_MAX_PREEMPTIONS=N overrides them all.
set -euxo pipefail
cd "$(dirname "$0")"/..

export RUSTFLAGS="--cfg loom"
# A separate target dir: loom builds must not invalidate the normal ones.
cargo test --release --target-dir target/loom --test loom
# The lock alone (src/node/lock.rs, `loom_models`): three contenders with a
# loom cell as the guarded data, hand-overs with sleepers left behind, a
# plain writer handed the lock.
cargo test --release --target-dir target/loom --lib node::lock::loom_models
