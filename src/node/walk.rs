//! The cancel walk: one `cancel()` marks a whole subtree.
//!
//! Depth-first with an explicit stack (invariant #5). Each node is visited
//! twice: on the way down it gets `CANCELLED` (waking its waiters) and its
//! children are pushed; on the way up, once everything below it has been
//! handled, it gets `SUBTREE_CANCELLED`.
//!
//! Why the second flag: a `cancel()` must not return before its whole subtree
//! is cancelled, even if another thread's walk got to the top of it first
//! (guarantee 3). So a walk cannot stop at a node that is merely `CANCELLED`;
//! it can only stop at one that is `SUBTREE_CANCELLED`. Without the flag,
//! dropping the `Phaser`s of a long chain root-first would re-walk the rest
//! of the chain at every step: quadratic time.

use alloc::vec::Vec;

use super::{for_each_child, state, Node};
use crate::sync::{Arc, Ordering};

enum Visit {
    /// Cancel this node and queue its children.
    Down(Arc<Node>),
    /// Everything below this node is cancelled now.
    Up(Arc<Node>),
}

/// Cancels `root` and its whole subtree. Returns once every node of it is
/// `CANCELLED` and every waiter on them has been woken. Never waits for
/// another thread.
pub(crate) fn cancel_subtree(root: &Arc<Node>) {
    // The common repeat case (a component's own `cancel()`, or `Drop`, after
    // the root's walk) is one load.
    if root.load() & state::SUBTREE_CANCELLED != 0 {
        return;
    }
    let mut stack = Vec::new();
    stack.push(Visit::Down(root.clone()));
    while let Some(visit) = stack.pop() {
        match visit {
            Visit::Down(node) => {
                let prev = node.state.fetch_or(state::CANCELLED, Ordering::AcqRel);
                // Wakes both `cancelled()` waiters and, if there is no child
                // left, `turn()` waiters: this RMW may have given the turn.
                node.wake_waiters(prev);
                if prev & state::SUBTREE_CANCELLED != 0 {
                    continue;
                }
                stack.push(Visit::Up(node.clone()));
                for_each_child(&node, |child| stack.push(Visit::Down(child)));
            }
            Visit::Up(node) => {
                node.state
                    .fetch_or(state::SUBTREE_CANCELLED, Ordering::AcqRel);
            }
        }
    }
}
