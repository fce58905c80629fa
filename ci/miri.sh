#!/usr/bin/env bash
# Miri over the library's tests, with strict provenance, on x86_64 and on a
# 32-bit target (the state word packs differently there). Loop counts shrink
# under cfg(miri); no guarantee is skipped.
set -euxo pipefail
cd "$(dirname "$0")"/..

rustup toolchain install nightly --profile minimal --component miri,rust-src
cargo +nightly miri setup
cargo +nightly miri setup --target i686-unknown-linux-gnu

export MIRIFLAGS="-Zmiri-strict-provenance"
for target in x86_64-unknown-linux-gnu i686-unknown-linux-gnu; do
    time cargo +nightly miri test --target-dir target/miri --target "$target" --lib --tests
done
