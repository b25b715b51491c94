//! The periodic statistics: one log line per camera, its MQTT stats
//! topic, the STATUS line, and the board the HTTP endpoint reads.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::frame::CameraState;
use crate::http::Board;
use crate::mqtt::MqttHandle;
use crate::pipeline::{CameraStats, Pipeline};

/// Copies the cameras' counters, MQTT's and the pool's into the board.
pub(super) fn update_board(
    board: &Board,
    pipeline: &Pipeline,
    mqtt: &MqttHandle,
    stats: Vec<CameraStats>,
) {
    board.update(
        stats,
        pipeline.counters(),
        mqtt.stats(),
        pipeline.workers().stats().queued,
    );
}

/// Turns cumulative camera counters into per-interval rates.
pub(super) struct StatsWindow {
    since: Instant,
    last: BTreeMap<String, CameraStats>,
}

impl StatsWindow {
    pub(super) fn new(pipeline: &Pipeline) -> Self {
        StatsWindow {
            since: Instant::now(),
            last: pipeline
                .stats()
                .into_iter()
                .map(|s| (s.camera.clone(), s))
                .collect(),
        }
    }

    /// Logs one line per camera, publishes it on the camera's MQTT stats
    /// topic, and returns a one-line summary.
    pub(super) fn report(&mut self, pipeline: &Pipeline, mqtt: &MqttHandle) -> String {
        let elapsed = self.since.elapsed().as_secs_f64().max(1e-3);
        let mut parts = Vec::new();
        let now: BTreeMap<String, CameraStats> = pipeline
            .stats()
            .into_iter()
            .map(|s| (s.camera.clone(), s))
            .collect();
        for (name, s) in &now {
            let prev = self.last.get(name);
            let delta = |f: fn(&CameraStats) -> u64| f(s) - prev.map_or(0, f).min(f(s));
            let fps = delta(|s| s.sampled) as f64 / elapsed;
            let analysed_fps = delta(|s| s.analysed) as f64 / elapsed;
            let dropped = delta(|s| s.dropped);
            let queued = pipeline.workers().stats().queued;
            tracing::info!(
                camera = %name,
                state = %s.state,
                fps = format_args!("{fps:.2}"),
                analysed_fps = format_args!("{analysed_fps:.2}"),
                // Totals since the start, like received and analysed; the
                // interval's drops beside them (issue 41).
                received = s.received,
                analysed = s.analysed,
                dropped = s.dropped,
                dropped_interval = dropped,
                reconnects = s.reconnects,
                "camera stats"
            );
            let outbox = mqtt.stats();
            mqtt.publish_stats(
                name,
                serde_json::json!({
                    "camera": name,
                    "state": s.state.to_string(),
                    "fps": (fps * 100.0).round() / 100.0,
                    "analysed_fps": (analysed_fps * 100.0).round() / 100.0,
                    "sampled": s.sampled,
                    "received": s.received,
                    "dropped": s.dropped,
                    "dropped_interval": dropped,
                    "reconnects": s.reconnects,
                    "interval_s": (elapsed * 1000.0).round() / 1000.0,
                    "outbox_pending": outbox.pending,
                    "outbox_dropped": outbox.dropped,
                    "outbox_unstored": outbox.unstored,
                    "outbox_unstored_dropped": outbox.unstored_dropped,
                    // The model stages (zeros without a model).
                    "analysed": s.analysed,
                    "encoded": s.encoded,
                    "retention": (f64::from(s.retention) * 1000.0).round() / 1000.0,
                    "retention_mean": s.retention_mean(),
                    "changing": s.changing,
                    "events": s.events,
                    "held_back": s.held_back,
                    "nothing_changed": s.nothing_changed,
                    "memory": s.memory,
                    "queue_depth": queued,
                    "pending": s.pending,
                    "paused": s.paused,
                    "skipped_paused": s.skipped_paused,
                }),
            );
            parts.push(match s.state {
                CameraState::Up if s.paused => format!("{name}: {fps:.1} fps, analysis paused"),
                CameraState::Up => {
                    format!("{name}: {fps:.1} fps, {analysed_fps:.1} analysed, {dropped} dropped")
                }
                ref other => format!("{name}: {other}"),
            });
        }
        let workers = pipeline.workers().stats();
        tracing::debug!(queued = ?workers.queued, completed = workers.completed, panicked = workers.panicked, "model worker stats");
        self.since = Instant::now();
        self.last = now;
        parts.join("; ")
    }
}
