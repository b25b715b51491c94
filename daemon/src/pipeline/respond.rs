//! What the model is asked: about a change, by the trigger (a
//! `Proactive` job: the description and the watch rules, sent as events),
//! and by a user (an `Answer` job, [`answer`]). Both run on a model worker,
//! from a copy of the camera's context, while the camera goes on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::analysis::{AnalysisCounters, CameraRules, Context, EventSink, ModelStages};
use crate::event::{Event, EventKind, Produced, RuleState};
use crate::frame::Frame;
use crate::infer::Backend;
use crate::llm::{Seen, Words};
use crate::region::Polygon;
use crate::snapshot::{Picture, Snapshotter};
use crate::trigger::Decision;

/// What the model is asked about a change: a `Proactive` job, run on a
/// worker thread while the camera goes on.
pub(super) struct Proactive {
    pub(super) camera: String,
    /// Stream time of the frame that changed.
    pub(super) at: Duration,
    pub(super) context: Context,
    /// What the description reads when the model has a describe window
    /// ([`super::analysis::CameraAnalysis::window_context`]); else it reads
    /// `context`.
    pub(super) window: Option<Context>,
    pub(super) decision: Decision,
    /// The watch rules to check now.
    pub(super) rules: Vec<RuleAsk>,
    pub(super) rule_states: Option<Arc<CameraRules>>,
    pub(super) stages: Arc<ModelStages>,
    pub(super) events: EventSink,
    /// When the frame was captured (for the event's latency).
    pub(super) captured: SystemTime,
    pub(super) min_confidence: f32,
    pub(super) counters: Arc<AnalysisCounters>,
    pub(super) snapshot: Option<(Snapshotter, Arc<Picture>)>,
    /// The zones the change touched.
    pub(super) zones: Vec<String>,
    /// What the camera asks, and what is no news.
    pub(super) words: Arc<Words>,
}

/// A watch rule to check, and what of the scene the model sees for it.
pub(super) struct RuleAsk {
    /// The name the rules' states know it by (`ZONE: RULE` for a zone's).
    pub(super) name: String,
    /// What the model is asked.
    pub(super) text: String,
    pub(super) view: View,
}

/// What the model sees for a rule.
pub(super) enum View {
    /// The whole context: memory and canvas.
    Whole,
    /// Only the context's tokens inside the zone, at their places.
    Within(Polygon),
    /// The zone's crop of the frame, encoded as an image of its own.
    Crop(Frame),
}

impl Proactive {
    /// Describes the change and checks the rules, then sends what is news
    /// (with one picture for all: they are about the same frame).
    pub(super) fn run(self) {
        let mut backend = self.stages.model.backend();
        // The model sees the memory (past frames, pooled by age) and the
        // canvas (now), each token at its place in its grid.
        let seen = self.context.seen();
        let mut out = Vec::new();
        if self.decision.describe {
            out.extend(self.describe(backend.as_mut()));
        }
        for rule in &self.rules {
            // One model call per rule: a worker beat per rule, so a long
            // job still counts as progress.
            crate::health::progress();
            out.extend(self.check_rule(backend.as_mut(), &seen, rule));
        }
        let jpeg = self
            .snapshot
            .as_ref()
            .and_then(|(snapshotter, picture)| snapshotter.attach(picture, &mut out));
        let evidence = self.context.evidence();
        for mut event in out {
            // A zone's rule brings what it saw; the rest saw the context.
            if event.evidence.frame_times_s.is_empty() {
                event.evidence = evidence.clone();
            }
            event.zones = self.zones.clone();
            event.latency_ms = SystemTime::now()
                .duration_since(self.captured)
                .map_or(0, |d| d.as_millis() as u64);
            self.counters.events.fetch_add(1, Ordering::Relaxed);
            let produced = Produced {
                event,
                jpeg: jpeg.clone(),
            };
            // A worker thread, not the runtime: waiting here is allowed,
            // and an event is worth waiting for.
            if self.events.blocking_send(produced).is_err() {
                let camera = &self.camera;
                tracing::warn!(
                    camera,
                    "the event sink is closed; an event was lost at shutdown"
                );
            }
        }
    }

    /// The events' span: from the oldest remembered frame to now.
    fn span(&self) -> (Duration, Duration) {
        (
            self.context.items.first().map_or(self.at, |i| i.pts),
            self.at,
        )
    }

