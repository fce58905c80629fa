//! `signal::cancel_on_terminate` with real signals, sent to a child process:
//! this test binary runs itself again with `PHASEOUT_SIGNAL_CHILD` set, and
//! the child waits for signals like a server's `main` would.
#![cfg(all(unix, feature = "signal"))]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use phaseout::Phaser;

const CHILD_ENV: &str = "PHASEOUT_SIGNAL_CHILD";

/// The child process: what a `main` would do.
#[test]
fn signal_child_process() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return; // only meaningful when run by the tests below
    };
    let root = Phaser::named("app");
    let worker = root.child_named("worker").unwrap();
    let handler = phaseout::signal::cancel_on_terminate(root.token()).unwrap();
    println!("ready");
    worker.wait_cancelled();
    println!("cancelled");
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

fn spawn_child(mode: &str) -> (Child, BufReader<ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
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
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "child ended before printing {wanted:?}"
        );
        // The harness may print "test ... " on the same line first.
        if line.trim().ends_with(wanted) {
            return;
        }
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
fn sigterm_cancels_and_the_program_stops_in_order() {
    let (mut child, mut stdout) = spawn_child("normal");
    wait_for_line(&mut stdout, "ready");
    send(&child, "-TERM");
    wait_for_line(&mut stdout, "cancelled");
    wait_for_line(&mut stdout, "stopped in order");
    assert!(child.wait().unwrap().success());
}

#[test]
fn sigint_cancels_too() {
    let (mut child, mut stdout) = spawn_child("normal");
    wait_for_line(&mut stdout, "ready");
    send(&child, "-INT");
    wait_for_line(&mut stdout, "cancelled");
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_second_signal_exits_at_once_with_130() {
    let (mut child, mut stdout) = spawn_child("hang");
    wait_for_line(&mut stdout, "ready");
    send(&child, "-TERM");
    wait_for_line(&mut stdout, "cancelled");
    send(&child, "-INT");
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(phaseout::signal::SECOND_SIGNAL_EXIT_CODE)
    );
}
