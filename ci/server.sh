#!/usr/bin/env bash
# Builds the server example and drives it with real load, real signals and
# a notify socket standing in for systemd's.
set -euxo pipefail
cd "$(dirname "$0")"/..

cargo build --release --example server --features signal
python3 ci/server_e2e.py target/release/examples/server
