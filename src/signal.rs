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
//! phaseout's, still called by it, does nothing more.
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
}

/// Cancels `token` on the first SIGINT or SIGTERM (console events such as
/// Ctrl-C on non-Unix targets), with a [`Cause`](crate::Cause) naming the
/// signal; exits the process with status 128 + the signal's number on the
/// second.
///
/// One handler can be installed at a time in a process; after
/// [`stop`](TerminateHandler::stop), a new one can be.
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
        imp::stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(unix)]
mod imp {
    use core::ptr;
    use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering};
    use std::io;
    use std::sync::{Mutex, OnceLock};
    use std::thread;

    use super::TerminateHandler;
    use crate::Token;

    /// The signals handled, and the names their causes get.
    const SIGNALS: [(libc::c_int, &str); 2] =
        [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")];

    /// Whether our handlers are installed and acting.
    static ACTIVE: AtomicBool = AtomicBool::new(false);
    /// Signals seen since the install; counted in the handler itself.
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    /// The first signal's number, for the thread to name the cause.
    static FIRST: AtomicI32 = AtomicI32::new(0);
    /// The pipe's write end the handler wakes the thread with, or -1.
    static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
    /// The wake-up pipe, made at the first install and kept for the rest of
    /// the process: a handler may be about to write to it at any moment, so
    /// closing it (and letting its number be reused by some file) is never
    /// safe. Two descriptors per process.
    static PIPE: OnceLock<(libc::c_int, libc::c_int)> = OnceLock::new();
    /// The byte a signal writes. `stop` writes the install's generation
    /// (below 255) to end that install's thread; a stale stop byte of an
    /// earlier install (whose thread never started) is ignored.
    const SIGNAL_BYTE: u8 = u8::MAX;
    static GENERATION: AtomicU8 = AtomicU8::new(0);
    /// Per signal: our handler was found covered by another library's at
    /// `stop` (that one may call ours as its previous handler), so ours was
    /// left in place, inactive. A new install then only re-activates it:
    /// installing ours on top again would make a loop through theirs.
    static COVERED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];
    /// The handlers that were there before ours, as raw `sigaction`s, for
    /// the handler to pass signals on (read in the handler: written only
    /// while ours are not installed).
    static PREVIOUS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
    static PREVIOUS_FLAGS: [AtomicI32; 2] = [AtomicI32::new(0), AtomicI32::new(0)];
    /// Install and stop, one at a time. `Some` while installed; it holds
    /// the dispositions from before phaseout's (kept across a `stop` that
    /// found a slot covered, see `COVERED`).
    static INSTALLED: Mutex<Option<Installed>> = Mutex::new(None);
    static SAVED: Mutex<Option<Installed>> = Mutex::new(None);

    #[derive(Clone, Copy)]
    struct Installed {
        previous: [libc::sigaction; 2],
    }

    // SAFETY: `sigaction` is plain data (a function address and flags).
    unsafe impl Send for Installed {}

    /// The signal handler: only async-signal-safe operations (atomics,
    /// `write`, `_exit`, calling the previous handler).
    extern "C" fn on_signal(
        signal: libc::c_int,
        info: *mut libc::siginfo_t,
        context: *mut libc::c_void,
    ) {
        if ACTIVE.load(Ordering::SeqCst) {
            if SEEN.fetch_add(1, Ordering::SeqCst) > 0 {
                // The second one: stop now. `_exit`, not `exit`: no
                // destructors or atexit handlers inside a signal handler.
                // SAFETY: `_exit` is async-signal-safe.
                unsafe { libc::_exit(128 + signal) };
            }
            FIRST.store(signal, Ordering::SeqCst);
            write_byte(WAKE_FD.load(Ordering::SeqCst), SIGNAL_BYTE);
        }
        pass_on(signal, info, context);
    }

    /// Calls the handler that was there before ours, if it was a function.
    fn pass_on(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
        let Some(slot) = SIGNALS.iter().position(|(number, _)| *number == signal) else {
            return;
        };
        let previous = PREVIOUS[slot].load(Ordering::SeqCst);
        if previous == libc::SIG_DFL || previous == libc::SIG_IGN || previous == 0 {
            return; // the default (terminate) is what our handler replaces
        }
        if PREVIOUS_FLAGS[slot].load(Ordering::SeqCst) & libc::SA_SIGINFO != 0 {
            // SAFETY: a handler installed with SA_SIGINFO has this type.
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { core::mem::transmute(previous) };
            handler(signal, info, context);
        } else {
            // SAFETY: a handler installed without SA_SIGINFO has this type.
            let handler: extern "C" fn(libc::c_int) = unsafe { core::mem::transmute(previous) };
            handler(signal);
        }
    }

    /// Writes one byte to the pipe's write end `fd` (ignored if -1).
    fn write_byte(fd: libc::c_int, byte: u8) {
        if fd >= 0 {
            // SAFETY: `write` is async-signal-safe; `fd` is the pipe's
            // non-blocking write end, never closed (see `PIPE`). A full pipe
            // would just drop the byte.
            unsafe { libc::write(fd, ptr::from_ref(&byte).cast(), 1) };
        }
    }

    fn last_error() -> io::Error {
        io::Error::last_os_error()
    }

    /// A pipe whose ends close on exec; the write end does not block.
    fn pipe() -> io::Result<(libc::c_int, libc::c_int)> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(last_error());
        }
        for fd in fds {
            // SAFETY: plain fcntl calls on descriptors we own.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        // SAFETY: as above.
        unsafe {
            let flags = libc::fcntl(fds[1], libc::F_GETFL);
            libc::fcntl(fds[1], libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Ok((fds[0], fds[1]))
    }

    pub(super) fn install(token: Token) -> io::Result<TerminateHandler> {
        let mut installed = INSTALLED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if installed.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "phaseout: cancel_on_terminate is already installed; stop() it first",
            ));
        }
        let (read_fd, write_fd) = match PIPE.get() {
            Some(pipe) => *pipe,
            None => *PIPE.get_or_init(|| pipe().unwrap_or((-1, -1))),
        };
        if read_fd < 0 {
            return Err(io::Error::other(
                "phaseout: could not create the signal pipe",
            ));
        }
        SEEN.store(0, Ordering::SeqCst);
        FIRST.store(0, Ordering::SeqCst);
        WAKE_FD.store(write_fd, Ordering::SeqCst);
        let generation = (GENERATION.load(Ordering::SeqCst) + 1) % SIGNAL_BYTE;
        GENERATION.store(generation, Ordering::SeqCst);
        let saved = *SAVED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut previous = match saved {
            Some(saved) => saved.previous,
            // SAFETY: an all-zero `sigaction` is a valid value to fill in.
            None => unsafe { core::mem::zeroed() },
        };
        for (slot, (signal, _)) in SIGNALS.iter().enumerate() {
            if COVERED[slot].load(Ordering::SeqCst) {
                continue; // ours is still in place under another's; `PREVIOUS` too
            }
            // SAFETY: reading the current disposition into `previous`.
            if unsafe { libc::sigaction(*signal, ptr::null(), &mut previous[slot]) } != 0 {
                return Err(last_error());
            }
            PREVIOUS[slot].store(previous[slot].sa_sigaction, Ordering::SeqCst);
            PREVIOUS_FLAGS[slot].store(previous[slot].sa_flags, Ordering::SeqCst);
        }
        ACTIVE.store(true, Ordering::SeqCst);
        for (slot, (signal, _)) in SIGNALS.iter().enumerate() {
            if COVERED[slot].load(Ordering::SeqCst) {
                continue;
            }
            // SAFETY: an all-zero `sigaction` is valid; we fill in ours.
            let mut ours: libc::sigaction = unsafe { core::mem::zeroed() };
            ours.sa_sigaction = on_signal as *const () as usize;
            ours.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            // SAFETY: `sa_mask` is ours to initialize.
            unsafe { libc::sigemptyset(&mut ours.sa_mask) };
            // SAFETY: installing a handler that is async-signal-safe.
            if unsafe { libc::sigaction(*signal, &ours, ptr::null_mut()) } != 0 {
                let error = last_error();
                for (undo, (signal, _)) in SIGNALS.iter().enumerate().take(slot) {
                    if COVERED[undo].load(Ordering::SeqCst) {
                        continue;
                    }
                    // SAFETY: putting back what we read above.
                    unsafe { libc::sigaction(*signal, &previous[undo], ptr::null_mut()) };
                }
                ACTIVE.store(false, Ordering::SeqCst);
                WAKE_FD.store(-1, Ordering::SeqCst);
                return Err(error);
            }
        }
        let thread = thread::Builder::new()
            .name("phaseout-signal".into())
            .spawn(move || wait_for_signal(read_fd, generation, &token));
        let thread = match thread {
            Ok(thread) => thread,
            Err(error) => {
                *installed = Some(Installed { previous });
                drop(installed);
                stop();
                return Err(error);
            }
        };
        *installed = Some(Installed { previous });
        *SAVED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Installed { previous });
        Ok(TerminateHandler {
            thread: Some(thread),
        })
    }

    /// The background thread: waits for the handler's byte, then cancels
    /// with the first signal's name. Ends at `stop`'s byte for its
    /// `generation`.
    fn wait_for_signal(read_fd: libc::c_int, generation: u8, token: &Token) {
        let mut byte = 0u8;
        loop {
            // SAFETY: reading one byte into `byte` from our pipe.
            let read = unsafe { libc::read(read_fd, ptr::from_mut(&mut byte).cast(), 1) };
            if read == 1 && byte == generation {
                return;
            }
            if read == 1 && byte != SIGNAL_BYTE {
                continue; // a stale stop byte of an earlier install
            }
            // A byte left over from before this install (a signal that came
            // just before a `stop`) finds `SEEN` reset: ignored.
            if read == 1 && SEEN.load(Ordering::SeqCst) > 0 {
                let first = FIRST.load(Ordering::SeqCst);
                let name = SIGNALS
                    .iter()
                    .find(|(number, _)| *number == first)
                    .map_or("signal", |(_, name)| *name);
                token.cancel_with(name);
            } else if read <= 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return; // the pipe failed: nothing more can come
            }
        }
    }

    pub(super) fn stop() {
        let mut installed = INSTALLED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(done) = installed.take() else {
            return;
        };
        for (slot, (signal, _)) in SIGNALS.iter().enumerate() {
            // SAFETY: reading the current disposition.
            let mut current: libc::sigaction = unsafe { core::mem::zeroed() };
            // SAFETY: as above.
            unsafe { libc::sigaction(*signal, ptr::null(), &mut current) };
            if current.sa_sigaction == on_signal as *const () as usize {
                // Still ours: put back what was there.
                // SAFETY: restoring the disposition read at install.
                unsafe { libc::sigaction(*signal, &done.previous[slot], ptr::null_mut()) };
                COVERED[slot].store(false, Ordering::SeqCst);
            } else {
                // Someone installed a handler over ours and may call ours
                // as its previous one: ours stays, inactive.
                COVERED[slot].store(true, Ordering::SeqCst);
            }
        }
        ACTIVE.store(false, Ordering::SeqCst);
        WAKE_FD.store(-1, Ordering::SeqCst);
        if let Some((_, write_fd)) = PIPE.get() {
            // Ends this install's thread.
            write_byte(*write_fd, GENERATION.load(Ordering::SeqCst));
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::io;

    use super::{TerminateHandler, SECOND_SIGNAL_EXIT_CODE};
    use crate::Token;

    pub(super) fn install(token: Token) -> io::Result<TerminateHandler> {
        let seen = AtomicUsize::new(0);
        ctrlc::set_handler(move || {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                token.cancel_with("console event");
            } else {
                std::process::exit(SECOND_SIGNAL_EXIT_CODE);
            }
        })
        .map_err(io::Error::other)?;
        Ok(TerminateHandler { thread: None })
    }

    pub(super) fn stop() {
        // ctrlc cannot remove its handler; it stays, and keeps cancelling.
    }
}
