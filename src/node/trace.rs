//! `tracing` (and `defmt`) events for every transition (features
//! `tracing`, `defmt`).
//!
//! Each function is called at the one place its transition happens, by the
//! thread that performed it. Without the feature they are empty and inline
//! away: the default build pays nothing, not even a branch. With it, each
//! event has target `phaseout` and a field `node` (the label, or `#id` as
//! in reports); labeled nodes log at DEBUG, unlabeled ones at TRACE, so a
//! tree of anonymous request nodes does not flood a DEBUG log.
//!
//! With `std` too, a labeled node records when it was cancelled (in its
//! label's heap block, `meta.rs`: unlabeled nodes pay nothing), and its
//! `turn` and `drained` events carry `waited`, the time since then.
//!
//! Feature `defmt` logs the same four events for firmware, `phaseout:
//! <event> <label>` at debug for labeled nodes and `#<id>` at trace for
//! the others (its level filter is `DEFMT_LOG`, chosen at build time), with
//! the cause on `cancel`; no `waited` (no clock without `std`). A `fail`
//! (node and cause) is logged at WARN by both, labeled or not.

use super::Node;

/// A cancellation started at `node` (the node a `cancel`/`cancel_with` or
/// an owner's drop was called on, when that call cancelled it).
#[inline(always)]
pub(super) fn cancel(node: &Node) {
    #[cfg(feature = "tracing")]
    super::contain(|| {
        if !listening(node) {
            return; // do not even write the cause out
        }
        // The one spelling of a cause is its `Display` (`cause.rs`), user
        // code like the subscriber: both run contained (invariant #15).
        let cause = super::cause_of(node).map(|cause| alloc::string::ToString::to_string(&cause));
        emit(node, "cancel", cause.as_deref());
    });
    #[cfg(feature = "defmt")]
    defmt_event(node, "cancel");
    let _ = node;
}

/// `node` was just cancelled (by the RMW of this thread): a labeled node
/// records when, for the `waited` of its `turn` and `drained` events.
#[inline(always)]
pub(super) fn cancelled_now(node: &Node) {
    #[cfg(all(feature = "tracing", feature = "std"))]
    node.meta.record_cancelled_now();
    #[cfg(not(all(feature = "tracing", feature = "std")))]
    let _ = node;
}

/// An abort started at `node`.
#[inline(always)]
pub(super) fn abort(node: &Node) {
    #[cfg(feature = "tracing")]
    event(node, "abort", None);
    #[cfg(feature = "defmt")]
    defmt_event(node, "abort");
    let _ = node;
}

/// `node` just got its turn (cancelled, and its last child drained).
///
/// When a last child's drain gives the turn, this is called while `node`'s
/// child list is still locked, just before the write that gives it, so
/// that no `drained` of `node` can be logged before it. A subscriber must
/// therefore not change that node's tree from inside the event: a
/// `cancel`, `fail`, `child()` or drop that reaches `node` would wait for
/// the lock its own thread holds.
#[inline(always)]
pub(super) fn turn(node: &Node) {
    #[cfg(feature = "tracing")]
    event(node, "turn", None);
    #[cfg(feature = "defmt")]
    defmt_event(node, "turn");
    let _ = node;
}

/// `node` just drained (owner done, no child left).
#[inline(always)]
pub(super) fn drained(node: &Node) {
    #[cfg(feature = "tracing")]
    event(node, "drained", None);
    #[cfg(feature = "defmt")]
    defmt_event(node, "drained");
    let _ = node;
}

/// Whether the drain of the last child of a node whose state is `prev`
/// (read under the node's lock, before the write that gives the count
/// back) gives the node a turn to log: it is cancelled and its owner is
/// still there (a node whose owner left drains at once, and its drain's
/// cascade logs both). Without the feature, never.
#[inline(always)]
pub(super) fn wants_turn_of(prev: usize) -> bool {
    #[cfg(any(feature = "tracing", feature = "defmt"))]
    return super::state::live_children(prev) == 1
        && prev & (super::state::CANCELLED | super::state::OWNER_DONE) == super::state::CANCELLED;
    #[cfg(not(any(feature = "tracing", feature = "defmt")))]
    {
        let _ = prev;
        false
    }
}

