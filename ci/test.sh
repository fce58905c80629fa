#!/usr/bin/env bash
# The test suite: without default features first, then the README's
# command (`cargo test`) last, so the run ends with its summary.
set -euxo pipefail
cd "$(dirname "$0")"/..

cargo test --no-default-features --tests
cargo test --release --test races --test depth
cargo test
