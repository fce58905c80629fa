#!/usr/bin/env bash
# The Cortex-M3 firmware with feature `defmt`: everything, phaseout's own
# events included, goes out as defmt frames over semihosting; the host
# decodes them with `defmt-print` and this checks the decoded lines. Also
# prints what phaseout adds to the flash with `defmt` on.
set -euo pipefail
cd "$(dirname "$0")"/..
root=$(pwd)

command -v qemu-system-arm >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends qemu-system-arm >/dev/null; }
rustup target add thumbv7m-none-eabi
command -v defmt-print >/dev/null || cargo install --locked -q defmt-print

fw=examples/firmware-cortex-m
elf=$fw/target/defmt/thumbv7m-none-eabi/release/phaseout-firmware-cortex-m
(cd $fw && DEFMT_LOG=debug RUSTFLAGS="-C link-arg=-Tlink.x -C link-arg=-Tdefmt.x" \
    cargo build --release --features defmt --target-dir target/defmt)
frames=$(mktemp)
timeout 60 qemu-system-arm -cpu cortex-m3 -machine lm3s6965evb -nographic \
    -semihosting-config enable=on,target=native -kernel "$elf" > "$frames" 2>/dev/null
decoded=$(defmt-print -e "$elf" < "$frames")
rm -f "$frames"
echo "$decoded"

failed=0
expect() {
    if echo "$decoded" | grep -qF -- "$1"; then
        echo "PASS defmt: $1"
    else
        echo "FAIL defmt: no line with '$1'"; failed=$((failed + 1))
    fi
}
expect "DEBUG phaseout: cancel device"
expect "DEBUG phaseout: drained sampler"
expect "device: its turn came, its owner has not finished"
expect "INFO  all stopped in order, nothing lost"
order=$(echo "$decoded" | grep -oE 'phaseout: turn (sampler|filter|logger)' | cut -d' ' -f3 | tr '\n' ' ')
if [ "$order" = "sampler filter logger " ]; then
    echo "PASS defmt: turns in order: $order"
else
    echo "FAIL defmt: turns in order: '$order'"; failed=$((failed + 1))
fi

# What phaseout adds with defmt on: the same firmware with defmt, without
# phaseout (the hand-written flags), is the baseline.
base_elf=$fw/target/defmt-baseline/thumbv7m-none-eabi/release/phaseout-firmware-cortex-m
(cd $fw && DEFMT_LOG=debug RUSTFLAGS="-C link-arg=-Tlink.x -C link-arg=-Tdefmt.x" \
    cargo build --release -q --no-default-features --features baseline,defmt --target-dir target/defmt-baseline)
size=$(ls "$(rustc --print sysroot)"/lib/rustlib/*/bin/llvm-size | head -n 1)
read -r text_with data_with _ < <("$size" "$elf" | tail -n 1)
read -r text_base data_base _ < <("$size" "$base_elf" | tail -n 1)
if [ -z "$text_with" ] || [ -z "$text_base" ]; then
    echo "FAIL defmt: could not measure the firmware sizes"; failed=$((failed + 1))
else
    echo "with defmt, phaseout adds $((text_with + data_with - text_base - data_base)) bytes of flash to the Cortex-M3 release firmware (its events logged at debug)"
fi
echo "firmware-defmt: $failed failed"
cd "$root"
[ "$failed" -eq 0 ]
