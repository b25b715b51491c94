//! A camera as one owned unit: its frame queue, its analysis state, its
//! memory, its watch rules and its counters.
//!
//! The capture thread puts frames into the camera's bounded drop-oldest
//! queue (drops counted here, where they happen) and wakes the worker pool.
//! The camera is a [`Lane`] of the pool: a free model worker takes the
//! camera's oldest waiting frame and analyses it, one frame of a camera at a
//! time, cameras in turn. So when the encoder is slower than the cameras,
//! each camera's own queue fills and drops its own oldest frames, and a
//! fast camera cannot push a slow one out.
//!
//! Every job reads the model through [`Current`] when it starts, and the
//! camera rebuilds its analysis state when the model has changed (setting
//! the old model's memory aside first): a reload that swaps the model
//! rewires every camera by construction.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::regions::ZoneWatch;
use super::CameraConfig;
use crate::capture::{CameraState, Frame};
use crate::event::{Produced, ZoneStates, ZoneStatus};
use crate::queue;
use crate::snapshot::{SnapshotStore, Snapshotter};
use crate::workers::{Job, Lane, Submitter};

use super::analysis::{
    self, AnalysisCounters, CameraAnalysis, CameraRules, EventSink, ModelStages, RuleStates,
};

/// What every camera's jobs reach when they start: the model of the moment,
/// the worker pool and the event sink. The pipeline swaps the model in
/// place on a reload; nothing holds on to an old one past its job.
pub struct Current {
    // A std RwLock: read once per job (a pointer copy), written on reload.
    model: RwLock<Option<Arc<ModelStages>>>,
    /// Queues follow-up jobs (a trigger's response) on the pool.
    pub pool: Submitter,
    /// Where events go.
    pub events: EventSink,
    /// Where every camera's watch-rule states are published.
    pub rule_states: tokio::sync::watch::Sender<RuleStates>,
    /// Where every camera's zone states are published.
    pub zone_states: tokio::sync::watch::Sender<ZoneStates>,
    /// Where event snapshots are stored (none without a state directory).
    pub snapshots: Option<Arc<SnapshotStore>>,
}

impl Current {
    /// Wiring with `model` (none: frames are only counted).
    pub fn new(
        model: Option<Arc<ModelStages>>,
        pool: Submitter,
        events: EventSink,
        snapshots: Option<Arc<SnapshotStore>>,
    ) -> Current {
        Current {
            model: RwLock::new(model),
            pool,
            events,
            rule_states: tokio::sync::watch::channel(RuleStates::new()).0,
            zone_states: tokio::sync::watch::channel(ZoneStates::new()).0,
            snapshots,
        }
    }

