//! The owning handle of one node.

use core::fmt;
use core::future::Future;

use crate::futures::{Turn, TurnWithin};
use crate::label::Label;
use crate::node::{self, NodeRef, Owner};
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
/// **Dropping a `Phaser` means its owner is done, and it cancels the node's
/// subtree** if it was not cancelled yet: a component that returns early
/// (or panics) takes its dependents down with it rather than leave them
/// running without it. Its [`Token`]s then read `is_cancelled() == true`,
/// so a token of a finished component tells its watchers to stop too. The
/// drop never blocks; the node drains when its last child has.
///
/// `Phaser` is `Send + Sync` but not `Clone`: a node has one owner. Hand out
/// [`Token`]s to code that only needs to observe or request cancellation.
/// Every future it returns owns a reference to the node, so it can move into
/// a spawned task while the `Phaser` stays where it is.
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
///
/// # In a library
///
/// A function or type that *serves* (runs until shutdown, then cleans up)
/// takes an owned child `Phaser`, never `&Phaser`: owned, it can be moved
/// into a spawned task, and its drop is the component's "I am done". Code
/// that only *watches* for shutdown takes a [`Token`]. When several tasks
/// own one component, share its `Phaser` in an `Arc`: the node finishes when
/// the last clone drops.
///
/// ```
/// use std::sync::Arc;
///
/// use phaseout::{Phaser, Token};
///
/// /// A library's server: it owns its place in the caller's tree.
/// pub fn serve(phaser: Phaser) -> std::thread::JoinHandle<()> {
///     std::thread::spawn(move || {
///         phaser.wait_cancelled(); // stop accepting
///         phaser.wait_turn(); // every connection (child) is done
///         // flush and close, then `phaser` drops: the caller's turn can come
///     })
/// }
///
/// /// A watcher needs no place in the tree.
/// pub fn log_when_stopping(token: Token) -> std::thread::JoinHandle<bool> {
///     std::thread::spawn(move || {
///         token.wait_cancelled();
///         token.is_cancelled()
///     })
/// }
///
/// let app = Phaser::named("app");
/// let server = serve(app.child_named("server").unwrap());
/// let watcher = log_when_stopping(app.token());
/// // Two workers share one component: it finishes when both have dropped it.
/// let shared = Arc::new(app.child_named("workers").unwrap());
/// let workers: Vec<_> = (0..2)
///     .map(|_| {
///         let phaser = Arc::clone(&shared);
///         std::thread::spawn(move || phaser.wait_cancelled())
///     })
///     .collect();
/// drop(shared);
///
/// app.cancel();
/// app.wait_turn(); // the server and both workers are done
/// # server.join().unwrap();
/// # assert!(watcher.join().unwrap());
/// # for worker in workers { worker.join().unwrap(); }
/// ```
pub struct Phaser {
    /// The owner's count of the node: its drop is the owner's exit, which
    /// cancels the subtree and drains the node (`node::Owner`).
    node: Owner,
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
            node: Owner::root(label),
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
    /// count: 2^53 − 1 on 64-bit targets, 2^21 − 1 (2,097,151) on 32-bit
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
        self.make_child(None, false)
    }

    /// Like [`child`](Self::child), with a label.
    ///
    /// ```
    /// let db = phaseout::Phaser::named("db");
    /// let pipeline = db.child_named("pipeline").unwrap();
    /// assert_eq!(pipeline.label(), Some("pipeline"));
    /// ```
    pub fn child_named(&self, label: impl Into<Label>) -> Result<Phaser, ShutdownStarted> {
        self.make_child(Some(label.into()), false)
    }

    /// Like [`child`](Self::child), and the new node is a **scope**: the
    /// failures below it ([`fail`](Self::fail), a
    /// [`critical`](Self::critical) node's panic) are recorded in it and
    /// cancel it, not the nodes above it. For a connection, a job, a
    /// plugin: one of them failing stops only itself.
    ///
    /// # Errors
    ///
    /// [`ShutdownStarted`] if this node is already cancelled.
    ///
    /// ```
    /// let server = phaseout::Phaser::named("server");
    /// let connection = server.child_scope().unwrap();
    /// let handler = connection.child_named("handler").unwrap();
    /// handler.fail("bad request");
    /// assert!(connection.is_cancelled());
    /// assert!(!server.is_cancelled(), "one connection failing stops only itself");
    /// assert_eq!(connection.failures()[0].label(), Some("handler"));
    /// assert!(server.failures().is_empty());
    /// ```
    pub fn child_scope(&self) -> Result<Phaser, ShutdownStarted> {
        self.make_child(None, true)
    }

    /// Like [`child_scope`](Self::child_scope), with a label.
    ///
    /// # Errors
    ///
    /// [`ShutdownStarted`] if this node is already cancelled.
    ///
    /// ```
    /// let server = phaseout::Phaser::named("server");
    /// let job = server.child_scope_named("job 7").unwrap();
    /// job.fail("timed out");
    /// assert_eq!(job.failures()[0].to_string(), "`job 7` failed: timed out");
    /// ```
    pub fn child_scope_named(&self, label: impl Into<Label>) -> Result<Phaser, ShutdownStarted> {
        self.make_child(Some(label.into()), true)
    }

    /// Marks this node **critical**: if its owner panics (this `Phaser` is
    /// dropped while its thread panics), its scope fails as with
    /// [`fail`](Self::fail), with a cause that says the owner panicked.
    /// Without it a panic only cancels the node's subtree, so a panicking
    /// request handler does not stop a server by default.
    ///
    /// The failure goes to the node's scope as for `fail`: a node that is
    /// itself a scope ([`child_scope`](Self::child_scope)) fails only
    /// itself, so make the component critical, not its own scope, when
    /// its panic must stop the program.
    ///
    /// A panic is seen as `std::thread::panicking()` while the `Phaser` is
    /// dropped, so with `std` only (without it `critical` changes nothing),
    /// and only where the executor drops a panicking task during the
    /// unwind (tokio, smol, async-std and plain threads do; a future
    /// dropped after a `catch_unwind` has returned is not seen as
    /// panicking). Conversely, a critical `Phaser` dropped during any
    /// unwind of its thread counts as its owner panicking.
    ///
    /// ```
    /// let app = phaseout::Phaser::named("app");
    /// let db = app.child_named("db").unwrap().critical();
    /// let _ = std::thread::spawn(move || {
    ///     let _db = db;
    ///     panic!("corrupt page");
    /// })
    /// .join();
    /// assert!(app.is_cancelled(), "the program stops when its db dies");
    /// assert_eq!(app.cause().unwrap().to_string(), "the owner of `db` panicked");
    /// assert!(app.failures()[0].panicked());
    /// ```
    #[must_use = "`critical` returns the Phaser; dropping it at once ends the component"]
    pub fn critical(mut self) -> Phaser {
        self.node.set_critical();
        self
    }

    /// This component failed: records a [`Failure`](crate::Failure) (this
    /// node's label and `cause`) in the node's **scope**, the nearest node
    /// at or above it made with [`child_scope`](Self::child_scope) or the
    /// root, then cancels the whole scope with `cause`, in order, children
    /// first, as every cancel.
    ///
    /// The first cause wins, as always: a scope already stopping for
    /// `SIGTERM` keeps that cause, and the failure is still recorded; of
    /// failures racing each other, the scope takes the cause of the one
    /// recorded first, so `cause()` and `failures()[0]` agree. Every
    /// failure is kept, in order, once each. Never blocks; the owner still
    /// waits for its turn and drops as usual. A failure is never refused:
    /// the scope cannot drain while this node's owner is live. The list
    /// keeps every failure until the scope is freed: a component that
    /// fails in a loop grows it without bound. (So a cause that holds a
    /// `Token` of its own scope keeps the scope from ever being freed.)
    ///
    /// It allocates one list entry (and a copy of the node's label if the
    /// label is an owned `String`), outside any critical section; the
    /// cancel that follows is `cancel_with`'s walk. So from an interrupt
    /// handler (feature `critical-section`) it needs a heap that may be
    /// used there, as `cancel_with` does.
    ///
    /// ```
    /// let app = phaseout::Phaser::named("app");
    /// let web = app.child_named("web").unwrap();
    /// let db = web.child_named("db").unwrap();
    /// db.fail(phaseout::Cause::new(std::io::Error::other("disk full")));
    /// assert!(app.is_cancelled() && web.is_cancelled());
    /// assert_eq!(web.cause().unwrap().to_string(), "disk full");
    /// let failures = app.failures();
    /// assert_eq!(failures.len(), 1);
    /// assert_eq!(failures[0].to_string(), "`db` failed: disk full");
    /// ```
    pub fn fail(&self, cause: impl Into<crate::Cause>) {
        node::fail(&self.node, cause.into(), false);
    }

    /// The failures recorded in this node if it is a scope (a root, or made
    /// with [`child_scope`](Self::child_scope)), in the order they
    /// happened; empty otherwise. May be called while failures are still
    /// being added.
    ///
    /// ```
    /// let app = phaseout::Phaser::new();
    /// assert!(app.failures().is_empty());
    /// app.child_named("a").unwrap().fail("first");
    /// app.child_named("b").unwrap_err(); // cancelled by the first failure
    /// assert_eq!(app.failures().len(), 1);
    /// ```
    pub fn failures(&self) -> alloc::vec::Vec<crate::Failure> {
        node::failures(&self.node)
    }

    #[inline]
    fn make_child(&self, label: Option<Label>, scope: bool) -> Result<Phaser, ShutdownStarted> {
        match self.node.child(label, scope) {
            Some(node) => Ok(Phaser { node }),
            None => Err(ShutdownStarted::new(self.node.label_cow())),
        }
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
    pub fn turn(&self) -> Turn {
        Turn::new(NodeRef::clone(&self.node))
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
        self.node.state().is_turn()
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
    pub fn shutdown(&self) -> Turn {
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
        self.node.state().live_children()
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
    /// assert!(stragglers.to_string().contains("hung: its turn came, its owner has not finished"));
    /// ```
    pub fn turn_within<D: Future>(&self, deadline: D) -> TurnWithin<D> {
        TurnWithin::new(NodeRef::clone(&self.node), deadline)
    }

    /// Cancels this node's subtree at once (when called, not when first
    /// polled), then waits for its turn, but no longer than `deadline`:
    /// [`cancel`](Self::cancel) and [`turn_within`](Self::turn_within) in
    /// one call, the usual last line of `main`. The future is owned
    /// (`'static` when `deadline` is).
    ///
    /// # Errors
    ///
    /// The future resolves to `Err(report)` naming the stragglers if the
    /// deadline fires first. [`Report`] implements `Error`, so `?` works in a
    /// function returning `Box<dyn Error>`.
    ///
    /// ```
    /// use std::{error::Error, future::pending};
    ///
    /// fn main() -> Result<(), Box<dyn Error>> {
    ///     let root = phaseout::Phaser::named("app");
    ///     let worker = root.child_named("worker")?;
    ///     let task = std::thread::spawn(move || {
    ///         worker.wait_cancelled(); // finish the work in hand, then:
    ///         drop(worker);
    ///     });
    ///     // Use a timer of your executor as the deadline.
    ///     pollster::block_on(root.shutdown_within(pending::<()>()))?;
    ///     task.join().unwrap();
    ///     Ok(())
    /// }
    /// ```
    pub fn shutdown_within<D: Future>(&self, deadline: D) -> TurnWithin<D> {
        self.cancel();
        self.turn_within(deadline)
    }

    /// The staged stop in one call: cancels this node's subtree at once
    /// (when called), waits for its turn within `grace`; if the grace runs
    /// out, [`abort`](Self::abort)s the subtree and waits within
    /// `abort_grace` more.
    ///
    /// `sleep` is your executor's timer function: `tokio::time::sleep`,
    /// `smol::Timer::after`, or on embassy (whose `Duration` is its own)
    /// `|d: Duration| embassy_time::Timer::after_micros(d.as_micros() as u64)`.
    /// It is first called when the future is first polled, and the grace
    /// counts from then. The future ([`Staged`](crate::Staged)) owns what it
    /// needs: `Send + 'static` when `sleep` and its timer futures are.
    ///
    /// # Errors
    ///
    /// `Err(report)` if nodes are still running after the abort grace:
    /// the report names them (marked aborted). On `Ok`,
    /// [`Stopped::aborted`](crate::Stopped::aborted) says who was still
    /// running when the grace ran out, if an abort was needed.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # fn main() -> Result<(), phaseout::Report> {
    /// let root = phaseout::Phaser::named("app");
    /// let server = root.child_named("server").unwrap();
    /// let task = std::thread::spawn(move || {
    ///     server.wait_cancelled(); // finish the requests in hand, then:
    ///     drop(server);
    /// });
    /// // With tokio: `root.shutdown_staged(grace, abort_grace, tokio::time::sleep).await`.
    /// let sleep = |time: Duration| async move { std::thread::sleep(time) };
    /// let stopped = pollster::block_on(root.shutdown_staged(
    ///     Duration::from_secs(10),
    ///     Duration::from_secs(5),
    ///     sleep,
    /// ))?;
    /// if let Some(late) = stopped.aborted() {
    ///     eprintln!("aborted after the grace:\n{late}");
    /// }
    /// # task.join().unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn shutdown_staged<S, D>(
        &self,
        grace: core::time::Duration,
        abort_grace: core::time::Duration,
        sleep: S,
    ) -> crate::Staged<S, D>
    where
        S: Fn(core::time::Duration) -> D,
        D: Future,
    {
        self.shutdown_staged_with(grace, abort_grace, sleep, |_| {})
    }

    /// [`shutdown_staged`](Self::shutdown_staged), and `on_abort` is called
    /// with the report of who is still running at the moment the grace
    /// runs out, just before the abort (not at all if no abort is needed):
    /// for a program that must say so *when* it aborts (a log line, a
    /// systemd `STATUS=`), not only once the stop is over.
    ///
    /// `on_abort` runs inside the future's poll, on the executor's thread:
    /// keep it short and do not block in it. If it panics, the subtree is
    /// aborted all the same, and the panic comes out of the poll.
    ///
    /// # Errors
    ///
    /// As [`shutdown_staged`](Self::shutdown_staged): `Err(report)` if
    /// nodes are still running after the abort grace.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    ///
    /// let root = phaseout::Phaser::named("app");
    /// let slow = root.child_named("slow").unwrap();
    /// let worker = std::thread::spawn(move || {
    ///     pollster::block_on(slow.aborted()); // finishes only when aborted
    ///     drop(slow);
    /// });
    /// let sleep = |time: Duration| async move { std::thread::sleep(time) };
    /// let said = Arc::new(Mutex::new(String::new()));
    /// let log = Arc::clone(&said);
    /// let stop = root.shutdown_staged_with(
    ///     Duration::from_millis(10),
    ///     Duration::from_secs(5),
    ///     sleep,
    ///     move |late| *log.lock().unwrap() = format!("aborting: {late}"),
    /// );
    /// pollster::block_on(stop).unwrap();
    /// assert!(said.lock().unwrap().contains("slow"));
    /// # worker.join().unwrap();
    /// ```
    pub fn shutdown_staged_with<S, D, A>(
        &self,
        grace: core::time::Duration,
        abort_grace: core::time::Duration,
        sleep: S,
        on_abort: A,
    ) -> crate::Staged<S, D, A>
    where
        S: Fn(core::time::Duration) -> D,
        D: Future,
        A: FnOnce(&Report),
    {
        self.cancel();
        crate::Staged::new(
            NodeRef::clone(&self.node),
            grace,
            abort_grace,
            sleep,
            on_abort,
        )
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
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
impl Phaser {
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
        node::wait_until(&self.node, node::State::is_turn, None);
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
        if node::wait_until(&self.node, node::State::is_turn, deadline) {
            Ok(())
        } else {
            Err(self.report())
        }
    }
}

/// What a `Phaser` shares with a [`Token`]: requesting and observing
/// cancellation.
impl Phaser {
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
    /// a.cancel();
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
    /// db.cancel_with("disk full");
    /// root.cancel_with("SIGTERM");
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
    /// let handle = &child;
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
    /// a.abort();
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
    /// let handle = &root;
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
    /// let aborted = root.aborted();
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
    /// let handle = &child;
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
    /// let cancelled = root.cancelled();
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
    /// let handle = &root;
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
    /// let handle = &root;
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
    /// let handle = &root;
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

impl Default for Phaser {
    /// Same as [`Phaser::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Phaser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.node.state();
        f.debug_struct("Phaser")
            .field("label", &self.node.label())
            .field("cancelled", &state.is_cancelled())
            .field("live_children", &state.live_children())
            .finish()
    }
}
