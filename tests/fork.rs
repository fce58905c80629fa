//! Guarantee 19: `signal::cancel_on_terminate` in a child made by `fork`
//! (without exec), beside a parent that has its own handler, as in a
//! pre-fork server. Each round forks a child that installs its own handler;
//! the parent sends it SIGTERM, and the child must see its own token
//! cancelled with that cause and its `stop()` must return. While that child
//! is still alive, the parent sends SIGTERM to itself and must get it.
//!
//! Run it single-threaded, as CI does:
//! `cargo test --features signal --test fork -- --test-threads=1`
//! (the tests also take a lock, so they never fork at the same time).
//!
//! What the child does after `fork`: the parent is multi-threaded (the test
//! harness, phaseout's signal thread), so only the forking thread exists in
//! the child, and a lock another thread held at the fork would stay held.
//! The child only takes locks that no other parent thread holds at that
//! moment: phaseout's install and stop run on this test's thread alone (the
//! parent's signal thread waits in `read` and holds nothing), and glibc's
//! allocator is made consistent across `fork` by glibc itself. It then
//! creates a phaser, installs (which spawns a thread, the scenario a
//! pre-fork server has), polls the token, writes bytes to a pipe, and ends
//! with `libc::_exit`: no destructors, no atexit handlers, nothing of the
//! harness runs in the child. Every wait, on either side, has a deadline, and
//! a child still alive at the end of a round is killed and reaped.
#![cfg(all(unix, feature = "signal"))]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use phaseout::signal::{cancel_on_terminate, TerminateHandler};
use phaseout::Phaser;

/// Forks per test: with the pipe shared, the child's SIGTERM was lost in
/// most forks, so 40 make a failure certain.
const ROUNDS: usize = 40;
/// How long the parent waits for each step of the child.
const PARENT_WAIT: Duration = Duration::from_secs(5);
/// How long the child waits for its cancellation (shorter than the
/// parent's wait, so the child reports a timeout itself).
const CHILD_WAIT: Duration = Duration::from_secs(3);

/// What the child writes to the status pipe, in order.
const READY: u8 = b'R';
const CANCELLED: u8 = b'C';
const STOPPED: u8 = b'S';
/// What the parent writes when the child may stop.
const GO: u8 = b'G';

/// The child's exit status when a step failed.
const INSTALL_FAILED: i32 = 10;
const NOT_CANCELLED: i32 = 11;
const WRONG_CAUSE: i32 = 12;
const NO_GO: i32 = 13;
const PANICKED: i32 = 14;

/// The tests share the process's signal handling: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn child_failure(code: i32) -> &'static str {
    match code {
        INSTALL_FAILED => "its cancel_on_terminate failed",
        NOT_CANCELLED => "its token was not cancelled by its SIGTERM (the signal went elsewhere)",
        WRONG_CAUSE => "its token was cancelled, but not with the cause SIGTERM",
        NO_GO => "the parent never told it to stop",
        PANICKED => "it panicked",
        _ => "unexpected exit status",
    }
}

/// A pipe: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe` writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe failed");
    // SAFETY: both descriptors were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn write_byte(fd: &OwnedFd, byte: u8) {
    // SAFETY: writes one byte from a live local to an open descriptor.
    unsafe { libc::write(fd.as_raw_fd(), std::ptr::from_ref(&byte).cast(), 1) };
}

/// The next byte on `fd`, or `None` at end of file, on an error, or when
/// nothing came within `timeout`.
fn read_byte(fd: &OwnedFd, timeout: Duration) -> Option<u8> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: polls one valid `pollfd`.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        if ready <= 0 {
            continue; // timed out (checked above) or interrupted
        }
        let mut byte = 0u8;
        // SAFETY: reads one byte into a live local from an open descriptor.
        let read = unsafe { libc::read(fd.as_raw_fd(), std::ptr::from_mut(&mut byte).cast(), 1) };
        return (read == 1).then_some(byte);
    }
}

