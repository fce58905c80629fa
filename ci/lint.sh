#!/usr/bin/env bash
# Formatting, clippy with and without default features, and the docs.
set -euxo pipefail
cd "$(dirname "$0")"/..

cargo fmt --all -- --check
# The core is closed (docs/architecture.md): `unsafe` only in node/, in the
# counted pointer and in the Unix signal code.
if grep -rnE 'unsafe (\{|fn|impl)' src --include='*.rs' | grep -vE '^src/(node/|counted\.rs|signal/unix\.rs)'; then
    echo "FAIL: unsafe outside node/, counted.rs and signal/unix.rs"; exit 1
fi
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --no-default-features -- -D warnings
cargo clippy --all-targets --all-features -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --features signal
# As docs.rs builds them (Cargo.toml, package.metadata.docs.rs): every
# feature, feature-gated items marked.
RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo +nightly doc --no-deps --all-features
# The non-Unix path of feature `signal` (console events through `ctrlc`)
# compiles: checked for Windows.
rustup target add x86_64-pc-windows-gnu
cargo check --lib --features signal --target x86_64-pc-windows-gnu
# The default build does not depend on `tracing` (feature `tracing` is off
# by default and pays nothing).
if cargo tree -e normal --prefix none | grep -q '^tracing'; then
    echo "FAIL: the default build depends on tracing"; exit 1
fi
cargo tree -e normal --prefix none --features tracing | grep -q '^tracing '
