//! The tree node behind every `Phaser` and `Token`: one atomic state word,
//! lock-free for every question and transition but the child list.
//!
//! A [`Node`] is shared (through a counted [`NodeRef`]) by its owning
//! `Phaser` and by any tokens and futures. Its parent's child list and its children's `parent`
//! pointers are plain pointers (invariant #6 says why they stay valid). Its
//! whole life is recorded in one atomic word (see [`state`]); a bit of that
//! word is also the lock of its child list.
//!
//! # Invariants
//!
//! 1. **The count is the list's length.** The live-child count changes only
//!    under the lock, together with the list: `+1` as a child is linked,
//!    `-1` as a drained child is unlinked. So a parent's turn (cancelled,
//!    count 0) means every child has drained and none is being created.
//! 2. **Counting and linking are one step.** `child()` checks `CANCELLED`,
//!    counts the child and links it while holding the parent's lock; the
//!    cancel walk sets `CANCELLED` (which waits for that lock) before it
//!    takes the lock to read the children. So a walk either sees the child or
//!    `child()` saw `CANCELLED` and refused. No child escapes a cancel.
//! 3. **A drained child is unlinked at once**, by the thread whose
//!    read-modify-write made it drained, in the same locked step that drops
//!    the parent's count. The parent then holds nothing of it.
//! 4. **Waiters register, then announce.** A waiter first inserts its
//!    listener, then sets `HAS_WAITERS` with a read-modify-write and checks the
//!    value it read. A notifier changes the state with a read-modify-write
//!    (or, holding the `LOCKED` bit that it took with one, with a store no
//!    waiter's RMW can come between) and notifies if the value it read has
//!    `HAS_WAITERS`. Both are on the same word, so one reads the other's
//!    write: either the waiter sees the change, or the notifier sees the
//!    waiter (and its listener, through the release/acquire pair). No
//!    wake-up is lost.
//! 5. **No recursion over the tree.** Cancel, the drain cascade and reports
//!    walk with loops and explicit stacks, and no node owns another, so a
//!    million-deep chain needs no more stack than a single node.
//! 6. **An un-drained node is alive, and owns itself once its owner is
//!    done.** While the `Phaser` lives, its `NodeRef` keeps the node. When the
//!    `Phaser` is dropped with children still live, it leaves its reference
//!    to the node itself; the thread whose RMW drains the node takes that
//!    reference back (`NodeRef::from_raw`) and releases it after the cascade.
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
//! Drained → (last `NodeRef` dropped) freed.

mod drain;
mod links;
mod node_ref;
pub(crate) mod state;
mod walk;

use alloc::borrow::Cow;
use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use event_listener::{Event, EventListener};

pub(crate) use self::drain::release_owner;
pub(crate) use self::links::for_each_child;
use self::links::{ChildList, Siblings};
pub(crate) use self::node_ref::NodeRef;
pub(crate) use self::walk::{cancel_subtree, cancel_subtree_and};
use crate::sync::{spin_loop, AtomicUsize, Ordering};

/// A node's label: free for `&'static str`, owned otherwise.
pub(crate) type Label = Cow<'static, str>;

/// One node of the shutdown tree.
pub(crate) struct Node {
    /// How many [`NodeRef`]s there are (see `node_ref.rs`).
    refs: AtomicUsize,
    /// The packed state word; see [`state`]. Its `LOCKED` bit guards
    /// `children` and the `siblings` of every child.
    state: AtomicUsize,
    /// Woken when the node becomes cancelled and when it gets its turn.
    /// One event for both keeps the node small; a `turn()` waiter woken by
    /// the cancel simply re-checks and waits again.
    event: Event,
    /// Set once at creation; shown in reports and errors. Boxed so an
    /// unlabeled node pays one word for it.
    label: Option<Box<Label>>,
    /// The node this one depends on, from `NodeRef::as_ptr`. Valid until this
    /// node drains (invariant #6); only the drain cascade reads it.
    parent: *const Node,
    /// This node's children; guarded by this node's `LOCKED` bit.
    children: UnsafeCell<ChildList>,
    /// This node's place in its parent's child list; guarded by the
    /// *parent's* `LOCKED` bit.
    siblings: UnsafeCell<Siblings>,
}

// SAFETY: the only non-thread-safe fields are the raw pointers of the child
// list, `siblings` and `parent`. The list and the siblings are only read or
// written with the `LOCKED` bit that owns them held (the node's own for
// `children`, the parent's for `siblings`); `parent` is written once before
// the node is shared. Every pointer in them points to a node that is alive
// while it is reachable there (invariant #6).
unsafe impl Send for Node {}
// SAFETY: as above; shared access goes through the state word.
unsafe impl Sync for Node {}

impl Node {
    /// A new Live node with no children.
    pub(crate) fn new(label: Option<Label>, parent: *const Node) -> Self {
        Self {
            refs: AtomicUsize::new(1),
            state: AtomicUsize::new(0),
            event: Event::new(),
            label: label.map(Box::new),
            parent,
            children: UnsafeCell::new(ChildList::new()),
            siblings: UnsafeCell::new(Siblings::new()),
        }
    }

