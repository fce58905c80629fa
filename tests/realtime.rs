//! Guarantee 12: a real-time thread never livelocks against a preempted,
//! lower-priority holder of a node's child-list lock.
//!
//! Two `SCHED_FIFO` threads pinned to one CPU. The low-priority one cancels a
//! parent with many children: the cancel walk holds the parent's lock while
//! it collects them. The high-priority one wakes up in the middle of that
//! and drops a child, which needs the same lock. If it spun until the lock
//! is free, it would spin forever: the holder cannot run on that CPU while
//! it spins. With the spin-then-sleep lock it sleeps, the holder finishes
//! and wakes it.
//!
//! Only with `std`: without it there is nothing to sleep on and a waiter
//! spins, so this scenario livelocks by design (docs/architecture.md).
//!
//! Needs permission to use `SCHED_FIFO` (root, or `CAP_SYS_NICE`); where it is
//! refused the test says so and passes without running. The scenario runs in
//! a child process with a watchdog, because a livelocked real-time thread
//! cannot be stopped from inside.
#![cfg(all(feature = "std", target_os = "linux", not(loom), not(miri)))]

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{in_isolation, isolated, Isolated};
use phaseout::Phaser;

/// Children of the parent whose lock the walk holds. Collecting them takes
/// milliseconds, far longer than the high thread's 0.3 ms nap.
const CHILDREN: usize = 2_000_000;

/// Makes the calling thread `SCHED_FIFO` with `priority` and pins it to CPU 0.
fn realtime_on_cpu0(priority: i32) -> std::io::Result<()> {
    // SAFETY: plain system calls on the calling thread (pid 0), with
    // initialised arguments that outlive the calls.
    unsafe {
        let mut cpus: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut cpus);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &cpus) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let param = libc::sched_param {
            sched_priority: priority,
        };
        if libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The scenario, in the child process. Prints what happened.
fn high_priority_drop_during_a_long_walk() {
    let parent = Phaser::named("parent");
    let mut children: Vec<_> = (0..CHILDREN).map(|_| parent.child().unwrap()).collect();
    let victim = children.pop().unwrap();

    let (go, wait_for_go) = mpsc::channel::<()>();
    let high = thread::spawn(move || -> Result<Duration, std::io::Error> {
        realtime_on_cpu0(20)?;
        wait_for_go.recv().unwrap();
        thread::sleep(Duration::from_micros(300)); // the walk starts meanwhile
        let start = Instant::now();
        drop(victim); // needs the parent's lock, which the walk holds
        Ok(start.elapsed())
    });
    if let Err(refused) = realtime_on_cpu0(10) {
        println!("SKIP: SCHED_FIFO refused here ({refused})");
        return;
    }
    let start = Instant::now();
    go.send(()).unwrap(); // the high thread preempts us, then naps
    parent.cancel();
    let walk = start.elapsed();
    match high.join().unwrap() {
        Ok(blocked) => println!(
            "RESULT: high-priority drop took {blocked:?}; the walk took {walk:?}; all done in {:?}",
            start.elapsed()
        ),
        Err(refused) => {
            println!("SKIP: SCHED_FIFO refused here ({refused})");
            return;
        }
    }
    assert!(parent.is_cancelled());
    drop(children);
    assert!(parent.is_turn());
}

#[test]
fn realtime_thread_sleeps_instead_of_spinning_on_a_preempted_holder() {
    if in_isolation() {
        high_priority_drop_during_a_long_walk();
        return;
    }
    let name = "realtime_thread_sleeps_instead_of_spinning_on_a_preempted_holder";
    match isolated(name, Duration::from_secs(60)) {
        Isolated::TimedOut { stdout } => {
            panic!("livelock: the high-priority thread never got the lock in 60 s\n{stdout}")
        }
        Isolated::Exited(output) => {
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{stdout}\n{stderr}");
            let line = stdout
                .lines()
                .find_map(|line| {
                    let at = line.find("RESULT:").or_else(|| line.find("SKIP:"))?;
                    Some(&line[at..])
                })
                .unwrap_or_else(|| panic!("the scenario printed no result:\n{stdout}\n{stderr}"));
            println!("{line}");
        }
    }
}