    /// An answer the model is unsure of is held back: a false "the red
    /// square left" costs an operator more than a late true one.
    fn unsure(&self, what: &str, answer: &crate::llm::Answer) -> bool {
        let unsure = answer.confidence < self.min_confidence;
        if unsure {
            self.counters.held_back.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                camera = self.camera,
                what,
                answer = answer.text,
                confidence = answer.confidence,
                min_confidence = self.min_confidence,
                "held back: the model is unsure"
            );
        }
        unsure
    }

    /// The description of the change, unless it is unsure or no news.
    fn describe(&self, backend: &mut dyn Backend) -> Option<Event> {
        let camera = self.camera.as_str();
        let words = &self.words;
        let about = words.context.as_deref();
        let read = self.window.as_ref().unwrap_or(&self.context);
        let seen = read.seen();
        match self
            .stages
            .responder
            .ask_about(backend, &seen, &words.describe, about)
        {
            Ok(answer) if self.unsure("description", &answer) => None,
            // The trigger saw pixels change, the model no change it can
            // name (noise, light, a fresh memory): nothing to tell anyone.
            Ok(answer) if words.is_no_news(&answer.text) => {
                self.counters
                    .nothing_changed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    camera,
                    at_s = self.at.as_secs_f64(),
                    confidence = answer.confidence,
                    "not published: the description says nothing changed"
                );
                None
            }
            Ok(answer) => {
                // Its span: what it read, from the oldest frame to now.
                let from = read.items.first().map_or(self.at, |i| i.pts);
                let mut event =
                    Event::new(camera, EventKind::Description, answer.text, (from, self.at));
                event.confidence = Some(answer.confidence);
                event.evidence = read.evidence();
                Some(event)
            }
            Err(e) => {
                tracing::warn!(camera, "describing a change failed: {e}");
                None
            }
        }
    }

    /// Checks `ask`; an event when its debounced state turned on or off.
    fn check_rule(&self, backend: &mut dyn Backend, seen: &[Seen], ask: &RuleAsk) -> Option<Event> {
        let camera = self.camera.as_str();
        let rule = ask.name.as_str();
        let about = self.words.context.as_deref();
        // A zone's rule sees the zone only (docs/configuration.md, "Zone
        // rules"): its tokens, or its crop encoded now.
        let view: Context;
        let scoped: Vec<Seen>;
        let seen = match &ask.view {
            View::Whole => seen,
            View::Within(points) => {
                view = self.context.within(points);
                scoped = view.seen();
                &scoped
            }
            View::Crop(frame) => {
                let crop = match crate::vision::encode(backend, &self.stages.preprocessor, frame) {
                    Ok(tokens) => tokens,
                    Err(e) => {
                        tracing::warn!(camera, rule, "encoding a zone's crop failed: {e}");
                        return None;
                    }
                };
                let grid = (crop.rows * crop.cols) as usize;
                view = Context::frame(self.at, grid, crop.features);
                scoped = view.seen();
                &scoped
            }
        };
        let checked = self
            .stages
            .responder
            .check_rule_about(backend, seen, &ask.text, about);
        let (yes, answer, confidence) = match checked {
            // Not an answer for the rule's state: it stays as it was.
            Ok((_, answer)) if self.unsure(rule, &answer) => return None,
            Ok((yes, answer)) => (yes, answer.text, answer.confidence),
            Err(e) => {
                tracing::warn!(camera, rule, "checking a watch rule failed: {e}");
                return None;
            }
        };
        let at = self.at;
        tracing::debug!(
            camera,
            rule,
            at_s = at.as_secs_f64(),
            yes,
            answer,
            confidence,
            "watch rule checked"
        );
        // Only a change of state is news; the debounce decides it. A rule
        // found off when it was unknown (at start, or just set) ended
        // nothing: its state topic says so, without an event.
        let (from, status) = self.rule_states.as_ref()?.record(rule, at, yes, &answer)?;
        let kind = match (from, status.state) {
            (_, RuleState::On) => EventKind::RuleOn,
            (RuleState::On, RuleState::Off) => EventKind::RuleOff,
            _ => return None,
        };
        let mut event = Event::new(camera, kind, format!("{rule} {answer}"), self.span());
        if !matches!(ask.view, View::Whole) {
            event.evidence = crate::event::Evidence {
                frame_times_s: seen.iter().map(|s| s.at.as_secs_f64()).collect(),
                kept_tokens: seen.iter().map(|s| s.visual.positions.len()).collect(),
            };
        }
        event.reference = Some(status.id);
        event.confidence = Some(confidence);
        Some(event)
    }
}

/// Answers a question about a camera from a copy of its memory and canvas
/// (an `Answer` job, on a worker thread; the camera goes on meanwhile).
pub fn answer(
    camera: &str,
    context: &Context,
    stages: &ModelStages,
    question: &str,
) -> Result<Event, String> {
    let seen = context.seen();
    let mut backend = stages.model.backend();
    let answer = stages
        .responder
        .ask(backend.as_mut(), &seen, question)
        .map_err(|e| format!("the model could not answer: {e}"))?;
    let span = (
        context.items.first().map_or(Duration::ZERO, |i| i.pts),
        context.items.last().map_or(Duration::ZERO, |i| i.pts),
    );
    // An answer is never held back (someone asked); its confidence says
    // how far to trust it.
    let mut event = Event::new(camera, EventKind::Answer, answer.text, span);
    event.confidence = Some(answer.confidence);
    event.evidence = context.evidence();
    Ok(event)
}
