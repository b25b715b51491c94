//! The model stages of one camera, wired: pixel gate → vision encoder →
//! token dropping → trigger → responder → events.
//!
//! The camera task hands each sampled frame to the worker pool as an
//! `Encode` job ([`analyse`]); a trigger queues a `Proactive` job
//! ([`respond`]) that asks the model and sends the events. The per-camera
//! state (the gate's and the dropper's references, the trigger) sits behind
//! a mutex that only this camera's jobs take, so cameras run in parallel on
//! several workers while each camera's frames are analysed in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::capture::{CameraConfig, Frame};
use crate::dtd::{Kept, PixelGate, TokenDropper};
use crate::infer::Model;
use crate::llm::{Responder, Visual, DESCRIBE};
use crate::trigger::{Activity, Decision, Event, EventKind, Evidence, SceneTrigger};
use crate::vision::{self, Preprocessor};
use crate::workers::{Priority, Submitter};

/// What a loaded model brings to every camera, built once per load.
pub struct ModelStages {
    /// The model.
    pub model: Model,
    /// Its pixel preparation.
    pub preprocessor: Preprocessor,
    /// Its tokenizer, template and prompts.
    pub responder: Arc<Responder>,
}

/// Where events go. Events are never dropped: a full channel makes the
/// worker wait.
pub type EventSink = mpsc::Sender<Event>;

/// One camera's analysis state.
pub struct CameraAnalysis {
    camera: String,
    gate: PixelGate,
    dropper: TokenDropper,
    trigger: SceneTrigger,
    rules: Vec<String>,
    next_seq: u64,
    activity: Activity,
    /// Counters read by the stats.
    pub counters: Arc<AnalysisCounters>,
}

/// Per-camera counters of the model stages.
#[derive(Debug, Default)]
pub struct AnalysisCounters {
    /// Frames analysed (gate checked).
    pub analysed: AtomicU64,
    /// Frames the gate sent to the encoder.
    pub encoded: AtomicU64,
    /// Visual tokens kept, in all.
    pub kept_tokens: AtomicU64,
    /// Visual tokens of every analysed frame (a skipped frame counts whole).
    pub total_tokens: AtomicU64,
    /// Retention of the last frame, in millionths.
    pub last_retention_ppm: AtomicU64,
    /// 1 while the scene is changing.
    pub changing: AtomicU64,
    /// Frames that arrived after a newer one had been analysed.
    pub stale: AtomicU64,
    /// Encoder or model failures.
    pub errors: AtomicU64,
    /// Events produced.
    pub events: AtomicU64,
}

impl CameraAnalysis {
    /// The state of camera `name` for a model with a `grid`×`grid` token grid.
    pub fn new(name: &str, config: &CameraConfig, grid: u32) -> CameraAnalysis {
        CameraAnalysis {
            camera: name.to_owned(),
            gate: PixelGate::new(config.dtd.tau_pix, grid, grid),
            dropper: TokenDropper::new(&config.dtd),
            trigger: SceneTrigger::new(&config.trigger),
            rules: config.rules.clone(),
            next_seq: 0,
            activity: Activity::Idle,
            counters: Arc::new(AnalysisCounters::default()),
        }
    }
}

