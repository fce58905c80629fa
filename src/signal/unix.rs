//! The Unix path of [`cancel_on_terminate`](super::cancel_on_terminate):
//! `sigaction` handlers that count signals and write to a pipe, and the
//! thread that reads the pipe and cancels. Every process-wide static and
//! every `unsafe` of the signal code is here; the module doc of `signal`
//! says what the handlers promise.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering};
use std::io;
use std::sync::Mutex;
use std::thread;

use super::TerminateHandler;
use crate::Token;

/// The signals handled, and the names their causes get.
const SIGNALS: [(libc::c_int, &str); 2] = [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")];

/// Whether our handlers are acting (between install and stop).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The process that installed them: a child made by `fork` (without
/// exec) inherits our handlers but not the thread, and does not act
/// until it installs its own. Stored after `WAKE_FD`, so a handler that
/// sees its own process here reads that process's pipe in `WAKE_FD`.
static OWNER_PID: AtomicI32 = AtomicI32::new(0);
/// Handlers running now; `stop` waits for them to leave.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// Signals seen since the install; counted in the handler itself.
static SEEN: AtomicUsize = AtomicUsize::new(0);
/// The first signal's number (set before `SEEN` counts it), for the
/// thread to name the cause.
static FIRST: AtomicI32 = AtomicI32::new(0);
/// The pipe's write end the handler wakes the thread with, or -1.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The wake-up pipe (read end, write end), made at the first install of
/// each process and kept for the rest of it: a handler may be about to
/// write to it at any moment, so closing it (and letting its number be
/// reused by some file) is never safe. Two descriptors per process.
/// Written only under `INSTALLED`'s lock; the handler reads `WAKE_FD`.
static PIPE_READ: AtomicI32 = AtomicI32::new(-1);
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
/// The process that made the pipe. A child made by `fork` inherits the
/// descriptors, but the other end is the parent's thread: a child that
/// installs makes a pipe of its own, and never reads or writes the
/// inherited one (nor closes it: the child may have reused its numbers).
static PIPE_PID: AtomicI32 = AtomicI32::new(0);
/// The byte a signal writes. `stop` writes the install's generation
/// (below 255) to end that install's thread.
const SIGNAL_BYTE: u8 = u8::MAX;
static GENERATION: AtomicU8 = AtomicU8::new(0);
/// The dispositions from before ours, for the handler: the handler
/// address and flags (the rest is in `SAVED`).
static PREVIOUS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
static PREVIOUS_FLAGS: [AtomicI32; 2] = [AtomicI32::new(0), AtomicI32::new(0)];
/// Per signal: at `stop`, our handler was covered by another library's
/// (which may call ours as its previous one), so ours was left in
/// place, inactive.
static COVERED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];
/// One install at a time.
static INSTALLED: Mutex<Installed> = Mutex::new(Installed {
    installed: false,
    id: 0,
});
/// The full dispositions from before ours, restored by `stop`.
static SAVED: Mutex<Option<Saved>> = Mutex::new(None);

struct Installed {
    /// Whether an install has not been stopped yet: in a child of
    /// `fork`, possibly the parent's (see `OWNER_PID`).
    installed: bool,
    /// The latest install's number.
    id: u64,
}

#[derive(Clone, Copy)]
struct Saved {
    previous: [libc::sigaction; 2],
}

// SAFETY: `sigaction` is plain data (a function address, flags, a mask).
unsafe impl Send for Saved {}

fn ours() -> usize {
    on_signal as *const () as usize
}

fn slot_of(signal: libc::c_int) -> Option<usize> {
    SIGNALS.iter().position(|(number, _)| *number == signal)
}

/// The current disposition of `signal`, or `None` if it cannot be read.
fn current(signal: libc::c_int) -> Option<libc::sigaction> {
    // SAFETY: an all-zero `sigaction` is a valid value to fill in, and
    // reading a disposition is async-signal-safe.
    let mut now: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::sigaction(signal, ptr::null(), &mut now) } == 0).then_some(now)
}

