//! The MQTT stage at run time: a cloneable [`MqttHandle`] that the pipeline
//! and the service call, and one driver task (tokio) that owns the
//! publishing connection, the retained state and the outbox pump, and
//! handles what the inbound connection (`mqtt::inbound`) receives.
//!
//! By job: this file holds the types, start and stop, and the connection
//! loop (`Driver::run`, `Driver::session`); `handle.rs` the handle's
//! methods; `store.rs` writing through the in-memory queue of a full disk;
//! `pump.rs` outbox rows to the broker, dead letters and the drain;
//! `retained.rs` retained state and Home Assistant discovery;
//! `requests.rs` questions, rules changes and pause/resume.
//!
//! Durable path: [`MqttHandle::publish_event`] writes the event to the
//! outbox (SQLite, on a blocking thread) and wakes the driver; the driver
//! publishes outbox rows with QoS 1, at most `window` at a time, maps each
//! rumqttc packet id to its row, and deletes a row on its PUBACK. Each
//! connection is a fresh rumqttc event loop with a clean session: after a
//! reconnect the driver re-publishes every row still in the outbox, so a
//! message can arrive twice (QoS 1: at least once) but only if it was in
//! flight when the connection broke.
//!
//! A row that retrying cannot deliver (a topic rumqttc refuses, a packet
//! over the limit, an MQTT 5 PUBACK reason code of 0x80 or more) moves to
//! the outbox's dead letters instead, logged once at WARN: nothing blocks
//! the rows behind it, and nothing undelivered is deleted silently.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::ask::{self, Admission, Question, QuestionGate, Refusal};
use super::client::{self, Client, Identity, Lost, Note, PublishError, Takeovers};
use super::inbound::{self, Inbound};
use super::outbox::{Channel, Outbox, Pending};
use super::unstored::{MakeRoom, Stored, Unstored};
use super::{broker, discovery, MqttConfig, MqttError};
pub use crate::event::{Activity, RuleStates, ZoneStates};
use crate::event::{Event, EventKind, RuleSource};

mod handle;
mod pump;
mod requests;
mod retained;
mod store;

/// Counters of the MQTT stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MqttStats {
    /// Whether the broker connection is up.
    pub connected: bool,
    /// Messages in the outbox, waiting for the broker.
    pub pending: u64,
    /// Messages acknowledged by the broker since start.
    pub acknowledged: u64,
    /// Messages dropped from a full outbox since start.
    pub dropped: u64,
    /// Messages that cannot be delivered, kept in the dead-letter table
    /// (`glimpse events` lists them).
    pub dead_letters: u64,
    /// Messages waiting in memory because the outbox cannot be written
    /// (a full disk).
    pub unstored: u64,
    /// The most messages that have waited in memory at once since start.
    pub unstored_peak: u64,
    /// Messages dropped from a full in-memory queue since start
    /// (`mqtt.unstored_capacity`).
    pub unstored_dropped: u64,
    /// Questions over `mqtt.questions_per_minute` left unanswered since
    /// start (after the one error answer of their spell).
    pub questions_silenced: u64,
}

/// A reloaded config for the driver: the latest one wins.
type Desired = Option<Arc<(MqttConfig, Vec<String>)>>;

struct Shared {
    // A std mutex: held only on blocking threads, for one SQLite call.
    outbox: Mutex<Outbox>,
    /// Messages the outbox could not take (a full disk). Locked only
    /// while `outbox` is held.
    unstored: Mutex<Unstored>,
    /// Frees disk space outside the outbox when it is full (set by the
    /// service: the oldest snapshots).
    room: Mutex<Option<MakeRoom>>,
    /// Wakes the task that retries the in-memory queue.
    retry: Notify,
    /// The questions' budget per camera, MQTT and HTTP askers alike.
    gate: Mutex<QuestionGate>,
    wake: Notify,
    connected: watch::Sender<bool>,
    rules: watch::Sender<BTreeMap<String, Vec<String>>>,
    /// Cameras whose analysis is paused (set over MQTT, persisted).
    paused: watch::Sender<BTreeSet<String>>,
    /// The rules' states to publish (from the pipeline, through the
    /// service): only the latest matter.
    rule_states: watch::Sender<RuleStates>,
    /// The zones' states to publish, the same way.
    zone_states: watch::Sender<ZoneStates>,
    acknowledged: AtomicU64,
    dropped: AtomicU64,
    /// Rows in the dead-letter table, mirrored here so that the stats do
    /// not wait for the outbox lock on an async thread.
    dead_letters: AtomicU64,
    /// The config to apply. A watch, not the command queue: a reload must
    /// never be lost to a full queue, and only the latest one matters.
    desired: watch::Sender<Desired>,
}