/// Polls `done` until it holds or `timeout` passes.
fn wait_until(timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

fn cause_of(phaser: &Phaser) -> Option<String> {
    phaser.cause().map(|cause| cause.to_string())
}

/// The forked child's whole life; returns its exit status.
fn child(status: &OwnedFd, go: &OwnedFd) -> i32 {
    let phaser = Phaser::named("child");
    let Ok(handler) = cancel_on_terminate(phaser.token()) else {
        return INSTALL_FAILED;
    };
    write_byte(status, READY);
    if !wait_until(CHILD_WAIT, || phaser.is_cancelled()) {
        return NOT_CANCELLED;
    }
    if cause_of(&phaser).as_deref() != Some("SIGTERM") {
        return WRONG_CAUSE;
    }
    write_byte(status, CANCELLED);
    // Stay alive, handler and thread included, while the parent checks
    // that its own signal still reaches it.
    if read_byte(go, PARENT_WAIT) != Some(GO) {
        return NO_GO;
    }
    handler.stop();
    write_byte(status, STOPPED);
    0
}

/// A forked child, killed and reaped if it is still there when dropped.
struct Forked {
    pid: libc::pid_t,
    reaped: bool,
}

impl Forked {
    /// Waits until `deadline` for the child to exit; then kills it. Returns
    /// its exit status (`None` if it was killed or died of a signal).
    fn finish(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let mut status = 0;
        loop {
            // SAFETY: `waitpid` on our own child, with a valid status slot.
            let done = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if done == self.pid {
                self.reaped = true;
                return libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            }
            if Instant::now() >= deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn kill(&mut self) {
        if !self.reaped {
            // SAFETY: signals and reaps our own child, which has not been
            // reaped yet, so its pid is still its own.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
            self.reaped = true;
        }
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `signal` to process `pid`.
fn send(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: `kill` with a pid we own (our child or ourselves).
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill failed");
}

/// When the parent installs its own handler in a round.
#[derive(Clone, Copy, Debug)]
enum ParentInstalls {
    /// Before the fork: the child inherits the installed handler.
    BeforeFork,
    /// After the fork, once the child installed its own: parent and child
    /// both have the pipe the parent made in an earlier install.
    AfterFork,
}

/// One fork. The child installs, the parent sends it SIGTERM, then sends
/// SIGTERM to itself while the child is still alive, then lets the child
/// stop.
fn round(when: ParentInstalls) -> Result<(), String> {
    let parent = Phaser::named("parent");
    let mut parent_handler: Option<TerminateHandler> = match when {
        ParentInstalls::BeforeFork => Some(cancel_on_terminate(parent.token()).unwrap()),
        ParentInstalls::AfterFork => None,
    };
    let (status_read, status_write) = pipe();
    let (go_read, go_write) = pipe();
    // SAFETY: see the module documentation for what the child does.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(status_read);
        drop(go_write);
        let code = std::panic::catch_unwind(|| child(&status_write, &go_read)).unwrap_or(PANICKED);
        // SAFETY: ends the child at once, running nothing of the parent's
        // (no destructors, no atexit handlers, no harness).
        unsafe { libc::_exit(code) };
    }
    drop(status_write);
    drop(go_read);
    let mut forked = Forked { pid, reaped: false };

    let result = (|| {
        let fail = |forked: &mut Forked, what: &str| {
            let how = match forked.finish(PARENT_WAIT) {
                Some(code) => format!("it exited with {code}: {}", child_failure(code)),
                None => "it hung or was killed (killed at the deadline)".to_string(),
            };
            Err(format!("{what}; {how}"))
        };
        if read_byte(&status_read, PARENT_WAIT) != Some(READY) {
            return fail(&mut forked, "the child did not install");
        }
        if parent_handler.is_none() {
            parent_handler = Some(cancel_on_terminate(parent.token()).unwrap());
        }
        send(pid, libc::SIGTERM);
        if read_byte(&status_read, PARENT_WAIT) != Some(CANCELLED) {
            return fail(
                &mut forked,
                "the child's SIGTERM did not cancel the child's token",
            );
        }
        if parent.is_cancelled() {
            return Err(format!(
                "the child's SIGTERM cancelled the parent ({:?})",
                cause_of(&parent)
            ));
        }
        // SAFETY: `getpid` cannot fail.
        send(unsafe { libc::getpid() }, libc::SIGTERM);
        if !wait_until(PARENT_WAIT, || parent.is_cancelled()) {
            return Err("the parent's own SIGTERM did not reach the parent \
                        (its live child took it)"
                .to_string());
        }
        if cause_of(&parent).as_deref() != Some("SIGTERM") {
            return Err(format!("the parent's cause: {:?}", cause_of(&parent)));
        }
        write_byte(&go_write, GO);
        if read_byte(&status_read, PARENT_WAIT) != Some(STOPPED) {
            return fail(&mut forked, "the child's stop() did not return");
        }
        match forked.finish(PARENT_WAIT) {
            Some(0) => Ok(()),
            Some(code) => Err(format!("the child exited with {code}")),
            None => Err("the child did not exit after stop()".to_string()),
        }
    })();
    // The child first: with a shared pipe, a live child could take the
    // byte that ends the parent's thread, and `stop()` would wait forever.
    forked.kill();
    if let Some(handler) = parent_handler {
        handler.stop();
    }
    result
}

fn rounds(when: ParentInstalls) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // The pipe is made at the first install of the process, so the
    // children of the `AfterFork` rounds inherit it too.
    cancel_on_terminate(Phaser::new().token()).unwrap().stop();
    for round_number in 0..ROUNDS {
        if let Err(failure) = round(when) {
            panic!(
                "fork {} of {ROUNDS} ({when:?}): {failure}",
                round_number + 1
            );
        }
    }
}

/// A pre-fork server: the handler is installed in `main`, then the workers
/// are forked and each installs its own.
#[test]
fn a_child_forked_with_the_parents_handler_installed_gets_its_own_signals() {
    rounds(ParentInstalls::BeforeFork);
}

/// Parent and child each with a live handler installed after the fork,
/// both made after the parent's first install: neither takes the other's
/// signals, and the child's `stop()` returns.
#[test]
fn parent_and_child_with_live_handlers_each_get_their_own_signals() {
    rounds(ParentInstalls::AfterFork);
}
