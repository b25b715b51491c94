//! The outbox pump: outbox rows to the broker with QoS 1, at most the
//! window at a time, each row deleted on its PUBACK; rows that can never go
//! to the dead letters; and the drain at shutdown.

use super::*;

impl Driver {
    /// Queues outbox rows for the broker while the window has room.
    pub(super) async fn pump(&mut self, s: &mut Session) {
        while s.connected && s.outstanding() < s.window {
            let (after, room) = (s.last_sent, s.window - s.outstanding());
            let rows = match blocking(&self.shared, move |o| o.after(after, room)).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!("{e}");
                    return;
                }
            };
            if rows.is_empty() {
                return;
            }
            for row in rows {
                let topic = row
                    .response_topic
                    .clone()
                    .unwrap_or_else(|| self.topic(&row.camera, row.channel.as_str()));
                let size = (
                    row.payload.len(),
                    row.correlation.as_ref().map_or(0, Vec::len),
                );
                let sent = client::check_publish(&topic, size.0, size.1, s.max_packet)
                    .map_err(PublishError::Refused)
                    .and_then(|()| {
                        s.client.publish(
                            &topic,
                            true,
                            false,
                            row.payload.into_bytes(),
                            row.correlation,
                        )
                    });
                match sent {
                    Ok(()) => s.queued.push_back((row.id, topic)),
                    // The request queue is full; the next ack pumps again.
                    Err(PublishError::Busy) => {
                        tracing::debug!("publish queue full");
                        return;
                    }
                    Err(PublishError::Refused(reason)) => {
                        self.dead_letter(row.id, topic, reason).await;
                    }
                }
                s.last_sent = row.id;
            }
        }
    }

    /// Moves an outbox row that cannot be delivered to the dead letters,
    /// logged once (the row is never tried again).
    pub(super) async fn dead_letter(&self, row: i64, topic: String, reason: String) {
        let (t, r) = (topic.clone(), reason.clone());
        let moved = blocking(&self.shared, move |o| {
            Ok((o.dead_letter(row, &t, &r)?, o.dead_letters()))
        })
        .await;
        match moved {
            Ok((true, count)) => {
                self.shared.dead_letters.store(count, Ordering::Relaxed);
                tracing::warn!(
                row,
                topic,
                    "message not deliverable, moved to the dead letters (`glimpse events` lists them): {reason}"
                );
            }
            Ok((false, _)) => {}
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// Shutdown: `offline`, then the outbox for a while, then DISCONNECT.
    pub(super) async fn drain(&mut self, s: &mut Session) {
        if !s.connected {
            return;
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config.drain_timeout_ms);
        self.pump(s).await;
        while s.outstanding() > 0 {
            let note = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                note = s.notes.recv() => note,
            };
            match note {
                Some(Ok(note)) => {
                    if self.on_note(s, note).await.is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
        self.publish(
            s,
            &format!("{}/status", self.config.prefix),
            true,
            "offline".into(),
        );
        s.client.disconnect();
        // Let the poller write the last packets (offline, DISCONNECT).
        let _ = tokio::time::timeout(Duration::from_millis(300), async {
            while let Some(Ok(_)) = s.notes.recv().await {}
        })
        .await;
    }
}
