//! [`NodeRef`]: a counted reference to a heap-allocated node.
//!
//! It is `Arc<Node>` without the weak count, which nothing here needs. That
//! keeps the heap block of a node at exactly its size (64 bytes on 64-bit
//! targets instead of 72) and saves the weak count's atomic decrement on
//! every free, a measurable share of creating and dropping a child (benches).
//! It also works on targets without compare-and-swap through the same atomics
//! as the rest of the crate, so no extra `Arc` crate is needed there.

use alloc::boxed::Box;
use core::ops::Deref;
use core::ptr::NonNull;

use super::Node;
use crate::sync::{last_count_acquire, AtomicUsize, Ordering};

/// A counted reference to a [`Node`]; the node is freed with the last one.
pub(crate) struct NodeRef {
    ptr: NonNull<Node>,
}

// SAFETY: a `NodeRef` only gives shared access to a `Node`, which is `Send`
// and `Sync`, and its count is atomic.
unsafe impl Send for NodeRef {}
// SAFETY: as above.
unsafe impl Sync for NodeRef {}

// Unwind safety (guarantee 21): what `catch_unwind` asks about is whether
// a panic can leave shared state half-changed for code that goes on using
// it. A node cannot be: every change of its state word is one atomic
// read-modify-write, the child list is only changed in a locked section
// that cannot panic after its first write and whose guard restores the
// word if it unwinds (invariant #8), the cause slot is filled once by a
// compare-and-swap, and a waker's panic is held until the operation it
// interrupted has finished (`wakes.rs`). So the handles are as unwind-safe
// as tokio-util's token; the `UnsafeCell`s of the list are what the
// auto traits see, not a hazard.
impl core::panic::UnwindSafe for NodeRef {}
impl core::panic::RefUnwindSafe for NodeRef {}

impl NodeRef {
    /// Moves `node` (whose count starts at one) to the heap.
    #[inline]
    pub(crate) fn new(node: Node) -> Self {
        Self {
            ptr: NonNull::from(Box::leak(Box::new(node))),
        }
    }

    /// The node's address; it stays valid as long as a count is held.
    pub(crate) fn as_ptr(this: &Self) -> *const Node {
        this.ptr.as_ptr()
    }

    /// Takes over a count that was given up for `ptr` (a node whose owner
    /// left its reference to the node itself, in a `ManuallyDrop`).
    ///
    /// # Safety
    ///
    /// `ptr` came from [`as_ptr`](Self::as_ptr), and the caller owns one
    /// count of that node that no `NodeRef` holds.
    pub(crate) unsafe fn from_raw(ptr: *const Node) -> Self {
        Self {
            // SAFETY: a pointer from `as_ptr` is never null.
            ptr: unsafe { NonNull::new_unchecked(ptr.cast_mut()) },
        }
    }

    /// A new count of the node at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`as_ptr`](Self::as_ptr) and the node is alive (some
    /// count is held, or the node is linked: node invariant #6).
    pub(crate) unsafe fn new_count(ptr: *const Node) -> Self {
        // SAFETY: the caller promises the node is alive.
        let node = unsafe { &*ptr };
        count_one_more(&node.refs, NODE);
        // SAFETY: we just took the count that the new `NodeRef` owns.
        unsafe { Self::from_raw(ptr) }
    }
}

/// The most counts a node may have. Past it the process aborts, as `Arc`
/// does: safe code can leak counts without end (`mem::forget` of a token,
/// or of a future, which leaks no memory at all), and on a 32-bit target
/// 2^32 of them take seconds. Had the count wrapped instead, the next drop
/// would free a node that is still in use. Half the range leaves room for
/// every thread that may be between its increment and this check.
const MAX_COUNT: usize = isize::MAX as usize;

/// A node's name in the abort message: its references are its tokens and
/// futures.
const NODE: &str = "a node (its tokens and futures)";

/// Takes one more count of a node (or of a [`Cause`](crate::Cause), whose
/// count works the same way), or aborts if that would pass [`MAX_COUNT`].
/// `what` names the counted thing in the message.
#[inline]
pub(crate) fn count_one_more(refs: &AtomicUsize, what: &'static str) {
    // Relaxed, as for `Arc`: holding a count already keeps the node alive,
    // and a new count orders nothing.
    let before = refs.fetch_add(1, Ordering::Relaxed);
    if before > MAX_COUNT {
        too_many_counts(what);
    }
}

/// Ends the process: a count would wrap.
#[cold]
#[inline(never)]
fn too_many_counts(what: &'static str) -> ! {
    #[cfg(feature = "std")]
    {
        std::eprintln!("phaseout: {what} has more than {MAX_COUNT} references; aborting");
        std::process::abort();
    }
    #[cfg(not(feature = "std"))]
    {
        // `core` has no abort. A panic while panicking aborts; with
        // `panic = "abort"`, as firmware usually builds, the first one does.
        struct PanicAgain;
        impl Drop for PanicAgain {
            fn drop(&mut self) {
                panic!("phaseout: too many references");
            }
        }
        let _again = PanicAgain;
        // A fixed message: formatting `what` and the limit here would cost
        // firmware flash for a line that is never expected to print.
        let _ = what;
        panic!("phaseout: a reference count would pass isize::MAX");
    }
}

impl Clone for NodeRef {
    #[inline]
    fn clone(&self) -> Self {
        count_one_more(&self.refs, NODE);
        Self { ptr: self.ptr }
    }
}

impl Drop for NodeRef {
    #[inline]
    fn drop(&mut self) {
        // Release/Acquire, as for `Arc`: every use of the node through other
        // references happens-before the thread that frees it. The acquire is
        // a load of the count, not a fence (`last_count_acquire` says why).
        if self.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        last_count_acquire(&self.refs);
        // SAFETY: this was the last count, so nothing else can reach the
        // node; it was allocated by `Box` in `new`.
        drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
    }
}

impl Deref for NodeRef {
    type Target = Node;

    #[inline]
    fn deref(&self) -> &Node {
        // SAFETY: we hold a count, so the node is alive.
        unsafe { self.ptr.as_ref() }
    }
}

#[cfg(all(test, feature = "std", not(miri), not(loom)))]
mod tests {
    use std::process::Command;

    use super::{NodeRef, MAX_COUNT};
    use crate::node::Node;
    use crate::sync::Ordering;

    /// Set in the child process that runs the aborting half of a test.
    const CHILD: &str = "PHASEOUT_TEST_CHILD";

    #[test]
    fn a_count_past_the_limit_aborts_instead_of_wrapping() {
        if std::env::var_os(CHILD).is_some() {
            let node = NodeRef::new(Node::new(None, core::ptr::null()));
            // As if `MAX_COUNT - 1` tokens had been leaked with `mem::forget`.
            node.refs.store(MAX_COUNT, Ordering::Relaxed);
            let at_limit = node.clone();
            core::mem::forget(at_limit);
            println!("at the limit");
            let past = node.clone(); // must abort here
            core::mem::forget(past);
            println!("past the limit");
            return;
        }
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "node::node_ref::tests::a_count_past_the_limit_aborts_instead_of_wrapping",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stdout.contains("at the limit"), "{stdout}\n{stderr}");
        assert!(
            !stdout.contains("past the limit"),
            "the count went past the limit: {stdout}"
        );
        assert!(stderr.contains("aborting"), "{stderr}");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                output.status.signal(),
                Some(6),
                "not SIGABRT: {:?}",
                output.status
            );
        }
        #[cfg(not(unix))]
        assert!(!output.status.success());
    }
}
