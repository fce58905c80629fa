//! A minimal executor: a fixed set of tasks, each re-polled only after its
//! waker was called. No interrupts exist here, so if no task is woken while
//! some are unfinished, nothing ever will be: that is a lost wake-up, and the
//! executor reports it instead of hanging.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

/// The most tasks one `run` takes.
pub const MAX_TASKS: usize = 8;

/// `WOKEN[i]`: task `i` must be polled again.
static WOKEN: [AtomicBool; MAX_TASKS] = [const { AtomicBool::new(false) }; MAX_TASKS];

pub type Task = Pin<Box<dyn Future<Output = ()>>>;

// The waker's data pointer is the task index, not an address: cloning and
// dropping have nothing to manage.
static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop);

fn clone(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

fn wake(data: *const ()) {
    WOKEN[data as usize].store(true, Ordering::Release);
}

fn drop(_: *const ()) {}

fn waker_for(index: usize) -> Waker {
    // SAFETY: every vtable function accepts any index below MAX_TASKS (the
    // only values made here), and none of them frees or dereferences `data`.
    unsafe { Waker::from_raw(RawWaker::new(index as *const (), &VTABLE)) }
}

/// Runs `tasks` to completion. `Err` names a lost wake-up.
pub fn run(tasks: Vec<Task>) -> Result<(), &'static str> {
    assert!(tasks.len() <= MAX_TASKS, "too many tasks");
    let mut tasks: Vec<Option<Task>> = tasks.into_iter().map(Some).collect();
    for woken in &WOKEN[..tasks.len()] {
        woken.store(true, Ordering::Release);
    }
    loop {
        let mut polled_any = false;
        for (index, slot) in tasks.iter_mut().enumerate() {
            let Some(task) = slot else { continue };
            // Load-then-store is enough: one hart, and no interrupt handler
            // ever wakes a task (this target has no atomic swap).
            if !WOKEN[index].load(Ordering::Acquire) {
                continue;
            }
            WOKEN[index].store(false, Ordering::Release);
            polled_any = true;
            let waker = waker_for(index);
            if let Poll::Ready(()) = task.as_mut().poll(&mut Context::from_waker(&waker)) {
                *slot = None;
            }
        }
        if tasks.iter().all(Option::is_none) {
            return Ok(());
        }
        if !polled_any {
            return Err("tasks left waiting and none was woken: lost wake-up");
        }
    }
}
