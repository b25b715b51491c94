//! The model stages of one camera, wired: pixel gate → vision encoder →
//! token dropping → memory → trigger → responder → events.
//!
//! A model worker takes a camera's next frame and runs [`analyse`] on it; a
//! trigger queues a `Proactive` job (`respond`) that asks the model and
//! sends the events. The per-camera state (the gate's and the dropper's
//! references, the trigger, the memory) belongs to the camera
//! (`pipeline::camera`), behind a mutex that only its own jobs take, so
//! cameras run in parallel on several workers while each camera's frames
//! are analysed in order. A state is built for one model: its tokens and
//! memory mean nothing to another (docs/architecture.md §8, "The swappable model").

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use super::regions::Regions;
use super::respond::{RuleAsk, View};
use super::{CameraConfig, Look};
use crate::capture::Frame;
use crate::dtd::{Kept, PixelGate, TokenDropper};
use crate::event::{Activity, Evidence, Produced, RuleState, RuleStatus};
use crate::histogram::Histogram;
use crate::infer::{InferError, Model};
use crate::llm::{Responder, Seen, Visual, Words};
use crate::memory::{self, MemoryBank};
use crate::snapshot::{Picture, Snapshotter};
use crate::trigger::{RuleBook, SceneTrigger};
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
    /// What memory snapshots are tied to: this model's identity.
    pub fingerprint: String,
}

/// Where events go. Events are never dropped: a full channel makes the
/// worker wait.
pub type EventSink = mpsc::Sender<Produced>;

/// Every camera's watch rules and their states, by camera: published to
/// whoever reads them (the service hands them to MQTT). A watch channel:
/// only the latest states matter, and a worker never waits on it.
pub type RuleStates = BTreeMap<String, Vec<RuleStatus>>;

/// One camera's watch rules as states: its [`RuleBook`], updated by the
/// proactive jobs' answers and by rule changes, and where the camera's
/// states are published after each change. Shared by the camera and its
/// jobs (which run off the camera's lock).
pub struct CameraRules {
    camera: String,
    // A std mutex: held for one answer's bookkeeping, never across a model
    // call.
    book: Mutex<RuleBook>,
    publish: watch::Sender<RuleStates>,
}