impl Shared {
    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        // A panic while holding it leaves SQLite consistent (transactions).
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unstored(&self) -> std::sync::MutexGuard<'_, Unstored> {
        // Every change to the queue is one push or pop: valid after a panic.
        self.unstored.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, QuestionGate> {
        // Plain counters: valid whatever panicked.
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn room(&self) -> Option<MakeRoom> {
        self.room.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

enum Command {
    Activity(String, Activity),
    Stats(String, String),
    Snapshot(String, Arc<Vec<u8>>),
}

/// The cloneable side of the MQTT stage.
#[derive(Clone)]
pub struct MqttHandle {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
}

/// The running MQTT stage.
pub struct Mqtt {
    /// Handle for the pipeline and the service.
    pub handle: MqttHandle,
    questions: Option<mpsc::Receiver<Question>>,
    task: tokio::task::JoinHandle<()>,
    /// Retries what waits in memory while the disk is full.
    retry: tokio::task::JoinHandle<()>,
    cancel: CancellationToken,
    drain: Duration,
}

/// How long after a discovery update availability is published again
/// (see `publish_discovery`).
const ONLINE_AGAIN_AFTER: Duration = Duration::from_secs(2);

/// Embedded brokers started by this process (they cannot be stopped).
static EMBEDDED: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());

async fn ensure_embedded(config: &MqttConfig) -> Result<(), MqttError> {
    if !config.is_embedded() {
        return Ok(());
    }
    let listen: SocketAddr = config
        .listen
        .parse()
        .map_err(|_| MqttError::Broker(format!("invalid mqtt.listen {:?}", config.listen)))?;
    if EMBEDDED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&listen)
    {
        return Ok(());
    }
    let (protocol, max_packet) = (config.protocol, config.max_packet_bytes);
    tokio::task::spawn_blocking(move || broker::start(listen, protocol, max_packet))
        .await
        .map_err(|e| MqttError::Broker(format!("broker start-up panicked: {e}")))??;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    EMBEDDED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(listen);
    Ok(())
}

async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&mut Outbox) -> Result<T, MqttError> + Send + 'static,
) -> Result<T, MqttError> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || f(&mut shared.outbox()))
        .await
        .map_err(|e| MqttError::Closed(format!("outbox task panicked: {e}")))?
}

