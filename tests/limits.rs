//! The count limits, for real, on 32-bit targets, where safe code reaches
//! them in seconds (guarantees 11 and 13):
//!
//! * leaking tokens with `mem::forget` until a node's reference count would
//!   pass `isize::MAX` aborts the process instead of wrapping (a wrapped
//!   count would free a node its `Phaser` still uses);
//! * a parent with the most live children its state word can count
//!   (2^24 − 1 on 32-bit targets) refuses one more with a panic that
//!   leaves it usable: it can still be cancelled and its children drained.
//!
//! Billions of operations: they run only in release builds
//! (`cargo test --release --target i686-unknown-linux-gnu --test limits`),
//! each in its own process with a watchdog.
#![cfg(all(target_pointer_width = "32", not(loom), not(miri)))]

mod common;

use std::time::Duration;

use common::{in_isolation, isolated, Isolated};
use phaseout::Phaser;

fn run(name: &str) -> std::process::Output {
    match isolated(name, Duration::from_secs(240)) {
        Isolated::Exited(output) => output,
        Isolated::TimedOut { stdout } => panic!("{name}: hung\n{stdout}"),
    }
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "billions of operations: run with --release"
)]
fn leaking_tokens_past_the_count_limit_aborts() {
    if in_isolation() {
        let root = Phaser::new();
        let token = root.token();
        for _ in 0..u32::MAX {
            std::mem::forget(token.clone());
        }
        println!("survived: the count wrapped");
        return;
    }
    let output = run("leaking_tokens_past_the_count_limit_aborts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stdout.contains("survived"), "{stdout}");
    assert!(stderr.contains("aborting"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(output.status.signal(), Some(6), "{:?}", output.status);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "2 million nodes: run with --release")]
fn a_full_parent_refuses_with_a_panic_and_stays_usable() {
    if in_isolation() {
        let parent = Phaser::named("full");
        let mut children = Vec::new();
        let refused = loop {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parent.child())) {
                Ok(child) => children.push(child.unwrap()),
                Err(panic) => break panic,
            }
        };
        let message = refused.downcast_ref::<String>().unwrap();
        println!("{} children, then: {message}", children.len());
        assert_eq!(children.len(), (1 << 21) - 1);
        assert_eq!(parent.live_children(), children.len());
        parent.cancel(); // spun forever in 0.1: the panic kept the lock
        assert!(children.iter().all(Phaser::is_cancelled));
        drop(children);
        assert!(parent.is_turn());
        println!("usable after the panic");
        return;
    }
    let output = run("a_full_parent_refuses_with_a_panic_and_stays_usable");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("cannot have more than 2097151 live children"),
        "{stdout}"
    );
    assert!(stdout.contains("usable after the panic"), "{stdout}");
}
