//! The owner's exit and the drain cascade.
//!
//! When a `Phaser` is dropped its node is "owner done". It drains once its
//! live-child count is zero too; that may be at once, or later when its last
//! child drains. A drained node tells its parent, which may itself drain,
//! and so on up: a loop, not a recursion (invariant #5).

use super::links::{self, ChildList};
use super::{end_of_operation, state, trace, Node, NodeRef};

/// The owner of a node is done: cancel the subtree, mark the node, and
/// drain it (and the ancestors that waited only for it) if it has no live
/// child. `owner` is the owner's reference to the node.
///
/// If the node drained here, the owner's reference is released here and
/// this returns `true`. Otherwise it is handed over to the node (invariant
/// #6) and this returns `false`: the caller must not touch `owner` again
/// either way.
///
/// A waker that panics does not stop the drop half-way (the node would
/// never drain): its panic comes out of this call once the node is marked
/// done, the cascade has run and the owner's reference is released
/// (`wakes.rs`), so that the panic cannot leak the node.
///
/// # Safety
///
/// `owner` holds the owner's count of the node, and is not used after
/// this call. The node is reached through a raw pointer inside: it may be
/// freed by another thread the moment it is marked done (invariant #7).
#[inline]
pub(crate) unsafe fn release_owner(
    owner: &mut core::mem::ManuallyDrop<NodeRef>,
    panicked: bool,
) -> bool {
    // SAFETY: `owner` holds the count (caller).
    let drained_here = unsafe { release_owner_unraised(NodeRef::as_ptr(owner), panicked) };
    if drained_here {
        // SAFETY: drained here, so the count is still the caller's, and
        // the caller does not use `owner` again.
        unsafe { core::mem::ManuallyDrop::drop(owner) }
    }
    end_of_operation();
    drained_here
}

/// [`release_owner`] up to the point where a waker's panic may be raised:
/// `true` if the node drained here (the caller's count is then still its
/// own).
///
/// # Safety
///
/// `node` came from [`NodeRef::as_ptr`] of the owner's reference, which the
/// caller holds.
#[inline]
unsafe fn release_owner_unraised(node: *const Node, panicked: bool) -> bool {
    let mut done = state::OWNER_DONE;
    if panicked {
        done |= state::PANICKED;
    }
    // A node without children (the common case: a request, a leaf task) is
    // cancelled, marked done and drained by one compare-and-swap.
    // SAFETY: the caller's count keeps the node alive during this call,
    // which hands nothing away unless the node drains here (then it is
    // still ours).
    let prev = super::walk::cancel_for_owner_drop(unsafe { &*node }, panicked, done);
    if state::live_children(prev) != 0 {
        // From this RMW on, the last child may drain the node and free it on
        // another thread: only the atomic word is borrowed for it.
        // SAFETY: alive until the RMW, as above.
        let word = unsafe { &(*node).state };
        let prev = super::lock::update(word, |current| Some(current | done));
        if state::live_children(prev) != 0 {
            return false; // the last child to drain will drain this node
        }
    }
    // SAFETY: the node drained in our RMW, so nobody else frees it, and the
    // caller's count still holds it.
    let node = unsafe { &*node };
    trace::drained(node);
    drain_cascade(node);
    true
}

/// `first` has just become Drained: walk up, one drained node at a time.
#[inline]
fn drain_cascade(first: &Node) {
    let mut next = drain_step(first);
    while let Some(node) = next {
        trace::drained(&node);
        next = drain_step(&node);
    }
}

/// `node` has just become Drained: unlink it from its parent and give the
/// parent its count back, in one step under the parent's lock. Returns the
/// parent if that drained it too, with the parent's reference to itself
/// (invariant #6), to be released once the cascade has gone past it.
#[inline]
fn drain_step(node: &Node) -> Option<NodeRef> {
    if node.parent.is_null() {
        return None; // a root: nobody to tell
    }
    // SAFETY: `node` was un-drained until our caller's RMW and is still
    // linked and counted under its parent until this call unlinks it inside
    // the parent's lock, so the parent cannot drain, let alone be freed,
    // before the lock is released (invariant #6). After that it may be
    // freed at once, which is why it is passed as a raw pointer.
    let unlink_and_uncount = |list: &mut ChildList, current: usize| {
        debug_assert!(
            state::live_children(current) > 0,
            "phaseout: inconsistent state: a child drained from a parent that counted none"
        );
        links::unlink(list, node);
        // Once the count drops, a turned parent may drain and be freed at
        // any moment; if this gives a turn that someone waits for, hold a
        // reference across the wake. Rare: only the last child of a
        // cancelled parent with waiters pays for it.
        let wakes_turn = state::live_children(current) == 1
            && current & (state::CANCELLED | state::HAS_WAITERS | state::OWNER_DONE)
                == state::CANCELLED | state::HAS_WAITERS;
        let keep_alive = wakes_turn.then(|| {
            // SAFETY: the parent is alive (above) and `node.parent` came from
            // `NodeRef::as_ptr`.
            unsafe { NodeRef::new_count(node.parent) }
        });
        // With feature `tracing` or `defmt`, the turn this gives is logged
        // here, before the write that releases the lock gives it: from that
        // write on, the parent's owner may see `is_turn()` by itself, drop
        // its `Phaser` and log `drained` (guarantee 20). So a subscriber
        // gets this event while the parent's child list is locked (trace.rs).
        if trace::wants_turn_of(current) {
            // SAFETY: alive until the release (above).
            trace::turn(unsafe { &*node.parent });
        }
        (current - state::ONE_CHILD, (current, keep_alive))
    };
    // SAFETY: see above.
    let (prev, keep_alive) = unsafe { super::with_children(node.parent, unlink_and_uncount) };
    if state::live_children(prev) != 1 {
        return None; // siblings are still live
    }
    if prev & state::OWNER_DONE != 0 {
        // The parent was only waiting for this child: it drained, and its
        // reference to itself is ours now.
        // SAFETY: the node owns one count since its owner left (invariant
        // #6), and only the thread that drains it takes that count.
        let parent = unsafe { NodeRef::from_raw(node.parent) };
        // This is its turn too, and futures taken before its owner left
        // may still wait for it (guarantee 16): logged first, then woken
        // (guarantee 20); the cascade logs the drain next.
        trace::turn(&parent);
        parent.wake_waiters(prev);
        return Some(parent);
    }
    if let Some(parent) = keep_alive {
        // The turn was logged above, before this wake: a woken task may
        // drop the node at once (guarantee 20).
        parent.wake_waiters(prev); // the parent's turn
    }
    None
}