/// The signal handler. Only async-signal-safe operations: atomics,
/// `getpid`, `sigaction`, `write`, `raise`, `_exit`, and the previous
/// handler. It keeps `errno` as it found it.
extern "C" fn on_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let errno = Errno::save();
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    // SAFETY: `getpid` is async-signal-safe.
    let here = unsafe { libc::getpid() };
    let acting = ACTIVE.load(Ordering::SeqCst) && OWNER_PID.load(Ordering::SeqCst) == here;
    if acting {
        // The first one records its number before anything counts it,
        // so a reader that sees a count sees the name.
        let _ = FIRST.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        if SEEN.fetch_add(1, Ordering::SeqCst) > 0 {
            // The second one: stop now. `_exit`, not `exit`: no
            // destructors or atexit handlers inside a signal handler.
            // SAFETY: `_exit` is async-signal-safe.
            unsafe { libc::_exit(128 + signal) };
        }
        write_byte(WAKE_FD.load(Ordering::SeqCst), SIGNAL_BYTE);
    }
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
    if acting {
        pass_on(signal, info, context);
    } else {
        act_as_before(signal, info, context);
    }
    errno.restore();
}

/// Not acting (stopped, or in a forked child). If ours is still the
/// installed handler (nobody covers it any more), put back what was
/// there before and let it act: the default terminates (the signal is
/// raised again, pending until this handler returns). If ours is only
/// reached through another library's chain, pass it on as usual.
fn act_as_before(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let Some(slot) = slot_of(signal) else {
        return;
    };
    let installed_directly = current(signal).is_some_and(|now| now.sa_sigaction == ours());
    let previous = PREVIOUS[slot].load(Ordering::SeqCst);
    if installed_directly && (previous == libc::SIG_DFL || previous == libc::SIG_IGN) {
        // SAFETY: an all-zero `sigaction` with SIG_DFL or SIG_IGN is a
        // valid disposition; `sigaction` and `raise` are
        // async-signal-safe.
        unsafe {
            let mut back: libc::sigaction = core::mem::zeroed();
            back.sa_sigaction = previous;
            libc::sigemptyset(&mut back.sa_mask);
            libc::sigaction(signal, &back, ptr::null_mut());
            if previous == libc::SIG_DFL {
                libc::raise(signal);
            }
        }
        return;
    }
    pass_on(signal, info, context);
}

