//! The owning handle of one node.

use core::fmt;
use core::future::Future;
use core::mem::ManuallyDrop;

use crate::futures::{Cancelled, Turn, TurnWithin};
use crate::node::{self, state, Label, Node, NodeRef};
use crate::{Report, ShutdownStarted, Token};

/// The owner of one node of the shutdown tree.
///
/// A component holds its `Phaser` while it runs. Its children (made with
/// [`child`](Self::child)) are the components that depend on it, so they
/// stop first. The usual life of a component:
///
/// 1. wait for [`cancelled`](Self::cancelled): shutdown was requested;
/// 2. stop taking new work, then wait for [`turn`](Self::turn): every
///    dependent has finished;
/// 3. release what the dependents were using (flush, close), then drop the
///    `Phaser`. That drop is what gives the parent its turn.
///
/// `Phaser` is `Send + Sync` but not `Clone`: a node has one owner. Hand out
/// [`Token`]s to code that only needs to observe or request cancellation.
///
/// # Examples
///
/// ```
/// use phaseout::Phaser;
///
/// let db = Phaser::named("db");
/// let web = db.child_named("web").unwrap(); // web depends on db
///
/// db.cancel(); // tells the whole tree at once
/// assert!(web.is_cancelled());
/// assert!(web.is_turn()); // web has no dependents: it may stop now
/// assert!(!db.is_turn()); // db must wait for web
///
/// drop(web); // web is done
/// assert!(db.is_turn());
/// ```
pub struct Phaser {
    /// Dropped by hand: when the node cannot drain yet, this reference is
    /// left to the node itself (node invariant #6).
    node: ManuallyDrop<NodeRef>,
}

impl Phaser {
    /// A new root node, Live, without a label.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// assert!(!root.is_cancelled());
    /// ```
    pub fn new() -> Self {
        Self::root(None)
    }

    /// A new root node with a label, shown in reports and errors.
    ///
    /// ```
    /// let root = phaseout::Phaser::named("app");
    /// assert_eq!(root.label(), Some("app"));
    /// ```
    pub fn named(label: impl Into<Label>) -> Self {
        Self::root(Some(label.into()))
    }

    fn root(label: Option<Label>) -> Self {
        Self {
            node: ManuallyDrop::new(NodeRef::new(Node::new(label, core::ptr::null()))),
        }
    }

    /// A new child node: a component that depends on this one, so it must
    /// stop before this one gets its turn.
    ///
    /// # Errors
    ///
    /// [`ShutdownStarted`] once this node is cancelling (by its own
    /// `cancel()` or an ancestor's); then no node is created.
    ///
    /// # Panics
    ///
    /// If this node already has the most live children its state word can
    /// count: 2^56 − 1 on 64-bit targets, 2^24 − 1 (16,777,215) on 32-bit
    /// ones, where a program can get there. The count never wraps, and the
    /// panic leaves the node usable: it can still be cancelled, and its
    /// children still drain.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let child = root.child().unwrap();
    /// assert_eq!(root.live_children(), 1);
    /// root.cancel();
    /// assert!(root.child().is_err());
    /// drop(child);
    /// ```
    #[inline]
    pub fn child(&self) -> Result<Phaser, ShutdownStarted> {
        self.make_child(None)
    }

    /// Like [`child`](Self::child), with a label.
    ///
    /// ```
    /// let db = phaseout::Phaser::named("db");
    /// let pipeline = db.child_named("pipeline").unwrap();
    /// assert_eq!(pipeline.label(), Some("pipeline"));
    /// ```
    pub fn child_named(&self, label: impl Into<Label>) -> Result<Phaser, ShutdownStarted> {
        self.make_child(Some(label.into()))
    }

    #[inline]
    fn make_child(&self, label: Option<Label>) -> Result<Phaser, ShutdownStarted> {
        match node::new_child(&self.node, label) {
            Some(node) => Ok(Phaser {
                node: ManuallyDrop::new(node),
            }),
            None => Err(ShutdownStarted::new(self.node.label_cow())),
        }
    }

