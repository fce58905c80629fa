#!/usr/bin/env bash
# Installs what the other ci/ scripts need on a fresh machine: toolchain
# components and targets, and the 32-bit C libraries for the native i686
# test run. (firmware.sh installs QEMU, miri.sh the nightly with Miri.)
set -euxo pipefail
cd "$(dirname "$0")"/..

rustup component add rustfmt clippy
rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imc-unknown-none-elf \
    i686-unknown-linux-gnu
if ! dpkg -s gcc-multilib >/dev/null 2>&1; then
    apt-get update -qq
    # Alone: together with other packages apt's resolver may give up here.
    apt-get install -y -qq --no-install-recommends gcc-multilib >/dev/null
fi