/// `node` failed with `cause` (`Phaser::fail`, or a critical node's
/// panic): at WARN whatever the node, since a failure is news.
#[inline]
pub(super) fn fail(node: &Node, cause: &crate::cause::Cause) {
    #[cfg(feature = "tracing")]
    super::contain(|| {
        if tracing::enabled!(target: "phaseout", tracing::Level::WARN) {
            let mut id = alloc::string::String::new();
            let name = name_of(node, &mut id);
            tracing::warn!(target: "phaseout", node = name, cause = %cause, "fail");
        }
    });
    #[cfg(feature = "defmt")]
    match node.label() {
        Some(label) => defmt::warn!("phaseout: fail {=str} cause={}", label, cause),
        None => defmt::warn!(
            "phaseout: fail #{=usize:x} cause={}",
            core::ptr::from_ref(node) as usize,
            cause
        ),
    }
    let _ = (node, cause);
}

/// The `node` field of an event: the label, or `#id` (written into `id`)
/// as in reports.
#[cfg(feature = "tracing")]
fn name_of<'a>(node: &'a Node, id: &'a mut alloc::string::String) -> &'a str {
    use core::fmt::Write;
    match node.label() {
        Some(label) => label,
        None => {
            let _ = write!(id, "#{:x}", core::ptr::from_ref(node) as usize);
            id.as_str()
        }
    }
}

/// Whether a subscriber wants `node`'s events (DEBUG if it is labeled,
/// TRACE if not). Checked first, so nobody listening costs a level check.
#[cfg(feature = "tracing")]
#[inline]
fn listening(node: &Node) -> bool {
    if node.label().is_some() {
        tracing::enabled!(target: "phaseout", tracing::Level::DEBUG)
    } else {
        tracing::enabled!(target: "phaseout", tracing::Level::TRACE)
    }
}

/// Logs one event; the subscriber is user code, and runs contained
/// (invariant #15): the `turn` event even comes while a child list is
/// locked.
#[cfg(feature = "tracing")]
fn event(node: &Node, what: &'static str, cause: Option<&str>) {
    super::contain(|| emit(node, what, cause));
}

#[cfg(feature = "tracing")]
fn emit(node: &Node, what: &'static str, cause: Option<&str>) {
    if !listening(node) {
        return; // nobody listens: do not even format the name
    }
    let labeled = node.label().is_some();
    let mut id = alloc::string::String::new();
    let name = name_of(node, &mut id);
    let waited = waited(node, what);
    // `tracing`'s macros want a constant level: one arm per level.
    macro_rules! emit {
        ($level:expr) => {
            match (cause, waited) {
                (Some(cause), _) => tracing::event!(target: "phaseout", $level, node = name, cause, "{what}"),
                (None, Some(waited)) => tracing::event!(target: "phaseout", $level, node = name, ?waited, "{what}"),
                (None, None) => tracing::event!(target: "phaseout", $level, node = name, "{what}"),
            }
        };
    }
    if labeled {
        emit!(tracing::Level::DEBUG);
    } else {
        emit!(tracing::Level::TRACE);
    }
}

/// For `turn` and `drained` of a labeled node: the time since it was
/// cancelled (std only).
#[cfg(feature = "tracing")]
fn waited(node: &Node, what: &str) -> Option<core::time::Duration> {
    #[cfg(feature = "std")]
    if what == "turn" || what == "drained" {
        return node.meta.since_cancelled();
    }
    let _ = (node, what);
    None
}

/// The `defmt` form of an event; see the module doc.
#[cfg(feature = "defmt")]
fn defmt_event(node: &Node, what: &'static str) {
    let Some(label) = node.label() else {
        let id = core::ptr::from_ref(node) as usize;
        defmt::trace!("phaseout: {=str} #{=usize:x}", what, id);
        return;
    };
    let word = node.load();
    if what != "cancel" {
        defmt::debug!("phaseout: {=str} {=str}", what, label);
    } else if word & super::state::OWN_DROP != 0 {
        // Not `cause_of`: that would build a cause on the heap at every
        // labeled drop, even when `DEFMT_LOG` filters this line out.
        let how = crate::cause::owner_outcome(word & super::state::PANICKED != 0);
        defmt::debug!("phaseout: cancel {=str} cause=the owner {=str}", label, how);
    } else if let Some(cause) = (word & super::state::HAS_CAUSE != 0)
        .then(|| node.meta.cause())
        .flatten()
    {
        defmt::debug!("phaseout: cancel {=str} cause={}", label, cause);
    } else {
        defmt::debug!("phaseout: cancel {=str}", label);
    }
}