    /// Requests shutdown of this node and its whole subtree.
    ///
    /// When it returns, every node of the subtree is cancelled and every task
    /// waiting in [`cancelled`](Self::cancelled) on any of them has been
    /// woken. Ancestors and siblings are not touched. Calling it again is a
    /// no-op. It never waits for other tasks.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let a = root.child().unwrap();
    /// let b = root.child().unwrap();
    /// a.cancel();
    /// assert!(a.is_cancelled());
    /// assert!(!b.is_cancelled() && !root.is_cancelled());
    /// ```
    pub fn cancel(&self) {
        node::cancel_subtree(&self.node);
    }

    /// Whether shutdown was requested on this node or an ancestor.
    ///
    /// One atomic load.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let child = root.child().unwrap();
    /// root.cancel();
    /// assert!(child.is_cancelled());
    /// ```
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        state::is_cancelled(self.node.load())
    }

    /// Waits until this node is cancelled.
    ///
    /// Equivalent to `async fn cancelled(&self)`. The future owns a reference
    /// to the node, so it is `'static`.
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future unregisters it; nothing is lost.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let waiting = root.cancelled();
    /// root.cancel();
    /// pollster::block_on(waiting);
    /// ```
    pub fn cancelled(&self) -> Cancelled {
        Cancelled::new(NodeRef::clone(&self.node))
    }

    /// Waits for this node's turn: it is cancelled and every node below it has
    /// drained. Only then may the owner release what its dependents used.
    ///
    /// Equivalent to `async fn turn(&self)`. If a child never finishes this
    /// waits forever; [`turn_within`](Self::turn_within) puts a bound on it.
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future unregisters it; nothing is lost.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let child = root.child().unwrap();
    /// root.cancel();
    /// std::thread::spawn(move || drop(child));
    /// pollster::block_on(root.turn());
    /// assert_eq!(root.live_children(), 0);
    /// ```
    pub fn turn(&self) -> Turn<'_> {
        Turn::new(&self.node)
    }

    /// Whether it is this node's turn now: cancelled, and every node below
    /// it drained. One atomic load.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// assert!(!root.is_turn()); // not cancelled
    /// root.cancel();
    /// assert!(root.is_turn()); // no children
    /// ```
    #[inline]
    pub fn is_turn(&self) -> bool {
        state::is_turn(self.node.load())
    }

    /// Cancels this node's subtree at once (when called, not when first
    /// polled), then waits for its turn. The usual last line of `main`.
    ///
    /// ```
    /// # pollster::block_on(async {
    /// let root = phaseout::Phaser::named("app");
    /// let worker = root.child_named("worker").unwrap();
    /// let task = std::thread::spawn(move || {
    ///     worker.wait_cancelled();
    ///     // ... finish the work in hand, then:
    ///     drop(worker);
    /// });
    /// root.shutdown().await;
    /// # task.join().unwrap();
    /// # });
    /// ```
    pub fn shutdown(&self) -> Turn<'_> {
        self.cancel();
        self.turn()
    }

    /// The number of direct children that have not drained yet.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let a = root.child().unwrap();
    /// let _b = root.child().unwrap();
    /// assert_eq!(root.live_children(), 2);
    /// drop(a);
    /// assert_eq!(root.live_children(), 1);
    /// ```
    #[inline]
    pub fn live_children(&self) -> usize {
        state::live_children(self.node.load())
    }

    /// A [`Token`] for this node: cheap to clone, can observe and request
    /// cancellation, never keeps the node from draining.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let token = root.token();
    /// token.cancel();
    /// assert!(root.is_cancelled());
    /// ```
    pub fn token(&self) -> Token {
        Token::new(NodeRef::clone(&self.node))
    }

    /// A snapshot of this node and every node below it that has not drained:
    /// labels, states and live-child counts. Safe to call while the tree
    /// changes.
    ///
    /// ```
    /// let root = phaseout::Phaser::named("app");
    /// let _db = root.child_named("db").unwrap();
    /// println!("{}", root.report());
    /// assert_eq!(root.report().entries().len(), 2);
    /// ```
    pub fn report(&self) -> Report {
        Report::of(&self.node)
    }

    /// Waits for this node's turn, but no longer than `deadline`, any future
    /// (usually a timer of your executor). Resolves to `Ok(())` at the turn,
    /// or to `Err(report)` naming the stragglers if the deadline fires first.
    /// If both are ready at once, the result is `Ok`.
    ///
    /// It does not cancel: call [`cancel`](Self::cancel) first.
    ///
    /// ```
    /// use std::future::ready;
    ///
    /// let root = phaseout::Phaser::named("app");
    /// let _hung = root.child_named("hung").unwrap();
    /// root.cancel();
    /// let stragglers = pollster::block_on(root.turn_within(ready(()))).unwrap_err();
    /// assert!(stragglers.to_string().contains("hung [turn"));
    /// ```
    pub fn turn_within<D: Future>(&self, deadline: D) -> TurnWithin<'_, D> {
        TurnWithin::new(&self.node, deadline)
    }

    /// The label given at creation, if any.
    ///
    /// ```
    /// assert_eq!(phaseout::Phaser::new().label(), None);
    /// ```
    pub fn label(&self) -> Option<&str> {
        self.node.label()
    }
}

