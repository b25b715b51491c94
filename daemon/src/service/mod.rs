//! The service: lifecycle, signals and systemd.
//!
//! [`run`] is the daemon's life in three steps: [`Service::start`] builds
//! the stages and tells systemd it is ready; [`Service::serve`] only
//! reacts (SIGTERM/SIGINT stop it, SIGHUP reloads the config, events go
//! into the durable outbox, questions go to the model, timers publish
//! activity and statistics); [`Service::stop`] stops the stages in an
//! order that loses nothing (docs/architecture.md §8). A reload is in
//! `reload`: an invalid config is refused and the old one keeps running;
//! a new model loads in the background while the old one serves. The
//! watchdog pings come from a task of their own (`watchdog`) that looks
//! only at the stages' heartbeats, so nothing the loop waits for can stop
//! them. The MQTT stage starts first (embedded broker, outbox) and stops
//! last, so that `offline` and the last events get out. All of it runs on
//! tokio; nothing here touches a frame or a model.

mod answers;
pub mod logging;
mod notify;
mod reload;
mod stats;
mod watchdog;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Interval;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::ServiceConfig;
pub use notify::Notifier;

use crate::config::Config;
use crate::event::{Activity, Produced, RuleStates, ZoneStates};
use crate::health::Heartbeats;
use crate::http::{AskRequest, Board, HttpServer, Outcome};
use crate::mqtt::{Mqtt, MqttHandle, Question};
use crate::pipeline::{Operator, Pipeline};
use answers::{ask, next_question, store_event};
use reload::{model_loaded, PendingReload};
use stats::{update_board, StatsWindow};

/// Events waiting between the model workers and the service.
const EVENT_QUEUE: usize = 64;

/// Questions from the HTTP API waiting for the service; when full, the
/// asker gets a 503 at once.
const HTTP_QUESTIONS: usize = 16;

/// Runs the daemon until SIGTERM or SIGINT. `config` was loaded from
/// `config_path`, which is read again on SIGHUP.
pub async fn run(
    config_path: PathBuf,
    config: Config,
    logging: logging::Logging,
) -> anyhow::Result<()> {
    let mut service = Service::start(config_path, config, logging).await?;
    let reason = service.serve().await;
    service.stop(reason).await;
    Ok(())
}

/// What a signal asks the service to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Shutdown(&'static str),
    Reload,
}

/// The signals the daemon handles, registered once at start-up.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn register() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Action {
        tokio::select! {
            _ = self.term.recv() => Action::Shutdown("SIGTERM"),
            _ = self.int.recv() => Action::Shutdown("SIGINT"),
            _ = self.hup.recv() => Action::Reload,
        }
    }
}

/// The running daemon: its config, its stages, and what its loop waits
/// on. Only [`run`] holds one.
struct Service {
    config_path: PathBuf,
    config: Config,
    logging: logging::Logging,
    notifier: Notifier,
    state_dir: PathBuf,

    // The stages, started in this order and stopped in the reverse.
    mqtt_stage: Mqtt,
    /// The MQTT stage's handle: events, answers, retained state.
    mqtt: MqttHandle,
    pipeline: Pipeline,
    /// The state the HTTP endpoint reads; kept up to date by the loop.
    board: Arc<Board>,
    http: Option<HttpServer>,

    // What the loop waits on.
    signals: Signals,
    /// Events from the pipeline (and the test events), bounded: a burst
    /// makes the workers wait rather than grow memory.
    produced: mpsc::Receiver<Produced>,
    questions: Option<mpsc::Receiver<Question>>,
    http_asks: mpsc::Receiver<AskRequest>,
    /// Watch rules added and cameras paused over MQTT.
    rules: watch::Receiver<BTreeMap<String, Vec<String>>>,
    paused: watch::Receiver<BTreeSet<String>>,
    /// The rules' states, from the pipeline to MQTT as plain data.
    rule_states: watch::Receiver<RuleStates>,
    /// The zones' states, the same way.
    zone_states: watch::Receiver<ZoneStates>,
    /// Activity (idle/changing) is read from the pipeline every second
    /// and published when it changes.
    activity_tick: Interval,
    activities: BTreeMap<String, Activity>,
    stats_tick: Interval,
    stats: StatsWindow,
    reload: Reloads,

