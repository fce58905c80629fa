//! Cancel the tree when the process is asked to stop (feature `signal`).
//!
//! [`cancel_on_terminate`] installs handlers for SIGINT and SIGTERM and one
//! background thread named `phaseout-signal`. The first signal cancels the
//! token with a [`Cause`](crate::Cause) naming it (`SIGTERM`, `SIGINT`); the
//! shutdown then runs in order. A second signal means "stop now": the
//! process exits at once with status 128 + its number (130 for SIGINT, 143
//! for SIGTERM), the convention shells and service managers read. No
//! executor is needed.
//!
//! # How (Unix)
//!
//! The handler itself counts signals, so two that arrive together are two
//! (a second one exits from inside the handler, with `_exit`). It saves the
//! first signal's number and wakes the background thread through a pipe;
//! the thread calls `cancel_with`, which is not safe inside a handler. The
//! handlers are installed with `sigaction`, and the ones that were there
//! before are kept: a signal is passed on to a previous handler that is a
//! function (another library's), and [`TerminateHandler::stop`] puts the
//! previous dispositions back, so a later `cancel_on_terminate`, or any
//! other library's handler, works as if phaseout had never been there. If
//! another library installed its own handler *after* phaseout's, `stop()`
//! leaves that one in place (removing it would break that library) and
//! phaseout's, still called by it, does nothing more; if that library later
//! removes its handler and puts phaseout's back, phaseout's puts back what
//! was there before it at the next signal. A signal that arrives while
//! `stop()` runs still cancels.
//!
//! A child made by `fork` (without exec) inherits the handlers but not the
//! thread. Until it calls `cancel_on_terminate` itself, a signal acts on it
//! as the disposition from before phaseout's would (by default it
//! terminates) and the parent sees nothing of it. When it installs, the
//! child makes a wake-up pipe of its own (the inherited one stays the
//! parent's, never read, written or closed by the child), so its signals
//! cancel its token, its `stop()` returns, and it never takes the
//! parent's signals. A handle the child inherited from the parent stops
//! nothing of the child's own install.
//!
//! The signal mask: phaseout's thread unblocks SIGINT and SIGTERM for
//! itself, so a signal sent to the process is handled even if every other
//! thread blocks it (a mask inherited from the parent process, or set by a
//! harness). The kernel delivers a process-directed signal to some thread
//! that has it unblocked, at least phaseout's; a thread that blocks it
//! never runs the handler, so a signal sent to that thread alone
//! (`pthread_kill`, `raise` there) waits until it unblocks it.
//!
//! Limits: two signals *of the same kind* sent so close together that the
//! first is still pending when the second arrives are merged into one by
//! the kernel (no handler can count them); SIGINT then SIGTERM, or any
//! signal after the first was delivered, always count. A signal that was
//! ignored (`SIG_IGN`) when `cancel_on_terminate` was called is handled
//! anyway (as tokio and `ctrlc` do) and ignored again after `stop()`.
//!
//! # Other platforms
//!
//! Off Unix, the `ctrlc` crate (with its `termination` feature) catches
//! Ctrl-C, Ctrl-Break, closing the console window and system shutdown or
//! log-off on Windows; the cause is `console event`, and a second event
//! exits with 130. What cannot be caught: a process killed outright
//! (`TerminateProcess`, Task Manager's "End task" on a console-less
//! program), and Windows gives a closing console only a few seconds before
//! it kills the process anyway. `stop()` cannot remove the handler there.

use std::io;
use std::thread;

use crate::Token;

/// The status a second SIGINT exits with: 128 + 2, the shell's code for an
/// interrupted program. A second SIGTERM exits with 143 (128 + 15): the
/// rule is 128 + the signal's number.
pub const SECOND_SIGNAL_EXIT_CODE: i32 = 130;

/// The handlers installed by [`cancel_on_terminate`].
///
/// Dropping it leaves the handlers running for the rest of the process,
/// which is what a `main` usually wants; call [`stop`](Self::stop) to remove
/// them and put back what was there before.
#[derive(Debug)]
#[must_use = "dropping it keeps the handlers installed; call `stop()` to remove them"]
pub struct TerminateHandler {
    thread: Option<thread::JoinHandle<()>>,
    /// Which install this is (a handle copied into a child by `fork` names
    /// the parent's install, not one the child made).
    install: u64,
    /// The process that spawned `thread`: in a child made by `fork` the
    /// thread does not exist, and its handle must be neither joined nor
    /// detached.
    pid: u32,
}

/// Cancels `token` on the first SIGINT or SIGTERM (console events such as
/// Ctrl-C on non-Unix targets), with a [`Cause`](crate::Cause) naming the
/// signal; exits the process with status 128 + the signal's number on the
/// second.
///
/// One handler can be installed at a time in a process; after
/// [`stop`](TerminateHandler::stop), a new one can be. A child made by
/// `fork` can install its own even while the parent's is installed: it
/// gets its own signals, the parent keeps getting the parent's.
///
/// The background thread unblocks SIGINT and SIGTERM for itself, so a
/// signal sent to the process cancels even if the calling thread (and
/// every other) had it blocked; a thread that blocks a signal still never
/// runs the handler itself.
///
/// # Errors
///
/// If a handler of this function is already installed (`AlreadyExists`),
/// or if the handlers, the pipe or the background thread cannot be set up
/// (the operating system's error; on non-Unix targets, a console handler
/// that is already set).
///
/// # Examples
///
/// ```no_run
/// use phaseout::Phaser;
///
/// let root = Phaser::named("app");
/// let _signals = phaseout::signal::cancel_on_terminate(root.token())?;
/// // ... start the components under `root` ...
/// root.wait_turn(); // returns once a signal came and everything stopped
/// if let Some(cause) = root.cause() {
///     println!("stopped: {cause}"); // "stopped: SIGTERM"
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn cancel_on_terminate(token: Token) -> io::Result<TerminateHandler> {
    imp::install(token)
}

impl TerminateHandler {
    /// Removes the handlers, puts back the ones that were there before (by
    /// default: SIGINT and SIGTERM terminate the process), and ends the
    /// background thread. A signal that came before it keeps its effect.
    /// (On non-Unix targets the console handler cannot be removed: it stays,
    /// and keeps cancelling.)
    ///
    /// ```no_run
    /// let root = phaseout::Phaser::new();
    /// let signals = phaseout::signal::cancel_on_terminate(root.token())?;
    /// signals.stop();
    /// // Installing again works, and so does any other library's handler.
    /// let again = phaseout::signal::cancel_on_terminate(root.token())?;
    /// # again.stop();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop(mut self) {
        let join = imp::stop(self.install) && self.pid == std::process::id();
        if let Some(thread) = self.thread.take() {
            if join {
                let _ = thread.join();
            } else {
                // In a child of `fork` the thread does not exist: neither
                // join nor detach it.
                core::mem::forget(thread);
            }
        }
    }
}

impl Drop for TerminateHandler {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            // A handle inherited by a child of `fork`: its thread is the
            // parent's, and detaching it here would touch a thread
            // descriptor the child's libc may have reused.
            if let Some(thread) = self.thread.take() {
                core::mem::forget(thread);
            }
        }
    }
}

// One implementation per platform, each with `install` and `stop`.
#[cfg(not(unix))]
mod other;
#[cfg(unix)]
mod unix;
#[cfg(not(unix))]
use self::other as imp;
#[cfg(unix)]
use self::unix as imp;
