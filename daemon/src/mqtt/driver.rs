//! The MQTT stage at run time: a cloneable [`MqttHandle`] that the pipeline
//! and the service call, and one driver task (tokio) that owns the
//! connection, the retained state, the outbox pump and the ask topics.
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

use super::ask::{self, Question, RateLimit, Refusal};
use super::client::{self, Client, Lost, Note, PublishError};
use super::outbox::{Channel, Outbox, Pending};
use super::{broker, discovery, MqttConfig, MqttError};
use crate::trigger::{Event, EventKind, RuleSource, RuleStatus};

/// Every camera's watch rules and their states, by camera.
pub type RuleStates = BTreeMap<String, Vec<RuleStatus>>;

/// What a camera's scene is doing, published retained on
/// `<prefix>/<camera>/activity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Nothing changes.
    Idle,
    /// The scene is changing.
    Changing,
    /// The operator paused the camera's analysis.
    Paused,
}

impl Activity {
    fn as_str(self) -> &'static str {
        match self {
            Activity::Idle => "idle",
            Activity::Changing => "changing",
            Activity::Paused => "paused",
        }
    }
}

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
}

/// A reloaded config for the driver: the latest one wins.
type Desired = Option<Arc<(MqttConfig, Vec<String>)>>;

struct Shared {
    // A std mutex: held only on blocking threads, for one SQLite call.
    outbox: Mutex<Outbox>,
    wake: Notify,
    connected: watch::Sender<bool>,
    rules: watch::Sender<BTreeMap<String, Vec<String>>>,
    /// Cameras whose analysis is paused (set over MQTT, persisted).
    paused: watch::Sender<BTreeSet<String>>,
    /// The rules' states to publish (from the pipeline, through the
    /// service): only the latest matter.
    rule_states: watch::Sender<RuleStates>,
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
            wake: Notify::new(),
            connected: watch::channel(false).0,
            rules: watch::channel(rule_map.clone()).0,
            paused: watch::channel(paused.clone()).0,
            rule_states: watch::channel(RuleStates::new()).0,
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
        let driver = Driver {
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
            limit: RateLimit::new(config.questions_per_minute),
            cancel: cancel.clone(),
            announced: BTreeSet::new(),
            components: BTreeMap::new(),
            online_again: None,
        };
        let task = tokio::spawn(driver.run());
        Ok(Mqtt {
            handle: MqttHandle {
                shared,
                commands: commands_tx,
            },
            questions: Some(questions),
            task,
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
        let pending = self.handle.shared.outbox().pending();
        if pending > 0 {
            tracing::info!(
                pending,
                "messages left in the outbox; they are sent after the next start"
            );
        }
    }
}

impl MqttHandle {
    /// Writes `event` to the outbox (durable once this returns) and has it
    /// published on `<prefix>/<camera>/event` (`answer` for answers).
    pub async fn publish_event(&self, event: Event) -> Result<(), MqttError> {
        let channel = if event.kind == EventKind::Answer {
            Channel::Answer
        } else {
            Channel::Event
        };
        self.push(
            event.camera.clone(),
            channel,
            None,
            None,
            encode(&event)?,
            Some(event),
        )
        .await
    }

    /// Answers `question` with `event` (kind `answer`, its `reference` set
    /// to the question's id), honouring an MQTT 5 response topic.
    pub async fn answer(&self, question: &Question, mut event: Event) -> Result<(), MqttError> {
        event.kind = EventKind::Answer;
        event.reference = Some(question.id.clone());
        let payload = encode(&event)?;
        self.push(
            question.camera.clone(),
            Channel::Answer,
            question.response_topic.clone(),
            question.correlation.clone(),
            payload,
            Some(event),
        )
        .await
    }

    /// Answers `question` with an error.
    pub async fn answer_error(&self, question: &Question, error: &str) -> Result<(), MqttError> {
        let refusal = Refusal {
            id: Some(question.id.clone()),
            error: error.to_owned(),
        };
        let payload = error_payload(&question.camera, &refusal);
        self.push(
            question.camera.clone(),
            Channel::Answer,
            question.response_topic.clone(),
            question.correlation.clone(),
            payload,
            None,
        )
        .await
    }

