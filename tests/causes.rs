//! Causes: why a node is shutting down (`Cause`, `cancel_with`, `cause()`;
//! guarantee 18 in the crate docs).

mod common;

use std::error::Error;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use common::scaled;
use phaseout::{Cause, Phaser};

fn text(cause: Option<Cause>) -> Option<String> {
    cause.map(|cause| cause.to_string())
}

#[test]
fn no_cause_while_live_or_after_a_plain_cancel() {
    let root = Phaser::new();
    let child = root.child().unwrap();
    assert!(root.cause().is_none() && child.token().cause().is_none());
    root.cancel();
    assert!(root.cause().is_none() && child.cause().is_none());
    // A plain cancel came first: a later cause does not replace "none".
    root.cancel_with("too late");
    assert!(root.cause().is_none() && child.cause().is_none());
}

#[test]
fn every_node_the_call_cancels_gets_the_cause() {
    let root = Phaser::named("root");
    let a = root.child_named("a").unwrap();
    let b = a.child().unwrap();
    let sibling = root.child().unwrap();
    a.token().cancel_with(String::from("a failed"));
    assert_eq!(text(a.cause()).as_deref(), Some("a failed"));
    assert_eq!(text(b.token().cause()).as_deref(), Some("a failed"));
    assert!(root.cause().is_none() && sibling.cause().is_none(), "scope");
}

#[test]
fn the_first_cause_wins_and_never_changes() {
    let root = Phaser::new();
    let inner = root.child().unwrap();
    let leaf = inner.child().unwrap();
    let other = root.child().unwrap();
    inner.cancel_with("inner");
    root.cancel_with("outer");
    root.cancel_with("again");
    assert_eq!(text(root.cause()).as_deref(), Some("outer"));
    assert_eq!(text(other.cause()).as_deref(), Some("outer"));
    assert_eq!(text(inner.cause()).as_deref(), Some("inner"));
    assert_eq!(text(leaf.cause()).as_deref(), Some("inner"));
}

#[test]
fn a_dropped_owner_is_the_cause_of_its_subtree() {
    let root = Phaser::new();
    let worker = root.child_named("worker").unwrap();
    let below = worker.child().unwrap();
    let worker_token = worker.token();
    drop(worker);
    let expected = "the owner of `worker` finished";
    assert_eq!(text(worker_token.cause()).as_deref(), Some(expected));
    assert_eq!(text(below.cause()).as_deref(), Some(expected));
    assert!(root.cause().is_none());

    let anonymous = root.child().unwrap().token(); // dropped at once
    assert_eq!(
        text(anonymous.cause()).as_deref(),
        Some("the owner of a node finished")
    );
}

#[test]
fn a_drop_keeps_an_earlier_cause() {
    let root = Phaser::new();
    let child = root.child_named("child").unwrap();
    let token = child.token();
    root.cancel_with("SIGTERM");
    drop(child);
    assert_eq!(text(token.cause()).as_deref(), Some("SIGTERM"));
}

#[test]
#[cfg(feature = "std")]
fn a_panicking_owner_says_panicked() {
    let root = Phaser::new();
    let child = root.child_named("job").unwrap();
    let below = child.child().unwrap();
    let token = child.token();
    let crashed = thread::spawn(move || {
        let _owned = child;
        panic!("the job crashed");
    })
    .join();
    assert!(crashed.is_err());
    let cause = token.cause().expect("the drop cancelled it");
    assert_eq!(cause.to_string(), "the owner of `job` panicked");
    assert!(below.cause().unwrap().to_string().contains("panicked"));
}

#[test]
fn the_cause_outlives_every_node_above() {
    let root = Phaser::named("root");
    let middle = root.child().unwrap();
    let leaf = middle.child().unwrap();
    let token = leaf.token();
    root.cancel_with(format!("built at {}", "run time"));
    drop((root, middle, leaf)); // all drained and freed but the leaf's memory
    assert_eq!(text(token.cause()).as_deref(), Some("built at run time"));
}

#[derive(Debug)]
struct DiskFull {
    source: io::Error,
}

impl std::fmt::Display for DiskFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the disk is full")
    }
}

