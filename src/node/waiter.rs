//! Waiting for a condition on a node's state word: a future's [`Waiter`]
//! and the blocking wait.
//!
//! Both follow invariant #4: register a listener, announce it with
//! `HAS_WAITERS`, re-check, then wait. A listener that is no longer needed
//! leaves with event-listener's `discard`, never a plain drop: a dropped
//! listener that had been notified passes its notification on to another
//! listener, waking it inside event-listener's lock, and every notify here
//! already wakes everyone (`wakes.rs` says why nothing may wake under it).

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use event_listener::EventListener;
#[cfg(feature = "std")]
use event_listener::Listener;

use super::{Node, State};

/// One future's place among a node's waiters.
pub(crate) struct Waiter {
    listener: Option<EventListener>,
    /// The relay registered for the task's waker (`wakes.rs`), kept until
    /// the task's waker changes.
    #[cfg(feature = "std")]
    relay: Option<(alloc::sync::Arc<super::wakes::Relay>, core::task::Waker)>,
}

impl Waiter {
    pub(crate) const fn new() -> Self {
        Self {
            listener: None,
            #[cfg(feature = "std")]
            relay: None,
        }
    }

    /// Whether a listener is registered (a poll returned `Pending`).
    #[inline]
    pub(crate) fn is_registered(&self) -> bool {
        self.listener.is_some()
    }

    /// Polls until `ready` holds of `node`'s state, registered meanwhile.
    pub(crate) fn poll(
        &mut self,
        node: &Node,
        ready: fn(State) -> bool,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        #[cfg(feature = "std")]
        {
            if self.listener.is_none() && ready(node.state()) {
                return Poll::Ready(()); // no waker, no relay needed
            }
            // A relay for this task's waker; the old one (if the waker
            // changed) is dropped only after the poll, so that
            // event-listener, replacing it under its lock, never drops the
            // last reference to a user's waker there.
            let replaced = match &self.relay {
                Some((relay, _)) if relay.relays_to(cx.waker()) => None,
                _ => self.relay.replace(super::wakes::Relay::new(cx.waker())),
            };
            let relay = match &self.relay {
                Some((_, relay)) => relay,
                None => unreachable!("a relay was just set"),
            };
            let poll = poll_until(
                node,
                ready,
                &mut self.listener,
                &mut Context::from_waker(relay),
            );
            drop(replaced);
            if poll.is_ready() {
                // Done waiting: the task's waker is not kept until the
                // future drops.
                self.relay = None;
            }
            poll
        }
        #[cfg(not(feature = "std"))]
        poll_until(node, ready, &mut self.listener, cx)
    }
}

// Unwind safety (guarantee 21): a panic inside `poll` (only a user's
// `Waker::clone` or an allocation can panic there) leaves the listener
// either registered, which a later poll or the drop handles, or not yet
// set; the relay is replaced only after a successful clone. Nothing is left
// half-changed.
impl core::panic::UnwindSafe for Waiter {}
impl core::panic::RefUnwindSafe for Waiter {}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.take() {
            leave(listener);
        }
        // `relay` drops after the listener left the list.
    }
}

/// Takes a listener off its event's list without passing a notification
/// it may have received on to another listener (which would wake it under
/// event-listener's lock). Without `std` every waker runs under that lock
/// anyway and must only schedule its task, so a plain drop does, in less
/// flash.
#[inline]
fn leave(listener: EventListener) {
    #[cfg(feature = "std")]
    listener.discard();
    #[cfg(not(feature = "std"))]
    drop(listener);
}

/// The poll loop of [`Waiter::poll`], with the waker to register in `cx`.
fn poll_until(
    node: &Node,
    ready: fn(State) -> bool,
    listener: &mut Option<EventListener>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    loop {
        if let Some(parked) = listener.as_mut() {
            if Pin::new(parked).poll(cx).is_pending() {
                return Poll::Pending;
            }
            *listener = None; // notified: event-listener removed it
        }
        if ready(node.state()) {
            return Poll::Ready(());
        }
        // Register first, then announce and re-check (invariant #4).
        let registered = node.event.listen();
        if ready(State::of(node.announce_waiter())) {
            leave(registered);
            return Poll::Ready(());
        }
        *listener = Some(registered);
    }
}

/// Blocks the thread until `ready` holds of `node`'s state or `deadline`
/// passes. Returns whether it holds.
#[cfg(feature = "std")]
pub(crate) fn wait_until(
    node: &Node,
    ready: fn(State) -> bool,
    deadline: Option<std::time::Instant>,
) -> bool {
    loop {
        if ready(node.state()) {
            return true;
        }
        let registered = node.event.listen();
        if ready(State::of(node.announce_waiter())) {
            leave(registered);
            return true;
        }
        match deadline {
            None => {
                registered.wait();
            }
            Some(deadline) => {
                if registered.wait_deadline(deadline).is_none() {
                    return ready(node.state());
                }
            }
        }
    }
}
