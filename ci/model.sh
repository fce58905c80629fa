#!/usr/bin/env bash
# The randomized model check, bounded for CI (PHASEOUT_MODEL_SEEDS raises it).
set -euxo pipefail
cd "$(dirname "$0")"/..

cargo test --release --test model -- --nocapture
