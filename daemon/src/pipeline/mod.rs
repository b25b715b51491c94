//! The pipeline: the one place that builds stages and wires them together.
//!
//! Per camera (DESIGN §2): capture (its own thread) → drop-oldest queue →
//! the camera task (async; hands frames on to the model stages as they
//! arrive) ; one model worker pool serves every camera. Stages never know
//! about each other: they exchange plain data (`capture::Frame`) through
//! channels created here.
//!
//! With a model, the camera task hands every frame to the worker pool as an
//! `Encode` job that runs the model stages ([`analysis`]): pixel gate,
//! vision encoder, token dropping, trigger; a trigger queues a `Proactive`
//! job that asks the model and sends [`Event`]s to the event sink.
//!
//! The pipeline also applies a reloaded config: cameras that were removed
//! or changed are stopped, new or changed ones started, untouched ones keep
//! running, and the worker pool is rebuilt only when its settings changed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use tokio_util::sync::CancellationToken;

pub mod analysis;

pub use analysis::{AnalysisCounters, CameraAnalysis, EventSink, ModelStages};

use crate::capture::{self, CameraConfig, CameraState, CaptureError, CaptureHandle, Frame};
use crate::config::Config;
use crate::health::{Beat, Heartbeats};
use crate::infer::{self, InferError, ModelConfig};
use crate::llm::{LlmError, Responder};
use crate::queue;
use crate::trigger::Event;
use crate::vision::Preprocessor;
use crate::workers::{Priority, Submitter, WorkerError, WorkerPool, WorkersConfig};

/// How often an idle camera task beats its heartbeat.
const IDLE_BEAT: Duration = Duration::from_millis(500);

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
}

/// The running pipeline.
pub struct Pipeline {
    cameras: BTreeMap<String, RunningCamera>,
    /// The loaded model and the config it came from; the model stages run
    /// it on the worker pool.
    model: Option<(ModelConfig, Arc<ModelStages>)>,
    /// Where the model stages send events.
    events: EventSink,
    /// Where memory snapshots go.
    state_dir: Option<std::path::PathBuf>,
    /// Watch rules added at run time, by camera.
    runtime_rules: BTreeMap<String, Vec<String>>,
    workers: WorkerPool,
    workers_config: WorkersConfig,
    heartbeats: Heartbeats,
    shutdown_timeout: Duration,
}

struct RunningCamera {
    config: CameraConfig,
    cancel: CancellationToken,
    capture: CaptureHandle,
    task: tokio::task::JoinHandle<()>,
    received: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    analysis: Option<Arc<AnalysisCounters>>,
    /// The camera's model-stage state, for its memory snapshot.
    analysis_state: Option<Arc<Mutex<CameraAnalysis>>>,
    // Written by the capture thread on each change, read by the stats: a
    // std mutex around a small value, never held across an await.
    state: Arc<Mutex<CameraState>>,
}

impl RunningCamera {
    fn state(&self) -> CameraState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
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
    /// Frames that reached the pipeline.
    pub received: u64,
    /// Frames dropped because the pipeline was behind.
    pub dropped: u64,
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
    /// Frames held in memory, per pyramid level.
    pub memory: [u64; 3],
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
    /// Whether the worker pool was rebuilt.
    pub workers_rebuilt: bool,
    /// Whether the model was loaded again (or dropped).
    pub model_reloaded: bool,
}