    /// The model jobs use from now on.
    pub fn model(&self) -> Option<Arc<ModelStages>> {
        self.model.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Swaps the model: jobs that start after this see `model`.
    pub fn set_model(&self, model: Option<Arc<ModelStages>>) {
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = model;
    }
}

/// One camera.
pub struct Camera {
    name: String,
    /// The settings it runs with.
    pub config: CameraConfig,
    current: Arc<Current>,
    // Std mutexes throughout: each is held for a push, a pop or one frame's
    // analysis, never across an await.
    frames: Mutex<queue::Receiver<Frame>>,
    /// True while one of this camera's jobs runs.
    busy: AtomicBool,
    /// Analysis paused by the operator: frames are taken off the queue and
    /// let go unanalysed (docs/architecture.md §2).
    paused: AtomicBool,
    /// The analysis state, built for the model of the last job.
    analysis: Mutex<Option<CameraAnalysis>>,
    /// Every watch rule's state (the config's and MQTT's).
    rule_states: Arc<CameraRules>,
    snapshot: Option<PathBuf>,
    /// Event snapshots, when enabled for this camera.
    snapshotter: Option<Snapshotter>,
    /// Frames taken off the queue by a worker.
    pub received: AtomicU64,
    /// Frames the queue dropped because the workers were behind.
    pub dropped: Arc<AtomicU64>,
    /// Frames let go unanalysed because analysis was paused.
    pub skipped_paused: AtomicU64,
    /// The model stages' counters; they outlive a change of model.
    pub counters: Arc<AnalysisCounters>,
    /// Its masks and zones, for the status page.
    pub outlines: Arc<super::Outlines>,
    /// What the capture thread says it is doing.
    pub state: Arc<Mutex<CameraState>>,
    /// Its zones' states (none without zones); runs with or without a
    /// model.
    zones: Mutex<Option<ZoneWatch>>,
}

impl Camera {
    /// A camera that takes its frames from `frames`; its memory snapshot is
    /// `snapshot` (a file in the state directory).
    pub fn new(
        name: &str,
        config: &CameraConfig,
        frames: queue::Receiver<Frame>,
        current: Arc<Current>,
        snapshot: Option<PathBuf>,
    ) -> Camera {
        let rule_states = Arc::new(CameraRules::new(
            name,
            config.trigger.debounce(),
            current.rule_states.clone(),
        ));
        rule_states.set(&config.all_rules(), &[]);
        let snapshotter = current
            .snapshots
            .clone()
            .filter(|_| config.snapshot.enabled)
            .map(|store| Snapshotter {
                store,
                config: config.snapshot.clone(),
            });
        let camera = Camera {
            snapshotter,
            rule_states,
            name: name.to_owned(),
            config: config.clone(),
            current,
            dropped: frames.dropped(),
            frames: Mutex::new(frames),
            busy: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            skipped_paused: AtomicU64::new(0),
            analysis: Mutex::new(None),
            snapshot,
            received: AtomicU64::new(0),
            counters: Arc::new(AnalysisCounters::default()),
            outlines: Arc::new(config.outlines()),
            state: Arc::new(Mutex::new(CameraState::Starting)),
            zones: Mutex::new(ZoneWatch::new(config, config.dtd.tau_pix)),
        };
        if let Some(zones) = lock(&camera.zones).as_ref() {
            camera.publish_zones(zones.statuses());
        }
        camera
    }

    fn publish_zones(&self, statuses: Vec<ZoneStatus>) {
        self.current.zone_states.send_modify(|all| {
            all.insert(self.name.clone(), statuses);
        });
    }

    /// How this camera's events get their snapshots, if they do.
    pub fn snapshotter(&self) -> Option<&Snapshotter> {
        self.snapshotter.as_ref()
    }

    /// The camera's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the capture thread last reported.
    pub fn capture_state(&self) -> CameraState {
        lock(&self.state).clone()
    }

    /// Sets the watch rules added at run time.
    pub fn set_runtime_rules(&self, rules: Vec<String>) {
        self.rule_states.set(&self.config.all_rules(), &rules);
    }

    /// Pauses or resumes the analysis. Capture goes on (resuming is
    /// immediate); the frames that arrive meanwhile are let go. While
    /// paused nothing is known about the rules: they become unknown.
    pub fn set_paused(&self, paused: bool) {
        if self.paused.swap(paused, Ordering::AcqRel) == paused {
            return;
        }
        tracing::info!(camera = %self.name, "analysis {}", if paused { "paused" } else { "resumed" });
        if paused {
            self.rule_states.forget();
        }
    }

    /// Whether the analysis is paused.
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Takes this camera's rules and zones off the published states (it
    /// stops).
    pub fn withdraw_states(&self) {
        self.rule_states.withdraw();
        self.current
            .zone_states
            .send_if_modified(|all| all.remove(&self.name).is_some());
    }

    /// Frames waiting for a worker.
    pub fn pending(&self) -> usize {
        lock(&self.frames).len()
    }

    /// Analyses one frame with the model of the moment (on a worker).
    fn analyse(&self, frame: Frame) {
        #[cfg(feature = "fault-injection")]
        crate::slow::slow_analysis();
        let zones = lock(&self.zones).as_mut().and_then(|z| z.observe(&frame));
        if let Some(statuses) = zones {
            let now = frame.pts.as_secs_f64();
            for status in statuses.iter().filter(|s| s.since_s == now) {
                tracing::debug!(camera = %self.name, zone = %status.zone, state = %status.state.as_str(), at_s = status.since_s, "zone state");
            }
            self.publish_zones(statuses);
        }
        let Some(stages) = self.current.model() else {
            return; // No model: frames are only counted.
        };
        let mut slot = lock(&self.analysis);
        let state = self.state_for(&mut slot, &stages);
        analysis::analyse(
            frame,
            state,
            &stages,
            &self.current.pool,
            &self.current.events,
        );
    }