impl CameraRules {
    /// The rules of `camera` (none yet), published on `publish`.
    pub fn new(
        camera: &str,
        debounce: crate::trigger::Debounce,
        publish: watch::Sender<RuleStates>,
    ) -> CameraRules {
        CameraRules {
            camera: camera.to_owned(),
            book: Mutex::new(RuleBook::new(debounce)),
            publish,
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, RuleBook> {
        // A panic mid-update leaves a valid book (each field is set whole).
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the rules (the config's, then MQTT's) and publishes the list
    /// (always: a new camera's list must be published even when empty).
    pub fn set(&self, config: &[String], mqtt: &[String]) {
        let statuses = {
            let mut book = self.book();
            book.set_rules(config, mqtt);
            book.statuses()
        };
        self.publish_statuses(statuses);
    }

    /// Every rule's text, config rules first: what to ask the model.
    pub fn texts(&self) -> Vec<String> {
        self.book().texts()
    }

    /// Takes the model's answer to `rule` about the scene at `pts`; when
    /// the rule's state changed, the state it left and its new status
    /// (published).
    pub fn record(
        &self,
        rule: &str,
        pts: Duration,
        yes: bool,
        answer: &str,
    ) -> Option<(RuleState, RuleStatus)> {
        let (changed, statuses) = {
            let mut book = self.book();
            let changed = book.record(rule, pts, yes, answer);
            (changed, book.statuses())
        };
        if changed.is_some() {
            self.publish_statuses(statuses);
        }
        changed
    }

    fn publish_statuses(&self, statuses: Vec<RuleStatus>) {
        self.publish.send_modify(|all| {
            all.insert(self.camera.clone(), statuses);
        });
    }

    /// Makes every rule unknown (the camera's analysis is paused) and
    /// publishes that.
    pub fn forget(&self) {
        let statuses = {
            let mut book = self.book();
            book.forget().then(|| book.statuses())
        };
        if let Some(statuses) = statuses {
            self.publish_statuses(statuses);
        }
    }

    /// Takes the camera's rules off the published states (it stopped).
    pub fn withdraw(&self) {
        self.publish.send_modify(|all| {
            all.remove(&self.camera);
        });
    }
}

/// Memory time: the stream time of a camera's frames made never to go
/// back, so that the memory (and the evidence and spans of events, which
/// read it) stays in time order across restarts, reconnects and loops. A
/// file source's stream time restarts at 0 at each start while the memory
/// restored from its snapshot ends later: when a frame's time would go
/// back, the times after it are shifted to follow where the memory ended,
/// one frame interval later (the smallest step seen; none after a restart),
/// so a looped clip's second pass runs exactly one clip length later.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemoryClock {
    offset: Duration,
    last: Duration,
    /// Whether a frame has been timed (`last` is then a frame's time, not
    /// a restored memory's end).
    timed: bool,
    /// The smallest step between two frames seen so far.
    step: Option<Duration>,
}

impl MemoryClock {
    /// A clock for a memory that ends at `end` (zero when empty).
    pub fn new(end: Duration) -> MemoryClock {
        MemoryClock {
            offset: Duration::ZERO,
            last: end,
            timed: false,
            step: None,
        }
    }

    /// The memory time of a frame at stream time `pts`.
    pub fn time(&mut self, pts: Duration) -> Duration {
        let time = pts + self.offset;
        if time < self.last {
            let step = self.step.unwrap_or_default();
            self.offset = (self.last + step).saturating_sub(pts);
        } else if time > self.last && self.timed {
            let step = time - self.last;
            self.step = Some(self.step.map_or(step, |s| s.min(step)));
        }
        self.timed = true;
        self.last = pts + self.offset;
        self.last
    }
}

/// One camera's analysis state.
pub struct CameraAnalysis {
    camera: String,
    gate: PixelGate,
    dropper: TokenDropper,
    trigger: SceneTrigger,
    memory: MemoryBank,
    /// Frame times as the memory takes them (never going back).
    clock: MemoryClock,
    /// The model this state was built for; its memory is saved under it.
    fingerprint: String,
    /// The next rule to ask when a camera has more rules than one job asks.
    rule_cursor: usize,
    /// True until this state has seen its first frame, which it keeps whole
    /// (no reference yet): not a change to speak up about, whatever the
    /// capture says (a new model's first frame comes mid-stream).
    fresh: bool,
    snapshot: Option<(PathBuf, Duration)>,
    last_snapshot: Instant,
    /// Whether the last memory snapshot write failed (logged once).
    snapshot_failing: bool,
    next_seq: u64,
    activity: Activity,
    /// Counters read by the stats.
    pub counters: Arc<AnalysisCounters>,
    /// The camera's watch rules and their states (the one list of its
    /// rules: the config's and MQTT's), set by the camera; none in `eval`.
    pub rule_states: Option<Arc<CameraRules>>,
    /// Event snapshots, set by the camera when enabled.
    pub snapshotter: Option<Snapshotter>,
    /// The last sampled frame, downscaled for snapshots (only while
    /// snapshots are on): the camera never keeps a full frame.
    picture: Option<Arc<Picture>>,
    /// Motion masks and zones on the token grid.
    regions: Regions,
    /// The patches whose pixels changed past the gate's threshold in the
    /// last frame (empty after a discontinuity): where the change is.
    changed: Vec<bool>,
    /// What the camera asks on a change, and what is no news.
    pub words: Arc<Words>,
    /// Memory time of the last sampled frame: "now" for a description.
    last_pts: Duration,
}

/// How many recent retention values a camera keeps for the status page:
/// 5 minutes at the default 2 fps, a few kB.
pub const RECENT_RETENTION: usize = 600;

/// Per-camera counters of the model stages, and the few copies of recent
/// state that the status page reads (docs/architecture.md §8): written by
/// the camera's jobs, read by the HTTP server without touching the
/// camera's analysis lock.
#[derive(Debug)]
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
    /// Descriptions and watch-rule answers held back because the model was
    /// less sure of them than `trigger.min_confidence`.
    pub held_back: AtomicU64,
    /// Descriptions not published because they said only that nothing
    /// changed.
    pub nothing_changed: AtomicU64,
    /// Frames in memory, per level.
    pub memory_entries: [AtomicU64; 3],
    /// Memory time of the oldest and newest remembered frame, in ms.
    pub memory_span_ms: [AtomicU64; 2],
    /// Retention of every analysed frame.
    pub retention: Histogram,
    /// (memory time in s, retention) of the last [`RECENT_RETENTION`]
    /// analysed frames. A std mutex held for one push or one copy.
    pub recent: Mutex<VecDeque<(f64, f32)>>,
    /// The last sampled frame, downscaled, with its kept tokens (while
    /// snapshots are on). A std mutex held for a pointer swap or copy.
    pub latest: Mutex<Option<Arc<Picture>>>,
    /// What the camera asks the model on a change (once a model is
    /// loaded), for the status page.
    pub words: Mutex<Option<Arc<Words>>>,
}

impl Default for AnalysisCounters {
    fn default() -> Self {
        AnalysisCounters {
            analysed: AtomicU64::default(),
            encoded: AtomicU64::default(),
            kept_tokens: AtomicU64::default(),
            total_tokens: AtomicU64::default(),
            last_retention_ppm: AtomicU64::default(),
            changing: AtomicU64::default(),
            stale: AtomicU64::default(),
            errors: AtomicU64::default(),
            events: AtomicU64::default(),
            held_back: AtomicU64::default(),
            nothing_changed: AtomicU64::default(),
            memory_entries: Default::default(),
            memory_span_ms: Default::default(),
            retention: Histogram::new(crate::histogram::RATIO),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_RETENTION)),
            latest: Mutex::new(None),
            words: Mutex::new(None),
        }
    }
}