impl Error for DiskFull {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

#[test]
fn an_error_cause_is_displayed_downcast_and_chained() {
    let root = Phaser::new();
    let error = DiskFull {
        source: io::Error::from_raw_os_error(28),
    };
    root.cancel_with(Cause::new(error));
    let cause = root.cause().unwrap();
    assert_eq!(cause.to_string(), "the disk is full");
    let error = cause.downcast_ref::<DiskFull>().expect("the same type");
    assert_eq!(error.source.raw_os_error(), Some(28));
    assert!(cause.downcast_ref::<io::Error>().is_none());
    // As an `Error`, it is the wrapped error: its source is the io error.
    let source = Error::source(&cause).expect("the wrapped error's source");
    assert!(source.downcast_ref::<io::Error>().is_some());
    // Clone + Send + Sync + 'static, and usable as a boxed error.
    let boxed: Box<dyn Error + Send + Sync + 'static> = Box::new(cause.clone());
    assert_eq!(boxed.to_string(), "the disk is full");
    assert!(format!("{cause:?}").contains("DiskFull"));
}

#[test]
fn a_report_shows_each_cause_once_on_the_highest_node() {
    let root = Phaser::named("app");
    let db = root.child_named("db").unwrap();
    let _pipeline = db.child_named("pipeline").unwrap();
    let _cache = root.child_named("cache").unwrap();
    db.cancel_with("disk full");
    root.cancel_with("SIGTERM");
    let report = root.report();
    assert_eq!(
        report
            .find("pipeline")
            .unwrap()
            .cause()
            .unwrap()
            .to_string(),
        "disk full"
    );
    let shown = report.to_string();
    assert_eq!(shown.matches("SIGTERM").count(), 1, "{shown}");
    assert_eq!(shown.matches("disk full").count(), 1, "{shown}");
    assert!(
        shown.starts_with("app: cancelled, waiting for 2 children to finish (cause: SIGTERM)\n"),
        "{shown}"
    );
    assert!(shown.contains("  db: cancelled, waiting for 1 child to finish (cause: disk full)\n"));
}

/// As `Phaser::cause` promises: the cause is final as soon as `is_cancelled()`
/// reads true, and never changes afterwards, while two nested
/// `cancel_with` calls race.
#[test]
fn racing_causes_are_final_once_cancelled_is_seen() {
    for _ in 0..scaled(2000, 20) {
        let root = Phaser::new();
        let inner = root.child().unwrap();
        let leaf = inner.child().unwrap();
        let leaf_token = leaf.token();
        let start = Arc::new(Barrier::new(3));
        let done = Arc::new(AtomicBool::new(false));
        let outer_cancel = {
            let (token, start) = (root.token(), start.clone());
            thread::spawn(move || {
                start.wait();
                token.cancel_with("outer");
            })
        };
        let inner_cancel = {
            let (token, start) = (inner.token(), start.clone());
            thread::spawn(move || {
                start.wait();
                token.cancel_with("inner");
            })
        };
        let reader = {
            let (token, start, done) = (leaf_token.clone(), start.clone(), done.clone());
            thread::spawn(move || {
                start.wait();
                let mut seen: Option<String> = None;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    if token.is_cancelled() {
                        let now = text(token.cause()).expect("cancelled without its cause");
                        if let Some(seen) = &seen {
                            assert_eq!(seen, &now, "the cause changed");
                        }
                        seen = Some(now);
                    }
                    if finished {
                        return seen;
                    }
                }
            })
        };
        outer_cancel.join().unwrap();
        inner_cancel.join().unwrap();
        done.store(true, Ordering::Release);
        let seen = reader.join().unwrap().expect("cancelled by the end");
        let inner_cause = text(inner.cause()).unwrap();
        assert!(inner_cause == "outer" || inner_cause == "inner");
        assert_eq!(seen, text(leaf.cause()).unwrap());
        assert_eq!(text(root.cause()).as_deref(), Some("outer"));
    }
}

/// `Box<dyn Error + Send + Sync>` goes straight in (as `?`-style code holds
/// its errors), and the box is not wrapped again: `downcast_ref` reaches
/// the boxed error's own type, `Display` is its text.
#[test]
fn a_boxed_error_is_a_cause_of_its_own_type() {
    use std::error::Error;
    use std::io;

    let boxed: Box<dyn Error + Send + Sync> = Box::new(io::Error::other("disk full"));
    let root = Phaser::named("db");
    root.cancel_with(boxed);
    let cause = root.cause().unwrap();
    assert_eq!(cause.to_string(), "disk full");
    let io = cause
        .downcast_ref::<io::Error>()
        .expect("the boxed type is unreachable");
    assert_eq!(io.kind(), io::ErrorKind::Other);
    assert!(cause.downcast_ref::<std::fmt::Error>().is_none());
    let from_str: Box<dyn Error + Send + Sync> = "no such table".into();
    assert_eq!(Cause::from(from_str).to_string(), "no such table");
}