    async fn push(
        &self,
        camera: String,
        channel: Channel,
        response_topic: Option<String>,
        correlation: Option<Vec<u8>>,
        payload: String,
        event: Option<Event>,
    ) -> Result<(), MqttError> {
        let message = Pending {
            id: 0,
            camera,
            channel,
            response_topic,
            correlation,
            payload,
        };
        let dropped = blocking(&self.shared, move |o| o.push(&message, event.as_ref())).await?;
        if dropped > 0 {
            let total = self.shared.dropped.fetch_add(dropped, Ordering::Relaxed) + dropped;
            tracing::warn!(
                dropped,
                total,
                "outbox full (mqtt.outbox_capacity): oldest messages dropped"
            );
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Sets a camera's activity (published retained; repeats are free).
    pub fn set_activity(&self, camera: &str, activity: Activity) {
        self.send(Command::Activity(camera.to_owned(), activity));
    }

    /// Publishes a camera's latest snapshot (JPEG), retained, QoS 0: a
    /// picture of the moment, not a record (the history keeps its name and
    /// the state directory its bytes); skipped when the driver is busy.
    pub fn publish_snapshot(&self, camera: &str, jpeg: Arc<Vec<u8>>) {
        self.send(Command::Snapshot(camera.to_owned(), jpeg));
    }

    /// Publishes a camera's statistics (JSON object) on its stats topic,
    /// with `outbox_dead_letters` added (the MQTT stage's own count).
    /// Not durable: dropped while the broker is away.
    pub fn publish_stats(&self, camera: &str, mut stats: serde_json::Value) {
        if let Some(object) = stats.as_object_mut() {
            object.insert(
                "outbox_dead_letters".to_owned(),
                self.shared.dead_letters.load(Ordering::Relaxed).into(),
            );
        }
        self.send(Command::Stats(camera.to_owned(), stats.to_string()));
    }

    /// Applies a reloaded config: reconnects with the new settings. Never
    /// lost: the driver always sees the latest config handed over here.
    pub fn reconfigure(&self, config: &MqttConfig, cameras: Vec<String>) {
        self.shared
            .desired
            .send_replace(Some(Arc::new((config.clone(), cameras))));
    }

    fn send(&self, command: Command) {
        if let Err(e) = self.commands.try_send(command) {
            tracing::debug!("MQTT driver busy or stopped; command dropped: {e}");
        }
    }

    /// Publishes the watch rules' states (retained: each rule's state
    /// topic and each camera's `rules` list); only what changed is sent,
    /// and the state topic of a rule that is gone is cleared.
    pub fn set_rule_states(&self, states: RuleStates) {
        self.shared.rule_states.send_replace(states);
    }

    /// The current watch rules of every camera; changes as they are set
    /// over MQTT.
    pub fn rules(&self) -> watch::Receiver<BTreeMap<String, Vec<String>>> {
        self.shared.rules.subscribe()
    }

    /// The cameras whose analysis is paused; changes as they are paused
    /// and resumed over MQTT.
    pub fn paused(&self) -> watch::Receiver<BTreeSet<String>> {
        self.shared.paused.subscribe()
    }

    /// Waits until the broker connection is up, at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut connected = self.shared.connected.subscribe();
        tokio::time::timeout(timeout, connected.wait_for(|c| *c))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The stage's counters.
    pub fn stats(&self) -> MqttStats {
        MqttStats {
            connected: *self.shared.connected.borrow(),
            pending: self.shared.outbox().pending(),
            acknowledged: self.shared.acknowledged.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            dead_letters: self.shared.dead_letters.load(Ordering::Relaxed),
        }
    }
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
    limit: RateLimit,
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
        // An oversized packet is logged at WARN once per streak, not per
        // reconnect.
        let mut oversized_told = false;
        loop {
            let (end, was_up) = self.session().await;
            self.shared.connected.send_replace(false);
            match end {
                End::Shutdown => return,
                End::Reconfigured => {
                    backoff = Duration::from_millis(self.config.reconnect_min_ms);
                    oversized_told = false;
                    continue;
                }
                End::Lost(lost) if lost.oversized => {
                    // The broker will send the same packet again at once
                    // (a retained message on a topic we subscribe to):
                    // reconnecting quickly would only flap the status, so
                    // wait the longest backoff every time.
                    backoff = Duration::from_millis(self.config.reconnect_max_ms);
                    failures = 0;
                    if !oversized_told {
                        oversized_told = true;
                        tracing::warn!(
                            broker = %self.config.broker,
                            retry_in_ms = backoff.as_millis() as u64,
                            "the MQTT broker sent a message over mqtt.max_packet_bytes ({} bytes) and rumqttc dropped the connection: {}; probably a retained message on {}/+/ask or {}/+/rules/set: clear it (mosquitto_pub -r -n -t TOPIC) or raise mqtt.max_packet_bytes; reconnecting every {} ms meanwhile (MQTT 5 avoids this: the broker is told the limit)",
                            self.config.max_packet_bytes,
                            lost.reason,
                            self.config.prefix,
                            self.config.prefix,
                            backoff.as_millis()
                        );
                    } else {
                        tracing::debug!(broker = %self.config.broker, "oversized packet again: {}", lost.reason);
                    }
                }
                End::Lost(lost) => {
                    if was_up {
                        backoff = Duration::from_millis(self.config.reconnect_min_ms);
                        failures = 0;
                        oversized_told = false;
                    }
                    failures += 1;
                    let pending = self.shared.outbox().pending();
                    let reason = lost.reason;
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(broker = %self.config.broker, pending, retry_in_ms = backoff.as_millis() as u64, "MQTT broker unreachable: {reason}");
                    } else {
                        tracing::debug!(broker = %self.config.broker, "MQTT broker unreachable: {reason}");
                    }
                }
            }
            let deadline = tokio::time::Instant::now() + backoff;
            loop {
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = tokio::time::sleep_until(deadline) => break,
                    Ok(()) = self.desired.changed() => {
                        if self.apply_desired().await {
                            backoff = Duration::from_millis(self.config.reconnect_min_ms);
                            break;
                        }
                    }
                    command = self.commands.recv() => match command {
                        None => return,
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
        self.limit = RateLimit::new(config.questions_per_minute);
        self.config = config;
        self.cameras = cameras;
        tracing::info!(broker = %self.config.broker, "MQTT settings reloaded; reconnecting");
    }

    fn topic(&self, camera: &str, leaf: &str) -> String {
        format!("{}/{camera}/{leaf}", self.config.prefix)
    }

    /// Runs one connection; returns how it ended and whether it was up.
    async fn session(&mut self) -> (End, bool) {
        let window = self.config.max_inflight;
        let (client, notes, poller) = match client::connect(&self.config, self.tls.clone(), window)
        {
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
                Ok(()) = self.rule_states.changed(), if s.connected => self.sync_rules(&s, false),
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
                self.shared.connected.send_replace(true);
                tracing::info!(broker = %self.config.broker, protocol = ?self.config.protocol, client_id = %self.config.client_id(), "connected to the MQTT broker");
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
                            if let Err(e) = blocking(&self.shared, move |o| o.delete(&[row])).await
                            {
                                tracing::error!("{e}");
                            }
                        }
                    }
                    self.pump(s).await;
                }
            }
            Note::Publish {
                topic,
                payload,
                response_topic,
                correlation,
            } => {
                self.on_message(s, &topic, &payload, response_topic, correlation)
                    .await
            }
        }
        Ok(())
    }

