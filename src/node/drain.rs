//! The owner's exit and the drain cascade.
//!
//! When a `Phaser` is dropped its node is "owner done". It drains once its
//! live-child count is zero too; that may be at once, or later when its last
//! child drains. A drained node tells its parent, which may itself drain,
//! and so on up: a loop, not a recursion (invariant #5).

use super::{links, state, Node};
use crate::sync::{Arc, Ordering};

/// The owner of `node` is done: cancel the subtree, mark the node, and drain
/// it (and the ancestors that waited only for it) if it has no live child.
pub(crate) fn release_owner(node: &Arc<Node>, panicked: bool) {
    let mut done = state::OWNER_DONE;
    if panicked {
        done |= state::PANICKED;
    }
    // A node without children (the common case: a request, a leaf task) is
    // cancelled, marked done and drained by one compare-and-swap.
    let prev = super::cancel_subtree_and(node, done);
    let drained = if state::live_children(prev) == 0 {
        true
    } else {
        let prev = node.state.fetch_or(done, Ordering::AcqRel);
        state::live_children(prev) == 0
    };
    if drained {
        drain_cascade(node);
    }
}

/// `first` has just become Drained: walk up, one drained node at a time.
fn drain_cascade(first: &Node) {
    let mut next = drain_step(first);
    while let Some(node) = next {
        next = drain_step(&node);
    }
}

/// `node` has just become Drained: unlink it from its parent and give the
/// parent its count back. Returns the parent if that drained it too.
///
/// `node` holds an `Arc` of its parent, and our caller keeps `node` alive, so
/// the parent is alive throughout; a reference of our own is only taken when
/// the cascade goes on to the parent.
fn drain_step(node: &Node) -> Option<Arc<Node>> {
    let parent = node.parent.as_ref()?; // a root: nobody to tell
                                        // Unlink before the count drops (invariant #3): once the parent sees its
                                        // count fall, it holds nothing of this child.
    links::unlink(parent, node);
    let prev = parent.state.fetch_sub(state::ONE_CHILD, Ordering::AcqRel);
    debug_assert!(
        state::live_children(prev) > 0,
        "phaseout: inconsistent state: a child drained from a parent that counted none"
    );
    if state::live_children(prev) != 1 {
        return None; // siblings are still live
    }
    if prev & state::OWNER_DONE != 0 {
        return Some(parent.clone()); // the parent was only waiting for this child
    }
    // The last child is gone: if the parent is cancelled, this is its turn.
    if state::is_cancelled(prev) {
        parent.wake_waiters(prev);
    }
    None
}
