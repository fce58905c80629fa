//! Cancel the tree when the process is asked to stop (feature `signal`).
//!
//! [`cancel_on_terminate`] installs handlers for SIGINT and SIGTERM (through
//! `signal-hook`; Ctrl-C through `ctrlc` on other platforms) and one
//! background thread named `phaseout-signal`. The first signal cancels the
//! token; the shutdown then runs in order. A second signal means "stop now":
//! the process exits at once with status 130. No executor is needed.

use std::io;
use std::thread;

use crate::Token;

/// The status a second signal exits with (128 + SIGINT, the shell's code for
/// an interrupted program).
pub const SECOND_SIGNAL_EXIT_CODE: i32 = 130;

/// The handlers installed by [`cancel_on_terminate`].
///
/// Dropping it leaves the handlers running for the rest of the process,
/// which is what a `main` usually wants; call [`stop`](Self::stop) to remove
/// them.
#[derive(Debug)]
#[must_use = "dropping it keeps the handlers installed; call `stop()` to remove them"]
pub struct TerminateHandler {
    #[cfg(unix)]
    handle: signal_hook::iterator::Handle,
    thread: Option<thread::JoinHandle<()>>,
}

/// Cancels `token` on the first SIGINT or SIGTERM (Ctrl-C on non-Unix
/// targets); exits the process with status 130 on the second.
///
/// # Errors
///
/// If the handlers or the background thread cannot be installed (the
/// operating system's error, or on non-Unix targets a Ctrl-C handler that
/// is already set).
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
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn cancel_on_terminate(token: Token) -> io::Result<TerminateHandler> {
    imp::install(token)
}

impl TerminateHandler {
    /// Removes the handlers and ends the background thread. Afterwards
    /// SIGINT and SIGTERM terminate the process as they do by default. (On
    /// non-Unix targets the Ctrl-C handler cannot be removed: it stays.)
    ///
    /// ```no_run
    /// let root = phaseout::Phaser::new();
    /// let signals = phaseout::signal::cancel_on_terminate(root.token())?;
    /// signals.stop();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop(mut self) {
        imp::stop(&mut self);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a signal does, given how many came before it.
fn on_signal(token: &Token, earlier: usize) {
    if earlier == 0 {
        token.cancel();
    } else {
        std::process::exit(SECOND_SIGNAL_EXIT_CODE);
    }
}

#[cfg(unix)]
mod imp {
    use core::sync::atomic::AtomicBool;
    use std::io;
    use std::sync::Arc;
    use std::thread;

    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;

    use super::{on_signal, TerminateHandler};
    use crate::Token;

    pub(super) fn install(token: Token) -> io::Result<TerminateHandler> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let thread = thread::Builder::new()
            .name("phaseout-signal".into())
            .spawn(move || {
                for (earlier, _signal) in signals.forever().enumerate() {
                    on_signal(&token, earlier);
                }
            })?;
        Ok(TerminateHandler {
            handle,
            thread: Some(thread),
        })
    }

    pub(super) fn stop(handler: &mut TerminateHandler) {
        handler.handle.close();
        // signal-hook keeps its handler installed after `close`; make the
        // signals act as by default (terminate) again.
        for signal in [SIGINT, SIGTERM] {
            let _ = signal_hook::flag::register_conditional_default(
                signal,
                Arc::new(AtomicBool::new(true)),
            );
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::io;

    use super::{on_signal, TerminateHandler};
    use crate::Token;

    pub(super) fn install(token: Token) -> io::Result<TerminateHandler> {
        let seen = AtomicUsize::new(0);
        ctrlc::set_handler(move || on_signal(&token, seen.fetch_add(1, Ordering::SeqCst)))
            .map_err(io::Error::other)?;
        Ok(TerminateHandler { thread: None })
    }

    pub(super) fn stop(_handler: &mut TerminateHandler) {
        // ctrlc cannot remove its handler; it stays, and keeps cancelling.
    }
}
