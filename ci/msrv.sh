#!/usr/bin/env bash
# The declared MSRV (rust-version in Cargo.toml) builds the library, for
# real, in each feature set a user can pick on a host.
set -euxo pipefail
cd "$(dirname "$0")"/..

msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
rustup toolchain install "$msrv" --profile minimal
cargo +"$msrv" build --lib --target-dir target/msrv
cargo +"$msrv" build --lib --target-dir target/msrv --no-default-features
cargo +"$msrv" build --lib --target-dir target/msrv --all-features