    /// Subscriptions and retained state, sent on every (re)connect.
    fn on_connect(&mut self, s: &Session) {
        let prefix = self.config.prefix.clone();
        for filter in [
            format!("{prefix}/+/ask"),
            format!("{prefix}/+/rules/set"),
            format!("{prefix}/+/analysis/set"),
        ] {
            if let Err(e) = s.client.subscribe(&filter) {
                tracing::warn!(filter, "cannot subscribe: {e}");
            }
        }
        if self.config.discovery {
            let filter = format!("{}/status", self.config.discovery_prefix);
            if let Err(e) = s.client.subscribe(&filter) {
                tracing::warn!(filter, "cannot subscribe: {e}");
            }
        }
        self.publish(s, &format!("{prefix}/status"), true, "online".into());
        for camera in self.cameras.clone() {
            let activity = self
                .activity
                .get(&camera)
                .copied()
                .unwrap_or(Activity::Idle);
            self.publish(
                s,
                &self.topic(&camera, "activity"),
                true,
                activity.as_str().into(),
            );
            if let Some(jpeg) = self.snapshots.get(&camera) {
                self.publish_bytes(s, &self.topic(&camera, "snapshot"), jpeg.to_vec());
            }
            self.publish_analysis(s, &camera);
        }
        self.sync_rules(s, true);
        self.publish_discovery(s);
    }

