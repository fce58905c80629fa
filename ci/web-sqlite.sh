#!/usr/bin/env bash
# Builds examples/web-sqlite (axum + pipeline + SQLite, its own workspace)
# and drives it with real HTTP clients and real signals, then reads its
# SQLite file: nothing answered 201 may be lost, nothing refused stored.
set -euxo pipefail
cd "$(dirname "$0")"/..

(cd examples/web-sqlite && cargo fmt --check && cargo build --release --locked)
python3 ci/web_sqlite_e2e.py examples/web-sqlite/target/release/phaseout-web-sqlite