impl AnalysisCounters {
    /// The recent retention values, oldest first (a copy).
    pub fn recent_retention(&self) -> Vec<(f64, f32)> {
        lock(&self.recent).iter().copied().collect()
    }

    /// What the camera asks the model on a change, once a model is loaded.
    pub fn words(&self) -> Option<Arc<Words>> {
        lock(&self.words).clone()
    }

    /// The last sampled frame, if snapshots are on.
    pub fn latest_picture(&self) -> Option<Arc<Picture>> {
        lock(&self.latest).clone()
    }

    fn push_retention(&self, at_s: f64, retention: f32) {
        self.retention.observe(f64::from(retention));
        let mut recent = lock(&self.recent);
        if recent.len() == RECENT_RETENTION {
            recent.pop_front();
        }
        recent.push_back((at_s, retention));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain values, each written whole: valid whatever panicked.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl CameraAnalysis {
    /// The state of camera `name` for `stages`' model. Its memory is
    /// restored from `snapshot` (a file in the state directory) when one
    /// of the same model exists; an unusable one is moved aside.
    pub fn new(
        name: &str,
        config: &CameraConfig,
        stages: &ModelStages,
        snapshot: Option<PathBuf>,
    ) -> CameraAnalysis {
        let info = &stages.model.folder().info;
        let grid = info.grid;
        let look = Look::default_for(stages.model.folder().prompt_layout);
        let regions = Regions::new(config, grid, look);
        let words = stages.responder.words(
            config.trigger.describe.as_deref(),
            config.trigger.context.as_deref(),
            config.trigger.no_news.as_deref(),
        );
        let history = words.describe_window.unwrap_or_default();
        let mut fresh = MemoryBank::new(grid, info.hidden, &config.memory);
        fresh.keep_history(history);
        let mut memory = match snapshot
            .as_deref()
            .map(|p| memory::load_snapshot(p, &stages.fingerprint, &fresh))
        {
            Some(Ok(Some(bank))) => {
                tracing::info!(
                    camera = name,
                    frames = bank.encoded(),
                    "memory restored from its snapshot"
                );
                bank
            }
            Some(Err(e)) => {
                set_aside(snapshot.as_deref(), &e);
                fresh
            }
            _ => fresh,
        };
        memory.keep_history(history);
        CameraAnalysis {
            camera: name.to_owned(),
            gate: PixelGate::new(config.dtd.tau_pix, grid, grid).ignoring(regions.motion.clone()),
            dropper: TokenDropper::new(&config.dtd),
            trigger: SceneTrigger::new(&config.trigger),
            clock: MemoryClock::new(memory.end()),
            memory,
            fingerprint: stages.fingerprint.clone(),
            rule_cursor: 0,
            fresh: true,
            snapshot: snapshot.map(|p| (p, Duration::from_secs(config.memory.snapshot_interval_s))),
            last_snapshot: Instant::now(),
            snapshot_failing: false,
            next_seq: 0,
            activity: Activity::Idle,
            counters: Arc::new(AnalysisCounters::default()),
            rule_states: None,
            snapshotter: None,
            picture: None,
            regions,
            changed: Vec::new(),
            words: Arc::new(words),
            last_pts: Duration::ZERO,
        }
    }

    /// Gate → encoder → token dropping → memory, for one sampled frame:
    /// whether the frame was encoded, and what of it was kept. A frame the
    /// gate skips keeps nothing and adds nothing to the memory. On an
    /// encoder failure the gate forgets its reference, so the next frame is
    /// compared with what the model last saw.
    pub fn observe(
        &mut self,
        frame: &Frame,
        stages: &ModelStages,
    ) -> Result<(bool, Kept), InferError> {
        let info = &stages.model.folder().info;
        // Everything downstream (memory, trigger spans, events) takes the
        // memory time; the trigger keeps the stream's own.
        let pts = self.clock.time(frame.pts);
        self.last_pts = pts;
        let gate = self.gate.check(frame);
        let tau_pix = self.gate.tau_pix();
        self.changed = gate.change.iter().map(|&c| c >= tau_pix).collect();
        if !gate.encode {
            let mut kept = Kept::nothing(frame.meta(), info.grid, info.grid, info.hidden);
            kept.meta.pts = pts;
            return Ok((false, kept));
        }
        self.counters.encoded.fetch_add(1, Ordering::Relaxed);
        let mut backend = stages.model.backend();
        let tokens = match vision::encode(backend.as_mut(), &stages.preprocessor, frame) {
            Ok(tokens) => tokens,
            Err(e) => {
                self.gate.reset();
                return Err(e);
            }
        };
        let mut kept = self.dropper.drop_unchanged(tokens);
        kept.meta.pts = pts;
        // Memory counts encoded frames only.
        self.memory.push(&kept);
        for (counter, len) in self.counters.memory_entries.iter().zip(self.memory.lens()) {
            counter.store(len as u64, Ordering::Relaxed);
        }
        if let Some((oldest, newest)) = self.memory.span() {
            let [from, to] = &self.counters.memory_span_ms;
            from.store(oldest.as_millis() as u64, Ordering::Relaxed);
            to.store(newest.as_millis() as u64, Ordering::Relaxed);
        }
        Ok((true, kept))
    }

    /// The last sampled frame, downscaled, if snapshots are on.
    pub fn picture(&self) -> Option<Arc<Picture>> {
        self.picture.clone()
    }

    /// The fingerprint of the model this state was built for.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Writes the memory snapshot now, under the model it was made with,
    /// if this camera has one.
    pub fn save_memory(&mut self) {
        if let Some((path, _)) = &self.snapshot {
            match memory::save_snapshot(path, &self.memory, &self.fingerprint) {
                Ok(()) if std::mem::take(&mut self.snapshot_failing) => {
                    tracing::info!(camera = %self.camera, path = %path.display(), "the memory snapshot can be written again")
                }
                Ok(()) => {
                    tracing::debug!(camera = %self.camera, path = %path.display(), "memory snapshot written")
                }
                // Once per spell (a full disk fails every interval); it is
                // tried again at the next interval and at the stop.
                Err(e) if !std::mem::replace(&mut self.snapshot_failing, true) => {
                    tracing::warn!(camera = %self.camera, "cannot write the memory snapshot; retried every memory.snapshot_interval_s: {e}")
                }
                Err(e) => {
                    tracing::debug!(camera = %self.camera, "cannot write the memory snapshot: {e}")
                }
            }
        }
        self.last_snapshot = Instant::now();
    }

    /// Sets this state's memory aside because the camera moves to another
    /// model: it is written next to the snapshot as `<camera>.mem.previous`
    /// (one file, the last model's), and the snapshot itself is removed so
    /// that the new model starts from an empty memory without a warning.
    /// Returns where it went.
    pub fn retire_memory(&mut self) -> Option<PathBuf> {
        let (path, _) = self.snapshot.as_ref()?;
        let previous = path.with_extension("mem.previous");
        match memory::save_snapshot(&previous, &self.memory, &self.fingerprint) {
            Ok(()) => {
                if let Err(e) = std::fs::remove_file(path) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(camera = %self.camera, "cannot remove {}: {e}", path.display());
                    }
                }
                Some(previous)
            }
            Err(e) => {
                tracing::warn!(camera = %self.camera, "cannot keep the previous model's memory: {e}");
                None
            }
        }
    }

