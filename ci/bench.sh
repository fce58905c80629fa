#!/usr/bin/env bash
# Runs the benchmarks (phaseout beside its peers, in one run) and prints the
# ratio table as markdown: peer time / phaseout time at the median, with
# min / median / max of each side per operation. Not part of .ci/run: timing
# needs a quiet machine. Usage: bash ci/bench.sh [criterion args...]
set -euo pipefail
cd "$(dirname "$0")"/..

cargo bench --bench peers -- "$@"
cargo bench --bench oversubscribed -- "$@" | tee target/oversubscribed.txt
cargo bench --bench heap | tee target/heap.txt

# Feature `tracing`: the same operations built without it, with it and no
# subscriber, and with a subscriber that filters at INFO. Each run's
# samples are kept before the next overwrites them.
tracing_filter='child_create_drop/phaseout$|cancel_tree_fanout10_100000/phaseout$'
for variant in default feature subscriber; do
    case $variant in
        default) cargo bench --bench peers -- "$tracing_filter" ;;
        feature) cargo bench --bench peers --features tracing -- "$tracing_filter" ;;
        subscriber) PHASEOUT_BENCH_SUBSCRIBER=info cargo bench --bench peers --features tracing -- "$tracing_filter" ;;
    esac
    for group in child_create_drop cancel_tree_fanout10_100000; do
        mkdir -p "target/tracing-bench/$variant/$group"
        cp "target/criterion/$group/phaseout/new/sample.json" "target/tracing-bench/$variant/$group/"
    done
done

python3 - <<'PY'
import json, os, statistics

root = "target/criterion"

def per_iter(group, bench):
    path = os.path.join(root, group, bench, "new", "sample.json")
    with open(path) as f:
        sample = json.load(f)
    times = [t / n for t, n in zip(sample["times"], sample["iters"])]
    return min(times), statistics.median(times), max(times)

def fmt(ns):
    if ns < 1:
        return f"{ns * 1000:.0f} ps"
    if ns < 1000:
        return f"{ns:.1f} ns"
    if ns < 1e6:
        return f"{ns / 1000:.1f} µs"
    return f"{ns / 1e6:.2f} ms"

rows = [
    ("child create + drop, 1 thread", "child_create_drop", 1, 2),
    ("child create + drop, 2 pinned threads, one parent", "child_create_drop_2_threads", 1, 4),
    ("`is_cancelled()`", "is_cancelled", 1, 5),
    ("cancel 100k wide (one parent), waiter on each, per node", "cancel_tree_wide_100000", 100_000, 3),
    ("cancel 100k fanout 10, waiter on each, per node", "cancel_tree_fanout10_100000", 100_000, 3),
    ("cancel 10k chain, waiter on each, per node", "cancel_tree_chain_10000", 10_000, 3),
    ("cross-thread wake latency", "wake_latency", 1, None),
    ("`run_until_cancelled(fut)`, fut ready at once", "run_until_cancelled_ready", 1, 1),
    ("`run_until_cancelled(fut)`, fut pending once", "run_until_cancelled_pending_once", 1, 1),
    ("`cancelled()` created, polled once, dropped", "cancelled_poll_drop", 1, 1),
    ("child create + drop, 32 threads on 2 cores, one parent (throughput)", "oversubscribed_32_threads", 1, 1),
    ("child create + drop, 64 threads on 2 cores, one parent (throughput)", "oversubscribed_64_threads", 1, 1),
]
print("| operation | phaseout min / median / max | peer | peer min / median / max | peer ÷ phaseout (median) | goal |")
print("| --- | --- | --- | --- | --- | --- |")
for title, group, per, goal in rows:
    ours = per_iter(group, "phaseout")
    ours = tuple(t / per for t in ours)
    for peer in sorted(os.listdir(os.path.join(root, group))):
        if peer in ("phaseout", "report"):
            continue
        theirs = tuple(t / per for t in per_iter(group, peer))
        ratio = theirs[1] / ours[1]
        goal_text = "" if goal is None else f"≥ {goal}× vs tokio-util" if peer == "tokio-util" else ""
        if peer in ("phaseout-cancel_with", "phaseout-abort"):
            goal_text = "cost of the cause / abort: ratio to a plain cancel"
        if group == "wake_latency" and peer == "bare-unpark":
            goal_text = f"within 10 % of bare unpark: {ours[1] / theirs[1] - 1:+.0%}"
        print(f"| {title} | {' / '.join(fmt(t) for t in ours)} | {peer} | {' / '.join(fmt(t) for t in theirs)} | {ratio:.2f}× | {goal_text} |")
cascade = per_iter("drain_cascade_chain_1000000", "phaseout")
print(f"| drain cascade, 1,000,000 chain, leaf dropped last, per node | {' / '.join(fmt(t / 1e6) for t in cascade)} | (no peer has this) | | | ≤ 10 ns |")
latency = {}
for line in open("target/oversubscribed.txt"):
    if line.startswith("latency "):
        words = line.split()
        latency.setdefault((words[1], words[2]), []).append(dict(zip(words[3::2], map(int, words[4::2]))))
for threads in (32, 64):
    group = f"oversubscribed_{threads}_threads"
    ours = latency[(group, "phaseout")]
    theirs = latency[(group, "tokio-util")]
    med = lambda runs, key: statistics.median(run[key] for run in runs)
    cells = lambda runs: f"{fmt(med(runs, 'median_ns'))} / {fmt(med(runs, 'p9999_ns'))} / {fmt(med(runs, 'max_ns'))} (worst of each pair: {', '.join(fmt(run['max_ns']) for run in runs)})"
    print(f"| single create + drop, {threads} threads on 2 cores, {len(ours)} pairs: median / p99.99 / worst (medians over the pairs) | {cells(ours)} | tokio-util | {cells(theirs)} | {med(theirs, 'max_ns') / med(ours, 'max_ns'):.2f}× (worst) | worst ≤ tokio-util's |")
group = "oversubscribed_64_threads_beside_reports"
ours = latency[(group, "phaseout")]
print(f"| single create + drop, 64 threads on 2 cores beside a thread calling `report()` on the parent (256 children), {len(ours)} pairs: median / p99.99 / worst; wall ms | {cells(ours)}; {fmt(med(ours, 'wall_ms') * 1e6)} | (no peer has this) | | | near the plain 64-thread row |")
def tracing_median(variant, group, per):
    with open(f"target/tracing-bench/{variant}/{group}/sample.json") as f:
        sample = json.load(f)
    return statistics.median(t / n / per for t, n in zip(sample["times"], sample["iters"]))
print()
print("| feature `tracing` | default build | feature on, no subscriber | ratio | subscriber at INFO | ratio |")
print("| --- | --- | --- | --- | --- | --- |")
for title, group, per in (("child create + drop", "child_create_drop", 1), ("cancel 100k fanout 10, per node", "cancel_tree_fanout10_100000", 100_000)):
    base, on, sub = (tracing_median(v, group, per) for v in ("default", "feature", "subscriber"))
    print(f"| {title} | {fmt(base)} | {fmt(on)} | {on / base:.2f}× | {fmt(sub)} | {sub / base:.2f}× |")
heap = dict(line.split()[1:] for line in open("target/heap.txt") if line.startswith("heap_bytes_per_node"))
print(f"| heap bytes per unlabeled node | {heap['phaseout']} B | tokio-util | {heap['tokio-util']} B | {int(heap['tokio-util']) / int(heap['phaseout']):.2f}× | ≤ 64 B |")
PY
