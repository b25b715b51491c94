//! Writing to the outbox through the in-memory queue in front of it
//! (`mqtt::unstored`: a full disk loses nothing), and the task that retries
//! that queue every second while it holds anything.

use super::*;

impl Shared {
    /// Writes `message` to the outbox, or has it wait in memory when the
    /// outbox cannot take it (blocking: SQLite). Counts what the full
    /// outbox dropped and wakes the pump or the retry task.
    pub(super) fn store(&self, message: Pending, event: Option<Event>) -> Stored {
        let room = self.room();
        let stored = {
            let mut outbox = self.outbox();
            self.unstored()
                .store(&mut outbox, room.as_ref(), message, event)
        };
        self.after_store(&stored);
        stored
    }

    /// Retries what waits in memory (blocking: SQLite).
    pub(super) fn flush_unstored(&self) -> Stored {
        let room = self.room();
        let stored = {
            let mut outbox = self.outbox();
            self.unstored().flush(&mut outbox, room.as_ref())
        };
        self.after_store(&stored);
        stored
    }

    pub(super) fn after_store(&self, stored: &Stored) {
        if stored.outbox_dropped > 0 {
            let dropped = stored.outbox_dropped;
            let total = self.dropped.fetch_add(dropped, Ordering::Relaxed) + dropped;
            tracing::warn!(
                dropped,
                total,
                "outbox full (mqtt.outbox_capacity): oldest messages dropped"
            );
        }
        if stored.waiting {
            self.retry.notify_one();
        }
        self.wake.notify_one();
    }
}

/// Retries the messages waiting in memory every second while there are
/// any (a full disk); idle otherwise. At the stop, one last try.
pub(super) async fn retry_unstored(shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            () = shared.retry.notified() => {}
        }
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let s = shared.clone();
            match tokio::task::spawn_blocking(move || s.flush_unstored()).await {
                Ok(stored) if stored.waiting => {}
                _ => break,
            }
        }
    }
    let s = shared.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if s.unstored().len() > 0 {
            s.flush_unstored();
            s.unstored().abandon();
        }
    })
    .await;
}
