//! Puts the right memory map next to cortex-m-rt's `link.x`: the LM3S6965
//! (Cortex-M3) or the nRF51 of the micro:bit (Cortex-M0).
use std::{env, fs, path::PathBuf};

fn main() {
    let target = env::var("TARGET").unwrap_or_default();
    let memory = if target.starts_with("thumbv6m") {
        "memory-microbit.x"
    } else {
        "memory-lm3s6965.x"
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy(memory, out.join("memory.x")).expect("memory map present");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={memory}");
    println!("cargo:rerun-if-changed=build.rs");
}
