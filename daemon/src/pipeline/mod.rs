//! The pipeline: the one place that builds stages and wires them together.
//!
//! Per camera (docs/architecture.md §2): capture (its own thread)
//! → the camera's drop-oldest frame queue → a model worker, which takes the
//! camera's next frame when the camera's turn comes and runs the model
//! stages on it ([`analysis`]): pixel gate, vision encoder, token dropping,
//! memory, trigger; a trigger queues a `Proactive` job that asks the model
//! and sends [`Event`]s to the event sink. A camera is one owned unit
//! ([`camera::Camera`]); one worker pool serves every camera and lives as
//! long as the pipeline.
//!
//! The pipeline also applies a reloaded config: the pool is resized in
//! place, a new model is swapped in for every camera at once (it was loaded
//! beforehand, off the hot path: [`load_model`]), cameras that were removed
//! or changed are stopped, new or changed ones started, untouched ones keep
//! running.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub mod analysis;
pub mod camera;
mod camera_config;
mod regions;
mod respond;

pub use analysis::{
    AnalysisCounters, CameraAnalysis, CameraRules, Context, ContextItem, EventSink, ModelStages,
    RuleStates,
};
pub use regions::ZoneRule;

pub use camera_config::{CameraConfig, Look, MasksConfig, Outlines, ZoneConfig};

use crate::capture::{self, CameraState, CaptureError, CaptureHandle};
use crate::event::{Produced, ZoneStates};
use crate::health::Heartbeats;
use crate::infer::{self, InferError, ModelConfig};
use crate::llm::{LlmError, Responder};
use crate::queue;
use crate::snapshot::{SnapshotError, SnapshotStore};
use crate::vision::Preprocessor;
use crate::workers::{Priority, WorkerError, WorkerPool};
use camera::{Camera, CameraLane, Current};

