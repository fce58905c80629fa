//! Oversubscription: 32 and 64 threads on this machine's cores, all creating
//! and dropping children of one parent, phaseout beside tokio-util's
//! `CancellationToken` (whose child list is behind a mutex).
//!
//! When a thread holding a parent's child-list lock is preempted, every other
//! thread needs that lock. A lock that only spins burns each waiter's time
//! slice; phaseout's waiters spin briefly, then sleep until the holder
//! releases it (guarantee 12). Two measures:
//!
//! * throughput: criterion times batches of create+drop spread over all the
//!   threads (`oversubscribed_{32,64}_threads`, time per operation);
//! * the worst single operation: each thread times every one of its
//!   operations; the run prints the median, 99.9th and 99.99th percentile,
//!   maximum and the number over 40 ms over all threads and rounds, and the
//!   wall time of those rounds, as `latency` lines, which `ci/bench.sh`
//!   puts in the ratio table. The worst of millions of operations is one
//!   unlucky moment, so the measure is repeated in pairs (phaseout, then
//!   tokio-util, `PHASEOUT_BENCH_PAIRS` times, default 6) and the table
//!   takes each side's median over the pairs.
//! * the same worst-operation measure at 64 threads **beside a long
//!   critical section** (`oversubscribed_64_threads_beside_reports`,
//!   phaseout only: no peer has a walk of a live parent's children): the
//!   parent has 256 long-lived children and one more thread calls
//!   `report()` on it without pause, which holds the parent's child-list
//!   lock while it counts every child. A lock that hands itself to a
//!   passed-over sleeper could convoy there (every release a wake-up); this
//!   row shows whether the creators' worst operation and wall time stay
//!   near the plain row's.

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::Criterion;
use phaseout::Phaser;
use tokio_util::sync::CancellationToken;

/// The thread counts measured.
const THREADS: [usize; 2] = [32, 64];

/// Runs `op` `per_thread` times on each of `threads` threads, all released at
/// once; returns the wall time until the last one finished.
fn on_threads(threads: usize, per_thread: u64, op: &(impl Fn() + Sync)) -> Duration {
    let start = Barrier::new(threads + 1);
    let began = thread::scope(|scope| {
        for _ in 0..threads {
            let start = &start;
            scope.spawn(move || {
                start.wait();
                for _ in 0..per_thread {
                    op();
                }
            });
        }
        start.wait();
        Instant::now()
    });
    began.elapsed()
}

/// Like [`on_threads`], timing every operation; returns all the durations.
fn timed_on_threads(threads: usize, per_thread: usize, op: &(impl Fn() + Sync)) -> Vec<Duration> {
    let start = Barrier::new(threads);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let start = &start;
                scope.spawn(move || {
                    let mut times = Vec::with_capacity(per_thread);
                    start.wait();
                    for _ in 0..per_thread {
                        let began = Instant::now();
                        op();
                        times.push(began.elapsed());
                    }
                    times
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    })
}

/// The peers, each as "make a parent, then an operation on it".
fn phaseout_op() -> impl Fn() + Sync {
    let parent = Phaser::new();
    move || drop(std::hint::black_box(parent.child().unwrap()))
}

fn tokio_util_op() -> impl Fn() + Sync {
    let parent = CancellationToken::new();
    move || drop(std::hint::black_box(parent.child_token()))
}

fn throughput(c: &mut Criterion) {
    for threads in THREADS {
        let mut group = c.benchmark_group(format!("oversubscribed_{threads}_threads"));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(8));
        group.warm_up_time(Duration::from_secs(1));
        // `iters` operations in total, spread over the threads.
        group.bench_function("phaseout", |b| {
            let op = phaseout_op();
            b.iter_custom(|iters| on_threads(threads, iters.div_ceil(threads as u64), &op));
        });
        group.bench_function("tokio-util", |b| {
            let op = tokio_util_op();
            b.iter_custom(|iters| on_threads(threads, iters.div_ceil(threads as u64), &op));
        });
        group.finish();
    }
}

/// Percentiles of the single-operation times, printed for `ci/bench.sh`:
/// one `latency` line per peer and pair.
fn latency() -> usize {
    const ROUNDS: usize = 5;
    const PER_THREAD: usize = 20_000;
    let pairs: usize = std::env::var("PHASEOUT_BENCH_PAIRS")
        .ok()
        .and_then(|pairs| pairs.parse().ok())
        .unwrap_or(6);
    for threads in THREADS {
        for pair in 0..pairs {
            for (peer, op) in [
                ("phaseout", &phaseout_op() as &(dyn Fn() + Sync)),
                ("tokio-util", &tokio_util_op()),
            ] {
                let mut times = Vec::new();
                let began = Instant::now();
                for _ in 0..ROUNDS {
                    times.extend(timed_on_threads(threads, PER_THREAD, &op));
                }
                let wall = began.elapsed();
                print_latency(
                    &format!("oversubscribed_{threads}_threads"),
                    peer,
                    pair,
                    wall,
                    times,
                    "",
                );
            }
        }
    }
    pairs
}

/// The long-critical-section row: 64 creators and one reporter on a parent
/// with 256 long-lived children, `pairs` times (each a fresh parent).
fn latency_beside_reports(pairs: usize) {
    const ROUNDS: usize = 5;
    const PER_THREAD: usize = 20_000;
    const THREADS: usize = 64;
    const CHILDREN: usize = 256;
    for pair in 0..pairs {
        let parent = Phaser::new();
        let _children: Vec<Phaser> = (0..CHILDREN)
            .map(|_| parent.child().expect("a live parent"))
            .collect();
        let op = || drop(std::hint::black_box(parent.child().unwrap()));
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (times, wall, reports) = thread::scope(|scope| {
            let reporter = scope.spawn(|| {
                let mut reports = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::black_box(parent.report());
                    reports += 1;
                }
                reports
            });
            let mut times = Vec::new();
            let began = Instant::now();
            for _ in 0..ROUNDS {
                times.extend(timed_on_threads(THREADS, PER_THREAD, &op));
            }
            let wall = began.elapsed();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (times, wall, reporter.join().unwrap())
        });
        print_latency(
            &format!("oversubscribed_{THREADS}_threads_beside_reports"),
            "phaseout",
            pair,
            wall,
            times,
            &format!(" reports {reports}"),
        );
    }
}

/// Prints one `latency` line (`ci/bench.sh` reads them).
fn print_latency(
    group: &str,
    peer: &str,
    pair: usize,
    wall: Duration,
    mut times: Vec<Duration>,
    extra: &str,
) {
    times.sort_unstable();
    let at = |fraction: f64| times[((times.len() - 1) as f64 * fraction) as usize];
    let over_40ms = times.iter().filter(|time| time.as_millis() >= 40).count();
    println!(
        "latency {group} {peer} pair {pair} wall_ms {} median_ns {} p999_ns {} p9999_ns {} max_ns {} over_40ms {over_40ms} ops {}{extra}",
        wall.as_millis(),
        at(0.5).as_nanos(),
        at(0.999).as_nanos(),
        at(0.9999).as_nanos(),
        times[times.len() - 1].as_nanos(),
        times.len()
    );
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    throughput(&mut criterion);
    criterion.final_summary();
    let pairs = latency();
    latency_beside_reports(pairs);
}