/// Blocking waits, for threads without an executor.
#[cfg(feature = "std")]
impl Phaser {
    /// Blocks the thread until this node is cancelled.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let token = root.token();
    /// std::thread::spawn(move || token.cancel());
    /// root.wait_cancelled();
    /// ```
    pub fn wait_cancelled(&self) {
        self.node.wait_until(state::is_cancelled, None);
    }

    /// Blocks the thread until this node's turn.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let child = root.child().unwrap();
    /// std::thread::spawn(move || {
    ///     child.wait_cancelled();
    ///     drop(child);
    /// });
    /// root.cancel();
    /// root.wait_turn();
    /// ```
    pub fn wait_turn(&self) {
        self.node.wait_until(state::is_turn, None);
    }

    /// Blocks the thread until this node's turn, for at most `timeout`.
    ///
    /// # Errors
    ///
    /// A [`Report`] naming the nodes that had not drained when the time ran
    /// out.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let root = phaseout::Phaser::named("app");
    /// let _stuck = root.child_named("stuck").unwrap();
    /// root.cancel();
    /// let report = root.wait_turn_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert!(report.find("stuck").is_some());
    /// ```
    pub fn wait_turn_timeout(&self, timeout: core::time::Duration) -> Result<(), Report> {
        // A timeout too large for `Instant` means "no deadline".
        let deadline = std::time::Instant::now().checked_add(timeout);
        if self.node.wait_until(state::is_turn, deadline) {
            Ok(())
        } else {
            Err(self.report())
        }
    }
}

impl Default for Phaser {
    /// Same as [`Phaser::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Phaser {
    /// The owner is done: the subtree is cancelled (if it was not already)
    /// and the node drains as soon as its children have. Never blocks.
    #[inline]
    fn drop(&mut self) {
        #[cfg(feature = "std")]
        let panicked = std::thread::panicking();
        #[cfg(not(feature = "std"))]
        let panicked = false;
        // SAFETY: `self.node` holds the owner's count, and is not used again
        // unless the node drained here.
        if unsafe { node::release_owner(NodeRef::as_ptr(&self.node), panicked) } {
            // SAFETY: the node drained (its cascade is done) and this is the
            // last use of the field.
            unsafe { ManuallyDrop::drop(&mut self.node) }
        }
        // Otherwise the reference now belongs to the node, which may already
        // be draining on another thread: it is not touched again here.
    }
}

impl fmt::Debug for Phaser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.node.load();
        f.debug_struct("Phaser")
            .field("label", &self.node.label())
            .field("cancelled", &state::is_cancelled(word))
            .field("live_children", &state::live_children(word))
            .finish()
    }
}
