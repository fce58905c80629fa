//! Wakers that are slow or that re-enter the tree.
//!
//! * Guarantee 14: when any `cancel()` returns, every waiter of its subtree has
//!   been woken, even if another thread's `cancel()` marked those nodes first
//!   and is still busy waking them (here: held up by a slow waker).
//! * Guarantee 17: a waker may do anything a task may from inside `wake()`.
//!   These tests run, on every executor of guarantee 8, a task that does
//!   what would deadlock if its waker ran under event-listener's lock, the
//!   moment it is woken: drops another pending future of the same node,
//!   drops its `Phaser` (which wakes its parent), registers again; and
//!   wakers of our own that cancel or drop from inside `wake()`
//!   (`tests/liveness.rs` has the rest). A deadlock is caught by a
//!   watchdog.
//! * Under attack (modules `acting`, `under_attack`, `at_thread_exit`,
//!   written by an outside review that could not see the tests above):
//!   wakers that cancel on a helping thread, a held panic, two cancellers
//!   whose wakers cancel, guarantee 18 with the drop made inside a waker in
//!   the middle of a cancel walk, 13 (a panicking waker leaves the tree
//!   consistent), 14 (a helper does not wait for a slow waker's thread),
//!   and a `Phaser` dropped by a thread-local destructor. They need `std`:
//!   without it a waker runs inside event-listener's notify (crate docs,
//!   "Wakers").
#![cfg(not(loom))]

mod common;

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use common::{poll_once, within_a_minute};
use phaseout::{Phaser, Token};

/// A waker that, when woken, says so and then takes `delay` to return,
/// like a waker that does real work or whose thread is preempted.
struct SlowWaker {
    in_wake: mpsc::SyncSender<()>,
    delay: Duration,
}

impl Wake for SlowWaker {
    fn wake(self: Arc<Self>) {
        let _ = self.in_wake.try_send(());
        thread::sleep(self.delay);
    }
}

/// A waker that records that it was woken.
#[derive(Default)]
struct FlagWaker(AtomicBool);

