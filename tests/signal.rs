//! `signal::cancel_on_terminate` with real signals, sent to a child process:
//! this test binary runs itself again with `PHASEOUT_SIGNAL_CHILD` set, and
//! the child waits for signals like a server's `main` would.
#![cfg(all(unix, feature = "signal"))]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use phaseout::Phaser;

const CHILD_ENV: &str = "PHASEOUT_SIGNAL_CHILD";

/// Waits for `phaser`'s cancellation and prints its cause.
fn print_cause_when_cancelled(phaser: &Phaser) {
    phaser.wait_cancelled();
    let cause = phaser.cause().map(|cause| cause.to_string());
    println!("cancelled: {}", cause.as_deref().unwrap_or("no cause"));
}

/// Waits for SIGTERM through tokio's own signal handling (which goes
/// through signal-hook's registry, as most libraries' do).
fn tokio_waits_for_sigterm(ready: impl FnOnce()) {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate()).unwrap();
        ready();
        terminate.recv().await;
        println!("tokio got SIGTERM");
    });
}

/// The child process: what a `main` would do, in several variants.
#[test]
fn signal_child_process() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return; // only meaningful when run by the tests below
    };
    let root = Phaser::named("app");
    let worker = root.child_named("worker").unwrap();
    match mode.as_str() {
        "normal" | "hang" => {
            let handler = phaseout::signal::cancel_on_terminate(root.token()).unwrap();
            println!("ready");
            print_cause_when_cancelled(&worker);
            if mode == "hang" {
                // A component that never finishes: only a second signal ends this.
                std::thread::sleep(Duration::from_secs(60));
                println!("not killed");
                return;
            }
            drop(worker);
            root.wait_turn();
            handler.stop();
            println!("stopped in order");
        }
        "raise-twice" => {
            let _handler = phaseout::signal::cancel_on_terminate(root.token()).unwrap();
            println!("ready");
            // Two signals at once, before the background thread can run:
            // each `raise` runs the handler before it returns.
            // SAFETY: raising a signal whose handler is installed.
            unsafe {
                libc::raise(libc::SIGINT);
                libc::raise(libc::SIGINT);
            }
            std::thread::sleep(Duration::from_secs(10));
            println!("not killed");
        }
        "again-after-stop" => {
            let first = phaseout::signal::cancel_on_terminate(root.token()).unwrap();
            assert!(
                phaseout::signal::cancel_on_terminate(root.token()).is_err(),
                "two at once must be refused"
            );
            first.stop();
            let other = Phaser::named("other");
            let _second = phaseout::signal::cancel_on_terminate(other.token()).unwrap();
            println!("ready");
            print_cause_when_cancelled(&other);
            assert!(!root.is_cancelled(), "the stopped handler still cancelled");
            println!("stopped in order");
        }
        "tokio-after-stop" => {
            phaseout::signal::cancel_on_terminate(root.token())
                .unwrap()
                .stop();
            tokio_waits_for_sigterm(|| println!("ready"));
            assert!(!root.is_cancelled());
        }
        "default-after-stop" => {
            phaseout::signal::cancel_on_terminate(root.token())
                .unwrap()
                .stop();
            println!("ready");
            std::thread::sleep(Duration::from_secs(10));
            println!("not killed");
        }
        "tokio-before" => {
            // tokio's handler first, then phaseout's on top: both get it.
            let root_token = root.token();
            tokio_waits_for_sigterm(move || {
                let handler = phaseout::signal::cancel_on_terminate(root_token).unwrap();
                std::mem::forget(handler);
                println!("ready");
            });
            print_cause_when_cancelled(&worker);
        }
        "covered" => {
            // phaseout's handler, then tokio's over it, then phaseout's
            // stopped (it stays under tokio's) and installed again.
            let first = phaseout::signal::cancel_on_terminate(root.token()).unwrap();
            let other = Phaser::named("other");
            let other_token = other.token();
            tokio_waits_for_sigterm(move || {
                first.stop();
                let again = phaseout::signal::cancel_on_terminate(other_token).unwrap();
                std::mem::forget(again);
                println!("ready");
            });
            print_cause_when_cancelled(&other);
            assert!(!root.is_cancelled(), "the stopped handler still cancelled");
        }
        "covered-uninstall" => {
            // phaseout's, then a raw library's over it, phaseout stopped
            // (covered), then the library uninstalls and puts phaseout's
            // back: SIGTERM must terminate as by default again.
            let handler = phaseout::signal::cancel_on_terminate(root.token()).unwrap();
            raw_library::install(libc::SIGTERM);
            handler.stop();
            raw_library::uninstall(libc::SIGTERM);
            println!("ready");
            std::thread::sleep(Duration::from_secs(10));
            println!("not killed");
        }
        "covered-reset" => {
            // Covered at stop, then the signal reset to the default: a new
            // install must really install.
            let handler = phaseout::signal::cancel_on_terminate(root.token()).unwrap();
            raw_library::install(libc::SIGINT);
            handler.stop();
            // SAFETY: resetting SIGINT to its default disposition.
            unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
            let other = Phaser::named("other");
            let _again = phaseout::signal::cancel_on_terminate(other.token()).unwrap();
            println!("ready");
            print_cause_when_cancelled(&other);
        }
        "blocked" => {
            // SIGTERM came blocked in every thread (the parent blocked it
            // before exec): the test is only meaningful if it still is.
            assert!(
                sigterm_blocked_here(),
                "SIGTERM is not blocked in the child"
            );
            let _handler = phaseout::signal::cancel_on_terminate(root.token()).unwrap();
            println!("ready");
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !worker.is_cancelled() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if !worker.is_cancelled() {
                println!("not cancelled within 5 s");
                return;
            }
            assert!(sigterm_blocked_here(), "phaseout changed the caller's mask");
            print_cause_when_cancelled(&worker);
        }
        other => panic!("unknown mode {other}"),
    }
}