/// Analyses one frame (an `Encode` job, on a worker thread).
pub fn analyse(
    frame: Frame,
    state: &Mutex<CameraAnalysis>,
    stages: &Arc<ModelStages>,
    pool: &Submitter,
    events: &EventSink,
) {
    // Held for the whole frame: frames of one camera are analysed one at a
    // time and in order; other cameras take their own locks.
    let mut a = state.lock().unwrap_or_else(|p| p.into_inner());
    let counters = a.counters.clone();
    if frame.seq < a.next_seq && !frame.discont {
        counters.stale.fetch_add(1, Ordering::Relaxed);
        return;
    }
    a.next_seq = frame.seq + 1;
    counters.analysed.fetch_add(1, Ordering::Relaxed);
    let info = stages.model.folder().info.clone();
    let kept = if a.gate.check(&frame).encode {
        counters.encoded.fetch_add(1, Ordering::Relaxed);
        let mut backend = stages.model.backend();
        match vision::encode(backend.as_mut(), &stages.preprocessor, &frame) {
            Ok(tokens) => a.dropper.drop_unchanged(tokens),
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(camera = %a.camera, "encoding a frame failed: {e}");
                // The next frame is compared with what the model last saw.
                a.gate.reset();
                return;
            }
        }
    } else {
        Kept::nothing(frame.meta(), info.grid, info.grid, info.hidden)
    };
    let retention = kept.retention();
    // Frames the gate skipped count as all dropped: the retention curve
    // covers every sampled frame.
    counters
        .total_tokens
        .fetch_add(kept.mask.len() as u64, Ordering::Relaxed);
    counters
        .kept_tokens
        .fetch_add(kept.positions.len() as u64, Ordering::Relaxed);
    counters
        .last_retention_ppm
        .store((retention * 1e6) as u64, Ordering::Relaxed);
    let decision = a.trigger.observe(frame.pts, retention, frame.discont);
    if decision.activity != a.activity {
        tracing::debug!(camera = %a.camera, activity = ?decision.activity, "activity changed");
        a.activity = decision.activity;
    }
    counters.changing.store(
        u64::from(decision.activity == Activity::Changing),
        Ordering::Relaxed,
    );
    let rules = if decision.ask_rules {
        a.rules.clone()
    } else {
        Vec::new()
    };
    if !decision.describe && rules.is_empty() {
        return;
    }
    let camera = a.camera.clone();
    drop(a);
    let job_stages = stages.clone();
    let sink = events.clone();
    let captured = frame.wall_time;
    let queued = pool.submit(
        Priority::Proactive,
        Box::new(move || {
            respond(
                &camera,
                &kept,
                decision,
                &rules,
                &job_stages,
                &sink,
                captured,
                &counters,
            )
        }),
    );
    if let Err(e) = queued {
        tracing::warn!("a scene change was not described: {e}");
    }
}

/// Asks the model about a change (a `Proactive` job, on a worker thread).
#[allow(clippy::too_many_arguments)]
fn respond(
    camera: &str,
    kept: &Kept,
    decision: Decision,
    rules: &[String],
    stages: &ModelStages,
    events: &EventSink,
    captured: SystemTime,
    counters: &AnalysisCounters,
) {
    let mut backend = stages.model.backend();
    // Until the memory bank gives the model the past, it sees the tokens
    // of the frame that changed, at their places in the grid.
    let context = [Visual {
        grid: kept.mask.len(),
        positions: &kept.positions,
        tokens: &kept.tokens,
    }];
    let span = (kept.meta.pts, kept.meta.pts);
    let evidence = Evidence {
        frame_times_s: vec![kept.meta.pts.as_secs_f64()],
        kept_tokens: vec![kept.positions.len()],
    };
    let mut out = Vec::new();
    if decision.describe {
        match stages.responder.ask(backend.as_mut(), &context, DESCRIBE) {
            Ok(answer) => out.push(Event::new(
                camera,
                EventKind::Description,
                answer.text,
                span,
            )),
            Err(e) => tracing::warn!(camera, "describing a change failed: {e}"),
        }
    }
    for rule in rules {
        match stages
            .responder
            .check_rule(backend.as_mut(), &context, rule)
        {
            Ok((true, answer)) => {
                let mut event = Event::new(
                    camera,
                    EventKind::Alert,
                    format!("{rule} {}", answer.text),
                    span,
                );
                event.reference = Some(rule.clone());
                out.push(event);
            }
            Ok((false, _)) => {}
            Err(e) => tracing::warn!(camera, rule, "checking a watch rule failed: {e}"),
        }
    }
    for mut event in out {
        event.evidence = evidence.clone();
        event.latency_ms = SystemTime::now()
            .duration_since(captured)
            .map_or(0, |d| d.as_millis() as u64);
        counters.events.fetch_add(1, Ordering::Relaxed);
        // A worker thread, not the runtime: waiting here is allowed, and an
        // event is worth waiting for.
        if events.blocking_send(event).is_err() {
            tracing::warn!(
                camera,
                "the event sink is closed; an event was lost at shutdown"
            );
        }
    }
}