/// Why the pipeline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A camera's source could not start.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The worker pool could not start.
    #[error(transparent)]
    Workers(#[from] WorkerError),
    /// The model could not be loaded.
    #[error("cannot load the model: {0}")]
    Model(#[from] InferError),
    /// The model's tokenizer or chat template could not be loaded.
    #[error("cannot load the model: {0}")]
    Text(#[from] LlmError),
    /// The snapshot folder could not be opened.
    #[error(transparent)]
    Snapshots(#[from] SnapshotError),
}

/// The running pipeline.
pub struct Pipeline {
    cameras: BTreeMap<String, RunningCamera>,
    /// The config of the loaded model; the model itself is in `current`.
    model_config: Option<ModelConfig>,
    /// What every camera's jobs read when they start.
    current: Arc<Current>,
    /// Where memory snapshots go.
    state_dir: Option<std::path::PathBuf>,
    /// Where event snapshots go (none without a state directory).
    snapshots: Option<Arc<SnapshotStore>>,
    /// Watch rules added at run time, by camera.
    runtime_rules: BTreeMap<String, Vec<String>>,
    /// Cameras whose analysis the operator paused.
    paused: std::collections::BTreeSet<String>,
    workers: WorkerPool,
    workers_config: crate::workers::WorkersConfig,
    shutdown_timeout: Duration,
}

struct RunningCamera {
    unit: Arc<Camera>,
    cancel: CancellationToken,
    capture: CaptureHandle,
}

/// One camera's counters since it started.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraStats {
    /// The camera's name.
    pub camera: String,
    /// Frames the source produced.
    pub produced: u64,
    /// Frames kept by sampling.
    pub sampled: u64,
    /// Frames a model worker took from the camera's queue.
    pub received: u64,
    /// Frames the camera's queue dropped because the workers were behind.
    pub dropped: u64,
    /// Frames waiting in the camera's queue now.
    pub pending: u64,
    /// Whether the operator paused the camera's analysis.
    pub paused: bool,
    /// Frames let go unanalysed while paused.
    pub skipped_paused: u64,
    /// Sessions reopened after failures, ends of stream or loops.
    pub reconnects: u64,
    /// What the camera is doing now.
    pub state: CameraState,
    /// Frames analysed by the model stages (0 without a model).
    pub analysed: u64,
    /// Frames the pixel gate let through to the encoder.
    pub encoded: u64,
    /// Visual tokens kept, in all.
    pub kept_tokens: u64,
    /// Visual tokens of every analysed frame, in all.
    pub total_tokens: u64,
    /// Retention of the last analysed frame.
    pub retention: f32,
    /// Whether the scene is changing.
    pub changing: bool,
    /// Events produced.
    pub events: u64,
    /// Descriptions and rule answers held back as unsure
    /// (`trigger.min_confidence`).
    pub held_back: u64,
    /// Descriptions not published because they said only that nothing
    /// changed.
    pub nothing_changed: u64,
    /// Frames held in memory, per pyramid level.
    pub memory: [u64; 3],
    /// Its masks and zones (shared: they change only with its config).
    pub outlines: Arc<Outlines>,
}

impl CameraStats {
    /// The share of visual tokens kept over every analysed frame (0 before
    /// the first), to three decimals.
    pub fn retention_mean(&self) -> f64 {
        if self.total_tokens == 0 {
            return 0.0;
        }
        (self.kept_tokens as f64 / self.total_tokens as f64 * 1000.0).round() / 1000.0
    }
}

/// What the operator set at run time (over MQTT, persisted there), which
/// the cameras start with: watch rules added, cameras paused.
#[derive(Debug, Default, Clone)]
pub struct Operator {
    /// Watch rules added at run time, by camera.
    pub rules: BTreeMap<String, Vec<String>>,
    /// Cameras whose analysis is paused.
    pub paused: std::collections::BTreeSet<String>,
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Cameras started.
    pub started: Vec<String>,
    /// Cameras stopped.
    pub stopped: Vec<String>,
    /// Cameras restarted with new settings.
    pub restarted: Vec<String>,
    /// Whether the worker pool was resized (or its queue capacity changed).
    pub workers_resized: bool,
    /// Whether the model was loaded again (or dropped).
    pub model_reloaded: bool,
}

impl Changes {
    /// True when the reload changed nothing that runs.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

/// What the pipeline runs: the parts of the config it needs, taken from
/// the whole by `Config::pipeline` (the config composes every section; the
/// pipeline does not know it as a whole: docs/architecture.md §1).
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// `[model]`, if any.
    pub model: Option<ModelConfig>,
    /// `[workers]`.
    pub workers: crate::workers::WorkersConfig,
    /// Every camera, enabled or not.
    pub cameras: BTreeMap<String, CameraConfig>,
    /// The resolved state directory (memory and event snapshots).
    pub state_dir: Option<std::path::PathBuf>,
    /// `service.snapshot_max_count`.
    pub snapshot_max_count: u64,
    /// `service.snapshot_max_bytes`.
    pub snapshot_max_bytes: u64,
    /// `service.shutdown_timeout_ms`.
    pub shutdown_timeout_ms: u64,
}

impl Pipeline {
    /// Builds and starts every stage of `config`; events go to `events`.
    /// Must run inside the tokio runtime; loads the model off it.
    pub async fn build(
        config: &PipelineConfig,
        heartbeats: &Heartbeats,
        events: EventSink,
        operator: Operator,
    ) -> Result<Pipeline, PipelineError> {
        let model = match &config.model {
            Some(m) => Some(load_model(m, config.state_dir.as_deref()).await?),
            None => None,
        };
        let workers = config.workers.build(heartbeats)?;
        if let Some(dir) = &config.state_dir {
            crate::memory::remove_leftovers(&dir.join("memory"));
        }
        // Lists one folder once at start (at most snapshot_max_count
        // files): short enough to do here, before anything runs.
        let snapshots = match &config.state_dir {
            Some(dir) => Some(SnapshotStore::open(
                &dir.join(crate::snapshot::FOLDER),
                usize::try_from(config.snapshot_max_count).unwrap_or(usize::MAX),
                config.snapshot_max_bytes,
            )?),
            None => None,
        };
        let current = Arc::new(Current::new(
            model,
            workers.submitter(),
            events,
            snapshots.clone(),
        ));
        let mut pipeline = Pipeline {
            model_config: config.model.clone(),
            current,
            state_dir: config.state_dir.clone(),
            snapshots,
            runtime_rules: operator.rules,
            paused: operator.paused,
            cameras: BTreeMap::new(),
            workers,
            workers_config: config.workers.clone(),
            shutdown_timeout: Duration::from_millis(config.shutdown_timeout_ms),
        };
        for (name, camera) in config.cameras.iter().filter(|(_, c)| c.enabled) {
            let running = pipeline.start_camera(name, camera)?;
            pipeline.cameras.insert(name.clone(), running);
        }
        Ok(pipeline)
    }

    fn start_camera(
        &self,
        name: &str,
        config: &CameraConfig,
    ) -> Result<RunningCamera, CaptureError> {
        let (tx, rx) = queue::channel(config.queue_capacity);
        let waker = self.workers.waker();
        rx.on_arrival(Arc::new(move || waker.wake()));
        let snapshot = self
            .state_dir
            .as_ref()
            .map(|d| d.join("memory").join(format!("{name}.mem")));
        let unit = Arc::new(Camera::new(
            name,
            config,
            rx,
            self.current.clone(),
            snapshot,
        ));
        unit.set_runtime_rules(self.runtime_rules.get(name).cloned().unwrap_or_default());
        unit.set_paused(self.paused.contains(name));
        let cancel = CancellationToken::new();
        let shared = unit.state.clone();
        let report = Box::new(move |new: &CameraState| {
            *shared.lock().unwrap_or_else(|p| p.into_inner()) = new.clone();
        });
        let capture = capture::start(name, &config.capture(), tx, report, cancel.clone())?;
        self.workers.add_lane(Arc::new(CameraLane(unit.clone())));
        tracing::debug!(
            camera = name,
            fps = config.fps,
            kind = config.source.kind(),
            "camera started"
        );
        Ok(RunningCamera {
            unit,
            cancel,
            capture,
        })
    }

    /// The loaded model, if the config names one.
    pub fn model(&self) -> Option<Arc<ModelStages>> {
        self.current.model()
    }

    /// Queues `question` about `camera` for the model, ahead of every other
    /// job; the answer (or why there is none) comes on the returned channel.
    pub fn ask(
        &self,
        camera: &str,
        question: String,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Produced, String>>, String> {
        let running = self
            .cameras
            .get(camera)
            .ok_or_else(|| format!("camera {camera:?} is not running"))?;
        if self.current.model().is_none() {
            return Err("no model is configured to answer questions".to_owned());
        }
        let unit = running.unit.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.workers
            .submit(
                Priority::Answer,
                Box::new(move || {
                    // The asker may have given up; nothing to do then.
                    let _ = tx.send(unit.answer(&question));
                }),
            )
            .map_err(|e| e.to_string())?;
        Ok(rx)
    }

    /// Sets the watch rules added at run time (over MQTT), by camera; they
    /// are asked after the config's. Takes only short locks (a camera's
    /// rule list), never one a running frame holds.
    pub fn set_runtime_rules(&mut self, rules: BTreeMap<String, Vec<String>>) {
        for (name, running) in &self.cameras {
            running
                .unit
                .set_runtime_rules(rules.get(name).cloned().unwrap_or_default());
        }
        self.runtime_rules = rules;
    }

    /// Pauses the analysis of the cameras in `paused` and resumes the
    /// others (set over MQTT, persisted there).
    pub fn set_paused(&mut self, paused: std::collections::BTreeSet<String>) {
        for (name, running) in &self.cameras {
            running.unit.set_paused(paused.contains(name));
        }
        self.paused = paused;
    }

    /// Every running camera's watch rules and their states; changes with
    /// each rule change and each change of state.
    pub fn rule_states(&self) -> tokio::sync::watch::Receiver<RuleStates> {
        self.current.rule_states.subscribe()
    }

    /// Every camera's zone states, as they change.
    pub fn zone_states(&self) -> tokio::sync::watch::Receiver<ZoneStates> {
        self.current.zone_states.subscribe()
    }

    /// The event snapshot store, if there is a state directory: the
    /// service frees disk space from it when the outbox cannot be written.
    pub fn snapshot_store(&self) -> Option<Arc<SnapshotStore>> {
        self.snapshots.clone()
    }

    /// The model worker pool.
    pub fn workers(&self) -> &WorkerPool {
        &self.workers
    }

    /// Each running camera's snapshot settings (none when its events
    /// carry no snapshot) and frame size, for the test events.
    pub fn snapshotters(&self) -> Vec<crate::snapshot::CameraSnapshots> {
        self.cameras
            .iter()
            .map(|(name, c)| {
                let unit = &c.unit;
                let s = unit
                    .snapshotter()
                    .map(|s| (s.clone(), unit.config.width, unit.config.height));
                (name.clone(), s)
            })
            .collect()
    }

    /// Names of the running cameras.
    pub fn cameras(&self) -> impl Iterator<Item = &str> {
        self.cameras.keys().map(String::as_str)
    }

    /// Every running camera's live counters and recent state, shared: what
    /// the status page reads between two [`Pipeline::stats`].
    pub fn counters(&self) -> Vec<(String, Arc<AnalysisCounters>)> {
        self.cameras
            .iter()
            .map(|(name, c)| (name.clone(), c.unit.counters.clone()))
            .collect()
    }

    /// Every running camera's counters.
    pub fn stats(&self) -> Vec<CameraStats> {
        self.cameras
            .iter()
            .map(|(name, c)| {
                let unit = &c.unit;
                let a = |f: fn(&AnalysisCounters) -> &AtomicU64| {
                    f(&unit.counters).load(Ordering::Relaxed)
                };
                CameraStats {
                    camera: name.clone(),
                    produced: c.capture.counters.produced.load(Ordering::Relaxed),
                    sampled: c.capture.counters.sampled.load(Ordering::Relaxed),
                    received: unit.received.load(Ordering::Relaxed),
                    dropped: unit.dropped.load(Ordering::Relaxed),
                    pending: unit.pending() as u64,
                    paused: unit.paused(),
                    skipped_paused: unit.skipped_paused.load(Ordering::Relaxed),
                    reconnects: c.capture.counters.reconnects.load(Ordering::Relaxed),
                    state: unit.capture_state(),
                    analysed: a(|x| &x.analysed),
                    encoded: a(|x| &x.encoded),
                    kept_tokens: a(|x| &x.kept_tokens),
                    total_tokens: a(|x| &x.total_tokens),
                    retention: a(|x| &x.last_retention_ppm) as f32 / 1e6,
                    changing: a(|x| &x.changing) == 1,
                    events: a(|x| &x.events),
                    held_back: a(|x| &x.held_back),
                    nothing_changed: a(|x| &x.nothing_changed),
                    memory: [
                        a(|x| &x.memory_entries[0]),
                        a(|x| &x.memory_entries[1]),
                        a(|x| &x.memory_entries[2]),
                    ],
                    outlines: unit.outlines.clone(),
                }
            })
            .collect()
    }

    /// True when `config` names another model than the running one: it has
    /// to be loaded ([`load_model`]) before [`Pipeline::apply`].
    pub fn model_changed(&self, config: &PipelineConfig) -> bool {
        config.model != self.model_config
    }

    /// Loads what `config` needs (the model, when it changed) and applies
    /// it: [`load_model`] then [`Pipeline::apply`] in one call, for callers
    /// that may wait for the load.
    pub async fn reload(&mut self, config: &PipelineConfig) -> Result<Changes, PipelineError> {
        let loaded = match &config.model {
            Some(m) if self.model_changed(config) => {
                Some(load_model(m, self.state_dir.as_deref()).await?)
            }
            _ => None,
        };
        self.apply(config, loaded).await
    }

    /// Applies a new config, keeping whatever it did not change running.
    /// `loaded` is the model of `config`, loaded beforehand when
    /// [`Pipeline::model_changed`] said so (ignored otherwise). Cameras that
    /// failed or ended are started again even if unchanged: a reload is how
    /// a user says "try again".
    pub async fn apply(
        &mut self,
        config: &PipelineConfig,
        loaded: Option<Arc<ModelStages>>,
    ) -> Result<Changes, PipelineError> {
        let mut changes = Changes::default();
        self.shutdown_timeout = Duration::from_millis(config.shutdown_timeout_ms);

        if self.model_changed(config) {
            let model = match (&config.model, loaded) {
                (None, _) => None,
                (Some(_), Some(model)) => Some(model),
                (Some(m), None) => Some(load_model(m, self.state_dir.as_deref()).await?),
            };
            // Every camera's next job sees the new model; each camera saves
            // the old model's memory and restores the new one's then.
            self.current.set_model(model);
            self.model_config = config.model.clone();
            changes.model_reloaded = true;
        }

        if config.workers != self.workers_config {
            self.workers.resize(&config.workers)?;
            self.workers_config = config.workers.clone();
            changes.workers_resized = true;
        }

        let wanted: BTreeMap<&String, &CameraConfig> =
            config.cameras.iter().filter(|(_, c)| c.enabled).collect();
        let obsolete: Vec<String> = self
            .cameras
            .iter()
            .filter(|(name, running)| {
                let gave_up = matches!(
                    running.unit.capture_state(),
                    CameraState::Failed { .. } | CameraState::Ended
                );
                gave_up || wanted.get(name).is_none_or(|c| **c != running.unit.config)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in obsolete {
            if let Some(running) = self.cameras.remove(&name) {
                self.workers.remove_lane(&name);
                running.unit.withdraw_states();
                let unit = running.unit.clone();
                stop_camera(&name, running, self.shutdown_timeout).await;
                // Saved before the camera restarts, so it comes back with
                // its memory (a reload does not forget).
                save_memory(unit).await;
            }
            if wanted.contains_key(&name) {
                changes.restarted.push(name);
            } else {
                changes.stopped.push(name);
            }
        }
        for (name, camera) in wanted {
            if !self.cameras.contains_key(name) {
                let running = self.start_camera(name, camera)?;
                self.cameras.insert(name.clone(), running);
                if !changes.restarted.contains(name) {
                    changes.started.push(name.clone());
                }
            }
        }
        Ok(changes)
    }

    /// Stops capture, lets the workers finish every frame already taken
    /// and the responses those trigger (events go to the sink meanwhile:
    /// keep reading it), then writes the memory snapshots. Bounded by
    /// `service.shutdown_timeout_ms` per step.
    pub async fn shutdown(mut self) {
        let timeout = self.shutdown_timeout;
        let cameras = std::mem::take(&mut self.cameras);
        for running in cameras.values() {
            running.cancel.cancel();
        }
        let mut units = Vec::new();
        for (name, running) in cameras {
            units.push(running.unit.clone());
            stop_camera(&name, running, timeout).await;
        }
        stop_workers(self.workers, timeout).await;
        for unit in units {
            save_memory(unit).await;
        }
    }
}

/// Builds a model folder's stages: its graphs on their backend, the pixel
/// preparation, the tokenizer and chat template. Blocking (seconds for a
/// large model); `glimpse eval` calls it as it is, the daemon through
/// [`load_model`].
pub fn build_model_stages(
    config: &ModelConfig,
    state_dir: Option<&std::path::Path>,
) -> Result<ModelStages, PipelineError> {
    let model = infer::load_in(config, state_dir)?;
    let preprocessor = Preprocessor::from_folder(model.folder())?;
    let responder = Responder::from_folder(model.folder(), crate::llm::MAX_ANSWER_TOKENS)?;
    let fingerprint = model_fingerprint(model.folder());
    Ok(ModelStages {
        fingerprint,
        model,
        preprocessor,
        responder,
    })
}

/// Loads a model and what its stages need, on a blocking thread (seconds;
/// minutes for a first TensorRT engine build). Does not touch a running
/// pipeline, so the service runs it in the background while the old model
/// serves.
pub async fn load_model(
    config: &ModelConfig,
    state_dir: Option<&std::path::Path>,
) -> Result<Arc<ModelStages>, PipelineError> {
    let config = config.clone();
    let state_dir = state_dir.map(|d| d.to_owned());
    tokio::task::spawn_blocking(move || -> Result<Arc<ModelStages>, PipelineError> {
        #[cfg(feature = "fault-injection")]
        crate::slow::slow_model_load();
        build_model_stages(&config, state_dir.as_deref()).map(Arc::new)
    })
    .await
    .map_err(|e| {
        PipelineError::Model(InferError::Input(format!("the model loader panicked: {e}")))
    })?
}

/// What the tokens in a memory snapshot depend on: the folder, its sizes
/// and ids, and the vision encoder's file (size and modification time, so
/// new weights in the same folder set the old snapshot aside without
/// hashing hundreds of MB at every start).
fn model_fingerprint(folder: &infer::ModelFolder) -> String {
    let info = &folder.info;
    let vision = &folder.graphs[0];
    let (bytes, modified) = std::fs::metadata(&vision.file)
        .map(|m| {
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            (m.len(), modified)
        })
        .unwrap_or_default();
    format!(
        "{} grid {} hidden {} vocab {} image token {} vision {} bytes (+{} external) modified {}",
        folder.path.display(),
        info.grid,
        info.hidden,
        info.vocab,
        info.image_token_id,
        bytes,
        vision.external_bytes,
        modified
    )
}

/// Writes a camera's memory snapshot (blocking file I/O, off the runtime).
async fn save_memory(camera: Arc<Camera>) {
    if let Err(e) = tokio::task::spawn_blocking(move || camera.save_memory()).await {
        tracing::warn!("saving a memory snapshot failed: {e}");
    }
}

async fn stop_camera(name: &str, running: RunningCamera, timeout: Duration) {
    running.cancel.cancel();
    let capture = running.capture;
    let joined = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        while !capture.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        capture.is_finished().then(|| capture.join()).is_some()
    })
    .await;
    if !matches!(joined, Ok(true)) {
        tracing::warn!(
            camera = name,
            "capture thread did not stop in time; abandoning it"
        );
    }
    tracing::info!(camera = name, "camera stopped");
}

async fn stop_workers(workers: WorkerPool, timeout: Duration) {
    match tokio::task::spawn_blocking(move || workers.shutdown(timeout)).await {
        Ok(0) => {}
        Ok(stuck) => tracing::warn!(
            stuck,
            "model workers still busy at shutdown; abandoning them"
        ),
        Err(e) => tracing::error!("stopping the model workers failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn new_vision_weights_in_the_same_folder_change_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/test-tiny");
        let model = dir.path().join("model");
        std::fs::create_dir_all(model.join("onnx")).unwrap();
        for sub in ["", "onnx"] {
            for entry in std::fs::read_dir(source.join(sub)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    std::fs::copy(&path, model.join(sub).join(path.file_name().unwrap())).unwrap();
                }
            }
        }
        let open = || infer::ModelFolder::open(&model, "").unwrap();
        let before = model_fingerprint(&open());
        assert_eq!(before, model_fingerprint(&open()), "stable across loads");
        // Same bytes written again later, as a copy of new weights would be.
        let vision = model.join("onnx/vision_encoder.onnx");
        let file = std::fs::File::options().write(true).open(&vision).unwrap();
        file.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
            .unwrap();
        assert_ne!(before, model_fingerprint(&open()));
    }

    fn config(text: &str) -> PipelineConfig {
        let env = crate::config::Environment {
            state_directory: Some("/tmp/glimpse-test".into()),
            ..Default::default()
        };
        crate::config::parse(Path::new("t.toml"), text, &env)
            .unwrap()
            .pipeline()
    }

    const TWO: &str = r#"
[cameras.a]
fps = 20
width = 32
height = 32
source = { kind = "synthetic", frame_rate = 20 }
[cameras.b]
fps = 20
width = 32
height = 32
source = { kind = "synthetic", frame_rate = 20 }
"#;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_flow_and_reload_touches_only_what_changed() {
        let beats = Heartbeats::new();
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let mut pipeline = Pipeline::build(&config(TWO), &beats, tx, Operator::default())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let stats = pipeline.stats();
        assert_eq!(stats.len(), 2);
        assert!(stats.iter().all(|s| s.received > 0), "{stats:?}");

        let changed = TWO.replace("[cameras.b]\nfps = 20", "[cameras.b]\nfps = 10")
            + "[cameras.c]\nsource = { kind = \"synthetic\" }\n";
        let changes = pipeline.reload(&config(&changed)).await.unwrap();
        assert_eq!(changes.restarted, vec!["b"]);
        assert_eq!(changes.started, vec!["c"]);
        assert!(changes.stopped.is_empty() && !changes.workers_resized);
        let a_before = pipeline.stats()[0].received;
        assert!(
            a_before > 0,
            "camera a kept its counters: it was not restarted"
        );

        let changes = pipeline
            .reload(&config(
                &(TWO.replace("[cameras.b]", "[cameras.b]\nenabled = false")
                    + "[workers]\nthreads = 2\n"),
            ))
            .await
            .unwrap();
        assert_eq!(changes.stopped, vec!["b", "c"]);
        assert!(changes.workers_resized);
        assert_eq!(pipeline.workers().threads(), 2);
        assert_eq!(pipeline.cameras().collect::<Vec<_>>(), vec!["a"]);

        pipeline.shutdown().await;
        assert!(beats.is_empty(), "every stage unregistered its heartbeat");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reload_retries_a_failed_camera_even_if_unchanged() {
        let text =
            "[cameras.gone]\nsource = { kind = \"file\", path = \"/nonexistent/clip.mp4\" }\n";
        let beats = Heartbeats::new();
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let mut pipeline = Pipeline::build(&config(text), &beats, tx, Operator::default())
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(pipeline.stats()[0].state, CameraState::Failed { .. }) {
            assert!(Instant::now() < deadline, "{:?}", pipeline.stats());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let changes = pipeline.reload(&config(text)).await.unwrap();
        assert_eq!(changes.restarted, vec!["gone"]);
        pipeline.shutdown().await;
    }
}
