#!/usr/bin/env bash
# Miri, with strict provenance, on x86_64 and on a 32-bit target:
#
# 1. the whole suite once (loop counts shrink under cfg(miri));
# 2. the racing tests where one thread may free a node another was using
#    (tests/handoff.rs), with preemption over many seeds, under Stacked and
#    under Tree Borrows (guarantee 11). One default seed never hits those
#    windows; PHASEOUT_MIRI_SEEDS=N changes how many seeds (default 16:
#    the 0.1 core's violation showed within the first few; 32 cost minutes
#    of the 90-minute CI budget).
#    The rate is low on purpose: the window is a few basic blocks on one
#    thread, and the other thread must then run a whole drop unpreempted.
#    At 0.01 the 0.1 core's protector violation shows within seconds.
# 3. the wake delivery, and 4. the supervision races, with preemption too.
set -euxo pipefail
cd "$(dirname "$0")"/..

rustup toolchain install nightly --profile minimal --component miri,rust-src
cargo +nightly miri setup
cargo +nightly miri setup --target i686-unknown-linux-gnu

targets=(x86_64-unknown-linux-gnu i686-unknown-linux-gnu)
seeds=${PHASEOUT_MIRI_SEEDS:-16}

for target in "${targets[@]}"; do
    MIRIFLAGS="-Zmiri-strict-provenance" \
        cargo +nightly miri test --target-dir target/miri --target "$target" --lib --tests
done

for borrows in stacked tree; do
    model=""
    [ "$borrows" = tree ] && model="-Zmiri-tree-borrows"
    for target in "${targets[@]}"; do
        echo "=== Miri, $borrows borrows, $target, $seeds seeds with preemption"
        MIRIFLAGS="-Zmiri-strict-provenance -Zmiri-preemption-rate=0.01 -Zmiri-many-seeds=0..$seeds $model" \
            cargo +nightly miri test --target-dir target/miri --target "$target" --test handoff
    done
done

# 3. The wake delivery (guarantees 16 and 17: futures outliving their
#    `Phaser`, wakers that cancel and drop from inside `wake()` on two
#    threads, a waker's panic) with preemption, 8 seeds each: these tests
#    are longer than the hand-off races.
for borrows in stacked tree; do
    model=""
    [ "$borrows" = tree ] && model="-Zmiri-tree-borrows"
    for target in "${targets[@]}"; do
        echo "=== Miri, wake delivery, $borrows borrows, $target"
        MIRIFLAGS="-Zmiri-strict-provenance -Zmiri-preemption-rate=0.01 -Zmiri-many-seeds=0..8 $model" \
            cargo +nightly miri test --target-dir target/miri --target "$target" --test liveness
    done
done

# 4. The supervision races (guarantee 22: failures from many threads each
#    recorded once, a failure racing its scope's drain), with preemption,
#    8 seeds each, under both borrow models.
for borrows in stacked tree; do
    model=""
    [ "$borrows" = tree ] && model="-Zmiri-tree-borrows"
    for target in "${targets[@]}"; do
        echo "=== Miri, supervision races, $borrows borrows, $target"
        MIRIFLAGS="-Zmiri-strict-provenance -Zmiri-preemption-rate=0.01 -Zmiri-many-seeds=0..8 $model" \
            cargo +nightly miri test --target-dir target/miri --target "$target" --test supervision \
            -- failures_from_many_threads a_failure_racing
    done
done
