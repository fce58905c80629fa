//! The path of [`cancel_on_terminate`](super::cancel_on_terminate) off
//! Unix: the `ctrlc` crate's console handler.

use core::sync::atomic::{AtomicUsize, Ordering};
use std::io;

use super::{TerminateHandler, SECOND_SIGNAL_EXIT_CODE};
use crate::Token;

pub(super) fn install(token: Token) -> io::Result<TerminateHandler> {
    let seen = AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            token.cancel_with("console event");
        } else {
            std::process::exit(SECOND_SIGNAL_EXIT_CODE);
        }
    })
    .map_err(io::Error::other)?;
    Ok(TerminateHandler {
        thread: None,
        install: 0,
        pid: std::process::id(),
    })
}

pub(super) fn stop(_install: u64) -> bool {
    // ctrlc cannot remove its handler; it stays, and keeps cancelling.
    false
}
