//! The futures returned by [`Phaser`](crate::Phaser) and
//! [`Token`](crate::Token).
//!
//! Every future of the crate owns what it needs: a counted reference to its
//! node (which keeps the node's memory, never its shutdown, alive) and
//! whatever future you handed it. So each is `Send + 'static` when its
//! inputs are, and can be moved into a spawned task. They are
//! [`FusedFuture`]s, may be polled again after they were ready (they stay
//! ready), and are cancellation-safe: dropping one unregisters its waker.
//! All but [`RunUntilCancelled`] and [`RunUntilAborted`] (which are `Unpin`
//! when their inner future is) are `Unpin`.
//!
//! # Wakers may do anything
//!
//! A future never hands its task's waker to event-listener (which wakes
//! under its own lock): it registers a relay of phaseout's own, and the
//! task's waker runs after the notify has returned, with no lock held. So
//! a waker may poll its task inline, cancel, abort, drop a `Phaser`, a
//! `Token` or a future, ask for a child or take a report from inside
//! `wake()`, on any number of threads at once. A waker's panic comes out of
//! the `cancel()` or drop that woke it, after that call has finished its
//! work. (Without `std`, a waker runs inside the notify and must only
//! schedule its task.)

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::FusedFuture;

use crate::node::{NodeRef, State, Waiter};
use crate::Report;

/// Waits until a condition on the node's state word holds: the machinery
/// shared by every future here.
struct Until {
    node: NodeRef,
    ready: fn(State) -> bool,
    waiter: Waiter,
    done: bool,
}