    // What the stop waits for, or stops.
    /// Question tasks, awaited at stop so that no answer is left behind.
    answering: TaskTracker,
    /// Stops the producers that are not cameras (test events) first.
    producers: CancellationToken,
    #[cfg(feature = "fault-injection")]
    faults: Faults,
    stall_timeout: Arc<AtomicU64>,
    stalled: Arc<AtomicBool>,
    pings: CancellationToken,
    watchdog: Option<JoinHandle<()>>,
}

/// A reload in flight, and one asked for meanwhile.
struct Reloads {
    /// A reload waiting for its model to load in the background.
    pending: Option<PendingReload>,
    /// A SIGHUP came while a model was loading: reload again after.
    again: bool,
    again_now: tokio::sync::Notify,
}

/// The faults the end-to-end tests inject (`faults`).
#[cfg(feature = "fault-injection")]
struct Faults {
    stall_release: Arc<AtomicBool>,
    test_events: Option<JoinHandle<()>>,
}

#[cfg(feature = "fault-injection")]
impl Faults {
    /// Starts the faults the environment asks for.
    fn start(
        pipeline: &Pipeline,
        events: &mpsc::Sender<Produced>,
        producers: &CancellationToken,
    ) -> Faults {
        Faults {
            stall_release: crate::faults::stall(pipeline),
            test_events: crate::faults::test_events(
                events.clone(),
                pipeline.workers().submitter(),
                pipeline.snapshotters(),
                producers.clone(),
            ),
        }
    }
}

impl Service {
    /// Starts the stages (MQTT, HTTP's port, the pipeline, HTTP, the
    /// watchdog) and tells systemd the daemon is ready.
    async fn start(
        config_path: PathBuf,
        config: Config,
        logging: logging::Logging,
    ) -> anyhow::Result<Service> {
        let notifier = Notifier;
        let state_dir = config
            .service
            .state_dir()
            .context("no state directory was resolved")?
            .to_owned();
        std::fs::create_dir_all(&state_dir).with_context(|| {
            format!("cannot create the state directory {}", state_dir.display())
        })?;
        // Registered before anything starts, so that no signal is missed.
        let signals = Signals::register().context("cannot register signal handlers")?;
        let mut mqtt_stage = Mqtt::start(&config.mqtt, enabled_cameras(&config), &state_dir)
            .await
            .context("cannot start MQTT")?;
        // Bound before the model loads: a taken port fails the start at once.
        let http_listener = crate::http::bind(&config.http)
            .await
            .context("cannot start the HTTP endpoint")?;
        let heartbeats = Heartbeats::new();
        let (events_tx, produced) = mpsc::channel(EVENT_QUEUE);
        let mqtt = mqtt_stage.handle.clone();
        let (mut rules, mut paused) = (mqtt.rules(), mqtt.paused());
        let operator = Operator {
            rules: rules.borrow_and_update().clone(),
            paused: paused.borrow_and_update().clone(),
        };
        let pipeline =
            Pipeline::build(&config.pipeline(), &heartbeats, events_tx.clone(), operator)
                .await
                .context("cannot start the pipeline")?;
        // A full disk: the outbox makes room from the oldest snapshots
        // before an event waiting in memory is lost (docs/architecture.md §7).
        if let Some(store) = pipeline.snapshot_store() {
            mqtt.on_disk_full(Arc::new(move || store.remove_oldest()));
        }
        let questions = mqtt_stage.take_questions();
        let producers = CancellationToken::new();
        #[cfg(feature = "fault-injection")]
        let faults = Faults::start(&pipeline, &events_tx, &producers);
        // Only the pipeline's jobs (and the test events) hold the sink
        // now, so the channel closes once they are all gone.
        drop(events_tx);
        if !mqtt
            .wait_connected(Duration::from_millis(config.mqtt.connect_wait_ms))
            .await
        {
            tracing::warn!(broker = %config.mqtt.broker, "MQTT broker not reached yet; events wait in the outbox");
        }
        announce(&config_path, &state_dir, &pipeline, &notifier);

        let stall_timeout = Arc::new(AtomicU64::new(config.service.stall_timeout_ms));
        // The HTTP endpoint reads copies of the state from the board; its
        // questions come back to the loop.
        let (http_asks_tx, http_asks) = mpsc::channel::<AskRequest>(HTTP_QUESTIONS);
        let board = Arc::new(Board::new(
            heartbeats.clone(),
            stall_timeout.clone(),
            pipeline.rule_states(),
            http_asks_tx,
            Some(state_dir.clone()),
            config.mqtt.max_question_bytes,
        ));
        update_board(&board, &pipeline, &mqtt, pipeline.stats());
        let http = http_listener
            .map(|listener| HttpServer::serve(listener, &config.http, board.clone()))
            .transpose()
            .context("cannot start the HTTP endpoint")?;
        let (stalled, pings) = (Arc::new(AtomicBool::new(false)), CancellationToken::new());
        let watchdog = notifier.watchdog_period().map(|period| {
            tokio::spawn(watchdog::watchdog(
                heartbeats,
                period,
                stall_timeout.clone(),
                stalled.clone(),
                pings.clone(),
            ))
        });
        let mut rule_states = pipeline.rule_states();
        mqtt.set_rule_states(rule_states.borrow_and_update().clone());
        let mut zone_states = pipeline.zone_states();
        mqtt.set_zone_states(zone_states.borrow_and_update().clone());
        Ok(Service {
            stats_tick: reload::stats_tick(&config).await,
            stats: StatsWindow::new(&pipeline),
            activity_tick: tokio::time::interval(Duration::from_secs(1)),
            activities: BTreeMap::new(),
            reload: Reloads {
                pending: None,
                again: false,
                again_now: tokio::sync::Notify::new(),
            },
            answering: TaskTracker::new(),
            config_path,
            config,
            logging,
            notifier,
            state_dir,
            mqtt_stage,
            mqtt,
            pipeline,
            board,
            http,
            signals,
            produced,
            questions,
            http_asks,
            rules,
            paused,
            rule_states,
            zone_states,
            producers,
            #[cfg(feature = "fault-injection")]
            faults,
            stall_timeout,
            stalled,
            pings,
            watchdog,
        })
    }

