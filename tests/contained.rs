//! User code that a walk or a drain cascade meets half-way may panic, and
//! the tree stays consistent (node invariant #15, guarantee 13): a freed
//! node's cause whose destructor panics, a waker whose drop panics, and,
//! with `tracing`, a subscriber that panics in an event. Each panic comes
//! out of the operation once it is done; before, each one unwound through
//! the middle of it (a review found all three: a walk stopped above a live
//! child, a list unlinked but still counted, a drained node freed while its
//! parent still linked it, which Miri reported as a use after free).
//!
//! With `std` only: without it there is no thread-local state to hold a
//! panic in, a waker runs inside event-listener's notify, and a panic there
//! is the firmware's end (crate docs, "Wakers").
#![cfg(feature = "std")]

mod common;

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

use phaseout::{Cause, Phaser};

/// An error whose destructor panics once armed.
#[derive(Debug)]
struct PanicsOnDrop(Arc<AtomicBool>);

impl fmt::Display for PanicsOnDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an error that panics when dropped")
    }
}

impl std::error::Error for PanicsOnDrop {}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if self.0.swap(false, Ordering::SeqCst) {
            panic!("the cause's destructor panics");
        }
    }
}

/// root → a → b → c, where b holds the only count of a cause whose
/// destructor panics and the owners of a and b left first: dropping c
/// drains c, b and a in one cascade, and freeing b (inside it) panics while
/// a is drained but still linked in root.
#[test]
fn a_cause_that_panics_when_freed_inside_the_cascade() {
    let armed = Arc::new(AtomicBool::new(false));
    let root = Phaser::new();
    let a = root.child().unwrap();
    let b = a.child().unwrap();
    let c = b.child().unwrap();
    c.cancel(); // so c takes no count of b's cause
    b.cancel_with(Cause::new(PanicsOnDrop(armed.clone())));
    drop(b);
    drop(a);
    armed.store(true, Ordering::SeqCst);
    let dropped = catch_unwind(AssertUnwindSafe(|| drop(c)));
    assert!(dropped.is_err(), "the destructor's panic comes out of drop");
    assert!(!armed.load(Ordering::SeqCst), "the cause was freed");
    assert_eq!(root.live_children(), 0, "a drained and left root");
    root.cancel(); // walks root's list: a must not be in it
}

/// A task whose waker panics when dropped once armed. Woken while `act`
/// is false, it polls its future again (inline, as a waker may); woken
/// after, it drops the future it was woken for, as an executor cancelling
/// the task does, so the delivery holds the waker's last reference.
struct DropPanics {
    future: Mutex<Option<Pin<Box<dyn Future<Output = ()> + Send>>>>,
    act: AtomicBool,
    armed: AtomicBool,
}

impl Wake for DropPanics {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut slot = self.future.lock().unwrap();
        if !self.act.load(Ordering::SeqCst) {
            let waker = Waker::from(Arc::clone(self));
            if let Some(future) = slot.as_mut() {
                let _ = future.as_mut().poll(&mut Context::from_waker(&waker));
            }
            return;
        }
        let future = slot.take();
        drop(slot);
        if future.is_some() {
            self.armed.store(true, Ordering::SeqCst);
        }
        drop(future);
    }
}

impl Drop for DropPanics {
    fn drop(&mut self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            panic!("the waker's drop panics");
        }
    }
}

