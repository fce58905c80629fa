//! The futures returned by [`Phaser`](crate::Phaser) and
//! [`Token`](crate::Token).
//!
//! All of them are `Send`, `Unpin` and [`FusedFuture`]; they may be polled
//! again after they were ready (they stay ready), and they are
//! cancellation-safe: dropping one unregisters its waker.
//!
//! # Wakers must not re-enter
//!
//! Waiting tasks are woken through [`event_listener`], which calls
//! [`Waker::wake`](core::task::Waker::wake) while it holds the event's own
//! lock. A waker that polls its task inline, or that drops a pending future
//! or the `Phaser` of the same node from inside `wake()`, would deadlock on
//! that lock. The executors people use (smol, tokio, async-std,
//! futures-executor, pollster, embassy) only schedule the task in `wake()`,
//! and phaseout's tests check each host one; a hand-written waker must do
//! the same.

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use event_listener::EventListener;
use futures_core::FusedFuture;

use crate::node::{state, Node, NodeRef};
use crate::Report;

/// The future returned by [`Phaser::cancelled`](crate::Phaser::cancelled) and
/// [`Token::cancelled`](crate::Token::cancelled): ready once the node is
/// cancelled.
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
#[must_use = "futures do nothing unless polled"]
pub struct Cancelled {
    node: NodeRef,
    listener: Option<EventListener>,
    done: bool,
}

impl Cancelled {
    pub(crate) fn new(node: NodeRef) -> Self {
        Self {
            node,
            listener: None,
            done: false,
        }
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(());
        }
        let poll = this
            .node
            .poll_until(state::is_cancelled, &mut this.listener, cx);
        this.done = poll.is_ready();
        poll
    }
}

impl FusedFuture for Cancelled {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancelled")
            .field("label", &self.node.label())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// The future returned by [`Phaser::turn`](crate::Phaser::turn) and
/// [`Phaser::shutdown`](crate::Phaser::shutdown): ready once the node is
/// cancelled and every node below it has drained.
///
/// ```
/// let root = phaseout::Phaser::new();
/// let child = root.child().unwrap();
/// root.cancel();
/// drop(child); // the child is done: now it is the root's turn
/// pollster::block_on(root.turn());
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Turn<'a> {
    node: &'a Node,
    listener: Option<EventListener>,
    done: bool,
}

impl<'a> Turn<'a> {
    pub(crate) fn new(node: &'a Node) -> Self {
        Self {
            node,
            listener: None,
            done: false,
        }
    }
}

impl Future for Turn<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(());
        }
        let poll = this.node.poll_until(state::is_turn, &mut this.listener, cx);
        this.done = poll.is_ready();
        poll
    }
}

impl FusedFuture for Turn<'_> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl fmt::Debug for Turn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Turn")
            .field("label", &self.node.label())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// The future returned by [`Phaser::turn_within`](crate::Phaser::turn_within):
/// `Ok(())` at the node's turn, or `Err(report)` naming the stragglers if the
/// deadline fires first. If both are ready at the same poll, it is `Ok`.
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
pub struct TurnWithin<'a, D> {
    turn: Turn<'a>,
    node: &'a NodeRef,
    /// Boxed so that any deadline future (pinned or not) works without
    /// unsafe pin projection; one allocation per shutdown is nothing.
    deadline: Pin<Box<D>>,
    result: Option<Result<(), Report>>,
}

impl<'a, D: Future> TurnWithin<'a, D> {
    pub(crate) fn new(node: &'a NodeRef, deadline: D) -> Self {
        Self {
            turn: Turn::new(node),
            node,
            deadline: Box::pin(deadline),
            result: None,
        }
    }
}

impl<D: Future> Future for TurnWithin<'_, D> {
    type Output = Result<(), Report>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(result) = &this.result {
            return Poll::Ready(result.clone());
        }
        // The turn is polled first, so a turn and a deadline that are ready
        // together give `Ok`.
        let result = if Pin::new(&mut this.turn).poll(cx).is_ready() {
            Ok(())
        } else if this.deadline.as_mut().poll(cx).is_ready() {
            Err(Report::of(this.node))
        } else {
            return Poll::Pending;
        };
        this.result = Some(result.clone());
        Poll::Ready(result)
    }
}

impl<D: Future> FusedFuture for TurnWithin<'_, D> {
    fn is_terminated(&self) -> bool {
        self.result.is_some()
    }
}

impl<D> fmt::Debug for TurnWithin<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnWithin")
            .field("turn", &self.turn)
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}
