//! The staged stop in one call, `Phaser::shutdown_staged`: cancel at once,
//! the grace from the first poll, abort when it runs out, the abort grace,
//! and what `main` learns (`Stopped::aborted`, or the report of who is left).

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use common::{poll_once, within_a_minute, CountingWaker};
use phaseout::{NodeState, Phaser};

/// A timer that has fired already, or never fires: the grace ran out at
/// once, or never runs out.
struct Deadline {
    fires: bool,
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.fires {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A `sleep` that records each call and gives, for the n-th call, a timer
/// that fires if `fires[n]` is true.
fn scripted(fires: &'static [bool]) -> (Arc<Mutex<Vec<Duration>>>, impl Fn(Duration) -> Deadline) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&calls);
    let sleep = move |time: Duration| {
        let mut calls = record.lock().unwrap();
        let fires = fires[calls.len()];
        calls.push(time);
        Deadline { fires }
    };
    (calls, sleep)
}

const GRACE: Duration = Duration::from_secs(30);
const ABORT_GRACE: Duration = Duration::from_secs(7);

#[test]
fn it_cancels_when_called_and_sleeps_only_once_polled() {
    let root = Phaser::named("app");
    let worker = root.child_named("worker").unwrap();
    let (calls, sleep) = scripted(&[false, false]);
    let mut stop = Box::pin(root.shutdown_staged(GRACE, ABORT_GRACE, sleep));
    assert!(
        root.is_cancelled() && worker.is_cancelled(),
        "not cancelled at the call"
    );
    assert!(
        calls.lock().unwrap().is_empty(),
        "the grace started before the first poll"
    );
    let (_, waker) = CountingWaker::new();
    assert!(poll_once(&mut stop, &waker).is_pending());
    assert_eq!(*calls.lock().unwrap(), [GRACE]);
    assert!(!worker.is_aborted(), "aborted within the grace");
    drop(worker);
    let stopped = match poll_once(&mut stop, &waker) {
        Poll::Ready(Ok(stopped)) => stopped,
        other => panic!("not stopped at the turn: {other:?}"),
    };
    assert!(
        stopped.aborted().is_none(),
        "an abort was reported without one"
    );
    assert_eq!(
        *calls.lock().unwrap(),
        [GRACE],
        "slept again after the turn"
    );
    assert!(!root.is_aborted());
}

#[test]
fn when_the_grace_runs_out_it_aborts_and_reports_who_was_late() {
    within_a_minute("a staged stop that needs its abort", grace_runs_out);
}

fn grace_runs_out() {
    let root = Phaser::named("app");
    let quick = root.child_named("quick").unwrap();
    let slow = root.child_named("slow").unwrap();
    drop(quick);
    let task = thread::spawn(move || {
        // Finishes only when told to abandon its work.
        pollster::block_on(slow.aborted());
        drop(slow);
    });
    // The grace is over at once; the abort grace never runs out.
    let (calls, sleep) = scripted(&[true, false]);
    let stopped = pollster::block_on(root.shutdown_staged(GRACE, ABORT_GRACE, sleep))
        .expect("the slow child stopped once aborted");
    task.join().unwrap();
    assert_eq!(*calls.lock().unwrap(), [GRACE, ABORT_GRACE]);
    assert!(root.is_aborted());
    let late = stopped.aborted().expect("no report of who was late");
    let slow = late.find("slow").expect("the late child is not named");
    assert!(!slow.aborted(), "the report was taken after the abort");
    assert!(late.find("quick").is_none(), "a drained child was reported");
    assert_eq!(late.find("app").unwrap().state(), NodeState::Cancelling);
}

#[test]
fn stragglers_after_the_abort_grace_are_the_error() {
    let root = Phaser::named("app");
    let hung = root.child_named("hung").unwrap();
    let (calls, sleep) = scripted(&[true, true]);
    let report = pollster::block_on(root.shutdown_staged(GRACE, ABORT_GRACE, sleep))
        .expect_err("a hung child was not reported");
    assert_eq!(*calls.lock().unwrap(), [GRACE, ABORT_GRACE]);
    let entry = report.find("hung").expect("the straggler is not named");
    assert!(entry.aborted(), "the straggler is not marked aborted");
    assert!(hung.is_aborted());
}

#[test]
fn on_abort_hears_of_the_abort_when_it_happens_and_only_then() {
    let root = Phaser::named("app");
    let slow = root.child_named("slow").unwrap();
    let slow_token = slow.token();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&heard);
    // The grace is over at once; the abort grace never runs out.
    let (calls, sleep) = scripted(&[true, false]);
    let sleeps = Arc::clone(&calls);
    let mut stop = Box::pin(
        root.shutdown_staged_with(GRACE, ABORT_GRACE, sleep, move |late| {
            // Called before the abort, with the stragglers' report, and before
            // the abort grace starts.
            log.lock().unwrap().push((
                late.find("slow").map(|entry| entry.aborted()),
                slow_token.is_aborted(),
                late.to_string().contains("slow"),
                sleeps.lock().unwrap().len(),
            ));
        }),
    );
    let (_, waker) = CountingWaker::new();
    assert!(poll_once(&mut stop, &waker).is_pending());
    assert_eq!(*calls.lock().unwrap(), [GRACE, ABORT_GRACE]);
    assert_eq!(
        heard.lock().unwrap().as_slice(),
        [(Some(false), false, true, 1)],
        "on_abort was not called once, before the abort, naming the straggler"
    );
    assert!(slow.is_aborted(), "no abort after on_abort");
    drop(slow);
    assert!(matches!(poll_once(&mut stop, &waker), Poll::Ready(Ok(_))));
    assert_eq!(heard.lock().unwrap().len(), 1, "on_abort called twice");

    // A stop within the grace never calls it.
    let root = Phaser::named("app");
    let called = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&called);
    let (_, sleep) = scripted(&[false]);
    let stop = root.shutdown_staged_with(GRACE, ABORT_GRACE, sleep, move |_| {
        *flag.lock().unwrap() = true;
    });
    assert!(pollster::block_on(stop).unwrap().aborted().is_none());
    assert!(!*called.lock().unwrap(), "on_abort called without an abort");
}

