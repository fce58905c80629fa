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
    ignore = "needs std: without it a waker runs inside the notify (README, Wakers)"
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
    ignore = "needs std: without it a waker runs inside the notify (README, Wakers)"
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
    ignore = "needs std: without it a waker runs inside the notify (README, Wakers)"
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
