#!/usr/bin/env bash
# The test suite in each feature set, then the README's command last, so the
# run ends with its summary.
set -euxo pipefail
cd "$(dirname "$0")"/..

cargo test --no-default-features --tests
cargo test --all-features --tests
cargo test --release --test races --test depth
# Guarantee 19: forks, so single-threaded (see tests/fork.rs).
cargo test --features signal --test fork -- --test-threads=1
cargo test --features signal,tracing
