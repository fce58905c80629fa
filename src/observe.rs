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
            self.node_ref()
                .wait_until(crate::node::state::is_cancelled, None);
        }
    };
}

pub(crate) use observer_methods;