/// Calls the handler that was there before ours, if it was a function.
fn pass_on(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let Some(slot) = slot_of(signal) else {
        return;
    };
    let previous = PREVIOUS[slot].load(Ordering::SeqCst);
    if previous == libc::SIG_DFL || previous == libc::SIG_IGN || previous == 0 || previous == ours()
    {
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

/// `errno` of the interrupted code, put back before the handler returns.
struct Errno(libc::c_int);

impl Errno {
    fn location() -> Option<*mut libc::c_int> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        // SAFETY: returns this thread's errno slot.
        return Some(unsafe { libc::__errno_location() });
        #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
        // SAFETY: returns this thread's errno slot.
        return Some(unsafe { libc::__error() });
        #[allow(unreachable_code)]
        None
    }

    fn save() -> Self {
        // SAFETY: this thread's errno slot is valid to read.
        Self(Self::location().map_or(0, |slot| unsafe { *slot }))
    }

    fn restore(self) {
        if let Some(slot) = Self::location() {
            // SAFETY: this thread's errno slot is valid to write.
            unsafe { *slot = self.0 };
        }
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

/// Reads and forgets every byte waiting in the pipe (no thread reads it
/// between installs): a signal or stop byte left from before.
fn drain_pipe(read_fd: libc::c_int) {
    // SAFETY: plain fcntl/read calls on our pipe's read end.
    unsafe {
        let flags = libc::fcntl(read_fd, libc::F_GETFL);
        libc::fcntl(read_fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        let mut buffer = [0u8; 64];
        while libc::read(read_fd, buffer.as_mut_ptr().cast(), buffer.len()) > 0 {}
        libc::fcntl(read_fd, libc::F_SETFL, flags);
    }
}

/// Our disposition for `slot`: the previous handler's restart, stack
/// and mask choices when it was a function, else `SA_RESTART`.
fn our_action(previous: &libc::sigaction) -> libc::sigaction {
    // SAFETY: an all-zero `sigaction` is valid; we fill in ours.
    let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
    action.sa_sigaction = ours();
    let previous_is_function = previous.sa_sigaction != libc::SIG_DFL
        && previous.sa_sigaction != libc::SIG_IGN
        && previous.sa_sigaction != ours();
    if previous_is_function {
        let kept = libc::SA_RESTART | libc::SA_ONSTACK | libc::SA_NODEFER;
        action.sa_flags = libc::SA_SIGINFO | (previous.sa_flags & kept);
        action.sa_mask = previous.sa_mask;
    } else {
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: `sa_mask` is ours to initialize.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
    }
    action
}

pub(super) fn install(token: Token) -> io::Result<TerminateHandler> {
    let mut installed = INSTALLED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // SAFETY: `getpid` cannot fail.
    let here = unsafe { libc::getpid() };
    // An install inherited through `fork` is the parent's: it has no
    // thread here, and this process's own install takes its place.
    if installed.installed && OWNER_PID.load(Ordering::SeqCst) == here {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "phaseout: cancel_on_terminate is already installed; stop() it first",
        ));
    }
    if PIPE_PID.load(Ordering::SeqCst) != here {
        // The first install of this process (or of this child of
        // `fork`, whose inherited pipe is read by the parent).
        let (read_fd, write_fd) = pipe()?;
        PIPE_READ.store(read_fd, Ordering::SeqCst);
        PIPE_WRITE.store(write_fd, Ordering::SeqCst);
        PIPE_PID.store(here, Ordering::SeqCst);
    }
    let read_fd = PIPE_READ.load(Ordering::SeqCst);
    let write_fd = PIPE_WRITE.load(Ordering::SeqCst);
    drain_pipe(read_fd);
    SEEN.store(0, Ordering::SeqCst);
    FIRST.store(0, Ordering::SeqCst);
    // This process's pipe first, then its pid: a handler acts (and
    // writes to `WAKE_FD`) only once it sees its own pid.
    WAKE_FD.store(write_fd, Ordering::SeqCst);
    OWNER_PID.store(here, Ordering::SeqCst);
    installed.id += 1;
    let install = installed.id;
    let generation = (GENERATION.load(Ordering::SeqCst) + 1) % SIGNAL_BYTE;
    GENERATION.store(generation, Ordering::SeqCst);

    let mut saved = SAVED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut previous = match *saved {
        Some(saved) => saved.previous,
        // SAFETY: an all-zero `sigaction` is a valid value to fill in.
        None => unsafe { core::mem::zeroed() },
    };
    // Which slots need ours installed now (not those where ours is
    // still reached: installed directly, or covered by a function).
    let mut install_slot = [true; 2];
    for (slot, (signal, _)) in SIGNALS.iter().enumerate() {
        let now = current(*signal).ok_or_else(last_error)?;
        let reached = now.sa_sigaction == ours()
            || (COVERED[slot].load(Ordering::SeqCst)
                && now.sa_sigaction != libc::SIG_DFL
                && now.sa_sigaction != libc::SIG_IGN);
        if reached {
            install_slot[slot] = false; // keep `previous` from before
            continue;
        }
        COVERED[slot].store(false, Ordering::SeqCst);
        previous[slot] = now;
        PREVIOUS[slot].store(now.sa_sigaction, Ordering::SeqCst);
        PREVIOUS_FLAGS[slot].store(now.sa_flags, Ordering::SeqCst);
    }
    *saved = Some(Saved { previous });
    drop(saved);
    ACTIVE.store(true, Ordering::SeqCst);
    for (slot, (signal, _)) in SIGNALS.iter().enumerate() {
        if !install_slot[slot] {
            continue;
        }
        let action = our_action(&previous[slot]);
        // SAFETY: installing a handler that is async-signal-safe.
        if unsafe { libc::sigaction(*signal, &action, ptr::null_mut()) } != 0 {
            let error = last_error();
            installed.installed = true;
            drop(installed);
            stop(install);
            return Err(error);
        }
    }
    installed.installed = true;
    drop(installed);
    let thread = thread::Builder::new()
        .name("phaseout-signal".into())
        .spawn(move || {
            unblock_signals();
            wait_for_signal(read_fd, generation, &token);
        });
    match thread {
        Ok(thread) => Ok(TerminateHandler {
            thread: Some(thread),
            install,
            pid: std::process::id(),
        }),
        Err(error) => {
            stop(install);
            Err(error)
        }
    }
}

/// Unblocks SIGINT and SIGTERM in the calling thread (phaseout's own),
/// which inherited the mask of the thread that installed: a signal
/// blocked in every other thread is then delivered here, not left
/// pending forever. Other threads' masks are not touched.
fn unblock_signals() {
    // SAFETY: `set` is initialized by `sigemptyset` before use, and
    // `pthread_sigmask` changes only this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        for (signal, _) in SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, ptr::null_mut());
    }
}

/// Cancels `token` with the first signal's name, if a signal came.
fn cancel_if_signalled(token: &Token, cancelled: &mut bool) {
    if *cancelled || SEEN.load(Ordering::SeqCst) == 0 {
        return;
    }
    let first = FIRST.load(Ordering::SeqCst);
    let name = SIGNALS
        .iter()
        .find(|(number, _)| *number == first)
        .map_or("signal", |(_, name)| *name);
    token.cancel_with(name);
    *cancelled = true;
}

/// The background thread: waits for the handler's byte, then cancels
/// with the first signal's name. Ends at `stop`'s byte for its
/// `generation`, after acting on a signal that came before the stop.
fn wait_for_signal(read_fd: libc::c_int, generation: u8, token: &Token) {
    let mut byte = 0u8;
    let mut cancelled = false;
    loop {
        // SAFETY: reading one byte into `byte` from our pipe.
        let read = unsafe { libc::read(read_fd, ptr::from_mut(&mut byte).cast(), 1) };
        if read == 1 && byte == SIGNAL_BYTE {
            cancel_if_signalled(token, &mut cancelled);
        } else if read == 1 && byte == generation {
            // `stop` waited for every handler to leave first, so a
            // signal that came before it is counted by now.
            cancel_if_signalled(token, &mut cancelled);
            return;
        } else if read <= 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return; // the pipe failed: nothing more can come
        }
    }
}

