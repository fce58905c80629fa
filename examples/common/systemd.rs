//! Shared by the servers among the examples: systemd's notify protocol
//! (`sd_notify(3)`): `READY=1`, `STOPPING=1`, `STATUS=` and, while a stop
//! runs, `EXTEND_TIMEOUT_USEC=` on a schedule capped by the stop's own
//! deadline. Needs the `sd-notify` crate on Unix.

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

/// How often, while stopping, we ask systemd for more time.
const EXTEND_EVERY: Duration = Duration::from_secs(1);
/// How much more we ask for each time: one interval, plus one second for a
/// late tick (a busy executor, a slow fsync), so that one extension is
/// still running when the next one arrives.
const EXTEND_BY: Duration = Duration::from_secs(2);

/// A message to systemd (see `sd_notify(3)`).
#[cfg_attr(not(unix), allow(dead_code))] // never sent off Unix
pub enum Notify<'a> {
    /// `READY=1`: we listen, clients may come.
    Ready,
    /// `STOPPING=1`: shutdown started.
    Stopping,
    /// `STATUS=…`: a line for `systemctl status`.
    Status(&'a str),
    /// `EXTEND_TIMEOUT_USEC=…`: do not time our stop out before this much
    /// more time has passed, unless we ask again.
    ExtendTimeout(Duration),
}

/// Sends `messages` as one datagram to `NOTIFY_SOCKET`; without that
/// variable (not started by systemd, or not with `Type=notify`), sends
/// nothing and succeeds. The variable stays set, for the later messages.
#[cfg(unix)]
pub fn notify(messages: &[Notify]) -> io::Result<()> {
    use sd_notify::NotifyState;
    let status: Vec<String> = messages
        .iter()
        .map(|message| match message {
            // One line: a newline in a cause would start a new assignment.
            Notify::Status(text) => text.replace(['\n', '\r'], " "),
            _ => String::new(),
        })
        .collect();
    let states: Vec<NotifyState> = messages
        .iter()
        .zip(&status)
        .map(|(message, status)| match message {
            Notify::Ready => NotifyState::Ready,
            Notify::Stopping => NotifyState::Stopping,
            Notify::Status(_) => NotifyState::Status(status),
            Notify::ExtendTimeout(by) => {
                NotifyState::ExtendTimeoutUsec(u32::try_from(by.as_micros()).unwrap_or(u32::MAX))
            }
        })
        .collect();
    sd_notify::notify(false, &states)
}

/// No systemd off Unix: nothing to tell.
#[cfg(not(unix))]
pub fn notify(_messages: &[Notify]) -> io::Result<()> {
    Ok(())
}

/// While the staged stop runs: every [`EXTEND_EVERY`], asks systemd for
/// [`EXTEND_BY`] more, so `TimeoutStopSec=` does not kill a stop that is
/// still within our own deadlines, but never for more than what is left
/// until `deadline` (the end of the grace and the abort grace): the time
/// budget is the operator's, set with `--grace` and `--abort-grace`; we
/// only ask for what our own deadlines need. Past them the staged stop
/// gives up by itself (a few milliseconds later, as the abort grace is
/// timed from the abort; being killed then loses nothing more than giving
/// up does), and if even that hangs, systemd's own timeout and its SIGKILL
/// must be free to act: this task keeps running however stuck the
/// components are, so without the cap it would postpone the kill forever.
/// `sleep_until` is the executor's timer (`smol::Timer::at`, tokio's
/// `sleep_until`). Never finishes; the caller drops it once the stop is
/// over.
pub async fn extend_stop_timeout<T, F: Future>(
    deadline: Option<Instant>,
    mut sleep_until: impl FnMut(Instant) -> F,
) -> T {
    let mut tick = Instant::now();
    loop {
        let left = deadline.map_or(EXTEND_BY, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        });
        if left.is_zero() {
            break;
        }
        let _ = notify(&[Notify::ExtendTimeout(EXTEND_BY.min(left))]);
        // Ticks on a fixed schedule, so late wake-ups do not add up.
        tick += EXTEND_EVERY;
        sleep_until(tick).await;
    }
    std::future::pending().await
}