    /// Publishes the rules' states that changed since the last call (all
    /// of them when `full`, after a connect): per camera the `rules` list
    /// and `rules/<id>/state` of each rule, both retained; the state topic
    /// of a rule that is gone gets an empty retained payload, which clears
    /// it.
    fn sync_rules(&mut self, s: &Session, full: bool) {
        let current = self.rule_states.borrow_and_update().clone();
        // A rule added or removed changes the cameras' discovery (one
        // binary_sensor per rule); sent after the states it reads.
        let ids = |states: &RuleStates| -> BTreeMap<String, Vec<String>> {
            states
                .iter()
                .map(|(c, rules)| (c.clone(), rules.iter().map(|r| r.id.clone()).collect()))
                .collect()
        };
        let rediscover = !full && ids(&current) != ids(&self.retained_rules);
        let mut gone: Vec<String> = self
            .retained_rules
            .keys()
            .filter(|c| !self.cameras.contains(c))
            .cloned()
            .collect();
        for camera in self.cameras.clone() {
            let now = current.get(&camera).cloned().unwrap_or_default();
            let before = self.retained_rules.remove(&camera).unwrap_or_default();
            if full || before != now {
                self.publish(
                    s,
                    &self.topic(&camera, "rules"),
                    true,
                    json!({ "rules": now }).to_string(),
                );
            }
            for status in &now {
                let was = before.iter().find(|b| b.id == status.id);
                if full || was != Some(status) {
                    let payload = serde_json::to_string(status).unwrap_or_default();
                    let topic = self.topic(&camera, &format!("rules/{}/state", status.id));
                    self.publish(s, &topic, true, payload);
                }
            }
            for old in before.iter().filter(|b| !now.iter().any(|n| n.id == b.id)) {
                let topic = self.topic(&camera, &format!("rules/{}/state", old.id));
                self.publish(s, &topic, true, String::new());
            }
            self.retained_rules.insert(camera, now);
        }
        // A camera that was removed: its retained rules go with it.
        for camera in gone.drain(..) {
            for old in self.retained_rules.remove(&camera).unwrap_or_default() {
                let topic = self.topic(&camera, &format!("rules/{}/state", old.id));
                self.publish(s, &topic, true, String::new());
            }
            self.publish(s, &self.topic(&camera, "rules"), true, String::new());
        }
        if rediscover {
            self.publish_discovery(s);
        }
    }

    /// The camera's analysis switch, retained on `<camera>/analysis`:
    /// `on`, or `off` while paused.
    fn publish_analysis(&self, s: &Session, camera: &str) {
        let state = if self.paused.contains(camera) {
            "off"
        } else {
            "on"
        };
        self.publish(s, &self.topic(camera, "analysis"), true, state.into());
    }

