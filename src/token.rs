//! A cheap, cloneable observer of one node.

use core::fmt;

use crate::node::{self, NodeRef};

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
}

/// The observer side, as on [`Phaser`](crate::Phaser): requesting and
/// observing cancellation.
impl Token {
    /// Requests shutdown of this node and its whole subtree.
    ///
    /// When it returns, every node of the subtree is cancelled and every
    /// task waiting in `cancelled()` on any of them has been woken, even
    /// if another thread is cancelling the same nodes. Ancestors and
    /// siblings are not touched. Calling it again is a no-op. It never
    /// waits for other tasks.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let a = root.child().unwrap();
    /// let b = root.child().unwrap();
    /// a.token().cancel();
    /// assert!(a.is_cancelled());
    /// assert!(!b.is_cancelled() && !root.is_cancelled());
    /// ```
    pub fn cancel(&self) {
        node::cancel_subtree(&self.node);
    }

    /// Requests shutdown of this node and its whole subtree, like
    /// `cancel()`, and gives every node that this call cancels `cause`:
    /// why the program is stopping (a signal, a failed component).
    ///
    /// A node keeps the cause of the *first* cancellation that reached
    /// it: nodes that were already cancelled (by an ancestor, an earlier
    /// call or their owner's drop) keep theirs. `cause` is anything that
    /// converts into a [`Cause`](crate::Cause): a `&'static str`, a
    /// `String`, or `Cause::new(error)`.
    ///
    /// ```
    /// let root = phaseout::Phaser::named("server");
    /// let db = root.child_named("db").unwrap();
    /// db.token().cancel_with("disk full");
    /// root.token().cancel_with("SIGTERM");
    /// assert_eq!(root.cause().unwrap().to_string(), "SIGTERM");
    /// assert_eq!(db.cause().unwrap().to_string(), "disk full"); // first wins
    /// ```
    pub fn cancel_with(&self, cause: impl Into<crate::Cause>) {
        let cause = cause.into();
        node::cancel_subtree_with(&self.node, &cause);
    }

    /// Why this node is shutting down: the cause of the first
    /// cancellation that reached it.
    ///
    /// `None` while the node is live, or when a plain `cancel()` (or
    /// `abort()`) reached it first. A node cancelled by its own
    /// `Phaser`'s drop has a cause that names its label and says its
    /// owner finished (or, with `std`, `panicked`). The answer is final
    /// as soon as `is_cancelled()` is true, and stays readable after
    /// the node drained and the nodes above it were freed.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let child = root.child_named("worker").unwrap();
    /// let handle = &child.token();
    /// assert!(handle.cause().is_none()); // live
    /// root.cancel_with("SIGINT");
    /// assert_eq!(handle.cause().unwrap().to_string(), "SIGINT");
    /// ```
    pub fn cause(&self) -> Option<crate::Cause> {
        node::cause_of(&self.node)
    }

    /// Escalates shutdown of this node and its whole subtree: the grace
    /// period is over, abandon the work in hand and finish now.
    ///
    /// Cancels the subtree first if it was not cancelled yet (with no
    /// cause), then marks every node of it aborted. When it returns,
    /// every `aborted()` and `cancelled()` waiter in the subtree has been
    /// woken. It cannot stop a task (no executor is known); it tells it.
    /// Turns still come children first: a node's turn waits for its
    /// children to drain, aborted or not. Idempotent; never blocks.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let a = root.child().unwrap();
    /// let b = root.child().unwrap();
    /// a.token().abort();
    /// assert!(a.is_aborted() && a.is_cancelled());
    /// assert!(!b.is_aborted() && !root.is_aborted());
    /// ```
    pub fn abort(&self) {
        node::abort_subtree(&self.node);
    }

    /// Whether this node (or an ancestor) was aborted. One atomic load.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let handle = &root.token();
    /// root.cancel();
    /// assert!(!handle.is_aborted());
    /// root.abort();
    /// assert!(handle.is_aborted());
    /// ```
    #[inline]
    pub fn is_aborted(&self) -> bool {
        self.node.state().is_aborted()
    }

    /// Waits until this node is aborted: the signal to abandon the work
    /// in hand.
    ///
    /// The future owns a reference to the node: it is `'static` and can
    /// move into a spawned task. It never keeps the node from draining.
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future unregisters it; nothing is lost.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let aborted = root.token().aborted();
    /// let waiter = std::thread::spawn(move || pollster::block_on(aborted));
    /// root.abort();
    /// waiter.join().unwrap();
    /// ```
    pub fn aborted(&self) -> crate::futures::Aborted {
        crate::futures::Aborted::new(NodeRef::clone(&self.node))
    }