impl Wake for FlagWaker {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn at_once_holds_while_another_cancel_is_still_waking() {
    let rounds = if cfg!(miri) { 1 } else { 5 };
    for _ in 0..rounds {
        let root = Phaser::named("root");
        let mid = root.child_named("mid").unwrap();
        let token = mid.token();

        // Two waiters on `mid`: the slow one registered first, so the
        // first canceller wakes it first and is held up in it.
        let (in_wake, woken) = mpsc::sync_channel(1);
        let slow = Waker::from(Arc::new(SlowWaker {
            in_wake,
            delay: Duration::from_millis(if cfg!(miri) { 10 } else { 300 }),
        }));
        let flag = Arc::new(FlagWaker::default());
        let mut first = token.cancelled();
        let mut second = token.cancelled();
        assert!(poll_once(&mut first, &slow).is_pending());
        assert!(poll_once(&mut second, &Waker::from(flag.clone())).is_pending());

        let first_canceller = thread::spawn(move || token.cancel());
        woken.recv().unwrap(); // the first cancel is inside the slow wake
        root.cancel(); // finds `mid` already cancelled
        assert!(
            flag.0.load(Ordering::SeqCst),
            "root.cancel() returned while a waiter below it was not woken yet"
        );
        first_canceller.join().unwrap();
        assert!(poll_once(&mut first, &slow).is_ready());
        assert!(poll_once(&mut second, &slow).is_ready());
    }
}

/// What a woken task does that would deadlock inside `wake()`: drop another
/// pending future of its node, register a new one, make and drop a child
/// of another live node, and drop its own `Phaser` (which may wake the
/// parent's turn).
async fn reentering_task(phaser: Phaser, other_root: Token) {
    let mut other = phaser.token().cancelled();
    // Register `other` too, so that dropping it removes a listener. (On a
    // slow machine, or under Miri, the cancel may already have come: then
    // it is simply ready.)
    poll_fn(|cx| {
        let _ = Pin::new(&mut other).poll(cx);
        Poll::Ready(())
    })
    .await;
    phaser.cancelled().await;
    drop(other);
    let again = phaser.token().cancelled();
    again.await;
    drop(phaser);
    drop(other_root.cancelled());
}

/// Builds the scenario: `tasks` leaves under one root, each running
/// [`reentering_task`] on the executor given by `spawn_all`, and a thread
/// that cancels the root. Returns once the root's turn came.
fn reentrant_wakers_on(
    executor: &'static str,
    run: impl FnOnce(Vec<Pin<Box<dyn Future<Output = ()> + Send>>>, Phaser) + Send + 'static,
) {
    within_a_minute(executor, move || {
        let root = Phaser::named(executor);
        let spare = Phaser::named("spare");
        let tasks: Vec<Pin<Box<dyn Future<Output = ()> + Send>>> = (0..8)
            .map(|_| {
                let leaf = root.child().unwrap();
                Box::pin(reentering_task(leaf, spare.token())) as _
            })
            .collect();
        run(tasks, root);
    });
}

/// Cancels `root` from another thread shortly after, while tasks wait.
fn cancel_soon(root: &Phaser) -> thread::JoinHandle<()> {
    let token = root.token();
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        token.cancel();
    })
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot run the executors' I/O drivers")]
fn reentrant_wakers_smol() {
    reentrant_wakers_on("smol", |tasks, root| {
        let canceller = cancel_soon(&root);
        smol::block_on(async {
            let tasks: Vec<_> = tasks.into_iter().map(smol::spawn).collect();
            root.turn().await;
            for task in tasks {
                task.await;
            }
        });
        canceller.join().unwrap();
    });
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot run the executors' I/O drivers")]
fn reentrant_wakers_async_std() {
    reentrant_wakers_on("async-std", |tasks, root| {
        let canceller = cancel_soon(&root);
        async_std::task::block_on(async {
            let tasks: Vec<_> = tasks.into_iter().map(async_std::task::spawn).collect();
            root.turn().await;
            for task in tasks {
                task.await;
            }
        });
        canceller.join().unwrap();
    });
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot run the executors' I/O drivers")]
fn reentrant_wakers_tokio_current_thread() {
    reentrant_wakers_on("tokio current-thread", |tasks, root| {
        let canceller = cancel_soon(&root);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let tasks: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
            root.turn().await;
            for task in tasks {
                task.await.unwrap();
            }
        });
        canceller.join().unwrap();
    });
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot run the executors' I/O drivers")]
fn reentrant_wakers_tokio_multi_thread() {
    reentrant_wakers_on("tokio multi-thread", |tasks, root| {
        let canceller = cancel_soon(&root);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        runtime.block_on(async {
            let tasks: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
            root.turn().await;
            for task in tasks {
                task.await.unwrap();
            }
        });
        canceller.join().unwrap();
    });
}

#[test]
fn reentrant_wakers_futures_executor() {
    reentrant_wakers_on("futures-executor", |tasks, root| {
        let canceller = cancel_soon(&root);
        let mut pool = futures_executor::LocalPool::new();
        let spawner = pool.spawner();
        for task in tasks {
            let task = futures_task::LocalFutureObj::new(Box::new(task));
            futures_task::LocalSpawn::spawn_local_obj(&spawner, task).unwrap();
        }
        pool.run_until(root.turn());
        pool.run();
        canceller.join().unwrap();
    });
}

#[test]
fn reentrant_wakers_pollster() {
    reentrant_wakers_on("pollster", |tasks, root| {
        let canceller = cancel_soon(&root);
        // pollster runs one future per thread: one thread per task.
        let threads: Vec<_> = tasks
            .into_iter()
            .map(|task| thread::spawn(move || pollster::block_on(task)))
            .collect();
        pollster::block_on(root.turn());
        for thread in threads {
            thread.join().unwrap();
        }
        canceller.join().unwrap();
    });
}

/// A waker that cancels a token when woken: a natural way to link one
/// cancellation to another.
struct CancelOnWake(Token);

impl Wake for CancelOnWake {
    fn wake(self: Arc<Self>) {
        self.0.cancel();
    }
}

/// A waker that drops a `Phaser` when woken.
struct DropOnWake(std::sync::Mutex<Option<Phaser>>);

impl Wake for DropOnWake {
    fn wake(self: Arc<Self>) {
        drop(self.0.lock().unwrap().take());
    }
}

/// Registers `cancelled()` of `token` with `waker`; returns the future.
fn waiting_with(token: &Token, waker: Waker) -> impl Future<Output = ()> + Unpin {
    let mut waiting = token.cancelled();
    assert!(poll_once(&mut waiting, &waker).is_pending());
    waiting
}

#[test]
#[cfg_attr(
    not(feature = "std"),
    ignore = "needs std: without it a waker runs inside the notify (crate docs, Wakers)"
)]
fn a_waker_may_cancel_the_node_it_is_woken_for() {
    within_a_minute("cancel from wake()", || {
        let node = Phaser::new();
        let token = node.token();
        let _waiting = waiting_with(&token, Waker::from(Arc::new(CancelOnWake(token.clone()))));
        node.cancel();
        assert!(node.is_turn());
    });
}

