//! What the HTTP server shows: copies of the daemon's state, never the
//! state itself.
//!
//! The service writes the board (once a second: the cameras' counters, the
//! MQTT and worker figures; at each event and answer: the recent events and
//! the counts by kind); the HTTP handlers read it. Every lock here is a
//! std mutex held for a copy or a push, never across an await or a model
//! call, and none of them is a lock the frame path takes: the cameras'
//! live state is read through their [`AnalysisCounters`] (atomics, and
//! two small mutexes held for a push or a pointer copy).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::event::Event;
use crate::health::Heartbeats;
use crate::mqtt::{MqttStats, Question};
use crate::pipeline::{AnalysisCounters, CameraStats, RuleStates};

/// Recent events kept per camera for `/api/events` and the page.
pub const RECENT_EVENTS: usize = 20;

/// Seconds over which the page's fps are measured.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// A question from the HTTP API, and where its answer goes: the JSON an
/// MQTT asker gets, and whether it is an answer (true) or an error.
pub struct AskRequest {
    /// The question, as the MQTT path makes it.
    pub question: Question,
    /// The answer's JSON.
    pub reply: oneshot::Sender<(bool, String)>,
}

/// One camera as the page and `/metrics` see it.
#[derive(Debug, Clone)]
pub struct CameraView {
    /// Its counters, copied at the last update.
    pub stats: CameraStats,
    /// Its live counters and recent state (shared; read at request time).
    pub live: Arc<AnalysisCounters>,
    /// Sampled frames per second over the last seconds.
    pub fps: f64,
    /// Analysed frames per second over the last seconds.
    pub analysed_fps: f64,
}

/// The board: what the service last wrote.
pub struct Board {
    inner: Mutex<Inner>,
    /// The stages' heartbeats: `/healthz` says what the watchdog would.
    pub heartbeats: Heartbeats,
    /// `service.stall_timeout_ms`, as the watchdog reads it.
    pub stall_timeout_ms: Arc<AtomicU64>,
    /// Every camera's watch rules and their states.
    pub rules: watch::Receiver<RuleStates>,
    /// Where questions go (the service answers them like MQTT's).
    pub questions: mpsc::Sender<AskRequest>,
    /// Where event snapshots are (none without a state directory).
    pub state_dir: Option<std::path::PathBuf>,
    /// `mqtt.max_question_bytes`: the API takes what MQTT takes.
    pub max_question_bytes: usize,
    /// When the daemon started.
    pub started: Instant,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Board")
    }
}

#[derive(Default)]
struct Inner {
    cameras: Vec<CameraView>,
    mqtt: MqttStats,
    queued: [usize; 3],
    rates: BTreeMap<String, VecDeque<(Instant, u64, u64)>>,
    events: BTreeMap<String, VecDeque<Event>>,
    event_counts: BTreeMap<(String, String), u64>,
    question_counts: BTreeMap<(String, &'static str), u64>,
}

/// How a question ended, for `glimpse_questions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The model answered.
    Answered,
    /// An error answer (no model, a full queue, a timeout, a model error).
    Failed,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Failed => "failed",
        }
    }
}

/// A copy of everything but the live counters, for one request.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Every running camera.
    pub cameras: Vec<CameraView>,
    /// The MQTT stage's counters.
    pub mqtt: MqttStats,
    /// Work waiting in the model pool: answers, proactive jobs, frames.
    pub queued: [usize; 3],
    /// Events by (camera, kind) since start.
    pub event_counts: BTreeMap<(String, String), u64>,
    /// Questions by (camera, outcome) since start.
    pub question_counts: BTreeMap<(String, &'static str), u64>,
}

