#!/usr/bin/env bash
# The randomized model check, bounded for CI (PHASEOUT_MODEL_SEEDS raises it;
# wakers act from inside wake() unless PHASEOUT_MODEL_ACTING_WAKERS=0).
set -euxo pipefail
cd "$(dirname "$0")"/..

cargo test --release --test model -- --nocapture