impl Mqtt {
    /// Starts the embedded broker (when configured), opens the outbox in
    /// `state_dir` and starts the driver, which connects in the background.
    pub async fn start(
        config: &MqttConfig,
        cameras: Vec<String>,
        state_dir: &Path,
    ) -> Result<Mqtt, MqttError> {
        ensure_embedded(config).await?;
        let (dir, tls_source) = (state_dir.to_owned(), config.clone());
        let (capacity, history) = (config.outbox_capacity, config.history_capacity);
        let unstored = Unstored::new(config.unstored_capacity);
        let (outbox, tls, rules, paused) = tokio::task::spawn_blocking(move || {
            let outbox = Outbox::open(&dir, capacity, history)?;
            let tls = client::tls_config(&tls_source)?;
            let rules = outbox.rules()?;
            let paused = outbox.paused()?;
            Ok::<_, MqttError>((outbox, tls, rules, paused))
        })
        .await
        .map_err(|e| MqttError::Closed(format!("start-up panicked: {e}")))??;
        let pending = outbox.pending();
        if pending > 0 {
            tracing::info!(
                pending,
                "outbox holds messages from before; they are sent once the broker is reached"
            );
        }
        let mut rule_map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (camera, rule) in rules {
            rule_map.entry(camera).or_default().push(rule);
        }
        let shared = Arc::new(Shared {
            outbox: Mutex::new(outbox),
            unstored: Mutex::new(unstored),
            room: Mutex::new(None),
            retry: Notify::new(),
            gate: Mutex::new(QuestionGate::new(config.questions_per_minute)),
            wake: Notify::new(),
            connected: watch::channel(false).0,
            rules: watch::channel(rule_map.clone()).0,
            paused: watch::channel(paused.clone()).0,
            rule_states: watch::channel(RuleStates::new()).0,
            zone_states: watch::channel(ZoneStates::new()).0,
            acknowledged: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            desired: watch::channel(None).0,
            dead_letters: AtomicU64::new(0),
        });
        let dead = shared.outbox().dead_letters();
        shared.dead_letters.store(dead, Ordering::Relaxed);
        if dead > 0 {
            tracing::warn!(
                dead_letters = dead,
                "the outbox holds messages that could not be delivered; `glimpse events` lists them"
            );
        }
        // Commands are small and rare (reloads, activity, stats per camera).
        let (commands_tx, commands) = mpsc::channel(256);
        let (questions_tx, questions) = mpsc::channel(config.question_queue_capacity);
        let cancel = CancellationToken::new();
        let (inbound_tx, inbound) = mpsc::channel(64);
        let driver = Driver {
            client_id: connection_id(config, state_dir),
            state_dir: state_dir.to_owned(),
            inbound,
            inbound_tx,
            listener: None,
            up_since: None,
            config: config.clone(),
            tls,
            cameras,
            shared: shared.clone(),
            commands,
            desired: shared.desired.subscribe(),
            questions: questions_tx,
            activity: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            rules: rule_map,
            paused,
            rule_states: shared.rule_states.subscribe(),
            retained_rules: RuleStates::new(),
            zone_states: shared.zone_states.subscribe(),
            retained_zones: ZoneStates::new(),
            cancel: cancel.clone(),
            announced: BTreeSet::new(),
            components: BTreeMap::new(),
            online_again: None,
        };
        let task = tokio::spawn(driver.run());
        let retry = tokio::spawn(store::retry_unstored(shared.clone(), cancel.clone()));
        tokio::spawn(requests::report_refusals(shared.clone(), cancel.clone()));
        Ok(Mqtt {
            handle: MqttHandle {
                shared,
                commands: commands_tx,
            },
            questions: Some(questions),
            task,
            retry,
            cancel,
            drain: Duration::from_millis(config.drain_timeout_ms),
        })
    }

    /// The questions accepted on the ask topics, for the responder (once).
    /// Bounded by `mqtt.question_queue_capacity`; when full, askers get an
    /// error answer.
    pub fn take_questions(&mut self) -> Option<mpsc::Receiver<Question>> {
        self.questions.take()
    }

    /// Publishes `offline`, keeps publishing the outbox for at most
    /// `mqtt.drain_timeout_ms`, disconnects. What is left stays in the
    /// outbox for the next start.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let limit = self.drain + Duration::from_secs(2);
        if tokio::time::timeout(limit, self.task).await.is_err() {
            tracing::warn!("the MQTT driver did not stop in time; abandoning it");
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.retry).await;
        let pending = self.handle.shared.outbox().pending();
        if pending > 0 {
            tracing::info!(
                pending,
                "messages left in the outbox; they are sent after the next start"
            );
        }
    }
}

/// This machine's host name, for the instance announcement.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

fn encode(event: &Event) -> Result<String, MqttError> {
    serde_json::to_string(event)
        .map_err(|e| MqttError::Closed(format!("cannot encode event {}: {e}", event.id)))
}

/// The error answer to question `id` about `camera`, as MQTT askers get
/// it (the HTTP API answers with the same JSON).
pub fn error_answer(camera: &str, id: &str, error: &str) -> String {
    let refusal = Refusal {
        id: Some(id.to_owned()),
        error: error.to_owned(),
    };
    error_payload(camera, &refusal)
}

fn error_payload(camera: &str, refusal: &Refusal) -> String {
    json!({
        "id": refusal.id,
        "camera": camera,
        "error": refusal.error,
        "wall_time_ms": super::outbox::now_ms(),
    })
    .to_string()
}