    /// The loop: reacts to whatever comes first until a signal stops it;
    /// returns the signal's name.
    async fn serve(&mut self) -> &'static str {
        loop {
            let action = tokio::select! {
                action = self.signals.next() => Some(action),
                () = self.reload.again_now.notified() => Some(Action::Reload),
                loaded = model_loaded(&mut self.reload.pending) => {
                    self.model_loaded(loaded).await;
                    None
                }
                Some(event) = self.produced.recv() => {
                    store_event(&self.mqtt, &self.board, event).await;
                    continue;
                }
                Some(question) = next_question(&mut self.questions) => {
                    self.ask(question, None);
                    continue;
                }
                Some(request) = self.http_asks.recv() => {
                    self.http_question(request);
                    continue;
                }
                Ok(()) = self.rules.changed() => {
                    let current = self.rules.borrow_and_update().clone();
                    self.pipeline.set_runtime_rules(current);
                    continue;
                }
                Ok(()) = self.paused.changed() => {
                    let current = self.paused.borrow_and_update().clone();
                    self.pipeline.set_paused(current);
                    continue;
                }
                Ok(()) = self.rule_states.changed() => {
                    self.mqtt.set_rule_states(self.rule_states.borrow_and_update().clone());
                    continue;
                }
                Ok(()) = self.zone_states.changed() => {
                    self.mqtt.set_zone_states(self.zone_states.borrow_and_update().clone());
                    continue;
                }
                _ = self.activity_tick.tick() => {
                    self.publish_activity();
                    continue;
                }
                _ = self.stats_tick.tick() => {
                    let line = self.stats.report(&self.pipeline, &self.mqtt);
                    if !self.stalled.load(Ordering::Relaxed) {
                        self.notifier.status(&line);
                    }
                    continue;
                }
            };
            match action {
                Some(Action::Shutdown(why)) => return why,
                Some(Action::Reload) => self.sighup().await,
                None => {}
            }
            // A SIGHUP that came during a model load is acted on once the
            // load has been applied or refused.
            if self.reload.pending.is_none() && std::mem::take(&mut self.reload.again) {
                self.reload.again_now.notify_one();
            }
        }
    }

    /// A question from the HTTP API: it takes from the same budget as
    /// MQTT's questions.
    fn http_question(&mut self, request: AskRequest) {
        let question = request.question;
        match self.mqtt.admit_question(&question.camera) {
            Ok(()) => self.ask(question, Some(request.reply)),
            Err(why) => {
                self.board
                    .record_question(&question.camera, Outcome::Failed);
                let payload = crate::mqtt::error_answer(&question.camera, &question.id, &why);
                let _ = request.reply.send((false, payload));
            }
        }
    }

    fn ask(&self, question: Question, reply: Option<tokio::sync::oneshot::Sender<(bool, String)>>) {
        ask(
            &self.pipeline,
            &self.mqtt,
            question,
            &self.answering,
            &self.board,
            reply,
        );
    }

    /// Publishes each camera's activity when it changed, and refreshes
    /// the board.
    fn publish_activity(&mut self) {
        let stats = self.pipeline.stats();
        for s in &stats {
            let activity = match (s.paused, s.changing) {
                (true, _) => Activity::Paused,
                (false, true) => Activity::Changing,
                (false, false) => Activity::Idle,
            };
            if self.activities.insert(s.camera.clone(), activity) != Some(activity) {
                self.mqtt.set_activity(&s.camera, activity);
            }
        }
        if self.http.is_some() {
            update_board(&self.board, &self.pipeline, &self.mqtt, stats);
        }
    }

    /// The stop, in order (docs/architecture.md §8): nothing produced is
    /// lost, and the watchdog pings go on until the end.
    async fn stop(mut self, reason: &str) {
        tracing::info!("{reason} received; shutting down");
        self.notifier.stopping();
        // HTTP questions from now on are refused at once; the page and
        // the metrics stay up until MQTT stops.
        drop(self.http_asks);
        let stopping = Instant::now();
        self.producers.cancel();
        #[cfg(feature = "fault-injection")]
        self.faults.stall_release.store(true, Ordering::Relaxed);
        // Capture stops, the workers finish what is queued; the events
        // that work makes keep going into the outbox meanwhile.
        #[cfg(feature = "fault-injection")]
        let test_events = self.faults.test_events;
        let pipeline = self.pipeline;
        let shutdown = async {
            pipeline.shutdown().await;
            #[cfg(feature = "fault-injection")]
            if let Some(task) = test_events {
                let _ = task.await;
            }
        };
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(event) = self.produced.recv() => store_event(&self.mqtt, &self.board, event).await,
            }
        }
        // Every sender is gone now but a worker abandoned as stuck: take
        // what is left without waiting for those.
        while let Ok(event) = self.produced.try_recv() {
            store_event(&self.mqtt, &self.board, event).await;
        }
        // Questions already handed to the model have their answers (or
        // errors) by now; their tasks publish them into the outbox.
        self.answering.close();
        let answers_wait = Duration::from_millis(self.config.service.shutdown_timeout_ms);
        if tokio::time::timeout(answers_wait, self.answering.wait())
            .await
            .is_err()
        {
            tracing::warn!("some questions were not answered before the stop");
        }
        tracing::debug!(
            elapsed_ms = stopping.elapsed().as_millis() as u64,
            "pipeline stopped; every event is in the outbox"
        );
        // The HTTP endpoint stops before MQTT, within a second.
        if let Some(http) = self.http {
            http.shutdown().await;
        }
        // The outbox is flushed to the broker within mqtt.drain_timeout_ms;
        // what is left is sent at the next start.
        self.mqtt_stage.shutdown().await;
        self.pings.cancel();
        if let Some(task) = self.watchdog {
            let _ = task.await;
        }
        tracing::info!("glimpse stopped");
    }
}

/// Logs that glimpse runs, and tells systemd it is ready.
fn announce(
    config_path: &std::path::Path,
    state_dir: &std::path::Path,
    pipeline: &Pipeline,
    notifier: &Notifier,
) {
    let cameras: Vec<&str> = pipeline.cameras().collect();
    tracing::info!(
        config = %config_path.display(),
        state_dir = %state_dir.display(),
        cameras = ?cameras,
        workers = pipeline.workers().threads(),
        "glimpse is running"
    );
    let model = pipeline.model().map_or("no model".to_owned(), |m| {
        format!("model {}", m.model.folder().path.display())
    });
    notifier.ready(&format!(
        "running {} camera(s): {}; {model}",
        cameras.len(),
        cameras.join(", ")
    ));
}

/// The names of the cameras `config` enables.
fn enabled_cameras(config: &Config) -> Vec<String> {
    config
        .cameras
        .iter()
        .filter(|(_, c)| c.enabled)
        .map(|(n, _)| n.clone())
        .collect()
}
