//! `GET /metrics`: the Prometheus text format (0.0.4), encoded by
//! `prometheus-client` from a copy of the board at each scrape. Names
//! follow Prometheus' conventions: `glimpse_…_total` counters, `_seconds`
//! and `_bytes` units, one `camera` label per camera.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType::{self, Counter, Gauge};
use prometheus_client::registry::Registry;

use super::board::{Board, CameraView, Figures};
use crate::frame::CameraState;
use crate::histogram::Counts;
use crate::infer::timing::{self, Call};
use crate::mqtt::MqttStats;
use crate::pipeline::AnalysisCounters;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Reads the board at each scrape.
#[derive(Debug)]
struct BoardCollector(Arc<Board>);

/// The registry `/metrics` encodes.
pub fn registry(board: Arc<Board>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(BoardCollector(board)));
    registry
}

/// The metrics as text.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::with_capacity(16 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// Encodes one family: `rows` are its label sets and values.
fn family<'a, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (Labels<'a>, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in rows {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histogram_family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels<'a>, Counts)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, counts) in rows {
        // The encoder takes per-bucket counts and sums them up itself.
        let mut below = 0;
        let per_bucket: Vec<(f64, u64)> = counts
            .buckets
            .iter()
            .map(|&(bound, cumulative)| {
                let n = cumulative - below;
                below = cumulative;
                (bound, n)
            })
            .collect();
        metric
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(counts.sum, counts.count, &per_bucket, None)?;
    }
    Ok(())
}

/// Resident memory of this process, from /proc (Linux; `VmRSS` is in kB
/// whatever the page size).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A family with one series per camera: name, help, value.
type PerCamera<T> = (&'static str, &'static str, fn(&CameraView) -> T);

/// A family of the MQTT stage: name, help, kind (counter or gauge), value.
type OfMqtt = (
    &'static str,
    &'static str,
    MetricType,
    fn(&MqttStats) -> u64,
);

/// The per-camera counters.
const CAMERA_COUNTERS: &[PerCamera<u64>] = &[
    ("glimpse_frames_sampled", "Frames kept by the camera's sampler (its fps).", |c| c.stats.sampled),
    ("glimpse_frames_analysed", "Frames the model stages analysed (pixel gate checked).", |c| live(c, |x| &x.analysed)),
    ("glimpse_frames_dropped", "Frames the camera's queue dropped because the model workers were behind.", |c| c.stats.dropped),
    ("glimpse_encoder_calls", "Frames the pixel gate sent to the vision encoder.", |c| live(c, |x| &x.encoded)),
    (
        "glimpse_frames_skipped",
        "Analysed frames the pixel gate kept from the encoder (nothing changed).",
        |c| live(c, |x| &x.analysed).saturating_sub(live(c, |x| &x.encoded)),
    ),
    ("glimpse_tokens_kept", "Visual tokens kept by change-blind token dropping.", |c| live(c, |x| &x.kept_tokens)),
    ("glimpse_tokens", "Visual tokens of every analysed frame (a skipped frame counts whole).", |c| live(c, |x| &x.total_tokens)),
    ("glimpse_frames_paused", "Sampled frames left unanalysed while the camera was paused.", |c| c.stats.skipped_paused),
    (
        "glimpse_answers_held_back",
        "Descriptions and watch-rule answers held back because the model was less sure of them than trigger.min_confidence.",
        |c| c.stats.held_back,
    ),
    (
        "glimpse_descriptions_nothing_changed",
        "Descriptions not published because they said only that nothing changed.",
        |c| c.stats.nothing_changed,
    ),
    ("glimpse_camera_reconnects", "Capture sessions reopened after failures, ends of stream or loops.", |c| c.stats.reconnects),
    ("glimpse_model_errors", "Encoder or model failures on a camera's frames.", |c| live(c, |x| &x.errors)),
];

/// The per-camera gauges.
const CAMERA_GAUGES: &[PerCamera<i64>] = &[
    (
        "glimpse_camera_up",
        "1 while the camera's capture is up, 0 while it starts, retries, failed or ended.",
        |c| i64::from(c.stats.state == CameraState::Up),
    ),
    (
        "glimpse_camera_paused",
        "1 while the camera's analysis is paused (Home Assistant's switch, analysis/set).",
        |c| i64::from(c.stats.paused),
    ),
    (
        "glimpse_frames_pending",
        "Frames waiting in the camera's queue.",
        |c| c.stats.pending as i64,
    ),
];