impl Changes {
    /// True when the reload changed nothing that runs.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

impl Pipeline {
    /// Builds and starts every stage of `config`; events go to `events`.
    /// Must run inside the tokio runtime (camera tasks are spawned on it);
    /// loads the model off it.
    pub async fn build(
        config: &Config,
        heartbeats: &Heartbeats,
        events: mpsc::Sender<Event>,
    ) -> Result<Pipeline, PipelineError> {
        let model = match &config.model {
            Some(m) => Some((m.clone(), load_model(m, config.service.state_dir()).await?)),
            None => None,
        };
        let workers = config.workers.build(heartbeats)?;
        let mut pipeline = Pipeline {
            model,
            events,
            state_dir: config.service.state_dir().map(|d| d.to_owned()),
            runtime_rules: BTreeMap::new(),
            cameras: BTreeMap::new(),
            workers,
            workers_config: config.workers.clone(),
            heartbeats: heartbeats.clone(),
            shutdown_timeout: Duration::from_millis(config.service.shutdown_timeout_ms),
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
        let cancel = CancellationToken::new();
        let dropped = rx.dropped();
        let state = Arc::new(Mutex::new(CameraState::Starting));
        let shared = state.clone();
        let report = Box::new(move |new: &CameraState| {
            *shared.lock().unwrap_or_else(|p| p.into_inner()) = new.clone();
        });
        let capture = capture::start(name, config, tx, report, cancel.clone())?;
        let received = Arc::new(AtomicU64::new(0));
        let beat = self.heartbeats.register(format!("camera {name}"));
        let analysis = self.model.as_ref().map(|(_, stages)| {
            let snapshot = self
                .state_dir
                .as_ref()
                .map(|d| d.join("memory").join(format!("{name}.mem")));
            let mut state = CameraAnalysis::new(name, config, stages, snapshot);
            state.runtime_rules = self.runtime_rules.get(name).cloned().unwrap_or_default();
            let counters = state.counters.clone();
            let wiring = Analysis {
                state: Arc::new(Mutex::new(state)),
                stages: stages.clone(),
                pool: self.workers.submitter(),
                events: self.events.clone(),
            };
            (wiring, counters)
        });
        let (wiring, counters) = analysis.map_or((None, None), |(w, c)| (Some(w), Some(c)));
        let analysis_state = wiring.as_ref().map(|w| w.state.clone());
        let task = tokio::spawn(run_camera(
            rx,
            received.clone(),
            beat,
            cancel.clone(),
            wiring,
        ));
        tracing::debug!(
            camera = name,
            fps = config.fps,
            kind = config.source.kind(),
            "camera started"
        );
        Ok(RunningCamera {
            config: config.clone(),
            cancel,
            capture,
            task,
            received,
            dropped,
            analysis: counters,
            analysis_state,
            state,
        })
    }

    /// The loaded model, if the config names one.
    pub fn model(&self) -> Option<&infer::Model> {
        self.model.as_ref().map(|(_, m)| &m.model)
    }

    /// Queues `question` about `camera` for the model, ahead of every other
    /// job; the answer (or why there is none) comes on the returned channel.
    pub fn ask(
        &self,
        camera: &str,
        question: String,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Event, String>>, String> {
        let running = self
            .cameras
            .get(camera)
            .ok_or_else(|| format!("camera {camera:?} is not running"))?;
        let (Some(state), Some((_, stages))) = (&running.analysis_state, &self.model) else {
            return Err("no model is configured to answer questions".to_owned());
        };
        let (state, stages) = (state.clone(), stages.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let camera = camera.to_owned();
        self.workers
            .submit(
                Priority::Answer,
                Box::new(move || {
                    // The asker may have given up; nothing to do then.
                    let _ = tx.send(analysis::answer(&camera, &state, &stages, &question));
                }),
            )
            .map_err(|e| e.to_string())?;
        Ok(rx)
    }

    /// Sets the watch rules added at run time (over MQTT), by camera; they
    /// are asked after the config's rules.
    pub fn set_runtime_rules(&mut self, rules: BTreeMap<String, Vec<String>>) {
        for (name, running) in &self.cameras {
            if let Some(state) = &running.analysis_state {
                state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .runtime_rules = rules.get(name).cloned().unwrap_or_default();
            }
        }
        self.runtime_rules = rules;
    }

    /// The model worker pool.
    pub fn workers(&self) -> &WorkerPool {
        &self.workers
    }

    /// Names of the running cameras.
    pub fn cameras(&self) -> impl Iterator<Item = &str> {
        self.cameras.keys().map(String::as_str)
    }

    /// Every running camera's counters.
    pub fn stats(&self) -> Vec<CameraStats> {
        self.cameras
            .iter()
            .map(|(name, c)| {
                let a = |f: fn(&AnalysisCounters) -> &AtomicU64| {
                    c.analysis
                        .as_ref()
                        .map_or(0, |x| f(x).load(Ordering::Relaxed))
                };
                CameraStats {
                    camera: name.clone(),
                    produced: c.capture.counters.produced.load(Ordering::Relaxed),
                    sampled: c.capture.counters.sampled.load(Ordering::Relaxed),
                    received: c.received.load(Ordering::Relaxed),
                    dropped: c.dropped.load(Ordering::Relaxed),
                    reconnects: c.capture.counters.reconnects.load(Ordering::Relaxed),
                    state: c.state(),
                    analysed: a(|x| &x.analysed),
                    encoded: a(|x| &x.encoded),
                    kept_tokens: a(|x| &x.kept_tokens),
                    total_tokens: a(|x| &x.total_tokens),
                    retention: a(|x| &x.last_retention_ppm) as f32 / 1e6,
                    changing: a(|x| &x.changing) == 1,
                    events: a(|x| &x.events),
                    memory: [
                        a(|x| &x.memory_entries[0]),
                        a(|x| &x.memory_entries[1]),
                        a(|x| &x.memory_entries[2]),
                    ],
                }
            })
            .collect()
    }

    /// Applies a new config, keeping whatever it did not change running.
    /// Cameras that failed or ended are started again even if unchanged:
    /// a reload is how a user says "try again".
    pub async fn apply(&mut self, config: &Config) -> Result<Changes, PipelineError> {
        let mut changes = Changes::default();
        self.shutdown_timeout = Duration::from_millis(config.service.shutdown_timeout_ms);
        // Memory is saved under the model that made it, even if the model
        // changes now.
        let previous_fingerprint = self.fingerprint();

        // The new model is loaded before the old one is let go, so a broken
        // folder leaves the running model in place.
        if config.model.as_ref() != self.model.as_ref().map(|(c, _)| c) {
            self.model = match &config.model {
                Some(m) => Some((m.clone(), load_model(m, self.state_dir.as_deref()).await?)),
                None => None,
            };
            changes.model_reloaded = true;
        }

        if config.workers != self.workers_config {
            let new = config.workers.build(&self.heartbeats)?;
            let old = std::mem::replace(&mut self.workers, new);
            self.workers_config = config.workers.clone();
            stop_workers(old, self.shutdown_timeout).await;
            changes.workers_rebuilt = true;
        }

        let wanted: BTreeMap<&String, &CameraConfig> =
            config.cameras.iter().filter(|(_, c)| c.enabled).collect();
        let obsolete: Vec<String> = self
            .cameras
            .iter()
            .filter(|(name, running)| {
                let gave_up = matches!(
                    running.state(),
                    CameraState::Failed { .. } | CameraState::Ended
                );
                gave_up || wanted.get(name).is_none_or(|c| **c != running.config)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in obsolete {
            if let Some(mut running) = self.cameras.remove(&name) {
                let state = running.analysis_state.take();
                stop_camera(&name, running, self.shutdown_timeout).await;
                // Saved before the camera restarts, so it comes back with
                // its memory (a reload does not forget).
                save_memory(state, previous_fingerprint.clone()).await;
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

    /// Stops capture, lets the camera tasks drain, stops the workers (they
    /// finish the queued frames), then writes the memory snapshots.
    pub async fn shutdown(mut self) {
        let timeout = self.shutdown_timeout;
        let cameras = std::mem::take(&mut self.cameras);
        for running in cameras.values() {
            running.cancel.cancel();
        }
        let mut states = Vec::new();
        for (name, mut running) in cameras {
            states.push(running.analysis_state.take());
            stop_camera(&name, running, timeout).await;
        }
        let fingerprint = self.fingerprint();
        stop_workers(self.workers, timeout).await;
        for state in states {
            save_memory(state, fingerprint.clone()).await;
        }
    }

    fn fingerprint(&self) -> Option<String> {
        self.model.as_ref().map(|(_, m)| m.fingerprint.clone())
    }
}

/// Most tokens a description or rule answer may take.
const MAX_ANSWER_TOKENS: usize = 48;

/// Loads a model and what its stages need, on a blocking thread (seconds).
async fn load_model(
    config: &ModelConfig,
    state_dir: Option<&std::path::Path>,
) -> Result<Arc<ModelStages>, PipelineError> {
    let config = config.clone();
    let state_dir = state_dir.map(|d| d.to_owned());
    tokio::task::spawn_blocking(move || -> Result<Arc<ModelStages>, PipelineError> {
        let model = infer::load_in(&config, state_dir.as_deref())?;
        let preprocessor = Preprocessor::from_folder(model.folder())?;
        let responder = Responder::from_folder(model.folder(), MAX_ANSWER_TOKENS)?;
        let fingerprint = model_fingerprint(model.folder());
        Ok(Arc::new(ModelStages {
            fingerprint,
            model,
            preprocessor,
            responder,
        }))
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
async fn save_memory(state: Option<Arc<Mutex<CameraAnalysis>>>, fingerprint: Option<String>) {
    let (Some(state), Some(fingerprint)) = (state, fingerprint) else {
        return;
    };
    let saved = tokio::task::spawn_blocking(move || {
        state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .save_memory(&fingerprint);
    })
    .await;
    if let Err(e) = saved {
        tracing::warn!("saving a memory snapshot failed: {e}");
    }
}

/// The wiring of one camera's model stages.
struct Analysis {
    state: Arc<Mutex<CameraAnalysis>>,
    stages: Arc<ModelStages>,
    pool: Submitter,
    events: EventSink,
}

async fn stop_camera(name: &str, running: RunningCamera, timeout: Duration) {
    running.cancel.cancel();
    if tokio::time::timeout(timeout, running.task).await.is_err() {
        tracing::warn!(
            camera = name,
            "camera task did not stop in time; abandoning it"
        );
    }
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

/// One camera's consumer: takes frames off the queue as they arrive. The
/// model stages (pixel gate, encoder, token dropping, memory) attach here.
async fn run_camera(
    mut frames: queue::Receiver<Frame>,
    received: Arc<AtomicU64>,
    beat: Beat,
    cancel: CancellationToken,
    analysis: Option<Analysis>,
) {
    let mut expected_seq = 0;
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => break,
            frame = tokio::time::timeout(IDLE_BEAT, frames.recv()) => frame,
        };
        beat.beat();
        match frame {
            Ok(Some(frame)) => {
                received.fetch_add(1, Ordering::Relaxed);
                if frame.seq != expected_seq {
                    tracing::debug!(camera = %frame.camera, skipped = frame.seq - expected_seq, "pipeline behind: frames dropped");
                }
                expected_seq = frame.seq + 1;
                if let Some(a) = &analysis {
                    let (state, stages, pool, events) = (
                        a.state.clone(),
                        a.stages.clone(),
                        a.pool.clone(),
                        a.events.clone(),
                    );
                    // Encoding jobs are frames: the pool drops the oldest when
                    // behind, like the capture queue.
                    let job =
                        Box::new(move || analysis::analyse(frame, &state, &stages, &pool, &events));
                    if let Err(e) = a.pool.submit(Priority::Encode, job) {
                        tracing::debug!("frame not analysed: {e}");
                    }
                }
            }
            // The source ended: nothing more will come.
            Ok(None) => break,
            // No frame for a while: still alive, keep waiting.
            Err(_) => {}
        }
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

    fn config(text: &str) -> Config {
        let env = crate::config::Environment {
            state_directory: Some("/tmp/glimpse-test".into()),
            ..Default::default()
        };
        crate::config::parse(Path::new("t.toml"), text, &env).unwrap()
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
        let (tx, _rx) = mpsc::channel(8);
        let mut pipeline = Pipeline::build(&config(TWO), &beats, tx).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let stats = pipeline.stats();
        assert_eq!(stats.len(), 2);
        assert!(stats.iter().all(|s| s.received > 0), "{stats:?}");

        let changed = TWO.replace("[cameras.b]\nfps = 20", "[cameras.b]\nfps = 10")
            + "[cameras.c]\nsource = { kind = \"synthetic\" }\n";
        let changes = pipeline.apply(&config(&changed)).await.unwrap();
        assert_eq!(changes.restarted, vec!["b"]);
        assert_eq!(changes.started, vec!["c"]);
        assert!(changes.stopped.is_empty() && !changes.workers_rebuilt);
        let a_before = pipeline.stats()[0].received;
        assert!(
            a_before > 0,
            "camera a kept its counters: it was not restarted"
        );

        let changes = pipeline
            .apply(&config(
                &(TWO.replace("[cameras.b]", "[cameras.b]\nenabled = false")
                    + "[workers]\nthreads = 2\n"),
            ))
            .await
            .unwrap();
        assert_eq!(changes.stopped, vec!["b", "c"]);
        assert!(changes.workers_rebuilt);
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
        let (tx, _rx) = mpsc::channel(8);
        let mut pipeline = Pipeline::build(&config(text), &beats, tx).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(pipeline.stats()[0].state, CameraState::Failed { .. }) {
            assert!(Instant::now() < deadline, "{:?}", pipeline.stats());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let changes = pipeline.apply(&config(text)).await.unwrap();
        assert_eq!(changes.restarted, vec!["gone"]);
        pipeline.shutdown().await;
    }
}
