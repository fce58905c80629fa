//! The lock-free tree node behind every `Phaser` and `Token`.
//!
//! A [`Node`] is shared (through an `Arc`) by its owning `Phaser` and by any
//! tokens and futures. Its parent's child list and its children's `parent`
//! pointers are plain pointers (invariant #6 says why they stay valid). Its
//! whole life is recorded in one atomic word (see [`state`]); the child links
//! are the only thing behind a lock.
//!
//! # Invariants
//!
//! 1. **A counted child is reachable or about to be.** `child()` adds one to
//!    the parent's live-child count *before* it links the child, and only if
//!    the parent is not cancelled (one CAS). So the parent's turn cannot come
//!    while a child is being created, and a cancelled parent never gains one.
//! 2. **Linking re-checks under the parent's lock.** The cancel walk sets
//!    `CANCELLED` on a node *before* it takes that node's lock to read its
//!    children. A child linked after the walk read the list therefore sees
//!    `CANCELLED` under the same lock and cancels itself. No child escapes a
//!    cancel.
//! 3. **A drained child is unlinked at once**, by the thread whose
//!    read-modify-write made it drained, before the parent's count drops. The
//!    parent then holds nothing of it.
//! 4. **Waiters register, then announce.** A waiter first inserts its
//!    listener, then sets `HAS_WAITERS` with a read-modify-write and checks the
//!    value it read. A notifier changes the state with a read-modify-write and
//!    notifies if the value it read has `HAS_WAITERS`. Both RMWs are on the
//!    same word, so one of them reads the other's write: either the waiter
//!    sees the change, or the notifier sees the waiter (and its listener,
//!    through the release/acquire pair). No wake-up is lost.
//! 5. **No recursion over the tree.** Cancel, the drain cascade and reports
//!    walk with loops and explicit stacks, and no node owns another, so a
//!    million-deep chain needs no more stack than a single node.
//! 6. **An un-drained node is alive, and owns itself once its owner is
//!    done.** While the `Phaser` lives, its `Arc` keeps the node. When the
//!    `Phaser` is dropped with children still live, it leaves its reference
//!    to the node itself; the thread whose RMW drains the node takes that
//!    reference back (`Arc::from_raw`) and releases it after the cascade.
//!    So a child's `parent` pointer and a parent's list pointers are valid
//!    for as long as the child is linked, without a reference count of their
//!    own; the only place a drained child touches its parent *after* giving
//!    its count back (to wake the parent's turn) takes a reference first.
//!
//! # Memory ordering
//!
//! Every state transition is `AcqRel`, every question an `Acquire` load: what
//! an owner did before dropping its `Phaser` happens-before its parent's
//! `turn()` resolves, through the chain of RMWs on the state words.
//!
//! # Lifecycle
//!
//! Live → (cancel walk) Cancelling → (count reaches 0) turn → (owner drops)
//! Drained → (last `Arc` dropped) freed.

mod drain;
mod links;
pub(crate) mod state;
mod walk;

use alloc::borrow::Cow;
use core::cell::UnsafeCell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use event_listener::{Event, EventListener};

pub(crate) use self::drain::release_owner;
pub(crate) use self::links::for_each_child;
use self::links::{ChildList, Siblings};
pub(crate) use self::walk::{cancel_subtree, cancel_subtree_and};
use crate::sync::{Arc, AtomicUsize, Lock, Ordering};

/// A node's label: free for `&'static str`, owned otherwise.
pub(crate) type Label = Cow<'static, str>;

/// One node of the shutdown tree.
pub(crate) struct Node {
    /// The packed state word; see [`state`].
    state: AtomicUsize,
    /// Woken when the node becomes cancelled and when it gets its turn.
    /// One event for both keeps the node small; a `turn()` waiter woken by
    /// the cancel simply re-checks and waits again.
    event: Event,
    /// Set once at creation; shown in reports and errors.
    label: Option<Label>,
    /// The node this one depends on, from `Arc::as_ptr`. Valid until this
    /// node drains (invariant #6); only the drain cascade reads it.
    parent: *const Node,
    /// This node's children, guarded by this node's lock.
    children: Lock<ChildList>,
    /// This node's place in its parent's child list, guarded by the
    /// *parent's* lock.
    siblings: UnsafeCell<Siblings>,
}

// SAFETY: the only non-thread-safe fields are the raw pointers of the child
// list and `siblings`. They are only read or written with the lock that owns
// them held (the node's own lock for `children`, the parent's lock for
// `siblings`), and every pointer in them is a strong reference counted by the
// list, so the pointee outlives its use.
unsafe impl Send for Node {}
// SAFETY: as above; shared access goes through atomics or the locks.
unsafe impl Sync for Node {}

