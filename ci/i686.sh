#!/usr/bin/env bash
# Guarantee 11: the whole test suite natively on a 32-bit target, where the
# state word packs differently and the count limits are reachable; then the
# limit tests themselves, which need a release build (billions of steps).
set -euxo pipefail
cd "$(dirname "$0")"/..

target=i686-unknown-linux-gnu
cargo test --target "$target" --features signal --tests
cargo test --release --target "$target" --test limits