    /// Answers `question` from the camera's memory with the model of the
    /// moment (on a worker).
    pub fn answer(&self, question: &str) -> Result<Produced, String> {
        let stages = self
            .current
            .model()
            .ok_or_else(|| "no model is configured to answer questions".to_owned())?;
        // The lock is held only to copy the context: the camera goes on
        // while the model answers.
        let (context, picture) = {
            let mut slot = lock(&self.analysis);
            let state = self.state_for(&mut slot, &stages);
            (state.context_for(question), state.picture())
        };
        let mut event = super::respond::answer(&self.name, &context, &stages, question)?;
        // The answer is about the scene now: the last sampled frame.
        let jpeg = match (&self.snapshotter, picture) {
            (Some(snapshotter), Some(picture)) => {
                snapshotter.attach(&picture, std::slice::from_mut(&mut event))
            }
            _ => None,
        };
        Ok(Produced { event, jpeg })
    }

    /// The analysis state for `stages`' model: the one in `slot` if it was
    /// built for that model, else a new one (the old one's memory is set
    /// aside as `<camera>.mem.previous`: its tokens mean nothing to the new
    /// model).
    fn state_for<'a>(
        &self,
        slot: &'a mut Option<CameraAnalysis>,
        stages: &ModelStages,
    ) -> &'a mut CameraAnalysis {
        if slot
            .as_ref()
            .is_some_and(|a| a.fingerprint() != stages.fingerprint)
        {
            if let Some(mut old) = slot.take() {
                let kept = old.retire_memory();
                tracing::info!(
                    camera = %self.name,
                    kept = %kept.map_or("nowhere (no state directory)".into(), |p| p.display().to_string()),
                    "the model changed: the previous model's memory is set aside; the new model starts with an empty memory"
                );
            }
        }
        slot.get_or_insert_with(|| {
            let mut state =
                CameraAnalysis::new(&self.name, &self.config, stages, self.snapshot.clone());
            state.counters = self.counters.clone();
            *lock(&self.counters.words) = Some(state.words.clone());
            state.rule_states = Some(self.rule_states.clone());
            state.snapshotter = self.snapshotter.clone();
            state
        })
    }

    /// Writes the memory snapshot, under the model it was made with. Waits
    /// for a job of this camera that is running (blocking: off the runtime).
    pub fn save_memory(&self) {
        if let Some(state) = lock(&self.analysis).as_mut() {
            state.save_memory();
        }
    }
}

/// A camera as the worker pool sees it.
pub struct CameraLane(pub Arc<Camera>);

impl Lane for CameraLane {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn take(&self) -> Option<Job> {
        let camera = &self.0;
        if camera.busy.swap(true, Ordering::AcqRel) {
            return None; // one job per camera at a time
        }
        if camera.paused() {
            // Let the waiting frames go: nobody looks.
            let mut frames = lock(&camera.frames);
            while frames.try_recv().is_some() {
                camera.skipped_paused.fetch_add(1, Ordering::Relaxed);
            }
            camera.busy.store(false, Ordering::Release);
            return None;
        }
        let Some(frame) = lock(&camera.frames).try_recv() else {
            camera.busy.store(false, Ordering::Release);
            return None;
        };
        camera.received.fetch_add(1, Ordering::Relaxed);
        let camera = camera.clone();
        Some(Box::new(move || {
            // Cleared even if the analysis panics (the worker survives it).
            let _idle = NotBusy(&camera.busy);
            camera.analyse(frame);
        }))
    }

    fn pending(&self) -> usize {
        self.0.pending()
    }
}

/// Clears a camera's busy flag when dropped.
struct NotBusy<'a>(&'a AtomicBool);

impl Drop for NotBusy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every value behind these locks stays valid whatever panicked while
    // it was held (a frame's analysis is all-or-nothing for what matters).
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