impl Board {
    /// An empty board.
    pub fn new(
        heartbeats: Heartbeats,
        stall_timeout_ms: Arc<AtomicU64>,
        rules: watch::Receiver<RuleStates>,
        questions: mpsc::Sender<AskRequest>,
        state_dir: Option<std::path::PathBuf>,
        max_question_bytes: usize,
    ) -> Board {
        Board {
            inner: Mutex::new(Inner::default()),
            heartbeats,
            stall_timeout_ms,
            rules,
            questions,
            state_dir,
            max_question_bytes,
            started: Instant::now(),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Plain values, each written whole: valid whatever panicked.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the cameras' counters (and their live state), the MQTT and
    /// pool figures; works out the rates over the last seconds.
    pub fn update(
        &self,
        stats: Vec<CameraStats>,
        live: Vec<(String, Arc<AnalysisCounters>)>,
        mqtt: MqttStats,
        queued: [usize; 3],
    ) {
        let now = Instant::now();
        let mut inner = self.inner();
        let mut live: BTreeMap<String, Arc<AnalysisCounters>> = live.into_iter().collect();
        inner
            .rates
            .retain(|name, _| stats.iter().any(|s| &s.camera == name));
        let mut cameras = Vec::with_capacity(stats.len());
        for s in stats {
            let Some(counters) = live.remove(&s.camera) else {
                continue;
            };
            let window = inner.rates.entry(s.camera.clone()).or_default();
            window.push_back((now, s.sampled, s.analysed));
            while window
                .front()
                .is_some_and(|(t, _, _)| now.duration_since(*t) > RATE_WINDOW)
            {
                window.pop_front();
            }
            let (fps, analysed_fps) = match (window.front(), window.back()) {
                (Some(a), Some(b)) if b.0 > a.0 => {
                    let dt = b.0.duration_since(a.0).as_secs_f64();
                    (
                        b.1.saturating_sub(a.1) as f64 / dt,
                        b.2.saturating_sub(a.2) as f64 / dt,
                    )
                }
                _ => (0.0, 0.0),
            };
            cameras.push(CameraView {
                stats: s,
                live: counters,
                fps,
                analysed_fps,
            });
        }
        inner.cameras = cameras;
        inner.mqtt = mqtt;
        inner.queued = queued;
    }

    /// Notes an event (a copy).
    pub fn record_event(&self, event: &Event) {
        let copy = event.clone();
        let kind = serde_json::to_value(event.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut inner = self.inner();
        *inner
            .event_counts
            .entry((event.camera.clone(), kind))
            .or_default() += 1;
        let recent = inner.events.entry(event.camera.clone()).or_default();
        if recent.len() == RECENT_EVENTS {
            recent.pop_front();
        }
        recent.push_back(copy);
    }

    /// Notes how a question about `camera` ended.
    pub fn record_question(&self, camera: &str, outcome: Outcome) {
        *self
            .inner()
            .question_counts
            .entry((camera.to_owned(), outcome.name()))
            .or_default() += 1;
    }

    /// A copy of the board.
    pub fn figures(&self) -> Figures {
        let inner = self.inner();
        Figures {
            cameras: inner.cameras.clone(),
            mqtt: inner.mqtt,
            queued: inner.queued,
            event_counts: inner.event_counts.clone(),
            question_counts: inner.question_counts.clone(),
        }
    }

    /// The recent events, newest first, of one camera or all.
    pub fn events(&self, camera: Option<&str>, limit: usize) -> Vec<Event> {
        let inner = self.inner();
        let mut events: Vec<Event> = inner
            .events
            .iter()
            .filter(|(name, _)| camera.is_none_or(|c| c == name.as_str()))
            .flat_map(|(_, recent)| recent.iter().cloned())
            .collect();
        events.sort_by(|a, b| b.id.cmp(&a.id));
        events.truncate(limit);
        events
    }

    /// Whether a camera of that name runs.
    pub fn has_camera(&self, camera: &str) -> bool {
        self.inner()
            .cameras
            .iter()
            .any(|c| c.stats.camera == camera)
    }

    /// None while every stage makes progress (the watchdog would ping),
    /// else why not.
    pub fn stalled(&self) -> Option<String> {
        let timeout = Duration::from_millis(
            self.stall_timeout_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        self.heartbeats.stalled(timeout).first().map(|s| {
            format!(
                "{} has made no progress for {:.1} s",
                s.stage,
                s.silent_for.as_secs_f64()
            )
        })
    }
}