/// Whether SIGTERM is blocked in the calling thread.
fn sigterm_blocked_here() -> bool {
    // SAFETY: reads this thread's mask (changing nothing) into a zeroed
    // set, which `pthread_sigmask` fills in.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask),
            0
        );
        libc::sigismember(&mask, libc::SIGTERM) == 1
    }
}

/// A library with a raw `sigaction` handler that chains to the one it
/// found, and can uninstall itself by putting that one back.
mod raw_library {
    use std::sync::Mutex;

    static PREVIOUS: Mutex<Option<libc::sigaction>> = Mutex::new(None);
    static PREVIOUS_HANDLER: std::sync::atomic::AtomicUsize =
        std::sync::atomic::AtomicUsize::new(0);

    extern "C" fn chain(
        signal: libc::c_int,
        info: *mut libc::siginfo_t,
        context: *mut libc::c_void,
    ) {
        let previous = PREVIOUS_HANDLER.load(std::sync::atomic::Ordering::SeqCst);
        if previous > 1 {
            // SAFETY: phaseout's handler is an SA_SIGINFO handler.
            let previous: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(previous) };
            previous(signal, info, context);
        }
    }

    pub fn install(signal: libc::c_int) {
        // SAFETY: plain sigaction calls with valid, initialized structs.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = chain as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            assert_eq!(libc::sigaction(signal, &action, &mut previous), 0);
            PREVIOUS_HANDLER.store(previous.sa_sigaction, std::sync::atomic::Ordering::SeqCst);
            *PREVIOUS.lock().unwrap() = Some(previous);
        }
    }

    pub fn uninstall(signal: libc::c_int) {
        let previous = PREVIOUS.lock().unwrap().take().unwrap();
        // SAFETY: putting back the disposition read in `install`.
        unsafe { assert_eq!(libc::sigaction(signal, &previous, std::ptr::null_mut()), 0) };
    }
}

fn spawn_child(mode: &str) -> (Child, BufReader<ChildStdout>) {
    spawn_child_with(mode, |_| {})
}

/// `spawn_child`, with `adjust` applied to the command first.
fn spawn_child_with(
    mode: &str,
    adjust: impl FnOnce(&mut Command),
) -> (Child, BufReader<ChildStdout>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    adjust(&mut command);
    let mut child = command
        .args([
            "--exact",
            "signal_child_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, mode)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdout)
}

fn wait_for_line(stdout: &mut BufReader<ChildStdout>, wanted: &str) {
    let mut line = String::new();
    let mut printed = Vec::new();
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "child ended before printing {wanted:?}; it printed {printed:?}"
        );
        // The harness may print "test ... " on the same line first.
        if line.trim().ends_with(wanted) {
            return;
        }
        printed.push(line.trim().to_string());
    }
}

fn send(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} failed");
}

#[test]
fn sigterm_cancels_with_its_name_and_the_program_stops_in_order() {
    let (mut child, mut stdout) = spawn_child("normal");
    wait_for_line(&mut stdout, "ready");
    send(&child, "-TERM");
    wait_for_line(&mut stdout, "cancelled: SIGTERM");
    wait_for_line(&mut stdout, "stopped in order");
    assert!(child.wait().unwrap().success());
}

#[test]
fn sigint_cancels_with_its_name() {
    let (mut child, mut stdout) = spawn_child("normal");
    wait_for_line(&mut stdout, "ready");
    send(&child, "-INT");
    wait_for_line(&mut stdout, "cancelled: SIGINT");
    assert!(child.wait().unwrap().success());
}

/// 128 + the second signal's number: 130 for SIGINT, 143 for SIGTERM.
#[test]
fn a_second_signal_exits_at_once_with_128_plus_its_number() {
    for (first, second, status) in [
        ("-TERM", "-INT", 130),
        ("-INT", "-TERM", 143),
        ("-TERM", "-TERM", 143),
    ] {
        let (mut child, mut stdout) = spawn_child("hang");
        wait_for_line(&mut stdout, "ready");
        send(&child, first);
        let name = if first == "-TERM" {
            "SIGTERM"
        } else {
            "SIGINT"
        };
        wait_for_line(&mut stdout, &format!("cancelled: {name}"));
        send(&child, second);
        assert_eq!(
            child.wait().unwrap().code(),
            Some(status),
            "{first} then {second}"
        );
    }
    assert_eq!(phaseout::signal::SECOND_SIGNAL_EXIT_CODE, 130);
}