/// The MQTT stage's figures.
const MQTT_FAMILIES: &[OfMqtt] = &[
    ("glimpse_mqtt_connected", "1 while the MQTT broker connection is up.", Gauge, |m| u64::from(m.connected)),
    ("glimpse_outbox_pending", "Messages in the durable outbox waiting for the broker.", Gauge, |m| m.pending),
    ("glimpse_outbox_acknowledged", "Messages the broker acknowledged since start.", Counter, |m| m.acknowledged),
    (
        "glimpse_outbox_dropped",
        "Messages dropped from a full outbox since start (mqtt.outbox_capacity).",
        Counter,
        |m| m.dropped,
    ),
    (
        "glimpse_outbox_dead_letters",
        "Messages that cannot be delivered, kept in the dead-letter table.",
        Gauge,
        |m| m.dead_letters,
    ),
    (
        "glimpse_outbox_unstored",
        "Messages waiting in memory because the outbox cannot be written (a full disk).",
        Gauge,
        |m| m.unstored,
    ),
    ("glimpse_outbox_unstored_peak", "The most messages that waited in memory at once since start.", Gauge, |m| m.unstored_peak),
    (
        "glimpse_outbox_unstored_dropped",
        "Messages dropped from a full in-memory queue since start (mqtt.unstored_capacity).",
        Counter,
        |m| m.unstored_dropped,
    ),
    (
        "glimpse_questions_silenced",
        "Questions over mqtt.questions_per_minute left unanswered (after one error answer per spell).",
        Counter,
        |m| m.questions_silenced,
    ),
];

/// One of a camera's live analysis counters.
fn live(c: &CameraView, counter: fn(&AnalysisCounters) -> &AtomicU64) -> u64 {
    counter(&c.live).load(Ordering::Relaxed)
}

/// The `camera` label of a camera's series.
fn camera_label(c: &CameraView) -> Labels<'_> {
    vec![("camera", c.stats.camera.as_str())]
}

impl Collector for BoardCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let figures = self.0.figures();
        let cams = &figures.cameras;
        for (name, help, value) in CAMERA_COUNTERS {
            let rows = cams
                .iter()
                .map(|c| (camera_label(c), ConstCounter::new(value(c))));
            family(&mut e, name, help, Counter, rows)?;
        }
        for (name, help, value) in CAMERA_GAUGES {
            let rows = cams
                .iter()
                .map(|c| (camera_label(c), ConstGauge::new(value(c))));
            family(&mut e, name, help, Gauge, rows)?;
        }
        memory_families(&mut e, cams)?;
        event_and_model_families(&mut e, &figures)?;
        for (name, help, kind, value) in MQTT_FAMILIES {
            let v = value(&figures.mqtt);
            match kind {
                Counter => family(
                    &mut e,
                    name,
                    help,
                    Counter,
                    [(Labels::new(), ConstCounter::new(v))],
                )?,
                _ => family(
                    &mut e,
                    name,
                    help,
                    Gauge,
                    [(Labels::new(), ConstGauge::new(v as i64))],
                )?,
            }
        }
        process_families(&mut e, &self.0)
    }
}

/// Token retention and the pyramid memory, per camera.
fn memory_families(e: &mut DescriptorEncoder, cams: &[CameraView]) -> Result<(), std::fmt::Error> {
    histogram_family(
        e,
        "glimpse_retention_ratio",
        "Share of a frame's visual tokens kept (0 for a frame the pixel gate skipped).",
        cams.iter()
            .map(|c| (camera_label(c), c.live.retention.counts())),
    )?;
    let levels = ["0", "1", "2"];
    family(
        e,
        "glimpse_memory_entries",
        "Frames held in the pyramid memory, per level.",
        Gauge,
        cams.iter().flat_map(|c| {
            levels.iter().zip(c.stats.memory).map(move |(level, n)| {
                (
                    vec![("camera", c.stats.camera.as_str()), ("level", *level)],
                    ConstGauge::new(n as i64),
                )
            })
        }),
    )?;
    family(
        e,
        "glimpse_memory_span_seconds",
        "Memory time between the oldest and the newest remembered frame.",
        Gauge,
        cams.iter().map(|c| {
            let [from, to] = &c.live.memory_span_ms;
            let span = to
                .load(Ordering::Relaxed)
                .saturating_sub(from.load(Ordering::Relaxed));
            (camera_label(c), ConstGauge::new(span as f64 / 1000.0))
        }),
    )
}

