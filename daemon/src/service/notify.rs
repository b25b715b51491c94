//! The systemd notification protocol (`sd_notify`), as a few typed calls.
//!
//! Every call is a no-op outside systemd (no `NOTIFY_SOCKET`), so the same
//! binary runs from a terminal and as a `Type=notify` service. Failures to
//! notify are logged, never fatal: systemd will act on missing messages
//! (start timeout, watchdog) by itself.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends state changes to the service manager.
#[derive(Debug, Clone, Copy, Default)]
pub struct Notifier;

impl Notifier {
    /// Start-up (or a reload) is complete; `status` says what runs.
    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A reload begins. systemd ≥ 253 requires the monotonic timestamp.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[
                NotifyState::Reloading,
                now,
                NotifyState::Status("reloading the config"),
            ]),
            Err(e) => tracing::warn!("cannot read the monotonic clock for RELOADING: {e}"),
        }
    }

    /// Shutdown begins.
    pub fn stopping(&self) {
        send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// The pipeline is alive: reset the watchdog timer.
    pub fn watchdog(&self) {
        send(&[NotifyState::Watchdog]);
    }

    /// A line a person reads in `systemctl status`.
    pub fn status(&self, status: &str) {
        send(&[NotifyState::Status(status)]);
    }

    /// The watchdog period systemd expects pings within, if it set one.
    pub fn watchdog_period(&self) -> Option<Duration> {
        sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
    }
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}