/// A second call on a node that is cancelled already gives what it reaches
/// the node's own cause, even while the first walk is still on its way
/// down. Here the second call runs inside the first one: a waker on the
/// root's `cancelled()` (woken when the root is marked, before the walk
/// goes below it) cancels the root plainly, and its walk reaches the
/// children first. Found by the axum example: `main` woken by `SIGTERM`
/// starts a staged stop, whose `cancel()` raced the signal's walk and left
/// streams without a cause.
#[cfg(feature = "std")]
#[test]
fn a_later_cancel_passes_the_first_cause_down() {
    use std::future::Future;

    for second in ["cancel", "cancel_with", "abort"] {
        let root = Phaser::named("app");
        let web = root.child_named("web").unwrap();
        let stream = web.child_named("stream").unwrap();
        let token = root.token();
        let acted = Arc::new(AtomicBool::new(false));
        let waker = {
            let acted = acted.clone();
            common::waker(move || {
                if !acted.swap(true, Ordering::AcqRel) {
                    match second {
                        "cancel" => token.cancel(),
                        "cancel_with" => token.cancel_with("second"),
                        _ => token.abort(),
                    }
                }
            })
        };
        let mut cancelled = Box::pin(root.cancelled());
        let mut context = std::task::Context::from_waker(&waker);
        assert!(cancelled.as_mut().poll(&mut context).is_pending());
        root.cancel_with("SIGTERM");
        assert!(acted.load(Ordering::Acquire), "{second}: the waker ran");
        for (name, cause) in [("web", web.cause()), ("stream", stream.cause())] {
            assert_eq!(
                text(cause).as_deref(),
                Some("SIGTERM"),
                "{second} inside the SIGTERM walk: {name}'s cause"
            );
        }
    }
}

/// The same race between threads, as a program meets it: a task waits for
/// the root's cancel, then starts the staged stop (a plain `cancel()`)
/// while the signal's walk is still going down a wide tree.
#[test]
fn a_staged_stop_racing_the_signal_keeps_the_signals_cause() {
    for round in 0..scaled(200, 4) {
        let root = Phaser::named("app");
        let web = root.child_named("web").unwrap();
        let requests: Vec<Phaser> = (0..64).map(|_| web.child().unwrap()).collect();
        let watcher = {
            let token = root.token();
            thread::spawn(move || {
                pollster::block_on(token.cancelled());
                token.cancel(); // what `shutdown_staged` does first
            })
        };
        thread::sleep(std::time::Duration::from_micros(100));
        root.cancel_with("SIGTERM");
        watcher.join().unwrap();
        for (i, request) in requests.iter().enumerate() {
            assert_eq!(
                text(request.cause()).as_deref(),
                Some("SIGTERM"),
                "round {round}: request {i}"
            );
        }
    }
}

/// Calls racing on one node (two `cancel_with`, a plain `cancel`): the
/// node's cause is the first filler's (or none, if the plain one's RMW
/// came first), and its whole subtree agrees with it, whichever call's
/// walk goes down first (a second review found the subtree split, 1–3
/// rounds in 3,000).
#[test]
fn racing_causes_on_one_node_leave_the_subtree_the_nodes_cause() {
    for round in 0..scaled(3000, 10) {
        let root = Phaser::new();
        let node = root.child().unwrap();
        let mut below = Vec::new();
        for _ in 0..6 {
            let child = node.child().unwrap();
            for _ in 0..3 {
                below.push(child.child().unwrap());
            }
            below.push(child);
        }
        let token = node.token();
        let start = Barrier::new(3);
        thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                token.cancel_with("SIGTERM");
            });
            s.spawn(|| {
                start.wait();
                token.cancel_with("other");
            });
            s.spawn(|| {
                start.wait();
                if round % 2 == 0 {
                    token.cancel();
                }
            });
        });
        let own = text(node.cause());
        for (i, below) in below.iter().enumerate() {
            assert_eq!(
                text(below.cause()),
                own,
                "round {round}: node {i} below and the node"
            );
        }
    }
}
