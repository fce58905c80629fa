//! Failures: `fail` records a [`Failure`] in the node's scope and cancels
//! the scope (the supervision of `Phaser::fail`, `critical` and
//! `failures`).
//!
//! A scope is the nearest node at or above the failing one that was made
//! a scope (`child_scope`), or the root. Finding it walks `parent`
//! pointers up; that is safe because the failing node is not drained (its
//! owner is calling, or is in its drop before the hand-off), so every node
//! above it has a live child and is alive (invariant #6). A failure is
//! therefore always recorded, never refused: its scope cannot have drained
//! yet.

use alloc::vec::Vec;

use super::{walk, Node, NodeRef};
use crate::cause::Cause;
use crate::failure::Failure;

/// `node` failed with `cause`: record it in its scope, then cancel the
/// scope with the cause of the scope's *first* failure (this one, unless
/// another came before): two failures racing each other then leave one
/// cause, failure #1's, whichever walk gets there first (and a cancel
/// before both still wins, as always). Never blocks.
///
/// The owner of `node` is live (not yet handed off): the caller is it.
pub(crate) fn fail(node: &NodeRef, cause: Cause, panicked: bool) {
    let scope = scope_of(node);
    let failure = Failure::new(node.label_cow(), cause.clone(), panicked);
    let first = scope
        .meta
        .record_failure(failure)
        .unwrap_or_else(|| cause.clone());
    /// Cancels the scope when dropped: after the `fail` event, even if a
    /// subscriber panics in it (a recorded failure always stops its scope).
    struct CancelScope<'a>(&'a NodeRef, &'a Cause);
    impl Drop for CancelScope<'_> {
        fn drop(&mut self) {
            walk::cancel_subtree_with(self.0, self.1);
        }
    }
    let cancel = CancelScope(&scope, &first);
    // After the record: a subscriber that reads `failures()` sees this one.
    super::trace::fail(node, &cause);
    drop(cancel);
}

/// The failures recorded in `node` if it is a scope, oldest first.
pub(crate) fn failures(node: &Node) -> Vec<Failure> {
    node.meta.failures()
}

/// The nearest scope at or above `node`, with a count of its own so that
/// it stays alive through the cancel walk whatever the wakers do.
fn scope_of(node: &NodeRef) -> NodeRef {
    let mut at = NodeRef::as_ptr(node);
    loop {
        // SAFETY: `at` is `node` or an ancestor of it; `node` is not
        // drained (caller), so each node above it has a live child and is
        // alive (invariant #6). Only `meta` and `parent` are read.
        let here = unsafe { &*at };
        if here.parent.is_null() || here.meta.is_scope() {
            // SAFETY: alive, as above; `at` came from `NodeRef::as_ptr`
            // (of `node`, or as a `parent`: invariant #6), so it carries the
            // whole block, count included.
            return unsafe { NodeRef::new_count(at) };
        }
        at = here.parent;
    }
}
