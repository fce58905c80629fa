//! The futures' contract: `Send`, `FusedFuture`, ready stays ready, and
//! cancellation safety (a dropped future leaves no waker behind).

mod common;

use std::task::Poll;

use common::{poll_once, CountingWaker};
use futures_core::FusedFuture;
use phaseout::Phaser;

fn assert_send<T: Send>(_: &T) {}

#[test]
fn futures_are_send() {
    let root = Phaser::new();
    assert_send(&root.cancelled());
    assert_send(&root.token().cancelled());
    assert_send(&root.turn());
    assert_send(&root.turn_within(std::future::pending::<()>()));
}

#[test]
fn token_future_is_static() {
    fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}
    let root = Phaser::new();
    spawnable(root.token().cancelled());
    spawnable(root.cancelled());
}

#[test]
fn cancelled_is_fused_and_stays_ready() {
    let root = Phaser::new();
    let (_, waker) = CountingWaker::new();
    let mut cancelled = root.cancelled();
    assert!(!cancelled.is_terminated());
    assert_eq!(poll_once(&mut cancelled, &waker), Poll::Pending);
    assert!(!cancelled.is_terminated());
    root.cancel();
    assert_eq!(poll_once(&mut cancelled, &waker), Poll::Ready(()));
    assert!(cancelled.is_terminated());
    assert_eq!(poll_once(&mut cancelled, &waker), Poll::Ready(()));
}

#[test]
fn turn_is_fused_and_stays_ready() {
    let root = Phaser::new();
    let (_, waker) = CountingWaker::new();
    let mut turn = root.shutdown();
    assert_eq!(poll_once(&mut turn, &waker), Poll::Ready(()));
    assert!(turn.is_terminated());
    assert_eq!(poll_once(&mut turn, &waker), Poll::Ready(()));
}

#[test]
fn dropped_cancelled_future_is_not_woken() {
    let root = Phaser::new();
    let (dropped_counter, dropped_waker) = CountingWaker::new();
    let (kept_counter, kept_waker) = CountingWaker::new();
    let mut dropped = root.cancelled();
    let mut kept = root.cancelled();
    assert!(poll_once(&mut dropped, &dropped_waker).is_pending());
    assert!(poll_once(&mut kept, &kept_waker).is_pending());
    drop(dropped);
    root.cancel();
    assert_eq!(
        dropped_counter.wakes(),
        0,
        "a dropped future must unregister its waker"
    );
    assert_eq!(kept_counter.wakes(), 1);
}

#[test]
fn dropped_turn_future_is_not_woken() {
    let root = Phaser::new();
    let child = root.child().unwrap();
    root.cancel();
    let (counter, waker) = CountingWaker::new();
    let mut turn = root.turn();
    assert!(poll_once(&mut turn, &waker).is_pending());
    drop(turn);
    drop(child);
    assert_eq!(counter.wakes(), 0);
    assert!(root.is_turn());
}

#[test]
fn repoll_with_a_new_waker_wakes_the_new_one() {
    let root = Phaser::new();
    let (old_counter, old_waker) = CountingWaker::new();
    let (new_counter, new_waker) = CountingWaker::new();
    let mut cancelled = root.cancelled();
    assert!(poll_once(&mut cancelled, &old_waker).is_pending());
    assert!(poll_once(&mut cancelled, &new_waker).is_pending());
    root.cancel();
    assert_eq!(new_counter.wakes(), 1);
    assert_eq!(
        old_counter.wakes(),
        0,
        "the waker of the latest poll is the one woken"
    );
}

#[test]
fn shutdown_cancels_when_called_not_when_polled() {
    let root = Phaser::new();
    let child = root.child().unwrap();
    let turn = root.shutdown();
    assert!(
        child.is_cancelled(),
        "never polled, yet the tree is cancelled"
    );
    drop(turn);
}

#[test]
fn turn_waiter_woken_by_cancel_when_there_are_no_children() {
    let root = Phaser::new();
    let (counter, waker) = CountingWaker::new();
    let mut turn = root.turn();
    assert!(poll_once(&mut turn, &waker).is_pending());
    root.token().cancel();
    assert_eq!(counter.wakes(), 1);
    assert_eq!(poll_once(&mut turn, &waker), Poll::Ready(()));
}