    /// The current state word.
    #[inline]
    pub(crate) fn load(&self) -> usize {
        self.state.load(Ordering::Acquire)
    }

    pub(crate) fn label(&self) -> Option<&str> {
        self.label.as_deref().map(|label| &**label)
    }

    pub(crate) fn label_cow(&self) -> Option<Label> {
        self.label.as_deref().cloned()
    }

    /// Changes the state word with `change` (given the current value, it
    /// returns the new one, or `None` to leave it) as one compare-and-swap,
    /// waiting while the child-list lock is held. Returns the value before.
    #[inline]
    fn update(&self, mut change: impl FnMut(usize) -> Option<usize>) -> usize {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if current & state::LOCKED != 0 {
                spin_loop();
                current = self.state.load(Ordering::Acquire);
                continue;
            }
            let Some(next) = change(current) else {
                return current;
            };
            if next == current {
                return current; // nothing to change: no write at all
            }
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(prev) => return prev,
                Err(actual) => current = actual,
            }
        }
    }

    /// Holds the child-list lock (the `LOCKED` bit) while `f` reads or
    /// changes the list. `f` gets the state word without `LOCKED` and returns
    /// the word to store when it is done: nobody else writes the word while
    /// it is locked (they wait in [`update`](Self::update)), so one plain
    /// store both applies `f`'s change and unlocks.
    #[inline]
    fn with_children<R>(&self, f: impl FnOnce(&mut ChildList, usize) -> (usize, R)) -> R {
        crate::sync::interrupt_free(|| {
            let unlocked = self.update(|current| Some(current | state::LOCKED));
            // SAFETY: we set `LOCKED`, so we are the only thread with access
            // to the list until the store below.
            let list = unsafe { &mut *self.children.get() };
            let (next, result) = f(list, unlocked);
            debug_assert!(
                next & state::LOCKED == 0,
                "phaseout: a lock holder stored LOCKED"
            );
            self.state.store(next, Ordering::Release);
            result
        })
    }

    /// Sets `CANCELLED` and wakes the waiters if it was not set. If the node
    /// has no child, that is its whole subtree: `SUBTREE_CANCELLED` and
    /// `if_childless` are set in the same RMW (no child can appear once it is
    /// cancelled). Returns the state before.
    #[inline]
    fn mark_cancelled(&self, if_childless: usize) -> usize {
        let prev = self.update(|current| {
            let mut next = current | state::CANCELLED;
            if state::live_children(current) == 0 {
                next |= state::SUBTREE_CANCELLED | if_childless;
            }
            Some(next)
        });
        if !state::is_cancelled(prev) {
            // This RMW may also have given the turn (no child): one wake
            // serves `cancelled()` and `turn()` waiters.
            self.wake_waiters(prev);
        }
        prev
    }

    /// Sets `flags`; returns the state before.
    #[inline]
    fn set(&self, flags: usize) -> usize {
        self.update(|current| Some(current | flags))
    }

    /// Wakes every waiter if `prev` (the value the caller's RMW read) says
    /// there may be some. See invariant #4 for why this cannot miss one.
    #[inline]
    fn wake_waiters(&self, prev: usize) {
        if prev & state::HAS_WAITERS != 0 {
            // Relaxed is enough: the caller's RMW read the waiter's
            // `HAS_WAITERS` RMW (or a later value), so the waiter's listener
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
            if ready(self.set(state::HAS_WAITERS)) {
                return Poll::Ready(());
            }
            *listener = Some(registered);
        }
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
            if ready(self.set(state::HAS_WAITERS)) {
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
}

/// Creates a child of `parent`, or `None` if `parent` is cancelled.
///
/// Counting and linking the child happen under the parent's lock, so a
/// cancel walk either sees the child or made `child()` refuse (invariant #2).
#[inline]
pub(crate) fn new_child(parent: &NodeRef, label: Option<Label>) -> Option<NodeRef> {
    if state::is_cancelled(parent.load()) {
        return None; // refused without allocating
    }
    let child = NodeRef::new(Node::new(label, NodeRef::as_ptr(parent)));
    let linked = parent.with_children(|list, current| match state::with_one_more_child(current) {
        None => (current, false),
        Some(next) => {
            links::push_front(list, &child);
            (next, true)
        }
    });
    // Cancelled between the first look and the lock: the unshared child is
    // simply freed again, and no node ever existed in the tree.
    linked.then_some(child)
}

impl Drop for Node {
    fn drop(&mut self) {
        debug_assert!(
            self.children.get_mut().is_empty(),
            "phaseout: a node was freed while children were still linked to it"
        );
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Node;

    #[test]
    fn a_node_is_eight_words() {
        // count, state, event, label, parent, first child, previous and next
        // sibling: 64 bytes on 64-bit targets, and that is the heap block.
        assert_eq!(
            core::mem::size_of::<Node>(),
            8 * core::mem::size_of::<usize>()
        );
    }
}