/// Stops install number `install`; returns whether its thread was told
/// to end (and can be joined).
pub(super) fn stop(install: u64) -> bool {
    let mut installed = INSTALLED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !installed.installed || installed.id != install {
        // A handle a child of `fork` inherited from its parent, after
        // the child made its own install: that one is not this
        // handle's to stop.
        return false;
    }
    installed.installed = false;
    // SAFETY: `getpid` cannot fail.
    let forked = OWNER_PID.load(Ordering::SeqCst) != unsafe { libc::getpid() };
    let saved = *SAVED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for (slot, (signal, _)) in SIGNALS.iter().enumerate() {
        match current(*signal) {
            Some(now) if now.sa_sigaction == ours() => {
                if let Some(saved) = saved {
                    // Still ours: put back what was there.
                    // SAFETY: restoring the disposition read at install.
                    unsafe { libc::sigaction(*signal, &saved.previous[slot], ptr::null_mut()) };
                }
                COVERED[slot].store(false, Ordering::SeqCst);
            }
            // Someone installed a handler over ours and may call ours
            // as its previous one: ours stays, inactive.
            _ => COVERED[slot].store(true, Ordering::SeqCst),
        }
    }
    ACTIVE.store(false, Ordering::SeqCst);
    WAKE_FD.store(-1, Ordering::SeqCst);
    // A handler that saw `ACTIVE` may still be on its way to the pipe:
    // let it finish before the thread is told to end.
    while IN_HANDLER.load(Ordering::SeqCst) != 0 {
        thread::yield_now();
    }
    if forked {
        // The parent's install, stopped in a child of `fork`: the
        // thread and the pipe's reader are the parent's. Tell nobody;
        // there is nothing to join here.
        return false;
    }
    // Ends this install's thread (the pipe is this process's: it made
    // it before the install that `forked` says is its own).
    write_byte(
        PIPE_WRITE.load(Ordering::SeqCst),
        GENERATION.load(Ordering::SeqCst),
    );
    true
}
