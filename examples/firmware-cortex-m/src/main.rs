//! phaseout on embassy, on a Cortex-M under QEMU: a sensor sampler, a filter
//! and a flash logger shut down in order when a power-fail task cancels the
//! tree, and the firmware checks that nothing was lost.
//!
//! Run from this directory: `cargo run --release` (Cortex-M3, lm3s6965evb)
//! or `cargo run --release --target thumbv6m-none-eabi --features m0`
//! (Cortex-M0, micro:bit, no compare-and-swap).
#![no_std]
#![no_main]

extern crate alloc;

#[path = "../../firmware-common/scenario.rs"]
mod scenario;

/// What the scenario uses to shut down: phaseout, or (feature `baseline`,
/// for size comparison only) the hand-written flags in `baseline.rs`.
#[cfg(not(feature = "baseline"))]
mod shutdown {
    pub use phaseout::{Phaser, Token};
}
#[cfg(feature = "baseline")]
#[path = "baseline.rs"]
mod shutdown;

use core::mem::MaybeUninit;

use cortex_m as _; // links the critical-section implementation
use cortex_m_semihosting::debug;
#[cfg(not(feature = "defmt"))]
use cortex_m_semihosting::hprintln;
use embassy_executor::Spawner;
use embedded_alloc::LlffHeap as Heap;
use shutdown::{Phaser, Token};

#[global_allocator]
static HEAP: Heap = Heap::empty();
const HEAP_SIZE: usize = 8 * 1024;

/// Samples taken before the power fails.
const SAMPLES_BEFORE_POWER_FAIL: u32 = 25;

#[cfg(not(feature = "defmt"))]
fn log(args: core::fmt::Arguments<'_>) {
    hprintln!("{}", args);
}

/// With feature `defmt`, everything goes out as `defmt` frames (the
/// scenario's lines are formatted on the device; phaseout's events are
/// not): the host decodes them with `defmt-print`.
#[cfg(feature = "defmt")]
fn log(args: core::fmt::Arguments<'_>) {
    defmt::info!("{}", defmt::Display2Format(&args));
}

#[cfg(feature = "defmt")]
use defmt_semihosting as _; // the global `defmt` logger

#[embassy_executor::task]
async fn sampler(phaser: Phaser) {
    scenario::sampler(phaser, log).await;
}

#[embassy_executor::task]
async fn filter(phaser: Phaser) {
    scenario::filter(phaser, log).await;
}

#[embassy_executor::task]
async fn logger(phaser: Phaser) {
    scenario::logger(phaser, log).await;
}

#[embassy_executor::task]
async fn power_fail(root: Token) {
    scenario::power_fail(root, SAMPLES_BEFORE_POWER_FAIL, log).await;
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    {
        static mut HEAP_MEMORY: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
        // SAFETY: called once, before the first allocation; the memory is a
        // static used for nothing else.
        unsafe { HEAP.init(core::ptr::addr_of_mut!(HEAP_MEMORY) as usize, HEAP_SIZE) }
    }
    let (root, [log_node, filter_node, sampler_node]) = scenario::tree();
    // Spawned dependents-last on purpose: the order of shutdown comes from
    // the tree, not from the order of spawning.
    spawner.spawn(logger(log_node).expect("task slot free"));
    spawner.spawn(filter(filter_node).expect("task slot free"));
    spawner.spawn(sampler(sampler_node).expect("task slot free"));
    spawner.spawn(power_fail(root.token()).expect("task slot free"));

    root.turn().await;
    #[cfg(all(feature = "defmt", not(feature = "baseline")))]
    defmt::info!("at the root's turn: {}", root.report());
    match scenario::check(log) {
        Ok(()) => {
            log(format_args!("all stopped in order, nothing lost"));
            debug::exit(debug::EXIT_SUCCESS);
        }
        Err(problem) => panic!("{problem}"),
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    log(format_args!("firmware failed: {}", info));
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::udf();
    }
}