    /// The rules the next proactive job asks: the camera's rule book (the
    /// config's, then those set at run time), at most
    /// [`MAX_RULES_PER_JOB`], going round when there are more.
    fn next_rules(&mut self) -> Vec<String> {
        let all = self
            .rule_states
            .as_ref()
            .map_or_else(Vec::new, |book| book.texts());
        if all.len() <= MAX_RULES_PER_JOB {
            return all;
        }
        let start = self.rule_cursor % all.len();
        self.rule_cursor = (start + MAX_RULES_PER_JOB) % all.len();
        all.into_iter()
            .cycle()
            .skip(start)
            .take(MAX_RULES_PER_JOB)
            .collect()
    }

    /// The memory readout as the model's context, copied so that the
    /// camera's lock is not held while the model answers.
    pub fn context(&self) -> Context {
        let canvas = self.memory.canvas();
        let items = self
            .memory
            .readout(&canvas)
            .into_iter()
            .map(|item| ContextItem {
                now: item.now,
                pts: item.pts,
                grid: (item.side * item.side) as usize,
                cells: item.cells.to_vec(),
                tokens: item.tokens.to_vec(),
            })
            .collect();
        Context { items }
    }

    /// The context the model reads `question` from: the question about a
    /// change, for a model trained on its own window of the memory
    /// ([`CameraAnalysis::window_context`]), else the whole readout.
    pub fn context_for(&self, question: &str) -> Context {
        self.window_context()
            .filter(|_| self.words.is_describe(question))
            .unwrap_or_else(|| self.context())
    }

