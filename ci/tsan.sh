#!/usr/bin/env bash
# ThreadSanitizer over the racing tests: the ones where one thread may free a
# node or a cause that another thread was just using (tests/handoff.rs,
# tests/races.rs), tests/tree.rs, and the wake delivery's cross-thread
# cases (tests/liveness.rs: wakers that cancel and drop on two threads). Fails if TSan reports anything
# that ci/tsan.supp does not suppress (each line there says why it is
# benign).
#
# The races are timing-dependent, so each binary runs several times:
# PHASEOUT_TSAN_RUNS=N times for handoff and races (default 6, which keeps
# this script near 4 minutes on the 2-core CI machine, build included; 30
# for a thorough look), a third as often for tree, which has never
# had a report. Every report is counted (halt_on_error=0) and grouped by
# site with ci/tsan_sites.py, and the logs are kept in target/tsan/logs/.
# PHASEOUT_TSAN_NO_SUPP=1 runs without the suppressions, to see everything.
set -euo pipefail
cd "$(dirname "$0")"/..

rustup toolchain install nightly --profile minimal --component rust-src

target=x86_64-unknown-linux-gnu
runs=${PHASEOUT_TSAN_RUNS:-6}
tests=(handoff races tree liveness)
logs=target/tsan/logs
mkdir -p target/tsan

# The whole std is rebuilt instrumented (-Zbuild-std): an uninstrumented std
# hides its synchronisation from TSan and makes every thread spawn and join
# a false race. Only `std`: no loom, no other features.
export RUSTFLAGS="-Zsanitizer=thread"
export RUSTDOCFLAGS="-Zsanitizer=thread"
test_args=()
for test in "${tests[@]}"; do test_args+=(--test "$test"); done
cargo +nightly test -Zbuild-std --target "$target" --target-dir target/tsan \
    --no-default-features --features std "${test_args[@]}" --no-run \
    --message-format=json-render-diagnostics >target/tsan/build.json

rm -rf "$logs"
mkdir -p "$logs"
supp="suppressions=$PWD/ci/tsan.supp"
[ "${PHASEOUT_TSAN_NO_SUPP:-0}" = 1 ] && supp=""
# exitcode=0: a report must not fail the test binary, so that every run and
# every report is counted; they are counted from the logs below instead.
# report_signal_unsafe=0: the signal tests' handlers are not run here, and
# TSan's own check for them only adds noise. history_size: keeps the stack
# of an earlier access longer, so that no report shows "failed to restore
# the stack". print_suppressions: a run that matched one says which.
export TSAN_OPTIONS="halt_on_error=0 exitcode=0 report_signal_unsafe=0 history_size=4 print_suppressions=1 $supp"

failed=0
for test in "${tests[@]}"; do
    # The test binary's path, from cargo's own JSON (not a glob of deps/).
    exe=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["name"] == sys.argv[2] and m["profile"]["test"]:
        print(m["executable"])
' target/tsan/build.json "$test")
    times=$runs
    case $test in tree | liveness) times=$(((runs + 2) / 3)) ;; esac
    # A binary built without TSan would pass here without checking anything.
    if ! grep -q __tsan_init "$exe"; then
        echo "ci/tsan.sh: $exe is not built with ThreadSanitizer"
        exit 1
    fi
    for run in $(seq 1 "$times"); do
        log="$logs/$test-$run.log"
        if ! "$exe" -q >"$log" 2>&1; then
            echo "ci/tsan.sh: $test (run $run) failed:"
            tail -n 30 "$log"
            failed=1
        fi
    done
done

reports=$(cat "$logs"/*.log | grep -c '^WARNING: ThreadSanitizer' || true)


matched=$(cat "$logs"/*.log | grep -c '^ThreadSanitizer: Matched' || true)
echo "ci/tsan.sh: $(ls "$logs" | wc -l) test runs: $reports unsuppressed reports ($matched runs matched a suppression)"
if [ "$reports" != 0 ]; then
    python3 ci/tsan_sites.py "$logs"/*.log
    echo "ci/tsan.sh: FAILED: ThreadSanitizer reported races (logs in $logs/)"
    exit 1
fi
[ "$failed" = 0 ] || { echo "ci/tsan.sh: FAILED: a test failed"; exit 1; }
echo "ci/tsan.sh: clean"