    fn publish_discovery(&mut self, s: &Session) {
        let client_id = self.config.client_id();
        let retract: Vec<String> = if self.config.discovery {
            self.announced
                .iter()
                .filter(|c| !self.cameras.contains(c))
                .cloned()
                .collect()
        } else {
            self.announced.iter().cloned().collect()
        };
        for camera in retract {
            let topic = discovery::topic(&self.config.discovery_prefix, &client_id, &camera);
            self.publish(s, &topic, true, String::new());
            self.announced.remove(&camera);
            self.components.remove(&camera);
        }
        if !self.config.discovery {
            return;
        }
        for camera in self.cameras.clone() {
            let topic = discovery::topic(&self.config.discovery_prefix, &client_id, &camera);
            let rules = self
                .retained_rules
                .get(&camera)
                .map_or(&[][..], Vec::as_slice);
            let mut payload = discovery::payload(&self.config.prefix, &client_id, &camera, rules);
            // A rule removed since the last update: its entities go too.
            let before = self.components.remove(&camera).unwrap_or_default();
            let now = discovery::retract_missing(&mut payload, &before);
            self.components.insert(camera.clone(), now);
            self.publish(s, &topic, true, payload.to_string());
            self.announced.insert(camera);
        }
        // Components Home Assistant adds on this update subscribe to the
        // availability topic it already subscribes to; a broker that does
        // not send retained messages again on a repeated subscription
        // (rumqttd 0.20, the embedded broker) would leave them
        // unavailable. So availability is published once more, after
        // Home Assistant has had time to add them.
        self.online_again = Some(tokio::time::Instant::now() + ONLINE_AGAIN_AFTER);
    }

