//! Stopping a program: owned futures, `run_until_cancelled`,
//! `shutdown_within`, and `Report` as an error.

mod common;

use std::error::Error;
use std::future::{pending, ready, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread;

use common::{poll_once, scaled, CountingWaker};
use futures_core::FusedFuture;
use phaseout::Phaser;

/// Compiles only if `fut` could be handed to `tokio::spawn` or
/// `std::thread::spawn`.
fn spawnable<F: Future + Send + 'static>(fut: F) -> F {
    fut
}

#[test]
fn every_future_is_send_and_static_when_its_inputs_are() {
    let root = Phaser::new();
    let token = root.token();
    // Each future is built from a borrow of `root` or `token` that ends at
    // once; the future outlives it.
    let futures = (
        spawnable(root.cancelled()),
        spawnable(root.turn()),
        spawnable(root.turn_within(pending::<()>())),
        spawnable(root.run_until_cancelled(ready(1))),
        spawnable(token.cancelled()),
        spawnable(token.run_until_cancelled(ready(1))),
    );
    // `shutdown` and `shutdown_within` cancel, so they get their own node.
    let other = Phaser::new();
    let shutdown = spawnable(other.shutdown());
    let shutdown_within = spawnable(other.shutdown_within(ready(())));
    drop((root, token)); // the futures do not borrow them
    drop((futures, shutdown, shutdown_within));
}

#[test]
fn an_owned_turn_waits_in_a_spawned_task_while_the_owner_keeps_its_phaser() {
    let root = Phaser::named("app");
    let worker = root.child_named("worker").unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let turn = runtime.spawn(root.turn());
    let shutdown = runtime.spawn(root.shutdown_within(pending::<()>()));
    let worker_task = runtime.spawn(async move {
        worker.cancelled().await;
        drop(worker);
    });
    runtime.block_on(async {
        worker_task.await.unwrap();
        turn.await.unwrap();
        shutdown.await.unwrap().unwrap();
    });
    assert!(root.is_turn());
}

#[test]
fn a_turn_future_resolves_after_its_phaser_was_dropped() {
    let root = Phaser::new();
    let child = root.child().unwrap();
    let turn = child.turn();
    drop(child); // the owner finished: the node drained, the future holds on
    pollster::block_on(turn); // returns: the turn came
    assert_eq!(root.live_children(), 0);
}

/// A future that records whether it was polled and whether it was dropped.
struct Probe {
    polls: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
    ready: bool,
}

impl Probe {
    fn new(ready: bool) -> (Self, Arc<AtomicUsize>, Arc<AtomicBool>) {
        let polls = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicBool::new(false));
        let probe = Self {
            polls: polls.clone(),
            dropped: dropped.clone(),
            ready,
        };
        (probe, polls, dropped)
    }
}

