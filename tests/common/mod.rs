//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// A waker that counts how often it was woken.
#[derive(Default)]
pub struct CountingWaker {
    wakes: AtomicUsize,
}

impl CountingWaker {
    pub fn new() -> (Arc<Self>, Waker) {
        let counter = Arc::new(Self::default());
        let waker = Waker::from(counter.clone());
        (counter, waker)
    }

    pub fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `future` once with `waker`.
pub fn poll_once<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
}

/// A global sequence counter: `next()` gives strictly increasing stamps, so
/// events on different threads can be ordered after the fact.
pub struct Sequence(AtomicUsize);

impl Sequence {
    pub const fn new() -> Self {
        Self(AtomicUsize::new(1))
    }

    pub fn next(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

/// Loop counts: full size normally, small under Miri (which is ~1000x slower).
pub const fn scaled(full: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        full
    }
}

/// Set in a child process that runs one test's scenario (see `isolated`).
pub const ISOLATED: &str = "PHASEOUT_ISOLATED_SCENARIO";

/// How a scenario run in its own process ended.
pub enum Isolated {
    /// It exited; its output.
    Exited(std::process::Output),
    /// It was still running after the timeout and was killed.
    TimedOut { stdout: String },
}

/// Runs the test `name` of the current test binary again in a child process
/// with [`ISOLATED`] set, so that a scenario that may hang, abort or change
/// scheduling policy cannot take the test run with it. Kills it after
/// `timeout`.
pub fn isolated(name: &str, timeout: std::time::Duration) -> Isolated {
    use std::io::Read;
    use std::process::{Command, Stdio};

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(ISOLATED, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return Isolated::Exited(child.wait_with_output().unwrap());
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let mut stdout = String::new();
            let _ = child.stdout.take().unwrap().read_to_string(&mut stdout);
            return Isolated::TimedOut { stdout };
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether this process is the child of [`isolated`].
pub fn in_isolation() -> bool {
    std::env::var_os(ISOLATED).is_some()
}

/// Runs `f` on another thread and fails the test if it has not finished
/// within a minute: a lost wake-up or a deadlock shows up as a hang.
pub fn within_a_minute(what: &str, f: impl FnOnce() + Send + 'static) {
    use std::sync::mpsc;
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match finished.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(()) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic)
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: deadlock or lost wake-up (no progress in 60 s)")
        }
    }
}

/// A waker that runs `f` on every wake.
pub fn waker(f: impl Fn() + Send + Sync + 'static) -> Waker {
    struct FnWaker<F>(F);
    impl<F: Fn() + Send + Sync + 'static> Wake for FnWaker<F> {
        fn wake(self: Arc<Self>) {
            (self.0)()
        }
        fn wake_by_ref(self: &Arc<Self>) {
            (self.0)()
        }
    }
    Waker::from(Arc::new(FnWaker(f)))
}
