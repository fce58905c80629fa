//! phaseout side by side with the crates people use today: tokio-util's
//! `CancellationToken` everywhere, and async-shutdown and triggered where the
//! operation exists. `bash ci/bench.sh` runs this and prints the ratio table.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::task::{Context, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use phaseout::Phaser;
use tokio_util::sync::CancellationToken;

// ===== helpers =====

/// Runs `work(thread_index, iters)` on two threads pinned to different cores
/// and returns the wall time from a common start until both finished, halved:
/// per-operation aggregate time over both threads.
fn two_pinned_threads(iters: u64, work: impl Fn(usize, u64) + Send + Sync) -> Duration {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let start = Barrier::new(3);
    let elapsed = thread::scope(|scope| {
        for index in 0..2 {
            let (start, work, cores) = (&start, &work, &cores);
            scope.spawn(move || {
                if let Some(core) = cores.get(index % cores.len().max(1)) {
                    core_affinity::set_for_current(*core);
                }
                start.wait();
                work(index, iters);
            });
        }
        start.wait();
        Instant::now()
    });
    elapsed.elapsed() / 2
}

fn pin_to(index: usize) {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if let Some(core) = cores.get(index % cores.len().max(1)) {
        core_affinity::set_for_current(*core);
    }
}

/// A waker that unparks a thread: the cheapest honest way to block on a
/// future, so that wake latency compares with a bare `unpark`.
struct Unparker(thread::Thread);

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A waker that does nothing: waiters in the tree benchmarks are registered
/// but never run.
struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

fn noop_waker() -> Waker {
    Waker::from(Arc::new(Noop))
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unparker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

// ===== child create + drop =====

/// With `PHASEOUT_BENCH_SUBSCRIBER=info` set, a subscriber that keeps INFO
/// and above (so phaseout's DEBUG/TRACE events are filtered out, as in a
/// production log) and writes nowhere: what feature `tracing` costs with a
/// real subscriber (`ci/bench.sh`, "tracing" table).
fn maybe_subscriber() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("PHASEOUT_BENCH_SUBSCRIBER").is_some() {
        ONCE.call_once(|| {
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::INFO)
                .with_writer(std::io::sink)
                .init();
        });
    }
}

fn child_create_drop(c: &mut Criterion) {
    maybe_subscriber();
    let mut group = c.benchmark_group("child_create_drop");
    let root = Phaser::new();
    group.bench_function("phaseout", |b| {
        b.iter(|| drop(black_box(root.child().unwrap())))
    });
    let token = CancellationToken::new();
    group.bench_function("tokio-util", |b| {
        b.iter(|| drop(black_box(token.child_token())))
    });
    let manager = async_shutdown::ShutdownManager::<()>::new();
    group.bench_function("async-shutdown", |b| {
        b.iter(|| drop(black_box(manager.delay_shutdown_token().unwrap())))
    });
    group.finish();

    let mut group = c.benchmark_group("child_create_drop_2_threads");
    let root = Phaser::new();
    group.bench_function("phaseout", |b| {
        b.iter_custom(|iters| {
            two_pinned_threads(iters, |_, n| {
                for _ in 0..n {
                    drop(black_box(root.child().unwrap()));
                }
            })
        })
    });
    let token = CancellationToken::new();
    group.bench_function("tokio-util", |b| {
        b.iter_custom(|iters| {
            two_pinned_threads(iters, |_, n| {
                for _ in 0..n {
                    drop(black_box(token.child_token()));
                }
            })
        })
    });
    let manager = async_shutdown::ShutdownManager::<()>::new();
    group.bench_function("async-shutdown", |b| {
        b.iter_custom(|iters| {
            two_pinned_threads(iters, |_, n| {
                for _ in 0..n {
                    drop(black_box(manager.delay_shutdown_token().unwrap()));
                }
            })
        })
    });
    group.finish();
}

// ===== is_cancelled =====

fn is_cancelled(c: &mut Criterion) {
    let mut group = c.benchmark_group("is_cancelled");
    let root = Phaser::new();
    let child = root.child().unwrap();
    group.bench_function("phaseout", |b| b.iter(|| black_box(&child).is_cancelled()));
    let token = CancellationToken::new().child_token();
    group.bench_function("tokio-util", |b| {
        b.iter(|| black_box(&token).is_cancelled())
    });
    let manager = async_shutdown::ShutdownManager::<()>::new();
    group.bench_function("async-shutdown", |b| {
        b.iter(|| black_box(&manager).is_shutdown_triggered())
    });
    let (_trigger, listener) = triggered::trigger();
    group.bench_function("triggered", |b| {
        b.iter(|| black_box(&listener).is_triggered())
    });
    group.finish();
}

// ===== cancel a big tree with a waiter on every node =====

/// Shapes of 100k-node trees (and a 10k chain), as parent index per node.
fn shape(name: &str) -> Vec<Option<usize>> {
    match name {
        "wide" => (0..100_000).map(|_| None).collect(),
        "fanout10" => (0..100_000)
            .map(|i| if i < 10 { None } else { Some(i / 10 - 1) })
            .collect(),
        "chain" => (0..10_000usize).map(|i| i.checked_sub(1)).collect(),
        _ => unreachable!(),
    }
}