    /// The context of the question about a change, for a model with a
    /// describe window (`glimpse.describe_window_s`): the cells that
    /// changed in the window before the last sampled frame, as they were
    /// when it began (labelled with that time) and as they are now; what
    /// changed is what the two hold, and a still scene gives the model no
    /// tokens at all (docs/architecture.md §5). None for a model that
    /// reads the whole readout ([`CameraAnalysis::context`]).
    pub fn window_context(&self) -> Option<Context> {
        let window = self.words.describe_window?;
        let start = self.last_pts.saturating_sub(window);
        let (grid, _) = self.memory.shape();
        let grid = (grid * grid) as usize;
        let changed = self.memory.changed_since(start);
        Some(Context {
            items: vec![
                ContextItem {
                    now: false,
                    pts: start,
                    grid,
                    cells: changed.before.0,
                    tokens: changed.before.1,
                },
                ContextItem {
                    now: true,
                    pts: self.memory.end(),
                    grid,
                    cells: changed.now.0,
                    tokens: changed.now.1,
                },
            ],
        })
    }
}

/// A copy of a camera's memory readout.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Remembered frames oldest first, then the canvas ("now").
    pub items: Vec<ContextItem>,
}

/// One item of a [`Context`].
#[derive(Debug, Clone)]
pub struct ContextItem {
    /// The canvas ("now"), not a remembered frame.
    pub now: bool,
    /// Stream time.
    pub pts: Duration,
    /// Tokens in its full (pooled) grid.
    pub grid: usize,
    /// Present cells.
    pub cells: Vec<u32>,
    /// Their tokens.
    pub tokens: Vec<f32>,
}

