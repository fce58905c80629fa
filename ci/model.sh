#!/usr/bin/env bash
# The randomized model check, bounded for CI (PHASEOUT_MODEL_SEEDS raises it;
# PHASEOUT_MODEL_ACTING_WAKERS=1 lets wakers act from inside wake()).
set -euxo pipefail
cd "$(dirname "$0")"/..

cargo test --release --test model -- --nocapture
