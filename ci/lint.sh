#!/usr/bin/env bash
# Formatting, clippy with and without default features, and the docs.
set -euxo pipefail
cd "$(dirname "$0")"/..

cargo fmt --all -- --check
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