/// Events and questions by outcome, model call durations, the model
/// worker queues.
fn event_and_model_families(e: &mut DescriptorEncoder, s: &Figures) -> Result<(), std::fmt::Error> {
    family(
        e,
        "glimpse_events",
        "Events published, by kind (description, rule_on, rule_off, answer).",
        Counter,
        s.event_counts.iter().map(|((camera, kind), n)| {
            (
                vec![("camera", camera.as_str()), ("kind", kind.as_str())],
                ConstCounter::new(*n),
            )
        }),
    )?;
    family(
        e,
        "glimpse_questions",
        "Questions (MQTT and HTTP) by outcome: answered by the model, or failed with an error answer.",
        Counter,
        s.question_counts.iter().map(|((camera, outcome), n)| {
            (vec![("camera", camera.as_str()), ("outcome", *outcome)], ConstCounter::new(*n))
        }),
    )?;
    let mut calls = Vec::new();
    for backend in timing::BACKENDS {
        for call in Call::ALL {
            if let Some(h) = timing::histogram(backend, call) {
                let counts = h.counts();
                // Only the backend in use: a series per loaded runtime.
                if counts.count > 0 {
                    calls.push((vec![("backend", backend), ("call", call.name())], counts));
                }
            }
        }
    }
    histogram_family(
        e,
        "glimpse_model_call_duration_seconds",
        "Model calls by backend: the vision encoder per frame, the prefill per prompt, the decoder per generated token.",
        calls,
    )?;
    let queues = ["answer", "proactive", "frames"];
    family(
        e,
        "glimpse_model_queue_depth",
        "Work waiting for a model worker: answers, proactive jobs, frames of every camera.",
        Gauge,
        queues
            .iter()
            .zip(s.queued)
            .map(|(q, n)| (vec![("queue", *q)], ConstGauge::new(n as i64))),
    )
}

/// Health, uptime and resident memory.
fn process_families(e: &mut DescriptorEncoder, board: &Board) -> Result<(), std::fmt::Error> {
    family(
        e,
        "glimpse_healthy",
        "1 while every stage makes progress (the systemd watchdog is pinged).",
        Gauge,
        [(
            Labels::new(),
            ConstGauge::new(i64::from(board.stalled().is_none())),
        )],
    )?;
    family(
        e,
        "glimpse_uptime_seconds",
        "Seconds since the daemon started.",
        Gauge,
        [(
            Labels::new(),
            ConstGauge::new(board.started.elapsed().as_secs_f64()),
        )],
    )?;
    if let Some(rss) = resident_bytes() {
        family(
            e,
            "process_resident_memory_bytes",
            "Resident memory of the glimpse process.",
            Gauge,
            [(Labels::new(), ConstGauge::new(rss as i64))],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Heartbeats;
    use crate::pipeline::{AnalysisCounters, CameraStats};

    #[test]
    fn every_family_has_help_and_type_and_counters_end_in_total() {
        let (questions, _rx) = tokio::sync::mpsc::channel(1);
        let rules = tokio::sync::watch::channel(Default::default()).1;
        let board = Arc::new(Board::new(
            Heartbeats::new(),
            Arc::new(std::sync::atomic::AtomicU64::new(30_000)),
            rules,
            questions,
            None,
            4096,
        ));
        let live = Arc::new(AnalysisCounters::default());
        live.retention.observe(0.25);
        live.analysed.store(4, std::sync::atomic::Ordering::Relaxed);
        live.encoded.store(2, std::sync::atomic::Ordering::Relaxed);
        let stats = CameraStats {
            camera: "door".into(),
            produced: 10,
            sampled: 5,
            received: 5,
            dropped: 1,
            pending: 0,
            reconnects: 0,
            state: CameraState::Up,
            paused: false,
            skipped_paused: 0,
            analysed: 4,
            encoded: 2,
            kept_tokens: 16,
            total_tokens: 256,
            retention: 0.25,
            changing: false,
            events: 0,
            held_back: 0,
            nothing_changed: 0,
            memory: [1, 0, 1],
            outlines: Default::default(),
        };
        board.update(
            vec![stats],
            vec![("door".into(), live)],
            Default::default(),
            [0, 0, 3],
        );
        let text = render(&registry(board)).unwrap();
        let typed: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .collect();
        assert!(typed.len() >= 25, "{text}");
        for (name, kind) in typed {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP"
            );
            assert_eq!(
                kind == "counter",
                name.ends_with("_total"),
                "{name} is a {kind}"
            );
        }
        assert!(
            text.contains("glimpse_frames_sampled_total{camera=\"door\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("glimpse_frames_skipped_total{camera=\"door\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("glimpse_retention_ratio_bucket{camera=\"door\",le=\"0.3\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("glimpse_model_queue_depth{queue=\"frames\"} 3\n"),
            "{text}"
        );
    }
}
