#!/usr/bin/env bash
# Runs the examples and checks what they print: each component stops after
# the ones that depend on it (web, then pipeline, then db), then "all stopped".
set -euo pipefail
cd "$(dirname "$0")"/..

passed=0
failed=0
for example in ordered tokio async_std threads; do
    out=$(cargo run -q --example "$example")
    echo "$out"
    order=$(echo "$out" | grep -oE '(web|pipeline|db): stopped' | cut -d: -f1 | tr '\n' ' ')
    if [ "$order" = "web pipeline db " ] && [ "$(echo "$out" | tail -n 1 | grep -oE 'all stopped')" = "all stopped" ]; then
        echo "PASS example $example"; passed=$((passed + 1))
    else
        echo "FAIL example $example: order '$order'"; failed=$((failed + 1))
    fi
done

# The tokio example is also a TCP service: drive it with real clients and
# real signals, and check that every acknowledged record was stored.
cargo build -q --example tokio
if python3 ci/tokio_e2e.py target/debug/examples/tokio; then
    echo "PASS tokio service end to end"; passed=$((passed + 1))
else
    echo "FAIL tokio service end to end"; failed=$((failed + 1))
fi
echo "examples: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