impl Context {
    /// One whole frame's tokens as the context, "now": a zone's crop, or
    /// a frame on its own.
    pub fn frame(pts: Duration, grid: usize, tokens: Vec<f32>) -> Context {
        Context {
            items: vec![ContextItem {
                now: true,
                pts,
                grid,
                cells: (0..grid as u32).collect(),
                tokens,
            }],
        }
    }

    /// Borrowed form for the responder, which lays it out for the model.
    pub fn seen(&self) -> Vec<Seen<'_>> {
        self.items
            .iter()
            .map(|i| Seen {
                at: i.pts,
                now: i.now,
                visual: Visual {
                    grid: i.grid,
                    positions: &i.cells,
                    tokens: &i.tokens,
                },
            })
            .collect()
    }

    /// The same context with only the tokens of the patches `points`
    /// covers, each at its place (the memory's pooled levels on their own
    /// coarser grids): a zone-scoped rule's view.
    pub fn within(&self, points: &crate::region::Polygon) -> Context {
        let mut patches: BTreeMap<usize, Vec<bool>> = BTreeMap::new();
        let items = self
            .items
            .iter()
            .map(|item| {
                let side = (item.grid as f64).sqrt().round() as u32;
                let inside = patches
                    .entry(item.grid)
                    .or_insert_with(|| points.patches(side, side));
                let dim = item.tokens.len() / item.cells.len().max(1);
                let mut kept = item.clone();
                kept.cells.clear();
                kept.tokens.clear();
                for (i, &cell) in item.cells.iter().enumerate() {
                    if inside.get(cell as usize).copied().unwrap_or(false) {
                        kept.cells.push(cell);
                        kept.tokens
                            .extend_from_slice(&item.tokens[i * dim..(i + 1) * dim]);
                    }
                }
                kept
            })
            .collect();
        Context { items }
    }

    /// What the model looked at, for an event.
    pub fn evidence(&self) -> Evidence {
        Evidence {
            frame_times_s: self.items.iter().map(|i| i.pts.as_secs_f64()).collect(),
            kept_tokens: self.items.iter().map(|i| i.cells.len()).collect(),
        }
    }
}

/// Moves an unusable snapshot out of the way, so the camera starts fresh
/// and the file stays for a person to look at.
fn set_aside(path: Option<&std::path::Path>, error: &memory::SnapshotError) {
    let Some(path) = path else { return };
    let stamp = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = path.with_extension(format!("mem.bad-{stamp}"));
    match std::fs::rename(path, &aside) {
        Ok(()) => tracing::warn!(
            "memory snapshot not used ({error}); moved to {}; starting fresh",
            aside.display()
        ),
        Err(e) => {
            tracing::warn!("memory snapshot not used ({error}) and cannot be moved aside: {e}")
        }
    }
}

/// Most watch rules one proactive job asks. Each rule is a model call of
/// up to a second on a small CPU, and up to 64 rules can be set over MQTT:
/// a bounded job keeps answers and frames flowing; the rest are asked at the
/// next trigger, round-robin.
pub const MAX_RULES_PER_JOB: usize = 8;

