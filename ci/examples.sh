#!/usr/bin/env bash
# Runs the examples and checks what they print.
set -euxo pipefail
cd "$(dirname "$0")"/..

out=$(cargo run --example ordered)
echo "$out"
# Each component's turn comes after its dependents stopped: web, pipeline, db.
order=$(echo "$out" | grep -E ': (my turn|stopped)' | sed -E 's/.*  ([a-z]+): .*/\1/' | tr '\n' ' ')
test "$order" = "web web pipeline pipeline db db " || { echo "wrong order: $order"; exit 1; }
echo "$out" | tail -n 1 | grep -q "all stopped"