#[test]
#[cfg_attr(
    not(feature = "std"),
    ignore = "needs std: without it a waker runs inside the notify (crate docs, Wakers)"
)]
fn a_waker_may_cancel_an_ancestor_of_the_node_it_is_woken_for() {
    within_a_minute("ancestor cancel from wake()", || {
        let root = Phaser::new();
        let child = root.child().unwrap();
        let grandchild = child.child().unwrap();
        let _waiting = waiting_with(
            &grandchild.token(),
            Waker::from(Arc::new(CancelOnWake(root.token()))),
        );
        child.cancel(); // the waker then cancels the root, whose walk meets it
        assert!(root.is_cancelled() && grandchild.is_cancelled());
    });
}

#[test]
#[cfg_attr(
    not(feature = "std"),
    ignore = "needs std: without it a waker runs inside the notify (crate docs, Wakers)"
)]
fn a_waker_may_drop_the_phaser_of_the_node_it_is_woken_for() {
    within_a_minute("owner drop from wake()", || {
        let root = Phaser::new();
        let node = root.child().unwrap();
        let token = node.token();
        let waker = Waker::from(Arc::new(DropOnWake(std::sync::Mutex::new(Some(node)))));
        let _waiting = waiting_with(&token, waker);
        root.cancel();
        assert!(root.is_turn(), "the dropped node drained");
    });
}

/// Guarantee 17 (wakers may act) and its interplay with 3/13/14.
#[cfg(feature = "std")]
mod acting {
    use super::common::{poll_once, waker};
    use phaseout::Phaser;
    use std::cell::Cell;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

    thread_local! {
        static DEPTH: Cell<usize> = const { Cell::new(0) };
    }

