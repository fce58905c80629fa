//! Which nodes this thread is waking right now (with `std`).
//!
//! event-listener calls each waker while it holds the event's lock. A waker
//! may reasonably cancel a node, or drop a `Phaser`, and that may reach a
//! node whose waiters this same thread is waking further up its stack,
//! marked `WAKE_PENDING`. Notifying that node again from there (node
//! invariant #9) would take the event's lock a second time on this thread:
//! a deadlock. So [`while_notifying`] records the node for the length of
//! its notify, and [`is_notifying`] lets the second notify be skipped: the
//! outer one, on this thread, wakes every waiter before its own `cancel()`
//! returns, and an inner call cannot wait for its own caller anyway.
//!
//! The records are frames on this thread's stack, linked through a
//! thread-local pointer to the innermost one.

use core::cell::Cell;
use core::ptr;

use super::Node;

/// One notify in progress on this thread.
struct Frame {
    node: *const Node,
    /// The notify this one runs inside of, or null.
    outer: *const Frame,
}

#[cfg(not(loom))]
std::thread_local! {
    static INNERMOST: Cell<*const Frame> = const { Cell::new(ptr::null()) };
}

#[cfg(loom)]
loom::thread_local! {
    static INNERMOST: Cell<*const Frame> = Cell::new(ptr::null());
}

/// Runs `notify` with `node` recorded as being notified by this thread.
pub(super) fn while_notifying<R>(node: *const Node, notify: impl FnOnce() -> R) -> R {
    /// Puts the outer frame back, even if a waker panics.
    struct Restore<'a> {
        innermost: &'a Cell<*const Frame>,
        outer: *const Frame,
    }
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            self.innermost.set(self.outer);
        }
    }

    INNERMOST.with(|innermost| {
        let frame = Frame {
            node,
            outer: innermost.get(),
        };
        innermost.set(&frame);
        let _restore = Restore {
            innermost,
            outer: frame.outer,
        };
        notify()
    })
}

/// Whether this thread is inside the notify of `node`.
pub(super) fn is_notifying(node: *const Node) -> bool {
    INNERMOST.with(|innermost| {
        let mut frame = innermost.get();
        // SAFETY: every frame in the chain lives on this thread's stack in a
        // `while_notifying` call that has not returned yet: a frame is
        // unlinked (by `Restore`) before its call returns.
        while let Some(current) = unsafe { frame.as_ref() } {
            if ptr::eq(current.node, node) {
                return true;
            }
            frame = current.outer;
        }
        false
    })
}
