//! phaseout on bare-metal RISC-V (riscv32imc: no atomic read-modify-write)
//! under QEMU's `virt` machine, driven by a hand-written executor: the
//! library needs no particular executor on bare metal either.
//!
//! Run from this directory: `cargo run --release`.
#![no_std]
#![no_main]

extern crate alloc;

mod executor;
#[path = "../../firmware-common/scenario.rs"]
mod scenario;

mod shutdown {
    pub use phaseout::{Phaser, Token};
}

use alloc::boxed::Box;
use alloc::vec;
use core::fmt::Write;
use core::mem::MaybeUninit;

use embedded_alloc::LlffHeap as Heap;

#[global_allocator]
static HEAP: Heap = Heap::empty();
const HEAP_SIZE: usize = 64 * 1024;

/// Samples taken before the power fails.
const SAMPLES_BEFORE_POWER_FAIL: u32 = 25;

/// The 16550 UART of QEMU `virt`.
const UART: *mut u8 = 0x1000_0000 as *mut u8;
/// QEMU `virt`'s test device: a write ends the emulation with a status.
const TEST_DEVICE: *mut u32 = 0x0010_0000 as *mut u32;

struct Uart;

impl Write for Uart {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        for byte in text.bytes() {
            // SAFETY: the UART's transmit register on QEMU `virt`; a volatile
            // byte write is how it is driven, and QEMU needs no set-up.
            unsafe { UART.write_volatile(byte) }
        }
        Ok(())
    }
}

fn log(args: core::fmt::Arguments<'_>) {
    let _ = writeln!(Uart, "{args}");
}

/// Ends the emulation: status 0 for success, 1 for failure.
fn exit(success: bool) -> ! {
    let code = if success { 0x5555 } else { (1 << 16) | 0x3333 };
    // SAFETY: the test device's register on QEMU `virt`; writing it stops
    // the machine.
    unsafe { TEST_DEVICE.write_volatile(code) }
    loop {
        riscv::asm::wfi();
    }
}

#[riscv_rt::entry]
fn main() -> ! {
    {
        static mut HEAP_MEMORY: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
        // SAFETY: called once, before the first allocation; the memory is a
        // static used for nothing else.
        unsafe { HEAP.init(core::ptr::addr_of_mut!(HEAP_MEMORY) as usize, HEAP_SIZE) }
    }
    let (root, [logger, filter, sampler]) = scenario::tree();
    let token = root.token();
    let tasks: vec::Vec<executor::Task> = vec![
        Box::pin(scenario::logger(logger, log)),
        Box::pin(scenario::filter(filter, log)),
        Box::pin(scenario::sampler(sampler, log)),
        Box::pin(scenario::power_fail(token, SAMPLES_BEFORE_POWER_FAIL, log)),
        Box::pin(async move { root.turn().await }),
    ];
    let outcome = executor::run(tasks).and_then(|()| scenario::check(log));
    match outcome {
        Ok(()) => {
            log(format_args!("all stopped in order, nothing lost"));
            exit(true)
        }
        Err(problem) => {
            log(format_args!("firmware failed: {problem}"));
            exit(false)
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    log(format_args!("firmware failed: {info}"));
    exit(false)
}
