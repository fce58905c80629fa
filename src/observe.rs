//! The observer side that [`Phaser`](crate::Phaser) and
//! [`Token`](crate::Token) share: one definition of each method and of its
//! docs, expanded into both types so the two never drift apart.
//!
//! A type that uses [`observer_methods!`] has a private
//! `fn node_ref(&self) -> &NodeRef`. The macro's argument is what turns a
//! `Phaser` named in a doc example into the handle being documented: `""`
//! for `Phaser` itself, `".token()"` for `Token`, so each type's examples
//! call its own method.

/// Expands the observer methods into an `impl` block of the calling type.
macro_rules! observer_methods {
    ($handle:literal) => {
        /// Requests shutdown of this node and its whole subtree.
        ///
        /// When it returns, every node of the subtree is cancelled and every
        /// task waiting in `cancelled()` on any of them has been woken, even
        /// if another thread is cancelling the same nodes. Ancestors and
        /// siblings are not touched. Calling it again is a no-op. It never
        /// waits for other tasks.
        ///
        #[doc = concat!(
            "```\n",
            "let root = phaseout::Phaser::new();\n",
            "let a = root.child().unwrap();\n",
            "let b = root.child().unwrap();\n",
            "a", $handle, ".cancel();\n",
            "assert!(a.is_cancelled());\n",
            "assert!(!b.is_cancelled() && !root.is_cancelled());\n",
            "```",
        )]
        pub fn cancel(&self) {
            crate::node::cancel_subtree(self.node_ref());
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
        #[doc = concat!(
            "```\n",
            "let root = phaseout::Phaser::named(\"server\");\n",
            "let db = root.child_named(\"db\").unwrap();\n",
            "db", $handle, ".cancel_with(\"disk full\");\n",
            "root", $handle, ".cancel_with(\"SIGTERM\");\n",
            "assert_eq!(root.cause().unwrap().to_string(), \"SIGTERM\");\n",
            "assert_eq!(db.cause().unwrap().to_string(), \"disk full\"); // first wins\n",
            "```",
        )]
        pub fn cancel_with(&self, cause: impl Into<crate::Cause>) {
            let cause = cause.into();
            crate::node::cancel_subtree_with(self.node_ref(), &cause);
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
        #[doc = concat!(
            "```\n",
            "let root = phaseout::Phaser::new();\n",
            "let child = root.child_named(\"worker\").unwrap();\n",
            "let handle = &child", $handle, ";\n",
            "assert!(handle.cause().is_none()); // live\n",
            "root.cancel_with(\"SIGINT\");\n",
            "assert_eq!(handle.cause().unwrap().to_string(), \"SIGINT\");\n",
            "```",
        )]
        pub fn cause(&self) -> Option<crate::Cause> {
            crate::node::cause_of(self.node_ref())
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
        #[doc = concat!(
            "```\n",
            "let root = phaseout::Phaser::new();\n",
            "let a = root.child().unwrap();\n",
            "let b = root.child().unwrap();\n",
            "a", $handle, ".abort();\n",
            "assert!(a.is_aborted() && a.is_cancelled());\n",
            "assert!(!b.is_aborted() && !root.is_aborted());\n",
            "```",
        )]
        pub fn abort(&self) {
            crate::node::abort_subtree(self.node_ref());
        }

        /// Whether this node (or an ancestor) was aborted. One atomic load.
        ///
        #[doc = concat!(
            "```\n",
            "let root = phaseout::Phaser::new();\n",
            "let handle = &root", $handle, ";\n",
            "root.cancel();\n",
            "assert!(!handle.is_aborted());\n",
            "root.abort();\n",
            "assert!(handle.is_aborted());\n",
            "```",
        )]
        #[inline]
        pub fn is_aborted(&self) -> bool {
            crate::node::state::is_aborted(self.node_ref().load())
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
        #[doc = concat!(
            "```\n",
            "let root = phaseout::Phaser::new();\n",
            "let aborted = root", $handle, ".aborted();\n",
            "let waiter = std::thread::spawn(move || pollster::block_on(aborted));\n",
            "root.abort();\n",
            "waiter.join().unwrap();\n",
            "```",
        )]
        pub fn aborted(&self) -> crate::futures::Aborted {
            crate::futures::Aborted::new(crate::node::NodeRef::clone(self.node_ref()))
        }

        /// Whether shutdown was requested on this node or an ancestor, or
        /// its `Phaser` was dropped (the owner finished). One atomic load.
        ///
        #[doc = concat!(
            "```\n",
            "let root = phaseout::Phaser::new();\n",
            "let child = root.child().unwrap();\n",
            "let handle = &child", $handle, ";\n",
            "assert!(!handle.is_cancelled());\n",
            "root.cancel();\n",
            "assert!(handle.is_cancelled());\n",
            "```",
        )]
        #[inline]
        pub fn is_cancelled(&self) -> bool {
            crate::node::state::is_cancelled(self.node_ref().load())
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
        #[doc = concat!(
            "```\n",
            "let root = phaseout::Phaser::new();\n",
            "let cancelled = root", $handle, ".cancelled();\n",
            "let waiter = std::thread::spawn(move || pollster::block_on(cancelled));\n",
            "root.cancel();\n",
            "waiter.join().unwrap();\n",
            "```",
        )]
        pub fn cancelled(&self) -> crate::futures::Cancelled {
            crate::futures::Cancelled::new(crate::node::NodeRef::clone(self.node_ref()))
        }

        /// Runs `fut` until this node is cancelled: `Some(output)` if `fut`
        /// completes first, `None` once the node is cancelled.
        ///
        /// Cancellation is checked before `fut` on every poll, so once the
        /// node is cancelled no more work starts: when both are ready the
        /// result is `None`, and `fut` is dropped right then. The future owns
        /// `fut` and a reference to the node (`'static` when `fut` is) and
        /// allocates nothing.
        ///
        /// It reads well as the head of a serving loop:
        /// `while let Some(conn) = token.run_until_cancelled(listener.accept()).await { … }`.
        ///
        /// # Cancellation safety
        ///
        /// As safe as `fut`: dropping the future drops `fut`.
        ///
        #[doc = concat!(
            "```\n",
            "use std::future::{pending, ready};\n",
            "\n",
            "let root = phaseout::Phaser::new();\n",
            "let handle = &root", $handle, ";\n",
            "let mut jobs = vec![3, 2, 1];\n",
            "pollster::block_on(async {\n",
            "    // Each job is one unit of work; the loop ends at cancellation.\n",
            "    while let Some(job) = handle.run_until_cancelled(ready(jobs.pop())).await {\n",
            "        match job {\n",
            "            Some(job) => println!(\"job {job}\"),\n",
            "            None => root.cancel(), // nothing left: stop\n",
            "        }\n",
            "    }\n",
            "    // Cancelled: the work is not even started.\n",
            "    assert_eq!(handle.run_until_cancelled(pending::<()>()).await, None);\n",
            "});\n",
            "assert!(jobs.is_empty());\n",
            "```",
        )]
        pub fn run_until_cancelled<F: core::future::Future>(
            &self,
            fut: F,
        ) -> crate::futures::RunUntilCancelled<F> {
            crate::futures::RunUntilCancelled::new(
                crate::node::NodeRef::clone(self.node_ref()),
                fut,
            )
        }

        /// Blocks the thread until this node is cancelled.
        ///
        #[doc = concat!(
            "```\n",
            "let root = phaseout::Phaser::new();\n",
            "let handle = &root", $handle, ";\n",
            "let token = root.token();\n",
            "std::thread::spawn(move || token.cancel());\n",
            "handle.wait_cancelled();\n",
            "```",
        )]
        #[cfg(feature = "std")]
        #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
        pub fn wait_cancelled(&self) {
            crate::node::wait_until(self.node_ref(), crate::node::state::is_cancelled, None);
        }
    };
}

pub(crate) use observer_methods;