    /// Queues outbox rows for the broker while the window has room.
    async fn pump(&mut self, s: &mut Session) {
        while s.connected && s.outstanding() < s.window {
            let (after, room) = (s.last_sent, s.window - s.outstanding());
            let rows = match blocking(&self.shared, move |o| o.after(after, room)).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!("{e}");
                    return;
                }
            };
            if rows.is_empty() {
                return;
            }
            for row in rows {
                let topic = row
                    .response_topic
                    .clone()
                    .unwrap_or_else(|| self.topic(&row.camera, row.channel.as_str()));
                let size = (
                    row.payload.len(),
                    row.correlation.as_ref().map_or(0, Vec::len),
                );
                let sent = client::check_publish(&topic, size.0, size.1, s.max_packet)
                    .map_err(PublishError::Refused)
                    .and_then(|()| {
                        s.client.publish(
                            &topic,
                            true,
                            false,
                            row.payload.into_bytes(),
                            row.correlation,
                        )
                    });
                match sent {
                    Ok(()) => s.queued.push_back((row.id, topic)),
                    // The request queue is full; the next ack pumps again.
                    Err(PublishError::Busy) => {
                        tracing::debug!("publish queue full");
                        return;
                    }
                    Err(PublishError::Refused(reason)) => {
                        self.dead_letter(row.id, topic, reason).await;
                    }
                }
                s.last_sent = row.id;
            }
        }
    }

    /// Moves an outbox row that cannot be delivered to the dead letters,
    /// logged once (the row is never tried again).
    async fn dead_letter(&self, row: i64, topic: String, reason: String) {
        let (t, r) = (topic.clone(), reason.clone());
        let moved = blocking(&self.shared, move |o| {
            Ok((o.dead_letter(row, &t, &r)?, o.dead_letters()))
        })
        .await;
        match moved {
            Ok((true, count)) => {
                self.shared.dead_letters.store(count, Ordering::Relaxed);
                tracing::warn!(
                row,
                topic,
                    "message not deliverable, moved to the dead letters (`glimpse events` lists them): {reason}"
                );
            }
            Ok((false, _)) => {}
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// Shutdown: `offline`, then the outbox for a while, then DISCONNECT.
    async fn drain(&mut self, s: &mut Session) {
        if !s.connected {
            return;
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config.drain_timeout_ms);
        self.pump(s).await;
        while s.outstanding() > 0 {
            let note = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                note = s.notes.recv() => note,
            };
            match note {
                Some(Ok(note)) => {
                    if self.on_note(s, note).await.is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
        self.publish(
            s,
            &format!("{}/status", self.config.prefix),
            true,
            "offline".into(),
        );
        s.client.disconnect();
        // Let the poller write the last packets (offline, DISCONNECT).
        let _ = tokio::time::timeout(Duration::from_millis(300), async {
            while let Some(Ok(_)) = s.notes.recv().await {}
        })
        .await;
    }

    async fn on_message(
        &mut self,
        s: &mut Session,
        topic: &str,
        payload: &[u8],
        response_topic: Option<String>,
        correlation: Option<Vec<u8>>,
    ) {
        if self.config.discovery && topic == format!("{}/status", self.config.discovery_prefix) {
            if payload == b"online" {
                tracing::info!("Home Assistant is online; sending discovery again");
                self.publish_discovery(s);
            }
            return;
        }
        let Some(rest) = topic
            .strip_prefix(&self.config.prefix)
            .and_then(|r| r.strip_prefix('/'))
        else {
            return;
        };
        let (camera, leaf) = match rest.split_once('/') {
            Some(parts) => parts,
            None => return,
        };
        let camera = camera.to_owned();
        match leaf {
            "ask" => {
                self.on_question(&camera, payload, response_topic, correlation)
                    .await
            }
            "rules/set" => {
                let mut rules = self.rules.get(&camera).cloned().unwrap_or_default();
                let bad_topic = response_topic.as_deref().and_then(|topic| {
                    ask::check_response_topic(topic, &self.config)
                        .err()
                        .map(|reason| format!("response topic {topic:?} refused: {reason}"))
                });
                let outcome = if let Some(error) = bad_topic {
                    Err(error)
                } else if self.cameras.contains(&camera) {
                    let config_rules: Vec<String> = self
                        .retained_rules
                        .get(&camera)
                        .into_iter()
                        .flatten()
                        .filter(|r| r.source == RuleSource::Config)
                        .map(|r| r.rule.clone())
                        .collect();
                    ask::apply_rules(payload, &mut rules, &config_rules)
                } else {
                    Err(format!(
                        "unknown camera {camera:?}; known: {}",
                        self.cameras.join(", ")
                    ))
                };
                match outcome {
                    Ok(()) => {
                        let (c, r) = (camera.clone(), rules.clone());
                        if let Err(e) = blocking(&self.shared, move |o| o.set_rules(&c, &r)).await {
                            tracing::error!("{e}");
                        }
                        tracing::info!(camera, rules = ?rules, "watch rules changed");
                        self.rules.insert(camera.clone(), rules);
                        // The `rules` list and the state topics follow
                        // from the pipeline's rule states (sync_rules).
                        self.shared.rules.send_replace(self.rules.clone());
                    }
                    Err(error) => {
                        tracing::warn!(camera, "rules change refused: {error}");
                        let refusal = Refusal { id: None, error };
                        self.refuse(
                            &camera,
                            Channel::RulesError,
                            &refusal,
                            response_topic,
                            correlation,
                        )
                        .await;
                    }
                }
            }
            "analysis/set" => {
                self.on_analysis(s, &camera, payload, response_topic, correlation)
                    .await
            }
            _ => {}
        }
    }

    /// `<camera>/analysis/set`: `on` resumes the camera's analysis, `off`
    /// pauses it (any case; Home Assistant's switch sends `ON`/`OFF`).
    /// Persisted in the outbox database, so a restart keeps it.
    async fn on_analysis(
        &mut self,
        s: &Session,
        camera: &str,
        payload: &[u8],
        response_topic: Option<String>,
        correlation: Option<Vec<u8>>,
    ) {
        let text = String::from_utf8_lossy(payload).trim().to_ascii_lowercase();
        let pause = match text.as_str() {
            _ if !self.cameras.iter().any(|c| c == camera) => Err(format!(
                "unknown camera {camera:?}; known: {}",
                self.cameras.join(", ")
            )),
            "on" | "resume" => Ok(false),
            "off" | "pause" => Ok(true),
            _ => Err(format!(
                "analysis/set takes on or off (resume or pause), got {:?}",
                text.chars().take(40).collect::<String>()
            )),
        };
        let pause = match pause {
            Ok(pause) => pause,
            Err(error) => {
                tracing::warn!(camera, "analysis change refused: {error}");
                let refusal = Refusal { id: None, error };
                self.refuse(
                    camera,
                    Channel::AnalysisError,
                    &refusal,
                    response_topic,
                    correlation,
                )
                .await;
                return;
            }
        };
        if pause != self.paused.contains(camera) {
            let c = camera.to_owned();
            if let Err(e) = blocking(&self.shared, move |o| o.set_paused(&c, pause)).await {
                tracing::error!("{e}");
            }
            if pause {
                self.paused.insert(camera.to_owned());
            } else {
                self.paused.remove(camera);
            }
            self.shared.paused.send_replace(self.paused.clone());
        }
        self.publish_analysis(s, camera);
    }

    async fn on_question(
        &mut self,
        camera: &str,
        payload: &[u8],
        response_topic: Option<String>,
        correlation: Option<Vec<u8>>,
    ) {
        let outcome = ask::parse_question(payload, self.config.max_question_bytes).and_then(|(id, text)| {
            let refuse = |error: String| Refusal { id: id.clone(), error };
            // Checked before anything else: an answer must never go to a
            // topic that cannot or should not take it (the error answer
            // then goes to <prefix>/<camera>/answer).
            if let Some(topic) = &response_topic {
                if let Err(reason) = ask::check_response_topic(topic, &self.config) {
                    return Err(refuse(format!("response topic {topic:?} refused: {reason}")));
                }
            }
            if !self.cameras.iter().any(|c| c == camera) {
                return Err(refuse(format!("unknown camera {camera:?}; known: {}", self.cameras.join(", "))));
            }
            if !self.limit.allow(camera, Instant::now()) {
                return Err(refuse(format!(
                    "too many questions for camera {camera:?}: at most {} per minute (mqtt.questions_per_minute)",
                    self.config.questions_per_minute
                )));
            }
            let question = Question {
                id: id.clone().unwrap_or_else(|| ulid::Ulid::new().to_string()),
                camera: camera.to_owned(),
                text,
                response_topic: response_topic.clone(),
                correlation: correlation.clone(),
                received: Instant::now(),
            };
            self.questions
                .try_send(question)
                .map_err(|_| refuse("too many questions waiting for the model; ask again later".into()))
        });
        let Err(refusal) = outcome else { return };
        tracing::info!(camera, id = ?refusal.id, "question refused: {}", refusal.error);
        self.refuse(
            camera,
            Channel::Answer,
            &refusal,
            response_topic,
            correlation,
        )
        .await;
    }

    /// Answers a refused question or rules change with an error, through
    /// the outbox, on the camera's `channel` topic or the (valid) response
    /// topic.
    async fn refuse(
        &self,
        camera: &str,
        channel: Channel,
        refusal: &Refusal,
        response_topic: Option<String>,
        correlation: Option<Vec<u8>>,
    ) {
        let response_topic =
            response_topic.filter(|t| ask::check_response_topic(t, &self.config).is_ok());
        let message = Pending {
            id: 0,
            camera: camera.to_owned(),
            channel,
            response_topic,
            correlation,
            payload: error_payload(camera, refusal),
        };
        match blocking(&self.shared, move |o| o.push(&message, None)).await {
            Ok(dropped) => {
                self.shared.dropped.fetch_add(dropped, Ordering::Relaxed);
                self.shared.wake.notify_one();
            }
            Err(e) => tracing::error!("{e}"),
        }
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
