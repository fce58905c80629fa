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

use super::{for_each_child, state, Node, NodeRef};

enum Visit {
    /// Cancel this node and queue its children.
    Down(NodeRef),
    /// Everything below this node is cancelled now.
    Up(NodeRef),
}

/// Cancels `root` and its whole subtree. Returns once every node of it is
/// `CANCELLED` and every waiter on them has been woken. Never waits for
/// another thread.
#[inline]
pub(crate) fn cancel_subtree(root: &Node) {
    cancel_subtree_and(root, 0);
}

/// Like [`cancel_subtree`]; if `root` has no child, also sets `if_childless`
/// in the same read-modify-write. Returns `root`'s state before.
#[inline]
pub(crate) fn cancel_subtree_and(root: &Node, if_childless: usize) -> usize {
    let prev = root.mark_cancelled(if_childless);
    if prev & state::SUBTREE_CANCELLED == 0 && state::live_children(prev) > 0 {
        cancel_descendants(root);
        root.set(state::SUBTREE_CANCELLED);
    }
    prev
}

/// The walk below an already cancelled `root` (invariant #5: no recursion).
fn cancel_descendants(root: &Node) {
    let mut stack = Vec::new();
    for_each_child(root, |child| stack.push(Visit::Down(child)));
    while let Some(visit) = stack.pop() {
        match visit {
            Visit::Down(node) => {
                let prev = node.mark_cancelled(0);
                if prev & state::SUBTREE_CANCELLED != 0 || state::live_children(prev) == 0 {
                    continue; // done already, or a leaf (marked in the same RMW)
                }
                // `Up` goes *below* the children, so it is popped after all
                // of them are done (inserting moves only this node's
                // children, and saves a reference count).
                let below_children = stack.len();
                for_each_child(&node, |child| stack.push(Visit::Down(child)));
                stack.insert(below_children, Visit::Up(node));
            }
            Visit::Up(node) => {
                node.set(state::SUBTREE_CANCELLED);
            }
        }
    }
}
