//! systemd's watchdog, fed from the stages' heartbeats alone
//! (docs/architecture.md §8).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Notifier;
use crate::health::Heartbeats;

/// Pings systemd's watchdog at half its period while every stage's
/// heartbeat is fresh; withholds the pings (and says why) while one is
/// stalled, so that systemd restarts a stuck daemon. A task of its own:
/// a reload or a slow stop in the service loop never delays a ping.
pub(super) async fn watchdog(
    heartbeats: Heartbeats,
    period: Duration,
    stall_timeout_ms: Arc<AtomicU64>,
    stalled: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let notifier = Notifier;
    // systemd recommends pinging at half the period.
    let mut tick = tokio::time::interval(period / 2);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let timeout = Duration::from_millis(stall_timeout_ms.load(Ordering::Relaxed));
        let stalls = heartbeats.stalled(timeout);
        match stalls.first() {
            None => {
                if stalled.swap(false, Ordering::Relaxed) {
                    tracing::info!("pipeline made progress again; watchdog pings resume");
                }
                notifier.watchdog();
            }
            Some(worst) if !stalled.swap(true, Ordering::Relaxed) => {
                let line = format!(
                    "pipeline stalled: {} has made no progress for {:.1} s; withholding watchdog pings so that systemd restarts glimpse",
                    worst.stage,
                    worst.silent_for.as_secs_f64()
                );
                tracing::error!(stalled = stalls.len(), "{line}");
                notifier.status(&line);
            }
            Some(_) => {}
        }
    }
}
