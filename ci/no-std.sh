#!/usr/bin/env bash
# Guarantee 9 (crate docs, "Guarantees"): the library builds without std on
# the targets it names.
set -euxo pipefail
cd "$(dirname "$0")"/..

# Targets with compare-and-swap: as is, and with interrupt-safe waiter lists.
cargo build --no-default-features --target thumbv7em-none-eabihf
cargo build --no-default-features --features critical-section --target thumbv7em-none-eabihf

# Targets without compare-and-swap: through portable-atomic, the CAS
# provider chosen the way an end user would for a single-core chip.
for target in thumbv6m-none-eabi riscv32imc-unknown-none-elf; do
    RUSTFLAGS="--cfg portable_atomic_unsafe_assume_single_core" \
        cargo build --no-default-features --features portable-atomic --target "$target"
    RUSTFLAGS="--cfg portable_atomic_unsafe_assume_single_core" \
        cargo build --no-default-features --features portable-atomic,critical-section --target "$target"
done