    /// Whether shutdown was requested on this node or an ancestor, or
    /// its `Phaser` was dropped (the owner finished). One atomic load.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let child = root.child().unwrap();
    /// let handle = &child.token();
    /// assert!(!handle.is_cancelled());
    /// root.cancel();
    /// assert!(handle.is_cancelled());
    /// ```
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.node.state().is_cancelled()
    }

    /// Waits until this node is cancelled.
    ///
    /// Equivalent to `async fn cancelled(&self)`, but the future owns a
    /// reference to the node: it is `'static` and can move into a
    /// spawned task. It never keeps the node from draining.
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
    pub fn cancelled(&self) -> crate::futures::Cancelled {
        crate::futures::Cancelled::new(NodeRef::clone(&self.node))
    }

    /// Runs `fut` until this node is cancelled: `Some(output)` if `fut`
    /// completes first, `None` once the node is cancelled.
    ///
    /// Cancellation is checked before `fut` on every poll, so once the
    /// node is cancelled no more work starts: when both are ready the
    /// result is `None`, and `fut` is dropped right then. The future owns
    /// `fut` and a reference to the node (`'static` when `fut` is). While
    /// `fut` is ready at once nothing is registered (one load checks the
    /// node); once it is pending, a waiter is (with `std`: a listener and
    /// a waker relay, two small allocations, freed when it finishes).
    ///
    /// It reads well as the head of a serving loop:
    /// `while let Some(conn) = token.run_until_cancelled(listener.accept()).await { … }`.
    ///
    /// # Cancellation safety
    ///
    /// As safe as `fut`: dropping the future drops `fut`.
    ///
    /// ```
    /// use std::future::{pending, ready};
    ///
    /// let root = phaseout::Phaser::new();
    /// let handle = &root.token();
    /// let mut jobs = vec![3, 2, 1];
    /// pollster::block_on(async {
    ///     // Each job is one unit of work; the loop ends at cancellation.
    ///     while let Some(job) = handle.run_until_cancelled(ready(jobs.pop())).await {
    ///         match job {
    ///             Some(job) => println!("job {job}"),
    ///             None => root.cancel(), // nothing left: stop
    ///         }
    ///     }
    ///     // Cancelled: the work is not even started.
    ///     assert_eq!(handle.run_until_cancelled(pending::<()>()).await, None);
    /// });
    /// assert!(jobs.is_empty());
    /// ```
    pub fn run_until_cancelled<F: core::future::Future>(
        &self,
        fut: F,
    ) -> crate::futures::RunUntilCancelled<F> {
        crate::futures::RunUntilCancelled::new(NodeRef::clone(&self.node), fut)
    }

    /// Runs `fut` until this node is aborted: `Some(output)` if `fut`
    /// completes first, `None` once the node is aborted.
    ///
    /// The abort-side twin of `run_until_cancelled`: for the work in hand
    /// that should still finish after the cancel, during the grace, but be
    /// dropped when the grace is over. The abort is checked before `fut` on
    /// every poll, and `fut` is dropped as soon as either is known. The
    /// future owns `fut` and a reference to the node (`'static` when `fut`
    /// is). While `fut` is ready at once nothing is registered; once it is
    /// pending, a waiter is.
    ///
    /// # Cancellation safety
    ///
    /// As safe as `fut`: dropping the future drops `fut`.
    ///
    /// ```
    /// use std::future::{pending, ready};
    ///
    /// let root = phaseout::Phaser::new();
    /// let handle = &root.token();
    /// root.cancel();
    /// pollster::block_on(async {
    ///     // The grace: the request in hand still completes.
    ///     assert_eq!(handle.run_until_aborted(ready("sent")).await, Some("sent"));
    ///     root.abort();
    ///     // The grace is over: a request still waiting is dropped.
    ///     assert_eq!(handle.run_until_aborted(pending::<&str>()).await, None);
    /// });
    /// ```
    pub fn run_until_aborted<F: core::future::Future>(
        &self,
        fut: F,
    ) -> crate::futures::RunUntilAborted<F> {
        crate::futures::RunUntilAborted::new(NodeRef::clone(&self.node), fut)
    }

    /// Blocks the thread until this node is cancelled.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let handle = &root.token();
    /// let token = root.token();
    /// std::thread::spawn(move || token.cancel());
    /// handle.wait_cancelled();
    /// ```
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn wait_cancelled(&self) {
        node::wait_until(&self.node, node::State::is_cancelled, None);
    }
}

/// Supervision, as on [`Phaser`](crate::Phaser).
impl Token {
    /// The failures recorded in this node if it is a scope, in the order
    /// they happened; empty otherwise. Readable after the scope drained:
    /// `main` keeps a `Token` of the root to report what failed.
    ///
    /// ```
    /// let root = phaseout::Phaser::named("app");
    /// let watch = root.token();
    /// root.child_named("db").unwrap().fail("disk full");
    /// drop(root); // drained
    /// assert_eq!(watch.failures()[0].to_string(), "`db` failed: disk full");
    /// ```
    pub fn failures(&self) -> alloc::vec::Vec<crate::Failure> {
        node::failures(&self.node)
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