fn phaseout_tree(
    parents: &[Option<usize>],
) -> (Phaser, Vec<Phaser>, Vec<phaseout::futures::Cancelled>) {
    let root = Phaser::new();
    let mut nodes: Vec<Phaser> = Vec::with_capacity(parents.len());
    for parent in parents {
        let node = parent.map_or(&root, |p| &nodes[p]).child().unwrap();
        nodes.push(node);
    }
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let waiters = nodes
        .iter()
        .map(|node| {
            let mut waiter = node.cancelled();
            assert!(std::pin::Pin::new(&mut waiter).poll(&mut cx).is_pending());
            waiter
        })
        .collect();
    (root, nodes, waiters)
}

type TokioWaiter = std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>;

fn tokio_tree(
    parents: &[Option<usize>],
) -> (CancellationToken, Vec<CancellationToken>, Vec<TokioWaiter>) {
    let root = CancellationToken::new();
    let mut nodes: Vec<CancellationToken> = Vec::with_capacity(parents.len());
    for parent in parents {
        let node = parent.map_or(&root, |p| &nodes[p]).child_token();
        nodes.push(node);
    }
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let waiters = nodes
        .iter()
        .map(|node| {
            let mut waiter = Box::pin(node.clone().cancelled_owned());
            assert!(waiter.as_mut().poll(&mut cx).is_pending());
            waiter
        })
        .collect();
    (root, nodes, waiters)
}

use std::future::Future;