/// Polls `future` once with a [`DropPanics`] waker that owns it; returns
/// the switch that makes its next wake drop it. The test keeps no
/// reference to the waker.
fn park(future: impl Future<Output = ()> + Send + 'static, act: bool) -> impl Fn() {
    let mut future: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(future);
    let task = Arc::new(DropPanics {
        future: Mutex::new(None),
        act: AtomicBool::new(act),
        armed: AtomicBool::new(false),
    });
    let waker = Waker::from(Arc::clone(&task));
    assert!(future
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    *task.future.lock().unwrap() = Some(future);
    let switch = Arc::downgrade(&task);
    move || {
        if let Some(task) = switch.upgrade() {
            task.act.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn a_waker_whose_drop_panics_during_a_cancel_walk() {
    let root = Phaser::new();
    let child = root.child().unwrap();
    let grandchild = child.child().unwrap();
    let _act = park(root.cancelled(), true);
    let cancelled = catch_unwind(AssertUnwindSafe(|| root.cancel()));
    assert!(cancelled.is_err(), "the drop's panic comes out of cancel()");
    assert!(
        child.is_cancelled() && grandchild.is_cancelled(),
        "the walk ran to its end"
    );
    assert!(child.child().is_err());
}

/// root → parent → child; the parent's owner leaves first, so the only
/// other count of the parent is its `turn()` future, parked in the task.
/// The child's drain gives the parent its turn and drains it; the wake
/// drops the task's future and the delivery drops the waker, which panics
/// while the cascade holds the drained parent, still linked in root.
#[test]
fn a_waker_whose_drop_panics_during_a_drain() {
    let root = Phaser::new();
    let parent = root.child().unwrap();
    let child = parent.child().unwrap();
    let act = park(parent.turn(), false);
    drop(parent); // its cancel wakes the turn's task: it polls again
    act();
    let dropped = catch_unwind(AssertUnwindSafe(|| drop(child)));
    assert!(
        dropped.is_err(),
        "the drop's panic comes out of the child's drop"
    );
    assert_eq!(root.live_children(), 0, "the parent drained and left root");
    root.cancel(); // walks root's list: the parent must not be in it
}

#[cfg(feature = "tracing")]
mod subscriber {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use phaseout::Phaser;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    /// Panics on the event `what` of the node labeled `node`.
    pub struct PanicsOn {
        pub what: &'static str,
        pub node: &'static str,
    }

    #[derive(Default)]
    struct Seen {
        message: String,
        node: String,
    }

    impl Visit for Seen {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let text = format!("{value:?}");
            match field.name() {
                "message" => self.message = text,
                "node" => self.node = text.trim_matches('"').to_string(),
                _ => {}
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            match field.name() {
                "message" => self.message = value.to_string(),
                "node" => self.node = value.to_string(),
                _ => {}
            }
        }
    }

    impl Subscriber for PanicsOn {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
            Some(tracing::level_filters::LevelFilter::TRACE)
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut seen = Seen::default();
            event.record(&mut seen);
            let matches = (self.what == "*" || seen.message == self.what)
                && (self.node == "*" || seen.node == self.node);
            if matches && !std::thread::panicking() {
                panic!(
                    "the subscriber panics on `{}` of `{}`",
                    seen.message, seen.node
                );
            }
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    fn with_panicking(what: &'static str, node: &'static str, f: impl FnOnce()) {
        let outcome = tracing::subscriber::with_default(PanicsOn { what, node }, || {
            catch_unwind(AssertUnwindSafe(f))
        });
        assert!(
            outcome.is_err(),
            "the subscriber's panic on `{what}` comes out"
        );
    }

    #[test]
    fn a_subscriber_that_panics_on_cancel() {
        let root = Phaser::named("root");
        let child = root.child_named("child").unwrap();
        let (counter, waker) = super::common::CountingWaker::new();
        let mut cancelled = root.cancelled();
        assert!(super::common::poll_once(&mut cancelled, &waker).is_pending());
        with_panicking("cancel", "root", || root.cancel());
        assert!(counter.wakes() > 0, "the waiter was woken");
        assert!(child.is_cancelled(), "the walk ran to its end");
    }

    #[test]
    fn a_subscriber_that_panics_on_a_turn_under_the_lock() {
        let root = Phaser::named("root");
        let child = root.child_named("child").unwrap();
        root.cancel();
        with_panicking("turn", "root", || drop(child));
        assert!(root.is_turn(), "the child left root's list and count");
        assert_eq!(root.live_children(), 0);
    }

    #[test]
    fn a_subscriber_that_panics_on_a_drain_inside_the_cascade() {
        let root = Phaser::named("root");
        let parent = root.child_named("parent").unwrap();
        let child = parent.child_named("child").unwrap();
        drop(parent);
        with_panicking("drained", "parent", || drop(child));
        assert_eq!(root.live_children(), 0, "parent drained and left root");
        root.cancel(); // walks root's list: parent must not be in it
    }

    /// `fail` with a subscriber that panics on every event: the `fail`
    /// event's panic no longer unwinds into the cancel guard (whose own
    /// events panicked again during the unwind: a process abort).
    #[test]
    fn a_subscriber_that_panics_on_every_event_during_fail() {
        let root = Phaser::named("app");
        let db = root.child_named("db").unwrap();
        with_panicking("*", "*", || db.fail("disk full"));
        assert!(root.is_cancelled(), "the scope was cancelled");
        assert_eq!(root.failures().len(), 1);
    }
}

/// A walk's own reference to a node may be its last: here a waker on one
/// child drops another child's `Phaser` while the walk has that child on
/// its stack, and that child holds the only count of a cause whose
/// destructor panics. The walk frees it and must still reach everything
/// after it. Each order of the two children is tried: in one of them the
/// walk frees the node.
#[cfg(feature = "std")]
#[test]
fn a_cause_that_panics_when_the_walk_frees_its_node() {
    for x_first in [true, false] {
        let armed = Arc::new(AtomicBool::new(false));
        let root = Phaser::new();
        let mut children = Vec::new();
        let (x, a);
        if x_first {
            x = root.child().unwrap();
            a = root.child().unwrap();
        } else {
            a = root.child().unwrap();
            x = root.child().unwrap();
        }
        for _ in 0..4 {
            children.push(root.child().unwrap());
        }
        x.cancel_with(Cause::new(PanicsOnDrop(armed.clone())));
        let x = Mutex::new(Some(x));
        let x = Arc::new(x);
        let waker = {
            let x = Arc::clone(&x);
            common::waker(move || drop(x.lock().unwrap().take()))
        };
        let mut a_cancelled = a.cancelled();
        assert!(common::poll_once(&mut a_cancelled, &waker).is_pending());
        armed.store(true, Ordering::SeqCst);
        let cancelled = catch_unwind(AssertUnwindSafe(|| root.cancel()));
        assert!(
            cancelled.is_err(),
            "the destructor's panic comes out of cancel()"
        );
        assert!(!armed.load(Ordering::SeqCst), "x was freed");
        for (i, child) in children.iter().enumerate() {
            assert!(
                child.is_cancelled(),
                "x first: {x_first}: child {i} was reached"
            );
        }
        drop(a_cancelled);
    }
}

/// A panic payload whose destructor panics (`panic_any`): the first panic
/// of an operation is held, a second one's payload is dropped, and that
/// drop must be contained too (a second review: it unwound through the
/// walk and left the child live).
struct PayloadPanicsOnDrop;

impl Drop for PayloadPanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("the payload's destructor panics");
        }
    }
}

#[test]
fn a_second_panic_whose_payload_panics_when_dropped() {
    let root = Phaser::new();
    let child = root.child().unwrap();
    let first = common::waker(|| panic!("first waker"));
    let second = common::waker(|| std::panic::panic_any(PayloadPanicsOnDrop));
    let mut one = root.cancelled();
    let mut two = root.cancelled();
    assert!(common::poll_once(&mut one, &first).is_pending());
    assert!(common::poll_once(&mut two, &second).is_pending());
    let cancelled = catch_unwind(AssertUnwindSafe(|| root.cancel()));
    let raised = cancelled.expect_err("a waker's panic comes out of cancel()");
    assert_eq!(
        raised.downcast_ref::<&str>(),
        Some(&"first waker"),
        "the first panic wins"
    );
    assert!(child.is_cancelled(), "the walk ran to its end");
    let later = catch_unwind(AssertUnwindSafe(|| Phaser::new().cancel()));
    assert!(later.is_ok(), "nothing is left held for a later call");
}

/// The owner's drop frees its node after the cascade held a waker's panic,
/// and the node's cause panics when freed: the held panic still comes out
/// of this drop, not out of some later, unrelated call.
#[test]
fn a_held_panic_comes_out_of_its_own_drop_when_the_free_panics_too() {
    let armed = Arc::new(AtomicBool::new(false));
    let parent = Phaser::new();
    let child = parent.child().unwrap();
    child.cancel_with(Cause::new(PanicsOnDrop(armed.clone())));
    parent.cancel();
    let panicking = common::waker(|| panic!("the parent's turn waker"));
    let mut turn = parent.turn();
    assert!(common::poll_once(&mut turn, &panicking).is_pending());
    armed.store(true, Ordering::SeqCst);
    let dropped = catch_unwind(AssertUnwindSafe(|| drop(child)));
    assert!(dropped.is_err(), "a panic comes out of the child's drop");
    assert!(!armed.load(Ordering::SeqCst), "the cause was freed");
    let later = catch_unwind(AssertUnwindSafe(|| Phaser::new().cancel()));
    assert!(
        later.is_ok(),
        "an unrelated later cancel() raised a held panic"
    );
    drop(turn);
}

/// A waker whose drop runs a tree operation (it cancels an unrelated node),
/// dropped by the delivery while another waker's panic is held: the held
/// panic comes out of the outer cancel, not out of the operation inside
/// the user's destructor, which runs to its end.
#[test]
fn a_held_panic_is_not_raised_inside_a_wakers_drop() {
    struct CancelsWhenDropped {
        unrelated: phaseout::Token,
        finished: Arc<AtomicBool>,
        future: Mutex<Option<Pin<Box<dyn Future<Output = ()> + Send>>>>,
    }
    impl Wake for CancelsWhenDropped {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            // The task drops its future: the delivery holds the last
            // reference to this waker.
            let future = self.future.lock().unwrap().take();
            drop(future);
        }
    }
    impl Drop for CancelsWhenDropped {
        fn drop(&mut self) {
            self.unrelated.cancel();
            self.finished.store(true, Ordering::SeqCst);
        }
    }
    let root = Phaser::new();
    let unrelated = Phaser::new();
    let finished = Arc::new(AtomicBool::new(false));
    let panicking = common::waker(|| panic!("first waker"));
    let mut first = root.cancelled();
    assert!(common::poll_once(&mut first, &panicking).is_pending());
    {
        let task = Arc::new(CancelsWhenDropped {
            unrelated: unrelated.token(),
            finished: finished.clone(),
            future: Mutex::new(None),
        });
        let mut future: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(root.cancelled());
        let waker = Waker::from(Arc::clone(&task));
        assert!(future
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        *task.future.lock().unwrap() = Some(future);
    }
    let cancelled = catch_unwind(AssertUnwindSafe(|| root.cancel()));
    assert!(
        cancelled.is_err(),
        "the first waker's panic comes out of cancel()"
    );
    assert!(unrelated.is_cancelled());
    assert!(
        finished.load(Ordering::SeqCst),
        "the waker's drop ran to its end (the held panic was not raised inside it)"
    );
}