#[test]
fn a_turn_that_came_already_needs_no_timer_to_fire() {
    let root = Phaser::new();
    let (calls, sleep) = scripted(&[false]);
    let stopped = pollster::block_on(root.shutdown_staged(GRACE, ABORT_GRACE, sleep)).unwrap();
    assert!(stopped.aborted().is_none());
    assert_eq!(calls.lock().unwrap().len(), 1);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri cannot run the I/O and timer drivers (timerfd, epoll)"
)]
fn on_tokio_with_its_timer() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let root = Phaser::named("app");
        let polite = root.child_named("polite").unwrap();
        let stubborn = root.child_named("stubborn").unwrap();
        tokio::spawn(async move {
            polite.cancelled().await;
        });
        tokio::spawn(async move {
            stubborn.aborted().await;
        });
        let stopped = root
            .shutdown_staged(
                // Long enough for the polite task to run on a loaded machine.
                Duration::from_secs(2),
                Duration::from_secs(60),
                tokio::time::sleep,
            )
            .await
            .unwrap();
        let late = stopped
            .aborted()
            .expect("the stubborn child needed an abort");
        assert!(late.find("stubborn").is_some());
        assert!(late.find("polite").is_none(), "{late}");
    });
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri cannot run the I/O and timer drivers (timerfd, epoll)"
)]
fn on_smol_with_its_timer() {
    smol::block_on(async {
        let root = Phaser::named("app");
        let worker = root.child_named("worker").unwrap();
        let task = smol::spawn(async move {
            worker.cancelled().await;
        });
        let stopped = root
            .shutdown_staged(Duration::from_secs(60), Duration::from_secs(60), |time| {
                smol::Timer::after(time)
            })
            .await
            .unwrap();
        assert!(stopped.aborted().is_none());
        task.await;
    });
}

#[test]
fn it_is_fused_and_stays_ready_with_the_same_output() {
    use futures_core::FusedFuture;
    let root = Phaser::named("app");
    let hung = root.child_named("hung").unwrap();
    let (_, sleep) = scripted(&[true, true]);
    let mut stop = root.shutdown_staged(GRACE, ABORT_GRACE, sleep);
    assert!(!stop.is_terminated());
    assert!(format!("{stop:?}").contains("created"), "{stop:?}");
    let (_, waker) = CountingWaker::new();
    let first = match poll_once(&mut stop, &waker) {
        Poll::Ready(Err(report)) => report,
        other => panic!("the hung child was not reported: {other:?}"),
    };
    assert!(stop.is_terminated());
    // Polled again (a `select!` loop may): the same answer, no panic, and
    // `sleep` is not called a third time (`scripted` would panic).
    for _ in 0..3 {
        match poll_once(&mut stop, &waker) {
            Poll::Ready(Err(again)) => assert_eq!(again.to_string(), first.to_string()),
            other => panic!("a second poll changed the answer: {other:?}"),
        }
    }
    assert!(format!("{stop:?}").contains("stragglers"), "{stop:?}");
    drop(hung);
}

#[test]
fn a_panicking_on_abort_still_aborts() {
    let root = Phaser::named("app");
    let slow = root.child_named("slow").unwrap();
    let (_, sleep) = scripted(&[true, false]);
    let mut stop = root.shutdown_staged_with(GRACE, ABORT_GRACE, sleep, |_| {
        panic!("the logger failed");
    });
    let (_, waker) = CountingWaker::new();
    let poll = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = poll_once(&mut stop, &waker);
    }));
    assert!(
        poll.is_err(),
        "on_abort's panic did not come out of the poll"
    );
    assert!(
        slow.is_aborted() && root.is_aborted(),
        "the grace ran out but nothing was aborted"
    );
}