fn cancel_tree(c: &mut Criterion) {
    maybe_subscriber();
    for name in ["wide", "fanout10", "chain"] {
        let parents = shape(name);
        let mut group = c.benchmark_group(format!("cancel_tree_{name}_{}", parents.len()));
        group.sample_size(10);
        group.bench_function("phaseout", |b| {
            b.iter_batched(
                || phaseout_tree(&parents),
                |tree| {
                    tree.0.cancel();
                    tree
                },
                BatchSize::PerIteration,
            )
        });
        // Not peers: what a cause and an abort cost on top of a plain
        // cancel (the table shows them as a ratio to `phaseout`).
        group.bench_function("phaseout-cancel_with", |b| {
            b.iter_batched(
                || phaseout_tree(&parents),
                |tree| {
                    tree.0.cancel_with("SIGTERM");
                    tree
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function("phaseout-abort", |b| {
            b.iter_batched(
                || phaseout_tree(&parents),
                |tree| {
                    tree.0.abort();
                    tree
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function("tokio-util", |b| {
            b.iter_batched(
                || tokio_tree(&parents),
                |tree| {
                    tree.0.cancel();
                    tree
                },
                BatchSize::PerIteration,
            )
        });
        group.finish();
    }
}

// ===== drain cascade =====

fn drain_cascade(c: &mut Criterion) {
    const DEPTH: usize = 1_000_000;
    let mut group = c.benchmark_group("drain_cascade_chain_1000000");
    group.sample_size(10);
    group.bench_function("phaseout", |b| {
        b.iter_batched(
            || {
                let root = Phaser::new();
                let mut chain: Vec<Phaser> = Vec::with_capacity(DEPTH);
                for _ in 0..DEPTH {
                    let next = chain.last().unwrap_or(&root).child().unwrap();
                    chain.push(next);
                }
                root.cancel();
                let leaf = chain.pop().unwrap();
                drop(chain); // every owner above the leaf is done: "finishing"
                (root, leaf)
            },
            |(root, leaf)| {
                drop(leaf); // drains the whole chain
                assert!(root.is_turn());
                root
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

// ===== cross-thread wake latency =====

fn wake_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("wake_latency");
    group.sample_size(20);

    // `signal(token)` runs on the waker side; `wait(token)` blocks until woken.
    fn measure<T: Send + 'static>(
        iters: u64,
        make: impl Fn() -> (T, Box<dyn FnOnce() + Send>),
        wait: impl Fn(T) + Send + Sync + 'static,
    ) -> Duration {
        let (to_waiter, inbox) = mpsc::channel::<(T, Arc<AtomicBool>)>();
        let (to_signaller, woken_at) = mpsc::channel::<Instant>();
        let wait = Arc::new(wait);
        let waiter = {
            let wait = wait.clone();
            thread::spawn(move || {
                pin_to(1);
                for (item, ready) in inbox {
                    ready.store(true, Ordering::Release);
                    wait(item);
                    to_signaller.send(Instant::now()).unwrap();
                }
            })
        };
        pin_to(0);
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let (item, signal) = make();
            let ready = Arc::new(AtomicBool::new(false));
            to_waiter.send((item, ready.clone())).unwrap();
            while !ready.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            thread::sleep(Duration::from_micros(200)); // the waiter is parked by now
            let start = Instant::now();
            signal();
            total += woken_at.recv().unwrap() - start;
        }
        drop(to_waiter);
        waiter.join().unwrap();
        total
    }

    group.bench_function("phaseout", |b| {
        b.iter_custom(|iters| {
            measure(
                iters,
                || {
                    let node = Phaser::new();
                    let token = node.token();
                    (token, Box::new(move || node.cancel()))
                },
                |token: phaseout::Token| block_on(token.cancelled()),
            )
        })
    });
    // The floor phaseout builds on: a bare event-listener `Event`.
    group.bench_function("event-listener-raw", |b| {
        b.iter_custom(|iters| {
            measure(
                iters,
                || {
                    let event = Arc::new(event_listener::Event::new());
                    let waiter_event = event.clone();
                    (
                        waiter_event,
                        Box::new(move || {
                            event.notify(usize::MAX);
                        }),
                    )
                },
                |event: Arc<event_listener::Event>| block_on(event.listen()),
            )
        })
    });
    // The blocking API (`Token::wait_cancelled`).
    group.bench_function("phaseout-blocking", |b| {
        b.iter_custom(|iters| {
            measure(
                iters,
                || {
                    let node = Phaser::new();
                    let token = node.token();
                    (token, Box::new(move || node.cancel()))
                },
                |token: phaseout::Token| token.wait_cancelled(),
            )
        })
    });
    group.bench_function("tokio-util", |b| {
        b.iter_custom(|iters| {
            measure(
                iters,
                || {
                    let token = CancellationToken::new();
                    (token.clone(), Box::new(move || token.cancel()))
                },
                |token: CancellationToken| block_on(token.cancelled_owned()),
            )
        })
    });
    group.bench_function("bare-unpark", |b| {
        b.iter_custom(|iters| {
            measure(
                iters,
                || {
                    let flag = Arc::new(AtomicBool::new(false));
                    let waiter_slot: Arc<std::sync::Mutex<Option<thread::Thread>>> = Arc::default();
                    let slot = waiter_slot.clone();
                    let set = flag.clone();
                    let signal = Box::new(move || {
                        set.store(true, Ordering::Release);
                        if let Some(t) = slot.lock().unwrap().as_ref() {
                            t.unpark();
                        }
                    });
                    ((flag, waiter_slot), signal as Box<dyn FnOnce() + Send>)
                },
                |(flag, slot): (
                    Arc<AtomicBool>,
                    Arc<std::sync::Mutex<Option<thread::Thread>>>,
                )| {
                    *slot.lock().unwrap() = Some(thread::current());
                    while !flag.load(Ordering::Acquire) {
                        thread::park();
                    }
                },
            )
        })
    });
    group.finish();
}

// ===== what a select loop does once per message =====

/// A future that is pending at its first poll (waking its task at once, as
/// a channel with a message on its way would) and ready at the second.
struct PendingOnce(bool);

impl std::future::Future for PendingOnce {
    type Output = u64;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> std::task::Poll<u64> {
        if self.0 {
            std::task::Poll::Ready(1)
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

/// Polls `future` with a no-op waker until it is ready (it must be ready
/// within a few polls).
fn poll_to_end<F: std::future::Future>(future: F, cx: &mut Context<'_>) -> F::Output {
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(cx) {
            return out;
        }
    }
}

/// `run_until_cancelled(fut)` with `fut` ready at once (a consumer loop
/// with messages waiting: one call per message) and pending once (it waits
/// for the next message), and a `cancelled()` future created, polled once
/// and dropped (one turn of a `select!` loop that races it).
fn select_loop(c: &mut Criterion) {
    let root = Phaser::new();
    let phaser = root.child().unwrap();
    let token = CancellationToken::new().child_token();
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);

    let mut group = c.benchmark_group("run_until_cancelled_ready");
    group.bench_function("phaseout", |b| {
        b.iter(|| {
            poll_to_end(
                phaser.run_until_cancelled(std::future::ready(black_box(1u64))),
                &mut cx,
            )
        })
    });
    group.bench_function("tokio-util", |b| {
        b.iter(|| {
            poll_to_end(
                token.run_until_cancelled(std::future::ready(black_box(1u64))),
                &mut cx,
            )
        })
    });
    group.finish();

    let mut group = c.benchmark_group("run_until_cancelled_pending_once");
    group.bench_function("phaseout", |b| {
        b.iter(|| {
            poll_to_end(
                phaser.run_until_cancelled(PendingOnce(black_box(false))),
                &mut cx,
            )
        })
    });
    group.bench_function("tokio-util", |b| {
        b.iter(|| {
            poll_to_end(
                token.run_until_cancelled(PendingOnce(black_box(false))),
                &mut cx,
            )
        })
    });
    group.finish();

    let mut group = c.benchmark_group("cancelled_poll_drop");
    group.bench_function("phaseout", |b| {
        b.iter(|| {
            let mut waiter = std::pin::pin!(phaser.cancelled());
            black_box(waiter.as_mut().poll(&mut cx).is_pending())
        })
    });
    group.bench_function("tokio-util", |b| {
        b.iter(|| {
            let mut waiter = std::pin::pin!(token.cancelled());
            black_box(waiter.as_mut().poll(&mut cx).is_pending())
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    child_create_drop,
    is_cancelled,
    cancel_tree,
    drain_cascade,
    wake_latency,
    select_loop
);
criterion_main!(benches);