/// The client id of this instance's connections: `mqtt.client_id`, else
/// one unique per machine and state directory (`client::default_client_id`).
fn connection_id(config: &MqttConfig, state_dir: &Path) -> String {
    config
        .client_id
        .clone()
        .unwrap_or_else(|| client::default_client_id(&config.prefix, state_dir))
}

/// How a connection ended.
enum End {
    Shutdown,
    Reconfigured,
    Lost(Lost),
}

/// One connection's state.
struct Session {
    client: Client,
    notes: mpsc::Receiver<Result<Note, Lost>>,
    poller: tokio::task::JoinHandle<()>,
    connected: bool,
    window: usize,
    /// Largest packet we may send: ours, or the MQTT 5 broker's if smaller.
    max_packet: usize,
    /// Outbox rows (id, topic) queued for rumqttc, in order, awaiting their
    /// packet id.
    queued: VecDeque<(i64, String)>,
    /// Packet id → outbox row (id, topic), awaiting PUBACK.
    inflight: HashMap<u16, (i64, String)>,
    /// Highest outbox row sent in this session.
    last_sent: i64,
}

impl Session {
    fn outstanding(&self) -> usize {
        self.queued.len() + self.inflight.len()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

struct Driver {
    /// The client id of the publishing connection (the inbound one adds
    /// `-in`).
    client_id: String,
    state_dir: std::path::PathBuf,
    /// Messages from the inbound connection (`inbound.rs`).
    inbound: mpsc::Receiver<Inbound>,
    inbound_tx: mpsc::Sender<Inbound>,
    /// The inbound connection's task and its stop, restarted on reload.
    listener: Option<(tokio::task::JoinHandle<()>, CancellationToken)>,
    /// When the current connection was accepted.
    up_since: Option<Instant>,
    config: MqttConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    cameras: Vec<String>,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    desired: watch::Receiver<Desired>,
    questions: mpsc::Sender<Question>,
    activity: BTreeMap<String, Activity>,
    /// Each camera's latest snapshot, published again on each connection
    /// (the embedded broker forgets its retained messages at a restart).
    snapshots: BTreeMap<String, Arc<Vec<u8>>>,
    rules: BTreeMap<String, Vec<String>>,
    /// Cameras whose analysis is paused.
    paused: BTreeSet<String>,
    rule_states: watch::Receiver<RuleStates>,
    /// The rule states the broker holds retained, as far as we know: what
    /// was last published, to publish changes only and to clear the state
    /// topics of rules that are gone.
    retained_rules: RuleStates,
    zone_states: watch::Receiver<ZoneStates>,
    /// The zone states the broker holds retained, as far as we know.
    retained_zones: ZoneStates,
    cancel: CancellationToken,
    /// The components of each camera's last discovery payload (key →
    /// platform), to retract those that are gone.
    components: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// When to publish `online` again after a discovery update.
    online_again: Option<tokio::time::Instant>,
    /// Cameras whose discovery was published (to retract removed ones).
    announced: BTreeSet<String>,
}

impl Driver {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(self.config.reconnect_min_ms);
        let mut failures = 0u32;
        let mut takeovers = Takeovers::default();
        self.check_other_instance().await;
        self.start_listener();
        loop {
            let (end, was_up) = self.session().await;
            self.shared.connected.send_replace(false);
            let lasted = self.up_since.take().map(|t| t.elapsed());
            // This connection subscribes to nothing, so no message can be
            // too large for it (inbound.rs handles those).
            if matches!(end, End::Lost(_)) && takeovers.note(lasted) {
                tracing::warn!(
                    client_id = %self.client_id,
                    "the MQTT broker keeps closing the connection right after accepting it: another client is probably connected with the same client id; give each instance its own mqtt.client_id (or leave it unset: the default is unique per machine and state directory)"
                );
            }
            match end {
                End::Shutdown => {
                    self.stop_listener();
                    return;
                }
                End::Reconfigured => {
                    backoff = Duration::from_millis(self.config.reconnect_min_ms);
                    continue;
                }
                End::Lost(lost) => {
                    if was_up {
                        backoff = Duration::from_millis(self.config.reconnect_min_ms);
                        failures = 0;
                    }
                    failures += 1;
                    let pending = self.shared.outbox().pending();
                    let reason = lost.reason;
                    if takeovers.reported() {
                        tracing::debug!(broker = %self.config.broker, "connection closed again (client id taken?): {reason}");
                    } else if was_up {
                        tracing::warn!(broker = %self.config.broker, pending, retry_in_ms = backoff.as_millis() as u64, "lost the MQTT broker connection: {reason}");
                    } else if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(broker = %self.config.broker, pending, retry_in_ms = backoff.as_millis() as u64, "MQTT broker unreachable: {reason}");
                    } else {
                        tracing::debug!(broker = %self.config.broker, "MQTT broker unreachable: {reason}");
                    }
                }
            }
            let deadline = tokio::time::Instant::now() + backoff;
            loop {
                tokio::select! {
                    _ = self.cancel.cancelled() => {
                        self.stop_listener();
                        return;
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                    Ok(()) = self.desired.changed() => {
                        if self.apply_desired().await {
                            backoff = Duration::from_millis(self.config.reconnect_min_ms);
                            break;
                        }
                    }
                    command = self.commands.recv() => match command {
                        None => {
                            self.stop_listener();
                            return;
                        }
                        Some(Command::Activity(camera, activity)) => {
                            self.activity.insert(camera, activity);
                        }
                        Some(Command::Stats(..)) => {}
                        Some(Command::Snapshot(camera, jpeg)) => {
                            self.snapshots.insert(camera, jpeg);
                        }
                    },
                }
            }
            backoff = (backoff * 2).min(Duration::from_millis(self.config.reconnect_max_ms));
        }
    }

    /// Starts the inbound connection (questions, rules, pause) for the
    /// current config, stopping the one before.
    fn start_listener(&mut self) {
        self.stop_listener();
        let cancel = self.cancel.child_token();
        let task = inbound::spawn(
            self.config.clone(),
            self.tls.clone(),
            self.client_id.clone(),
            self.inbound_tx.clone(),
            cancel.clone(),
        );
        self.listener = Some((task, cancel));
    }

    fn stop_listener(&mut self) {
        if let Some((task, cancel)) = self.listener.take() {
            cancel.cancel();
            task.abort();
        }
    }

    /// With an external broker, says once at start (and after a reload)
    /// when another live instance uses the same topic prefix.
    async fn check_other_instance(&self) {
        if self.config.is_embedded() {
            return;
        }
        if let Some(other) =
            inbound::other_instance(&self.config, self.tls.clone(), &self.client_id).await
        {
            tracing::warn!(
                prefix = %self.config.prefix,
                other,
                "another glimpse instance is online under the same topic prefix: both would write the same topics and the same Home Assistant entities; give each instance its own mqtt.prefix (a fleet: one prefix per device)"
            );
        }
    }

    /// Applies the latest reloaded config, if there is one not applied yet.
    async fn apply_desired(&mut self) -> bool {
        let desired = self.desired.borrow_and_update().clone();
        let Some(desired) = desired else {
            return false;
        };
        let (config, cameras) = (*desired).clone();
        self.apply(config, cameras).await;
        true
    }

    async fn apply(&mut self, config: MqttConfig, cameras: Vec<String>) {
        if let Err(e) = ensure_embedded(&config).await {
            tracing::error!("mqtt reload: {e}");
        }
        let source = config.clone();
        match tokio::task::spawn_blocking(move || client::tls_config(&source)).await {
            Ok(Ok(tls)) => self.tls = tls,
            Ok(Err(e)) => tracing::error!("mqtt reload: {e}; keeping the previous TLS settings"),
            Err(e) => tracing::error!("mqtt reload: {e}"),
        }
        self.shared
            .outbox()
            .set_capacity(config.outbox_capacity, config.history_capacity);
        self.shared
            .unstored()
            .set_capacity(config.unstored_capacity);
        *self.shared.gate() = QuestionGate::new(config.questions_per_minute);
        let prefix_or_broker_changed =
            config.prefix != self.config.prefix || config.broker != self.config.broker;
        self.client_id = connection_id(&config, &self.state_dir);
        self.config = config;
        self.cameras = cameras;
        tracing::info!(broker = %self.config.broker, "MQTT settings reloaded; reconnecting");
        if prefix_or_broker_changed {
            self.check_other_instance().await;
        }
        self.start_listener();
    }

    fn topic(&self, camera: &str, leaf: &str) -> String {
        format!("{}/{camera}/{leaf}", self.config.prefix)
    }

    /// Runs one connection; returns how it ended and whether it was up.
    async fn session(&mut self) -> (End, bool) {
        let window = self.config.max_inflight;
        let identity = Identity {
            client_id: &self.client_id,
            last_will: true,
        };
        let (client, notes, poller) =
            match client::connect(&self.config, self.tls.clone(), window, identity) {
                Ok(parts) => parts,
                Err(e) => return (End::Lost(Lost::other(e.to_string())), false),
            };
        let mut s = Session {
            client,
            notes,
            poller,
            connected: false,
            window: usize::from(window),
            // The embedded broker takes a little less than we receive.
            max_packet: if self.config.is_embedded() {
                broker::max_incoming(self.config.max_packet_bytes)
            } else {
                self.config.max_packet_bytes as usize
            },
            queued: VecDeque::new(),
            inflight: HashMap::new(),
            last_sent: 0,
        };
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => {
                    self.drain(&mut s).await;
                    return (End::Shutdown, true);
                }
                note = s.notes.recv() => match note {
                    Some(Ok(note)) => {
                        if let Err(reason) = self.on_note(&mut s, note).await {
                            return (End::Lost(Lost::other(reason)), s.connected);
                        }
                    }
                    Some(Err(lost)) => return (End::Lost(lost), s.connected),
                    None => return (End::Lost(Lost::other("connection task ended")), s.connected),
                },
                Ok(()) = self.desired.changed() => {
                    if self.desired.borrow().is_some() {
                        if s.connected {
                            self.publish(&s, &format!("{}/status", self.config.prefix), true, "offline".into());
                            s.client.disconnect();
                        }
                        self.apply_desired().await;
                        return (End::Reconfigured, false);
                    }
                }
                command = self.commands.recv() => match command {
                    None => {
                        self.drain(&mut s).await;
                        return (End::Shutdown, true);
                    }
                    Some(Command::Activity(camera, activity)) => {
                        let changed = self.activity.insert(camera.clone(), activity) != Some(activity);
                        if changed && s.connected {
                            self.publish(&s, &self.topic(&camera, "activity"), true, activity.as_str().into());
                        }
                    }
                    Some(Command::Stats(camera, payload)) => {
                        if s.connected {
                            self.publish(&s, &self.topic(&camera, "stats"), false, payload);
                        }
                    }
                    Some(Command::Snapshot(camera, jpeg)) => {
                        if s.connected {
                            self.publish_bytes(&s, &self.topic(&camera, "snapshot"), jpeg.to_vec());
                        }
                        self.snapshots.insert(camera, jpeg);
                    }
                },
                () = tokio::time::sleep_until(self.online_again.unwrap_or_else(tokio::time::Instant::now)),
                    if s.connected && self.online_again.is_some() =>
                {
                    self.online_again = None;
                    self.publish(&s, &format!("{}/status", self.config.prefix), true, "online".into());
                }
                _ = self.shared.wake.notified(), if s.connected => self.pump(&mut s).await,
                Some(message) = self.inbound.recv(), if s.connected => {
                    self.on_message(&mut s, &message.topic, &message.payload, message.response_topic, message.correlation).await;
                }
                Ok(()) = self.rule_states.changed(), if s.connected => self.sync_rules(&s, false),
                Ok(()) = self.zone_states.changed(), if s.connected => self.sync_zones(&s, false),
            }
        }
    }

    /// A QoS 0 publish of state (retained or not); logged if it cannot go.
    fn publish(&self, s: &Session, topic: &str, retain: bool, payload: String) {
        if let Err(e) = s
            .client
            .publish(topic, false, retain, payload.into_bytes(), None)
        {
            tracing::debug!(topic, "cannot publish: {e:?}");
        }
    }

    /// A QoS 0 retained publish of binary state (a snapshot).
    fn publish_bytes(&self, s: &Session, topic: &str, payload: Vec<u8>) {
        if let Err(e) = s.client.publish(topic, false, true, payload, None) {
            tracing::debug!(topic, "cannot publish: {e:?}");
        }
    }

    async fn on_note(&mut self, s: &mut Session, note: Note) -> Result<(), String> {
        match note {
            Note::ConnAck {
                receive_max,
                max_packet,
            } => {
                if let Some(max) = receive_max {
                    // Keep our window under the broker's limit so that
                    // rumqttc never has to hold a publish back.
                    s.window = s.window.min(usize::from(max.saturating_sub(1)).max(1));
                }
                if let Some(max) = max_packet {
                    // rumqttc drops the connection rather than send more.
                    s.max_packet = s.max_packet.min(max as usize);
                }
                s.connected = true;
                self.up_since = Some(Instant::now());
                self.shared.connected.send_replace(true);
                tracing::info!(broker = %self.config.broker, protocol = ?self.config.protocol, client_id = %self.client_id, "connected to the MQTT broker");
                self.on_connect(s);
                self.pump(s).await;
            }
            Note::Sent(0) => {}
            Note::Sent(pkid) => {
                // Only outbox rows go with QoS 1, in the order they were
                // queued: the next one queued is the one that got `pkid`.
                match s.queued.pop_front() {
                    Some(row) => {
                        s.inflight.insert(pkid, row);
                    }
                    None => return Err(format!("packet id {pkid} matches no queued message")),
                }
            }
            Note::Collision => {
                return Err(
                    "packet ids ran out while messages were in flight; reconnecting".into(),
                );
            }
            Note::PubAck { pkid, refused } => {
                if let Some((row, topic)) = s.inflight.remove(&pkid) {
                    match refused {
                        // Sending it again would be refused again.
                        Some(reason) => self.dead_letter(row, topic, reason).await,
                        None => {
                            self.shared.acknowledged.fetch_add(1, Ordering::Relaxed);
                            // A failed DELETE (a full disk) leaves the row
                            // remembered as delivered: never sent again,
                            // deleted once the database takes writes. The
                            // full disk itself is logged once (unstored.rs).
                            if let Err(e) = blocking(&self.shared, move |o| o.delete(&[row])).await
                            {
                                tracing::debug!("acknowledged row {row} not deleted yet: {e}");
                            }
                        }
                    }
                    self.pump(s).await;
                }
            }
            // This connection subscribes to nothing (inbound.rs does).
            Note::Publish { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reload must not be lost when the command queue is full (issue
    /// 15): on a current-thread runtime the driver does not run until the
    /// test awaits, so 300 stats fill its queue of 256 before the reload.
    #[tokio::test]
    async fn a_reload_is_never_dropped_by_a_full_command_queue() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let config = MqttConfig {
            listen: format!("127.0.0.1:{port}"),
            prefix: "before".into(),
            discovery: false,
            ..MqttConfig::default()
        };
        let mqtt = Mqtt::start(&config, vec!["front".into()], dir.path())
            .await
            .unwrap();
        assert!(mqtt.handle.wait_connected(Duration::from_secs(10)).await);
        for _ in 0..300 {
            mqtt.handle.publish_stats("front", json!({}));
        }
        let reloaded = MqttConfig {
            prefix: "after".into(),
            ..config
        };
        mqtt.handle.reconfigure(&reloaded, vec!["front".into()]);

        let mut options = rumqttc::MqttOptions::new("reload-test", "127.0.0.1", port);
        options.set_clean_session(true);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 16);
        client
            .subscribe("after/status", rumqttc::QoS::AtMostOnce)
            .await
            .unwrap();
        let online = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) =
                    eventloop.poll().await.unwrap()
                {
                    if p.payload.as_ref() == b"online" {
                        return;
                    }
                }
            }
        })
        .await;
        assert!(online.is_ok(), "the reload to prefix \"after\" was lost");
        mqtt.shutdown().await;
    }
}
