#!/usr/bin/env bash
# Every combination of features builds: all 64 on the host (the library and
# its tests' targets are checked), and every combination that needs no std
# on a no_std target. Our own loop, in place of `cargo hack
# --feature-powerset`, so that CI installs nothing for it.
set -euo pipefail
cd "$(dirname "$0")"/..

# Every subset of the words given, one per line, comma-separated.
powerset() {
    local n=$# mask i subset words=("$@")
    for ((mask = 0; mask < 1 << n; mask++)); do
        subset=()
        for ((i = 0; i < n; i++)); do
            ((mask & 1 << i)) && subset+=("${words[i]}")
        done
        (IFS=,; echo "${subset[*]}")
    done
}

# Warnings are errors: a combination that only warns is still broken.
export RUSTFLAGS="-D warnings" CARGO_TARGET_DIR=target/features
checked=0
# `while read` rather than `for in $(…)`: the empty set is an empty line.
while read -r features; do
    echo "=== host: --no-default-features --features '$features'"
    cargo check --quiet --lib --no-default-features --features "$features"
    checked=$((checked + 1))
done < <(powerset std portable-atomic critical-section tracing defmt signal)
while read -r features; do
    echo "=== thumbv7em-none-eabihf: --no-default-features --features '$features'"
    cargo check --quiet --lib --target thumbv7em-none-eabihf --no-default-features --features "$features"
    checked=$((checked + 1))
done < <(powerset portable-atomic critical-section tracing defmt)
echo "$checked feature combinations build"