impl Future for Probe {
    type Output = &'static str;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<&'static str> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        if self.ready {
            Poll::Ready("work done")
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

#[test]
fn run_until_cancelled_gives_the_output_while_live() {
    let root = Phaser::new();
    let (probe, polls, dropped) = Probe::new(true);
    let (_, waker) = CountingWaker::new();
    let mut run = root.run_until_cancelled(probe);
    assert!(!run.is_terminated());
    assert_eq!(poll_once(&mut run, &waker), Poll::Ready(Some("work done")));
    assert_eq!(polls.load(Ordering::SeqCst), 1);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the work is dropped once done"
    );
    assert!(run.is_terminated());
    // Polled again it stays ready; the output was handed out already.
    assert_eq!(poll_once(&mut run, &waker), Poll::Ready(None));
}

#[test]
fn run_until_cancelled_checks_cancellation_first_and_never_starts_the_work() {
    let root = Phaser::new();
    let token = root.token();
    root.cancel();
    let (probe, polls, dropped) = Probe::new(true);
    let (_, waker) = CountingWaker::new();
    let mut run = token.run_until_cancelled(probe);
    // Both are ready: cancellation wins, and the work is never polled.
    assert_eq!(poll_once(&mut run, &waker), Poll::Ready(None));
    assert_eq!(polls.load(Ordering::SeqCst), 0);
    assert!(dropped.load(Ordering::SeqCst), "dropped at once, not later");
    assert!(run.is_terminated());
}

#[test]
fn run_until_cancelled_drops_pending_work_when_cancelled() {
    let root = Phaser::new();
    let (probe, polls, dropped) = Probe::new(false);
    let (counter, waker) = CountingWaker::new();
    let mut run = root.run_until_cancelled(probe);
    assert_eq!(poll_once(&mut run, &waker), Poll::Pending);
    assert_eq!(polls.load(Ordering::SeqCst), 1);
    root.cancel();
    assert_eq!(counter.wakes(), 1, "cancel wakes the task");
    assert!(!dropped.load(Ordering::SeqCst));
    assert_eq!(poll_once(&mut run, &waker), Poll::Ready(None));
    assert_eq!(polls.load(Ordering::SeqCst), 1, "not polled after cancel");
    assert!(dropped.load(Ordering::SeqCst));
}

#[test]
fn run_until_cancelled_is_woken_by_a_cancel_on_another_thread() {
    for _ in 0..scaled(500, 10) {
        let root = Phaser::new();
        let token = root.token();
        let canceller = thread::spawn(move || token.cancel());
        assert_eq!(
            pollster::block_on(root.run_until_cancelled(pending::<()>())),
            None
        );
        canceller.join().unwrap();
    }
}

#[test]
fn run_until_cancelled_heads_a_serving_loop() {
    let root = Phaser::new();
    let token = root.token();
    let (tx, rx) = std::sync::mpsc::channel::<u32>();
    let served = thread::spawn(move || {
        let mut served = Vec::new();
        pollster::block_on(async {
            // `recv` stands in for `listener.accept()`.
            while let Some(Ok(request)) = token.run_until_cancelled(ready(rx.recv())).await {
                served.push(request);
                if request == 3 {
                    token.cancel();
                }
            }
        });
        served
    });
    for request in 1..=5 {
        // Sends after the cancel are never served; a closed channel is fine.
        let _ = tx.send(request);
    }
    assert_eq!(served.join().unwrap(), [1, 2, 3]);
}

#[test]
fn shutdown_within_cancels_when_called_not_when_polled() {
    let root = Phaser::new();
    let child = root.child().unwrap();
    let fut = root.shutdown_within(pending::<()>());
    assert!(root.is_cancelled() && child.is_cancelled());
    drop(child);
    assert!(pollster::block_on(fut).is_ok());
}

#[test]
fn shutdown_cancels_when_called_not_when_polled() {
    let root = Phaser::new();
    let fut = root.shutdown();
    assert!(root.is_cancelled());
    pollster::block_on(fut);
}

fn stop(root: &Phaser) -> Result<(), Box<dyn Error>> {
    pollster::block_on(root.shutdown_within(ready(())))?;
    Ok(())
}

fn stop_send_sync(root: &Phaser) -> Result<(), Box<dyn Error + Send + Sync>> {
    pollster::block_on(root.shutdown_within(ready(())))?;
    Ok(())
}

#[test]
fn a_straggler_report_goes_up_with_question_mark() {
    let root = Phaser::named("app");
    let hung = root.child_named("hung").unwrap();
    let err = stop(&root).unwrap_err();
    let report = err.downcast_ref::<phaseout::Report>().expect("a Report");
    assert!(report.find("hung").is_some());
    assert!(err
        .to_string()
        .contains("hung: its turn came, its owner has not finished"));
    // What `main` shows (Debug) is the same readable tree.
    assert!(
        format!("{err:?}").starts_with("Report of 2 nodes:\napp: cancelled, waiting for 1 child")
    );
    assert!(stop_send_sync(&root).is_err());
    drop(hung);
    assert!(stop(&root).is_ok());
}
