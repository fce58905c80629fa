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
    super::cancel_subtree(node);
    let mut done = state::OWNER_DONE;
    if panicked {
        done |= state::PANICKED;
    }
    let prev = node.state.fetch_or(done, Ordering::AcqRel);
    if state::live_children(prev) == 0 {
        drain_cascade(node.clone());
    }
}

/// `drained` has just become Drained. Unlink it from its parent and give the
/// parent its count back; repeat for each parent that this drains in turn.
fn drain_cascade(mut drained: Arc<Node>) {
    loop {
        let Some(parent) = drained.parent.clone() else {
            return; // a root: nobody to tell
        };
        // Unlink before the count drops (invariant #3): once the parent sees
        // its count fall, it holds nothing of this child.
        let list_reference = links::unlink(&parent, &drained);
        drop(list_reference);
        drop(drained);
        let prev = parent.state.fetch_sub(state::ONE_CHILD, Ordering::AcqRel);
        debug_assert!(
            state::live_children(prev) > 0,
            "phaseout: inconsistent state: a child drained from a parent that counted none"
        );
        if state::live_children(prev) != 1 {
            return; // siblings are still live
        }
        if prev & state::OWNER_DONE != 0 {
            drained = parent; // the parent was only waiting for this child
            continue;
        }
        // The last child is gone: if the parent is cancelled, this is its
        // turn.
        if state::is_cancelled(prev) {
            parent.wake_waiters(prev);
        }
        return;
    }
}