/// Two signals that arrive together are two: the handler counts them (a
/// signal-hook iterator merged them into one, and the process ran on).
#[test]
fn two_signals_at_once_count_as_two() {
    let (mut child, mut stdout) = spawn_child("raise-twice");
    wait_for_line(&mut stdout, "ready");
    assert_eq!(child.wait().unwrap().code(), Some(130));
}

/// After `stop()`, a new `cancel_on_terminate` gets the signal (before 0.2
/// the process was killed: a leftover "default" action ran first).
#[test]
fn a_handler_installed_after_stop_works() {
    let (mut child, mut stdout) = spawn_child("again-after-stop");
    wait_for_line(&mut stdout, "ready");
    send(&child, "-TERM");
    wait_for_line(&mut stdout, "cancelled: SIGTERM");
    wait_for_line(&mut stdout, "stopped in order");
    assert!(child.wait().unwrap().success());
}

/// After `stop()`, another library's handler (tokio's) gets the signal.
#[test]
fn another_librarys_handler_installed_after_stop_works() {
    let (mut child, mut stdout) = spawn_child("tokio-after-stop");
    wait_for_line(&mut stdout, "ready");
    send(&child, "-TERM");
    wait_for_line(&mut stdout, "tokio got SIGTERM");
    assert!(child.wait().unwrap().success());
}

/// After `stop()`, with no other handler, SIGTERM terminates as by default.
#[test]
fn stop_puts_back_the_default() {
    use std::os::unix::process::ExitStatusExt;
    let (mut child, mut stdout) = spawn_child("default-after-stop");
    wait_for_line(&mut stdout, "ready");
    send(&child, "-TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

/// A handler that was there before (tokio's) still gets the signal: ours
/// passes it on.
#[test]
fn a_handler_installed_before_still_gets_the_signal() {
    let (mut child, mut stdout) = spawn_child("tokio-before");
    wait_for_line(&mut stdout, "ready");
    send(&child, "-TERM");
    wait_for_line(&mut stdout, "tokio got SIGTERM");
    wait_for_line(&mut stdout, "cancelled: SIGTERM");
    assert!(child.wait().unwrap().success());
}

/// phaseout's handler covered by tokio's, stopped, and installed again:
/// one signal reaches both, once (no loop through the chain, no exit as if
/// it were a second signal).
#[test]
fn reinstalling_under_another_librarys_handler_works() {
    let (mut child, mut stdout) = spawn_child("covered");
    wait_for_line(&mut stdout, "ready");
    send(&child, "-TERM");
    wait_for_line(&mut stdout, "tokio got SIGTERM");
    wait_for_line(&mut stdout, "cancelled: SIGTERM");
    assert!(child.wait().unwrap().success());
}

/// A library installed over phaseout's, phaseout stopped, the library
/// uninstalled: SIGTERM terminates again (it was swallowed before the fix).
#[test]
fn after_a_covering_library_leaves_the_default_comes_back() {
    use std::os::unix::process::ExitStatusExt;
    let (mut child, mut stdout) = spawn_child("covered-uninstall");
    wait_for_line(&mut stdout, "ready");
    send(&child, "-TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

/// Covered at `stop()`, then reset to the default: installing again really
/// installs (it returned Ok and installed nothing before the fix).
#[test]
fn installing_again_after_the_covering_handler_was_reset_works() {
    let (mut child, mut stdout) = spawn_child("covered-reset");
    wait_for_line(&mut stdout, "ready");
    send(&child, "-INT");
    wait_for_line(&mut stdout, "cancelled: SIGINT");
    assert!(child.wait().unwrap().success());
}

/// SIGTERM blocked in every thread before the install (a mask inherited
/// from the parent process): phaseout's own thread unblocks it, so a
/// process-directed SIGTERM is delivered there and cancels (before, it
/// stayed pending and nothing happened).
#[test]
fn a_signal_blocked_before_the_install_still_cancels() {
    use std::os::unix::process::CommandExt;
    let (mut child, mut stdout) = spawn_child_with("blocked", |command| {
        // SAFETY: the closure runs in the forked child before exec and only
        // calls `sigemptyset`, `sigaddset` and `pthread_sigmask` on a local
        // set, all async-signal-safe. std resets the mask before it runs
        // the closure, so this block is what the exec'd child inherits.
        unsafe {
            command.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGTERM);
                if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    wait_for_line(&mut stdout, "ready");
    send(&child, "-TERM");
    wait_for_line(&mut stdout, "cancelled: SIGTERM");
    assert!(child.wait().unwrap().success());
}
