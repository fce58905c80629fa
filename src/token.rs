//! A cheap, cloneable observer of one node.

use core::fmt;

use crate::futures::Cancelled;
use crate::node::{self, state, NodeRef};

/// A cloneable handle that can see and request the cancellation of one node.
///
/// Give tokens to code that must notice shutdown (an accept loop, a worker)
/// but does not own a place in the tree. A token never keeps its node from
/// draining: only the node's [`Phaser`](crate::Phaser) and its children do.
///
/// A node counts its tokens and futures; like `Arc`, cloning one past
/// `isize::MAX` of them (only possible by leaking them with
/// [`mem::forget`](core::mem::forget)) aborts the process rather than let
/// the count wrap.
///
/// # Examples
///
/// ```
/// let root = phaseout::Phaser::new();
/// let token = root.token();
/// let worker = std::thread::spawn(move || {
///     while !token.is_cancelled() {
///         std::thread::yield_now(); // one unit of work
///     }
/// });
/// root.cancel();
/// worker.join().unwrap();
/// ```
#[derive(Clone)]
pub struct Token {
    node: NodeRef,
}

impl Token {
    pub(crate) fn new(node: NodeRef) -> Self {
        Self { node }
    }

    /// Requests shutdown of the node and its whole subtree, exactly like
    /// [`Phaser::cancel`](crate::Phaser::cancel).
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let child = root.child().unwrap();
    /// child.token().cancel();
    /// assert!(child.is_cancelled() && !root.is_cancelled());
    /// ```
    pub fn cancel(&self) {
        node::cancel_subtree(&self.node);
    }

    /// Whether the node is cancelled. One atomic load.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let token = root.token();
    /// assert!(!token.is_cancelled());
    /// root.cancel();
    /// assert!(token.is_cancelled());
    /// ```
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        state::is_cancelled(self.node.load())
    }

    /// Waits until the node is cancelled. The future owns a reference to the
    /// node, so it is `'static` and can move into a spawned task.
    ///
    /// Equivalent to `async fn cancelled(self)`.
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future unregisters it; nothing is lost.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let cancelled = root.token().cancelled();
    /// let waiter = std::thread::spawn(move || pollster::block_on(cancelled));
    /// root.cancel();
    /// waiter.join().unwrap();
    /// ```
    pub fn cancelled(&self) -> Cancelled {
        Cancelled::new(self.node.clone())
    }

    /// Blocks the thread until the node is cancelled.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let token = root.token();
    /// let waiter = std::thread::spawn(move || token.wait_cancelled());
    /// root.cancel();
    /// waiter.join().unwrap();
    /// ```
    #[cfg(feature = "std")]
    pub fn wait_cancelled(&self) {
        self.node.wait_until(state::is_cancelled, None);
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("label", &self.node.label())
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}