impl Until {
    fn new(node: NodeRef, ready: fn(State) -> bool) -> Self {
        Self {
            node,
            ready,
            waiter: Waiter::new(),
            done: false,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        let poll = self.waiter.poll(&self.node, self.ready, cx);
        self.done = poll.is_ready();
        poll
    }

    /// Whether the condition holds now, by one load and without
    /// registering anything: for a caller that registers only once it has
    /// to wait (a `run_until_*` whose work is ready at once). Once a poll
    /// registered, only `poll` answers.
    #[inline]
    fn holds_without_registering(&mut self) -> Option<bool> {
        if self.waiter.is_registered() {
            return None;
        }
        self.done = self.done || (self.ready)(self.node.state());
        Some(self.done)
    }

    fn debug(&self, f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
        f.debug_struct(name)
            .field("label", &self.node.label())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Defines a future that waits on an [`Until`]: the struct, `new`,
/// `Future`, `FusedFuture` and `Debug`. The doc comment is the caller's.
macro_rules! until_future {
    ($(#[$doc:meta])* $name:ident, $ready:path) => {
        $(#[$doc])*
        #[must_use = "futures do nothing unless polled"]
        pub struct $name {
            until: Until,
        }

        impl $name {
            pub(crate) fn new(node: NodeRef) -> Self {
                Self {
                    until: Until::new(node, $ready),
                }
            }
        }

        impl Future for $name {
            type Output = ();

            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                self.get_mut().until.poll(cx)
            }
        }

        impl FusedFuture for $name {
            fn is_terminated(&self) -> bool {
                self.until.done
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.until.debug(f, stringify!($name))
            }
        }
    };
}

until_future! {
    /// The future returned by `cancelled()` on a [`Phaser`](crate::Phaser) or a
    /// [`Token`](crate::Token): ready once the node is cancelled.
    ///
    /// It owns a reference to the node, so it is `'static`, and it never keeps
    /// the node from draining.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let cancelled = root.token().cancelled();
    /// root.cancel();
    /// pollster::block_on(cancelled);
    /// ```
    Cancelled,
    State::is_cancelled
}

until_future! {
    /// The future returned by `aborted()` on a [`Phaser`](crate::Phaser) or a
    /// [`Token`](crate::Token): ready once the node is aborted, the signal to
    /// abandon the work in hand.
    ///
    /// It owns a reference to the node, so it is `'static`, and it never keeps
    /// the node from draining.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let aborted = root.token().aborted();
    /// root.abort();
    /// pollster::block_on(aborted);
    /// ```
    Aborted,
    State::is_aborted
}

until_future! {
    /// The future returned by [`Phaser::turn`](crate::Phaser::turn) and
    /// [`Phaser::shutdown`](crate::Phaser::shutdown): ready once the node is
    /// cancelled and every node below it has drained.
    ///
    /// It owns a reference to the node, so it is `'static` and can wait in a
    /// spawned task while the `Phaser` stays with its owner. That reference
    /// keeps the node's memory, not its shutdown: the node still drains when its
    /// `Phaser` is dropped.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let child = root.child().unwrap();
    /// let turn = root.turn(); // owned: it does not borrow `root`
    /// let waiter = std::thread::spawn(move || pollster::block_on(turn));
    /// root.cancel();
    /// drop(child); // the child is done: now it is the root's turn
    /// waiter.join().unwrap();
    /// ```
    Turn,
    State::is_turn
}

/// The future returned by [`Phaser::turn_within`](crate::Phaser::turn_within)
/// and [`Phaser::shutdown_within`](crate::Phaser::shutdown_within): `Ok(())`
/// at the node's turn, or `Err(report)` naming the stragglers if the
/// deadline fires first. If both are ready at the same poll, it is `Ok`.
///
/// It owns the deadline and a reference to the node, so it is `'static`
/// when the deadline is.
///
/// ```
/// use std::future::{pending, ready};
///
/// let root = phaseout::Phaser::named("root");
/// let stuck = root.child_named("stuck").unwrap();
/// root.cancel();
/// // A deadline that has already passed: the report names the straggler.
/// let report = pollster::block_on(root.turn_within(ready(()))).unwrap_err();
/// assert!(report.find("stuck").is_some());
/// drop(stuck);
/// // The turn has come: a deadline that never fires does not matter.
/// assert!(pollster::block_on(root.turn_within(pending::<()>())).is_ok());
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct TurnWithin<D> {
    turn: Until,
    /// Boxed so that any deadline future (pinned or not) works without
    /// unsafe pin projection; one allocation per shutdown is nothing.
    deadline: Pin<Box<D>>,
    result: Option<Result<(), Report>>,
}

impl<D: Future> TurnWithin<D> {
    pub(crate) fn new(node: NodeRef, deadline: D) -> Self {
        Self {
            turn: Until::new(node, State::is_turn),
            deadline: Box::pin(deadline),
            result: None,
        }
    }
}

impl<D: Future> Future for TurnWithin<D> {
    type Output = Result<(), Report>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(result) = &this.result {
            return Poll::Ready(result.clone());
        }
        // The turn is polled first, so a turn and a deadline that are ready
        // together give `Ok`.
        let result = if this.turn.poll(cx).is_ready() {
            Ok(())
        } else if this.deadline.as_mut().poll(cx).is_ready() {
            // The turn may have come since it was polled: a report taken
            // now would name nobody (guarantee 16).
            if this.turn.node.state().is_turn() {
                Ok(())
            } else {
                Err(Report::of(&this.turn.node))
            }
        } else {
            return Poll::Pending;
        };
        this.result = Some(result.clone());
        Poll::Ready(result)
    }
}

impl<D: Future> FusedFuture for TurnWithin<D> {
    fn is_terminated(&self) -> bool {
        self.result.is_some()
    }
}

impl<D> fmt::Debug for TurnWithin<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnWithin")
            .field("label", &self.turn.node.label())
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

/// Defines a `run_until_*` future: `fut` runs until a condition on the
/// node holds (checked first on every poll). The doc comment is the
/// caller's.
macro_rules! run_until_future {
    ($(#[$doc:meta])* $name:ident, $ready:path) => {
        pin_project_lite::pin_project! {
            $(#[$doc])*
            #[must_use = "futures do nothing unless polled"]
            pub struct $name<F: Future> {
                until: Until,
                // `None` once it returned `Ready`: the work is dropped as
                // soon as its result (or the stop) is known. Pinned
                // structurally (pin-project-lite writes the projection).
                #[pin]
                fut: Option<F>,
            }
        }

        impl<F: Future> $name<F> {
            pub(crate) fn new(node: NodeRef, fut: F) -> Self {
                Self {
                    until: Until::new(node, $ready),
                    fut: Some(fut),
                }
            }
        }

        impl<F: Future> Future for $name<F> {
            type Output = Option<F::Output>;

            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
                let this = self.project();
                poll_run_until(this.until, this.fut, cx)
            }
        }

        impl<F: Future> FusedFuture for $name<F> {
            fn is_terminated(&self) -> bool {
                self.fut.is_none()
            }
        }

        impl<F: Future> fmt::Debug for $name<F> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("label", &self.until.node.label())
                    .field("terminated", &self.fut.is_none())
                    .finish_non_exhaustive()
            }
        }
    };
}

/// The poll of a `run_until_*` future: `None` once `stop` holds (checked
/// before `fut`, so no more work starts), else `fut`'s output. `fut` is
/// dropped as soon as either is known.
fn poll_run_until<F: Future>(
    stop: &mut Until,
    mut fut: Pin<&mut Option<F>>,
    cx: &mut Context<'_>,
) -> Poll<Option<F::Output>> {
    if fut.is_none() {
        // Polled again after it was ready: the stop is final, and nothing
        // else can be returned.
        return Poll::Ready(None);
    }
    // The stop is checked first. Until this future has to wait, by one
    // load: the work is often ready at once (a consumer loop with messages
    // queued), and then nothing needs registering. Registration (a relay,
    // a listener, the `HAS_WAITERS` announcement) comes only once `fut` is
    // pending, and re-checks the stop itself (invariant #4).
    let stopped = match stop.holds_without_registering() {
        Some(holds) => holds,
        None => stop.poll(cx).is_ready(),
    };
    if stopped {
        fut.set(None);
        return Poll::Ready(None);
    }
    let output = match fut.as_mut().as_pin_mut() {
        Some(running) => match running.poll(cx) {
            Poll::Ready(output) => output,
            Poll::Pending => {
                if !stop.waiter.is_registered() && stop.poll(cx).is_ready() {
                    // Stopped between the check and now: as if seen first.
                    fut.set(None);
                    return Poll::Ready(None);
                }
                return Poll::Pending;
            }
        },
        None => return Poll::Ready(None),
    };
    fut.set(None);
    Poll::Ready(Some(output))
}

run_until_future! {
    /// The future returned by `run_until_cancelled(fut)` on a
    /// [`Phaser`](crate::Phaser) or a [`Token`](crate::Token): `Some(output)` if
    /// `fut` completes first, `None` once the node is cancelled.
    ///
    /// Cancellation is checked before `fut` on every poll, so a cancelled node
    /// never starts one more unit of work: when both are ready it is `None`,
    /// and `fut` is dropped at that moment (not when this future is). It owns
    /// `fut` and a reference to the node, so it is `'static` when `fut` is.
    /// While `fut` is ready at once it registers nothing; once `fut` is
    /// pending it registers a waiter. It is `Unpin` when `fut` is.
    ///
    /// ```
    /// use std::future::{pending, ready};
    ///
    /// let root = phaseout::Phaser::new();
    /// let token = root.token();
    /// assert_eq!(pollster::block_on(token.run_until_cancelled(ready(7))), Some(7));
    /// root.cancel();
    /// // Cancelled: even a ready future is not run.
    /// assert_eq!(pollster::block_on(token.run_until_cancelled(ready(7))), None);
    /// assert_eq!(pollster::block_on(token.run_until_cancelled(pending::<()>())), None);
    /// ```
    RunUntilCancelled,
    State::is_cancelled
}

run_until_future! {
    /// The future returned by `run_until_aborted(fut)` on a
    /// [`Phaser`](crate::Phaser) or a [`Token`](crate::Token): `Some(output)`
    /// if `fut` completes first, `None` once the node is aborted (the grace
    /// is over: abandon the work in hand).
    ///
    /// Like [`RunUntilCancelled`], for abort: the abort is checked before
    /// `fut` on every poll, `fut` is dropped as soon as either is known, it
    /// owns `fut` and a reference to the node, needs no allocation, and is
    /// `Unpin` when `fut` is.
    ///
    /// ```
    /// use std::future::{pending, ready};
    ///
    /// let root = phaseout::Phaser::new();
    /// let token = root.token();
    /// root.cancel();
    /// // Cancelled but not aborted: the work in hand still finishes.
    /// assert_eq!(pollster::block_on(token.run_until_aborted(ready(7))), Some(7));
    /// root.abort();
    /// assert_eq!(pollster::block_on(token.run_until_aborted(pending::<()>())), None);
    /// ```
    RunUntilAborted,
    State::is_aborted
}
