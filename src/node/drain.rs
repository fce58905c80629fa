//! The drain cascade.
//!
//! A node drains once its owner is done (`owner.rs`) and its live-child
//! count is zero; that may be at once, or later when its last child drains.
//! A drained node tells its parent, which may itself drain, and so on up: a
//! loop, not a recursion (invariant #5).

use super::links::{self, ChildList};
use super::{contain, state, trace, Node, NodeRef};

/// `first` has just become Drained: walk up, one drained node at a time.
#[inline]
pub(super) fn drain_cascade(first: &Node) {
    let mut next = drain_step(first);
    while let Some(node) = next {
        trace::drained(&node);
        next = drain_step(&node);
        // Releasing `node` may free it, and a freed node's cause is user
        // code (its error's destructor): a panic from it must not unwind
        // past `next`, drained but still linked in its parent until its own
        // step (invariant #15).
        contain(|| drop(node));
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
        contain(|| drop(parent)); // perhaps the last count (invariant #15)
    }
    None
}
