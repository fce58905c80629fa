//! Shared by the examples: print phaseout's `tracing` events as a timeline
//! when asked (`--trace`, or `RUST_LOG` set), to stderr, with the time since
//! the program started. The events exist only in a build with feature
//! `tracing`: `cargo run --example ordered --features tracing -- --trace`.

use tracing_subscriber::fmt::time::Uptime;
use tracing_subscriber::EnvFilter;

/// Installs the timeline printer if `--trace` was passed or `RUST_LOG` is
/// set (`RUST_LOG` then chooses what is shown; `--trace` alone shows
/// `phaseout=debug`: every labeled node).
pub fn init_if_asked() {
    let asked = std::env::args().any(|arg| arg == "--trace");
    if !asked && std::env::var_os("RUST_LOG").is_none() {
        return;
    }
    if cfg!(not(feature = "tracing")) {
        eprintln!("note: phaseout logs its events only when built with `--features tracing`");
    }
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("phaseout=debug"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(Uptime::default())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