impl Node {
    /// A new Live node with no children.
    pub(crate) fn new(label: Option<Label>, parent: *const Node) -> Self {
        Self {
            state: AtomicUsize::new(0),
            event: Event::new(),
            label,
            parent,
            children: Lock::new(ChildList::new()),
            siblings: UnsafeCell::new(Siblings::new()),
        }
    }

    /// The current state word.
    #[inline]
    pub(crate) fn load(&self) -> usize {
        self.state.load(Ordering::Acquire)
    }

    pub(crate) fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    pub(crate) fn label_cow(&self) -> Option<Label> {
        self.label.clone()
    }

    /// Sets `CANCELLED` and wakes the waiters if it was not set. If the node
    /// has no child, that is its whole subtree: `SUBTREE_CANCELLED` and
    /// `if_childless` are set in the same RMW (no child can appear once it is
    /// cancelled, and a child being created is already counted). Returns the
    /// state before.
    fn mark_cancelled(&self, if_childless: usize) -> usize {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let mut next = current | state::CANCELLED;
            if state::live_children(current) == 0 {
                next |= state::SUBTREE_CANCELLED | if_childless;
            }
            if next == current {
                return current; // nothing to change: one load
            }
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(prev) => {
                    if !state::is_cancelled(prev) {
                        // This RMW may also have given the turn (no child):
                        // one wake serves `cancelled()` and `turn()` waiters.
                        self.wake_waiters(prev);
                    }
                    return prev;
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Wakes every waiter if `prev` (the value the caller's RMW read) says
    /// there may be some. See invariant #4 for why this cannot miss one.
    #[inline]
    fn wake_waiters(&self, prev: usize) {
        if prev & state::HAS_WAITERS != 0 {
            // Relaxed is enough: the caller's AcqRel RMW read the waiter's
            // `HAS_WAITERS` RMW (or a later one), so the waiter's listener
            // insertion happens-before this call.
            self.event.notify_relaxed(usize::MAX);
        }
    }

    /// Polls until `ready(state)` holds, parking in `listener` meanwhile.
    pub(crate) fn poll_until(
        &self,
        ready: fn(usize) -> bool,
        listener: &mut Option<EventListener>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        loop {
            if let Some(parked) = listener.as_mut() {
                if Pin::new(parked).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                *listener = None;
            }
            if ready(self.load()) {
                return Poll::Ready(());
            }
            // Register first, then announce and re-check (invariant #4).
            let registered = self.event.listen();
            if ready(self.announce_waiter()) {
                return Poll::Ready(());
            }
            *listener = Some(registered);
        }
    }

    /// Sets `HAS_WAITERS` and returns the state it read.
    #[inline]
    fn announce_waiter(&self) -> usize {
        self.state.fetch_or(state::HAS_WAITERS, Ordering::AcqRel)
    }

    /// Blocks the thread until `ready(state)` holds or `deadline` passes.
    /// Returns whether it holds.
    #[cfg(feature = "std")]
    pub(crate) fn wait_until(
        &self,
        ready: fn(usize) -> bool,
        deadline: Option<std::time::Instant>,
    ) -> bool {
        use event_listener::Listener;
        loop {
            if ready(self.load()) {
                return true;
            }
            let registered = self.event.listen();
            if ready(self.announce_waiter()) {
                return true;
            }
            match deadline {
                None => registered.wait(),
                Some(deadline) => {
                    if registered.wait_deadline(deadline).is_none() {
                        return ready(self.load());
                    }
                }
            }
        }
    }

    /// Reserves a slot for a new child: `Err(())` if this node is cancelled.
    /// Invariant #1.
    fn reserve_child(&self) -> Result<(), ()> {
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let next = state::with_one_more_child(current).ok_or(())?;
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }
}

/// Creates a child of `parent`, or `None` if `parent` is cancelled (then
/// nothing is allocated).
pub(crate) fn new_child(parent: &Arc<Node>, label: Option<Label>) -> Option<Arc<Node>> {
    parent.reserve_child().ok()?;
    let child = Arc::new(Node::new(label, Arc::as_ptr(parent)));
    links::link(parent, &child);
    Some(child)
}

impl Drop for Node {
    fn drop(&mut self) {
        debug_assert!(
            self.children.with(|list| list.is_empty()),
            "phaseout: a node was freed while children were still linked to it"
        );
    }
}