    /// Thread A cancels a node whose waiter's waker cancels the same node again
    /// (allowed by guarantee 17) and then takes a while (a slow waker: A's
    /// delivery stays in flight). Thread B's `cancel()` helps deliver A's
    /// records (guarantee 14), so it runs the waker; the waker's `cancel()` on
    /// B finds the node's wake still pending and delivers again, and that
    /// nested delivery also picks up A's record (it only skips *B's own* outer
    /// deliveries), which runs the same waker inside itself, and so on: an
    /// unbounded recursion on B for as long as A's delivery lasts. Capped here
    /// at 64 levels so that the test fails instead of overflowing the stack.
    #[test]
    fn a_helping_thread_does_not_recurse_into_a_waker_that_cancels() {
        let root = Phaser::new();
        let token = root.token();
        let a = thread::current().id();
        let a_inside = Arc::new(AtomicBool::new(false));
        let b_done = Arc::new(AtomicBool::new(false));
        let deepest = Arc::new(AtomicUsize::new(0));

        let w = {
            let token = token.clone();
            let a_inside = Arc::clone(&a_inside);
            let b_done = Arc::clone(&b_done);
            let deepest = Arc::clone(&deepest);
            waker(move || {
                let depth = DEPTH.with(|d| {
                    d.set(d.get() + 1);
                    d.get()
                });
                deepest.fetch_max(depth, Ordering::SeqCst);
                if depth <= 64 {
                    token.cancel(); // a waker may cancel (guarantee 17)
                }
                if thread::current().id() == a && depth == 1 {
                    // A slow waker: keep A's delivery in flight for a while.
                    a_inside.store(true, Ordering::SeqCst);
                    let start = Instant::now();
                    while !b_done.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(3)
                    {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
                DEPTH.with(|d| d.set(d.get() - 1));
            })
        };
        let mut cancelled = token.cancelled();
        assert!(poll_once(&mut cancelled, &w).is_pending());

        let helper = {
            let token = token.clone();
            let a_inside = Arc::clone(&a_inside);
            let b_done = Arc::clone(&b_done);
            thread::spawn(move || {
                while !a_inside.load(Ordering::SeqCst) {
                    thread::yield_now();
                }
                token.cancel();
                b_done.store(true, Ordering::SeqCst);
            })
        };
        root.cancel();
        helper.join().unwrap();
        let deepest = deepest.load(Ordering::SeqCst);
        assert!(
            deepest <= 2,
            "the waker ran {deepest} levels deep inside itself (capped at 65)"
        );
    }

    /// A waker that cancels the node it is woken for, again: its `cancel()`
    /// is made inside the delivery of that node's wakes on this thread, so it
    /// leaves the node's other waiters to that delivery (node invariant #9's
    /// one exception: waking them from inside would run the same waker inside
    /// itself). The outer `cancel()` returns only after every waiter, the
    /// second one included, has been woken.
    #[test]
    fn a_cancel_made_by_a_waker_leaves_the_rest_to_the_delivery_it_is_inside() {
        let root = Phaser::new();
        let token = root.token();
        let second_woken = Arc::new(AtomicBool::new(false));
        let inner_returned = Arc::new(AtomicBool::new(false));

        let first = {
            let token = token.clone();
            let inner_returned = Arc::clone(&inner_returned);
            waker(move || {
                token.cancel();
                inner_returned.store(true, Ordering::SeqCst);
            })
        };
        let second = {
            let second_woken = Arc::clone(&second_woken);
            waker(move || second_woken.store(true, Ordering::SeqCst))
        };
        let mut f1 = token.cancelled();
        let mut f2 = token.cancelled();
        assert!(poll_once(&mut f1, &first).is_pending());
        assert!(poll_once(&mut f2, &second).is_pending());
        root.cancel();
        assert!(
            inner_returned.load(Ordering::SeqCst),
            "the waker's cancel() did not return"
        );
        assert!(
            second_woken.load(Ordering::SeqCst),
            "the outer cancel() returned before the node's other waiter was woken"
        );
    }

    /// One waker panics; a second waker of the same wake-up (guarantee 17)
    /// drops a `Phaser` of its own and then wakes its task. The first panic is
    /// held for the end of the *outer* cancel, but the inner drop ends an
    /// operation too and raises it there, inside the innocent second waker:
    /// its task is never woken.
    #[test]
    fn a_held_panic_is_not_raised_inside_another_waker() {
        let root = Phaser::new();
        let token = root.token();
        let task_woken = Arc::new(AtomicBool::new(false));

        let panicking = waker(|| panic!("a waker's own bug"));
        let acting = {
            let task_woken = Arc::clone(&task_woken);
            waker(move || {
                let scratch = Phaser::new(); // any tree operation inside a waker
                drop(scratch);
                task_woken.store(true, Ordering::SeqCst); // "schedule the task"
            })
        };
        let mut f1 = token.cancelled();
        let mut f2 = token.cancelled();
        assert!(poll_once(&mut f1, &panicking).is_pending());
        assert!(poll_once(&mut f2, &acting).is_pending());
        let outcome = catch_unwind(AssertUnwindSafe(|| root.cancel()));
        assert!(
            outcome.is_err(),
            "the waker's panic is raised at the end of cancel()"
        );
        assert!(
            task_woken.load(Ordering::SeqCst),
            "the second waker was interrupted by the first one's panic: its task is never woken"
        );
        assert!(root.is_cancelled() && root.is_turn());
    }

    /// The same with a waker that cancels an unrelated node: the unrelated
    /// `cancel()` call panics with somebody else's panic.
    #[test]
    fn an_unrelated_cancel_inside_a_waker_does_not_panic_with_another_wakers_panic() {
        let root = Phaser::new();
        let other = Phaser::new();
        let token = root.token();
        let cancel_panicked = Arc::new(AtomicBool::new(false));

        let panicking = waker(|| panic!("a waker's own bug"));
        let acting = {
            let other = other.token();
            let cancel_panicked = Arc::clone(&cancel_panicked);
            waker(move || {
                if catch_unwind(AssertUnwindSafe(|| other.cancel())).is_err() {
                    cancel_panicked.store(true, Ordering::SeqCst);
                }
            })
        };
        let mut f1 = token.cancelled();
        let mut f2 = token.cancelled();
        assert!(poll_once(&mut f1, &panicking).is_pending());
        assert!(poll_once(&mut f2, &acting).is_pending());
        let _ = catch_unwind(AssertUnwindSafe(|| root.cancel()));
        assert!(other.is_cancelled());
        assert!(
            !cancel_panicked.load(Ordering::SeqCst),
            "other.cancel() raised a panic of a different waker"
        );
    }

    /// The recursion above without a slow waker and without a cap: many
    /// waiters whose wakers cancel their node (escalation, guarantee 17), and
    /// two threads cancelling it at once. The helping thread's nested
    /// deliveries re-run every record of the other thread's in-flight delivery.
    /// Before the fix it overflowed the stack and aborted the process (at
    /// `WAITERS=20000`; with the default it reached depth 1,693).
    #[test]
    #[cfg_attr(miri, ignore = "thousands of waiters: minutes under Miri")]
    fn two_cancellers_and_cancelling_wakers_do_not_overflow_the_stack() {
        let waiters: usize = std::env::var("WAITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000);
        let deepest = Arc::new(AtomicUsize::new(0));
        for round in 0..5 {
            let root = Phaser::new();
            let token = root.token();
            let mut futures = Vec::new();
            for _ in 0..waiters {
                let token2 = token.clone();
                let deepest = Arc::clone(&deepest);
                let w = waker(move || {
                    let depth = DEPTH.with(|d| {
                        d.set(d.get() + 1);
                        d.get()
                    });
                    deepest.fetch_max(depth, Ordering::SeqCst);
                    token2.cancel();
                    DEPTH.with(|d| d.set(d.get() - 1));
                });
                let mut f = token.cancelled();
                assert!(poll_once(&mut f, &w).is_pending());
                futures.push(f);
            }
            let go = Arc::new(std::sync::Barrier::new(2));
            let other = {
                let token = token.clone();
                let go = Arc::clone(&go);
                thread::spawn(move || {
                    go.wait();
                    token.cancel();
                })
            };
            go.wait();
            root.cancel();
            other.join().unwrap();
            drop(futures);
            eprintln!("round {round}: deepest {}", deepest.load(Ordering::SeqCst));
        }
        assert!(deepest.load(Ordering::SeqCst) <= 2);
    }
}
/// What held up under attack: guarantee 18 (causes, also with the drop made
/// inside a waker in the middle of a cancel walk), 13 (a panicking waker
/// leaves the tree consistent), 14 (a helper does not wait for a slow
/// waker's thread, and wakes what it recorded).
#[cfg(feature = "std")]
mod under_attack {
    use super::common::{poll_once, waker};
    use phaseout::Phaser;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread;
    use std::time::{Duration, Instant};

    #[test]
    fn a_drop_inside_the_walk_passes_the_nodes_own_cause_down() {
        for with_cause in [true, false] {
            let root = Phaser::named("root");
            let m = root.child_named("m").unwrap();
            let g = m.child_named("g").unwrap();
            let g_token = g.token();
            let m_slot = Arc::new(Mutex::new(Some(m)));
            let m_token = m_slot.lock().unwrap().as_ref().unwrap().token();
            let drop_m = {
                let m_slot = Arc::clone(&m_slot);
                waker(move || {
                    let m = m_slot.lock().unwrap().take();
                    drop(m); // the owner returns inside the wake
                })
            };
            let mut f = m_token.cancelled();
            assert!(poll_once(&mut f, &drop_m).is_pending());
            if with_cause {
                root.cancel_with("SIGTERM");
                assert_eq!(g_token.cause().unwrap().to_string(), "SIGTERM");
                assert_eq!(m_token.cause().unwrap().to_string(), "SIGTERM");
            } else {
                root.cancel();
                assert!(g_token.cause().is_none(), "{:?}", g_token.cause());
                assert!(m_token.cause().is_none());
            }
            assert!(m_slot.lock().unwrap().is_none());
            drop(g);
            assert!(root.is_turn());
        }
    }

    /// Guarantee 18: a live node's drop is its first cancellation: the drop
    /// cause names it, for it and below.
    #[test]
    fn a_live_nodes_drop_names_its_owner() {
        let root = Phaser::named("root");
        let m = root.child_named("m").unwrap();
        let g = m.child_named("g").unwrap();
        let (mt, gt) = (m.token(), g.token());
        drop(m);
        let cause = gt.cause().unwrap().to_string();
        assert!(cause.contains('m') && cause.contains("finished"), "{cause}");
        assert_eq!(mt.cause().unwrap().to_string(), cause);
        assert!(!root.is_cancelled());
        drop(g);
        assert_eq!(root.live_children(), 0);
    }

    /// Guarantee 13: a waker that panics on the turn of a parent whose last
    /// child drains: the drop panics, the tree stays consistent, the other
    /// waiter is woken, no lock is left held.
    #[test]
    fn a_panicking_turn_waker_leaves_the_tree_consistent() {
        let root = Phaser::named("root");
        let mid = root.child_named("mid").unwrap();
        let leaf = mid.child_named("leaf").unwrap();
        let other_woken = Arc::new(AtomicBool::new(false));
        let mut t1 = mid.turn();
        let mut t2 = mid.turn();
        assert!(poll_once(&mut t1, &waker(|| panic!("turn waker bug"))).is_pending());
        let ow = Arc::clone(&other_woken);
        assert!(poll_once(&mut t2, &waker(move || ow.store(true, Ordering::SeqCst))).is_pending());
        assert!(catch_unwind(AssertUnwindSafe(|| root.cancel())).is_err());
        assert!(root.is_cancelled() && leaf.is_cancelled());
        // The cancel woke both (a panic there too): the turn waiters re-register.
        let _ = poll_once(&mut t1, &waker(|| panic!("turn waker bug")));
        let ow = Arc::clone(&other_woken);
        other_woken.store(false, Ordering::SeqCst);
        let _ = poll_once(&mut t2, &waker(move || ow.store(true, Ordering::SeqCst)));
        let result = catch_unwind(AssertUnwindSafe(move || drop(leaf)));
        assert!(result.is_err());
        assert!(other_woken.load(Ordering::SeqCst));
        assert!(mid.is_turn());
        assert!(mid.child().is_err());
        let r = mid.report().to_string();
        assert!(!r.is_empty());
        drop(mid);
        assert!(root.is_turn());
        assert_eq!(root.live_children(), 0);
    }

    /// A Phaser dropped while its thread unwinds, whose drop wakes a panicking
    /// waker: no abort, the node drains, the cause says panicked.
    #[test]
    fn a_panicking_waker_during_unwinding_is_dropped() {
        let root = Phaser::new();
        let child = root.child_named("worker").unwrap();
        let token = child.token();
        let mut f = token.cancelled();
        assert!(poll_once(&mut f, &waker(|| panic!("second panic"))).is_pending());
        let r = catch_unwind(AssertUnwindSafe(move || {
            let _child = child;
            panic!("first panic");
        }));
        let payload = r.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"first panic"));
        assert!(token.cause().unwrap().to_string().contains("panicked"));
        assert_eq!(root.live_children(), 0);
    }

    /// Guarantee 14 with a slow waker: B's cancel returns without waiting for
    /// A to finish its slow waker, and the waiter after it has been woken.
    #[test]
    fn a_second_cancel_helps_past_a_slow_waker() {
        let root = Phaser::new();
        let token = root.token();
        let inside = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let woken = Arc::new(AtomicBool::new(false));
        let a = thread::current().id();
        let slow = {
            let inside = Arc::clone(&inside);
            let release = Arc::clone(&release);
            waker(move || {
                if thread::current().id() == a {
                    inside.store(true, Ordering::SeqCst);
                    let start = Instant::now();
                    while !release.load(Ordering::SeqCst)
                        && start.elapsed() < Duration::from_secs(5)
                    {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        };
        let later = {
            let woken = Arc::clone(&woken);
            waker(move || woken.store(true, Ordering::SeqCst))
        };
        let mut f1 = token.cancelled();
        let mut f2 = token.cancelled();
        assert!(poll_once(&mut f1, &slow).is_pending());
        assert!(poll_once(&mut f2, &later).is_pending());
        let helper = {
            let token = token.clone();
            let inside = Arc::clone(&inside);
            let release = Arc::clone(&release);
            let woken = Arc::clone(&woken);
            thread::spawn(move || {
                while !inside.load(Ordering::SeqCst) {
                    thread::yield_now();
                }
                let start = Instant::now();
                token.cancel();
                let took = start.elapsed();
                let seen = woken.load(Ordering::SeqCst);
                release.store(true, Ordering::SeqCst);
                (took, seen)
            })
        };
        root.cancel();
        let (took, seen) = helper.join().unwrap();
        assert!(
            seen,
            "B's cancel returned before the second waiter was woken"
        );
        assert!(took < Duration::from_secs(1), "B waited {took:?}");
    }
}
/// Guarantee 17 at thread exit: a `Phaser` dropped by a thread-local
/// destructor, late in the thread's teardown. (0.2's first wake deferral
/// kept its list in a thread-local with a destructor, gone by then; the
/// delivery's thread-locals, `src/node/wakes.rs`, have none.)
#[cfg(feature = "std")]
mod at_thread_exit {
    use super::common::{poll_once, waker};
    use phaseout::futures::Cancelled;
    use phaseout::Phaser;
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use std::thread;
    use std::time::Duration;

    thread_local! {
        static HELD: RefCell<Option<Phaser>> = const { RefCell::new(None) };
    }

    /// A worker thread keeps its component's `Phaser` in a thread-local,
    /// registered before the thread first woke anything through phaseout, so
    /// that a thread-local phaseout used would be destroyed first (destructors
    /// run in reverse order of registration). The `Phaser` is dropped by the
    /// thread-local's destructor; had the delivery lost its thread-local, the
    /// users' wakers would run *under event-listener's lock*. A waker that drops another future of the same
    /// node (guarantee 17) then deadlocks; here the drop is done by a helper
    /// thread, so the test sees the lock held instead of hanging.
    #[test]
    fn a_phaser_dropped_at_thread_exit_wakes_with_no_lock_held() {
        let (to_main, from_worker) = mpsc::channel();
        let worker = thread::spawn(move || {
            let phaser = Phaser::named("thread-local component");
            let token = phaser.token();
            // Registered first, so destroyed last.
            HELD.with(|held| *held.borrow_mut() = Some(phaser));
            // Now any wake through phaseout on this thread, so that whatever
            // thread-local it uses is registered second.
            let scratch = Phaser::new();
            let mut f = scratch.token().cancelled();
            assert!(poll_once(&mut f, &waker(|| {})).is_pending());
            scratch.cancel();
            to_main.send(token).unwrap();
            // Wait until main registered its waiters, then exit.
            thread::park();
        });
        let token = from_worker.recv().unwrap();

        let other: Arc<Mutex<Option<Cancelled>>> = Arc::new(Mutex::new(Some(token.cancelled())));
        assert!(poll_once(other.lock().unwrap().as_mut().unwrap(), &waker(|| {})).is_pending());
        let lock_held = Arc::new(AtomicBool::new(false));
        let woken = Arc::new(AtomicBool::new(false));
        let acting = {
            let other = Arc::clone(&other);
            let lock_held = Arc::clone(&lock_held);
            let woken = Arc::clone(&woken);
            waker(move || {
                woken.store(true, Ordering::SeqCst);
                // Drop the node's other future (guarantee 17), on a helper
                // thread so that a held lock shows as a timeout, not a hang.
                let other = Arc::clone(&other);
                let (done, finished) = mpsc::channel();
                thread::spawn(move || {
                    drop(other.lock().unwrap().take());
                    let _ = done.send(());
                });
                if finished.recv_timeout(Duration::from_secs(2)).is_err() {
                    lock_held.store(true, Ordering::SeqCst);
                }
            })
        };
        let mut mine = token.cancelled();
        assert!(poll_once(&mut mine, &acting).is_pending());
        worker.thread().unpark();
        worker.join().unwrap();
        assert!(token.is_cancelled());
        assert!(woken.load(Ordering::SeqCst), "the waiter was never woken");
        assert!(
        !lock_held.load(Ordering::SeqCst),
        "the user's waker ran under event-listener's lock (a waker dropping a future of the node deadlocks)"
    );
    }
}

/// Guarantee 14 for a call made inside a waker while another thread's
/// delivery of the same node is in flight (a second review, tests hidden):
/// thread A delivers `n`'s cancel and runs a waker; that waker registers
/// two `aborted()` waiters on `n`, starts thread C's `abort()` (whose
/// delivery is held up in the first of them), then calls `abort()` itself.
/// When that returns, the second waiter must have been woken. A nested
/// delivery used to leave everything but its own notify's records to the
/// delivery it runs inside, which had collected its list before C
/// recorded anything: nobody on A woke C's records.
#[cfg(feature = "std")]
mod nested_during_another_threads_delivery {
    use std::future::Future;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc, Mutex};
    use std::task::{Context, Wake, Waker};
    use std::thread;
    use std::time::Duration;

    use phaseout::{Phaser, Token};

    /// The two `aborted()` waiters: whichever is woken first blocks (keeps
    /// its thread's delivery in flight) until released; the other one
    /// records that it was woken.
    struct AbortWaiter {
        woken: Arc<AtomicUsize>,
        entered: mpsc::SyncSender<()>,
        release: Mutex<mpsc::Receiver<()>>,
        second_woken: Arc<AtomicBool>,
    }

    impl Wake for AbortWaiter {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            if self.woken.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = self.entered.try_send(());
                let _ = self
                    .release
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(10));
            } else {
                self.second_woken.store(true, Ordering::SeqCst);
            }
        }
    }

    /// The waker of `n`'s `cancelled()`: acts on its first wake only.
    struct Nests {
        token: Token,
        calls: AtomicUsize,
        second_woken_when_abort_returned: Mutex<Option<bool>>,
        nested: bool,
    }

    impl Wake for Nests {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            if self.calls.fetch_add(1, Ordering::SeqCst) != 0 {
                return; // woken again by C's helping delivery
            }
            let woken = Arc::new(AtomicUsize::new(0));
            let second_woken = Arc::new(AtomicBool::new(false));
            let (entered, in_first_waiter) = mpsc::sync_channel(2);
            let mut releases = Vec::new();
            let mut futures = Vec::new();
            for _ in 0..2 {
                let (release, released) = mpsc::channel();
                releases.push(release);
                let waker = Waker::from(Arc::new(AbortWaiter {
                    woken: woken.clone(),
                    entered: entered.clone(),
                    release: Mutex::new(released),
                    second_woken: second_woken.clone(),
                }));
                let mut aborted = Box::pin(self.token.aborted());
                let pending = aborted
                    .as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending();
                assert!(pending);
                futures.push(aborted);
            }
            let c = {
                let token = self.token.clone();
                thread::spawn(move || token.abort())
            };
            in_first_waiter
                .recv_timeout(Duration::from_secs(10))
                .expect("thread C's delivery reached the first waiter");
            if self.nested {
                self.token.abort(); // nested inside A's delivery of `n`
            } else {
                let token = self.token.clone();
                thread::spawn(move || token.abort()).join().unwrap(); // control
            }
            *self.second_woken_when_abort_returned.lock().unwrap() =
                Some(second_woken.load(Ordering::SeqCst));
            for release in releases {
                let _ = release.send(());
            }
            c.join().unwrap();
            drop(futures);
        }
    }

    fn second_woken_when_abort_returned(nested: bool) -> bool {
        let n = Phaser::named("n");
        let task = Arc::new(Nests {
            token: n.token(),
            calls: AtomicUsize::new(0),
            second_woken_when_abort_returned: Mutex::new(None),
            nested,
        });
        let waker = Waker::from(task.clone());
        let mut cancelled = Box::pin(n.cancelled());
        assert!(cancelled
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        n.cancel(); // runs `Nests` on this thread
        let seen = *task.second_woken_when_abort_returned.lock().unwrap();
        seen.expect("the waker ran")
    }

    #[test]
    fn an_abort_from_a_third_thread_wakes_what_another_abort_notified() {
        assert!(second_woken_when_abort_returned(false));
    }

    #[test]
    fn an_abort_inside_a_waker_wakes_what_another_threads_abort_notified() {
        assert!(
            second_woken_when_abort_returned(true),
            "abort() returned from inside a waker before every aborted() waiter \
             notified so far was woken"
        );
    }
}