/// Analyses one frame (on a worker thread, with the camera's state locked:
/// frames of one camera are analysed one at a time and in order).
pub fn analyse(
    frame: Frame,
    a: &mut CameraAnalysis,
    stages: &Arc<ModelStages>,
    pool: &Submitter,
    events: &EventSink,
) {
    let counters = a.counters.clone();
    if frame.seq < a.next_seq && !frame.discont {
        counters.stale.fetch_add(1, Ordering::Relaxed);
        return;
    }
    a.next_seq = frame.seq + 1;
    counters.analysed.fetch_add(1, Ordering::Relaxed);
    let (_, kept) = match a.observe(&frame, stages) {
        Ok(observed) => observed,
        Err(e) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(camera = %a.camera, "encoding a frame failed: {e}");
            return;
        }
    };
    let retention = kept.retention();
    if let Some(snapshotter) = &a.snapshotter {
        // Downscaled now, while the frame is here; the frame itself is
        // dropped at the end of this function.
        // The mask always (a few bytes): the status page tints it; a
        // snapshot only when tint_kept says so (snapshot::encode).
        let mut picture = Picture::from_frame(&frame, snapshotter.config.max_side);
        picture.kept = kept.mask.clone();
        picture.grid = kept.cols;
        let picture = Arc::new(picture);
        *lock(&counters.latest) = Some(picture.clone());
        a.picture = Some(picture);
    }
    if a.snapshot
        .as_ref()
        .is_some_and(|(_, every)| !every.is_zero() && a.last_snapshot.elapsed() >= *every)
    {
        a.save_memory();
    }
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
    counters.push_retention(kept.meta.pts.as_secs_f64(), retention);
    let discont = frame.discont || std::mem::take(&mut a.fresh);
    // Change under a motion mask does not count (the model still sees it).
    let moved = kept.retention_outside(&a.regions.motion);
    let mut decision = a.trigger.observe(frame.pts, moved, discont);
    let zones = a.regions.touched(&a.changed);
    if decision.describe && !a.regions.describes(&zones) {
        tracing::debug!(camera = %a.camera, ?zones, "not described: the change is outside trigger.zones");
        decision.describe = false;
    }
    if decision.activity != a.activity {
        tracing::debug!(camera = %a.camera, activity = ?decision.activity, "activity changed");
        a.activity = decision.activity;
    }
    counters.changing.store(
        u64::from(decision.activity == Activity::Changing),
        Ordering::Relaxed,
    );
    let rules: Vec<RuleAsk> = if decision.ask_rules {
        a.next_rules()
            .into_iter()
            .map(|name| {
                let Some(zone) = a.regions.zone_rule(&name) else {
                    return RuleAsk {
                        text: name.clone(),
                        name,
                        view: View::Whole,
                    };
                };
                let view = match zone.look {
                    Look::Tokens => View::Within(zone.points.clone()),
                    // Cut now: the frame does not outlive this function.
                    Look::Crop => View::Crop(zone.crop(&frame)),
                };
                RuleAsk {
                    name,
                    text: zone.text.clone(),
                    view,
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    if !decision.describe && rules.is_empty() {
        return;
    }
    let job = super::respond::Proactive {
        camera: a.camera.clone(),
        at: kept.meta.pts,
        context: a.context(),
        window: decision.describe.then(|| a.window_context()).flatten(),
        decision,
        rules,
        rule_states: a.rule_states.clone(),
        stages: stages.clone(),
        events: events.clone(),
        captured: frame.wall_time,
        min_confidence: a.trigger.config().min_confidence,
        counters,
        snapshot: a.snapshotter.clone().zip(a.picture.clone()),
        zones,
        words: a.words.clone(),
    };
    let queued = pool.submit(Priority::Proactive, Box::new(move || job.run()));
    if let Err(e) = queued {
        tracing::warn!("a scene change was not described: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// Issue 16: a restored memory that ended at 256.5 s, then a file
    /// source that starts again at 0, then loops back to 0 once more.
    #[test]
    fn issue_16_memory_time_never_goes_back_after_a_restart_or_a_loop() {
        let mut clock = MemoryClock::new(secs(256.5));
        let times: Vec<f64> = [0.0, 0.5, 1.0, 22.0, 0.0, 3.0]
            .iter()
            .map(|&t| clock.time(secs(t)).as_secs_f64())
            .collect();
        // After the restart the step is not known yet: the first frame
        // takes the memory's end; at the loop it is (0.5 s).
        assert_eq!(times, [256.5, 257.0, 257.5, 278.5, 279.0, 282.0]);
        // A 60 s clip at 2 fps looped: the second pass is 60 s later.
        let mut clock = MemoryClock::new(Duration::ZERO);
        let pass = |clock: &mut MemoryClock| -> Vec<f64> {
            (0..120)
                .map(|i| clock.time(secs(f64::from(i) * 0.5)).as_secs_f64())
                .collect()
        };
        let first = pass(&mut clock);
        let second = pass(&mut clock);
        assert_eq!(first[119], 59.5);
        assert!(second.iter().zip(&first).all(|(b, a)| b - a == 60.0));
        // A fresh memory takes the stream time as it is.
        let mut clock = MemoryClock::new(Duration::ZERO);
        assert_eq!(clock.time(secs(3.0)), secs(3.0));
        assert_eq!(clock.time(secs(8.0)), secs(8.0));
    }
}