#[test]
fn debug_output_is_useful() {
    let root = Phaser::named("db");
    let _child = root.child().unwrap();
    let debug = format!("{root:?}");
    assert!(
        debug.contains("\"db\"") && debug.contains("live_children: 1"),
        "{debug}"
    );
    assert!(format!("{:?}", root.token()).contains("cancelled: false"));
    assert!(format!("{:?}", root.cancelled()).starts_with("Cancelled"));
    assert!(format!("{:?}", root.turn()).starts_with("Turn"));
    assert!(format!("{:?}", root.report()).contains("Report"));
}

#[test]
fn default_is_an_unnamed_live_root() {
    let root = Phaser::default();
    assert_eq!(root.label(), None);
    assert!(!root.is_cancelled());
    assert_eq!(root.live_children(), 0);
}

#[test]
fn owned_labels_work_too() {
    let name = format!("worker-{}", 7);
    let root = Phaser::named(name.clone());
    root.cancel();
    assert_eq!(
        root.child().unwrap_err().to_string(),
        "shutdown of `worker-7` has started: it accepts no new child"
    );
    let unnamed = Phaser::new();
    unnamed.cancel();
    assert_eq!(
        unnamed.child().unwrap_err().to_string(),
        "shutdown of this node has started: it accepts no new child"
    );
    let as_error: Box<dyn std::error::Error> = Box::new(unnamed.child().unwrap_err());
    assert!(as_error.to_string().contains("shutdown"));
}

#[test]
fn unlabeled_nodes_show_an_id_in_reports() {
    let root = Phaser::new();
    let report = root.report();
    let entry = &report.entries()[0];
    assert!(report
        .to_string()
        .starts_with(&format!("#{:x}: running, not cancelled", entry.id())));
}

#[cfg(feature = "std")]
#[test]
fn wait_turn_timeout_ok_when_the_turn_comes() {
    let root = Phaser::new();
    let child = root.child().unwrap();
    root.cancel();
    let dropper = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(child);
    });
    assert!(root
        .wait_turn_timeout(std::time::Duration::from_secs(60))
        .is_ok());
    dropper.join().unwrap();
    assert!(
        root.wait_turn_timeout(std::time::Duration::MAX).is_ok(),
        "huge timeouts are fine"
    );
}

/// `run_until_cancelled` registers nothing while its work is ready at once
/// (one load checks the cancel), and registers as soon as the work is
/// pending: a cancel then wakes it, and it ends with `None`, dropping the
/// work. The same for `run_until_aborted`.
#[test]
fn run_until_registers_once_the_work_waits_and_is_woken() {
    struct PendingUntilWoken(bool);
    impl std::future::Future for PendingUntilWoken {
        type Output = u8;
        fn poll(mut self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> Poll<u8> {
            if self.0 {
                Poll::Ready(1)
            } else {
                self.0 = true; // never wakes: only the cancel can
                Poll::Pending
            }
        }
    }
    let root = Phaser::new();
    let (counter, waker) = CountingWaker::new();
    let (abort_counter, abort_waker) = CountingWaker::new();
    let mut ready = root.run_until_cancelled(std::future::ready(7));
    assert_eq!(poll_once(&mut ready, &waker), Poll::Ready(Some(7)));

    let mut waiting = Box::pin(root.run_until_cancelled(PendingUntilWoken(false)));
    assert_eq!(poll_once(&mut waiting, &waker), Poll::Pending);
    root.cancel();
    assert_eq!(
        counter.wakes(),
        1,
        "the cancel woke the waiting run_until_cancelled"
    );
    assert_eq!(poll_once(&mut waiting, &waker), Poll::Ready(None));
    let mut aborting = Box::pin(root.run_until_aborted(PendingUntilWoken(false)));
    assert_eq!(poll_once(&mut aborting, &abort_waker), Poll::Pending);
    root.abort();
    assert_eq!(
        abort_counter.wakes(),
        1,
        "the abort woke the waiting run_until_aborted"
    );
    assert_eq!(poll_once(&mut aborting, &abort_waker), Poll::Ready(None));
}
