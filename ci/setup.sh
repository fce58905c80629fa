#!/usr/bin/env bash
# Installs what the other ci/ scripts need on a fresh machine.
set -euxo pipefail
cd "$(dirname "$0")"/..

rustup component add rustfmt clippy
rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imc-unknown-none-elf
