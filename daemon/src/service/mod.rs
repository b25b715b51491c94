//! The service: lifecycle, signals and systemd.
//!
//! [`run`] is the daemon's main loop. It builds the pipeline, tells systemd
//! it is ready, and then only reacts: SIGTERM/SIGINT stop it, SIGHUP
//! reloads the config (an invalid one is refused and the old one keeps
//! running; a new model loads in the background while the old one serves),
//! events go into the durable outbox, questions go to the model, and a
//! timer logs statistics and publishes them over MQTT. The watchdog pings
//! come from a task of their own ([`watchdog`]) that looks only at the
//! stages' heartbeats, so nothing the loop waits for can stop them. The
//! MQTT stage starts first (embedded broker, outbox) and stops last, so
//! that `offline` and the last events get out. The order of a stop is in
//! docs/architecture.md §8. All of it runs on tokio; nothing here
//! touches a frame or a model.

pub mod logging;
mod notify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::ServiceConfig;
pub use notify::Notifier;

use crate::config::{self as cfg, Config, Environment};
use crate::event::Activity;
use crate::event::Event;
use crate::frame::CameraState;
use crate::health::Heartbeats;
use crate::http::{AskRequest, Board, HttpServer, Outcome};
use crate::mqtt::{Mqtt, MqttHandle, Question};
use crate::pipeline::{self, CameraStats, ModelStages, Pipeline, PipelineError};

/// Events waiting between the model workers and the service.
const EVENT_QUEUE: usize = 64;

/// Questions from the HTTP API waiting for the service; when full, the
/// asker gets a 503 at once.
const HTTP_QUESTIONS: usize = 16;

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

/// A reload waiting for its model to load in the background.
struct PendingReload {
    config: Config,
    load: JoinHandle<Result<Arc<ModelStages>, PipelineError>>,
    started: Instant,
}

/// Runs the daemon until SIGTERM or SIGINT. `config` was loaded from
/// `config_path`, which is read again on SIGHUP.
pub async fn run(
    config_path: PathBuf,
    mut config: Config,
    logging: logging::Logging,
) -> anyhow::Result<()> {
    let notifier = Notifier;
    let state_dir = config
        .service
        .state_dir()
        .context("no state directory was resolved")?
        .to_owned();
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;

    // Registered before anything starts, so that no signal is missed.
    let mut signals = Signals::register().context("cannot register signal handlers")?;
    let mut mqtt = Mqtt::start(&config.mqtt, enabled_cameras(&config), &state_dir)
        .await
        .context("cannot start MQTT")?;
    // Bound before the model loads: a taken port fails the start at once.
    let http_listener = crate::http::bind(&config.http)
        .await
        .context("cannot start the HTTP endpoint")?;
    let heartbeats = Heartbeats::new();
    // Bounded: a burst of events makes the workers wait rather than grow
    // memory; events are never dropped.
    let (events_tx, mut produced) = mpsc::channel(EVENT_QUEUE);
    let events = mqtt.handle.clone();
    // Watch rules added and cameras paused over MQTT, as the cameras start.
    let (mut rules, mut paused) = (events.rules(), events.paused());
    let operator = crate::pipeline::Operator {
        rules: rules.borrow_and_update().clone(),
        paused: paused.borrow_and_update().clone(),
    };
    let mut pipeline =
        Pipeline::build(&config.pipeline(), &heartbeats, events_tx.clone(), operator)
            .await
            .context("cannot start the pipeline")?;
    // A full disk: the outbox makes room from the oldest snapshots before
    // an event waiting in memory is lost (docs/architecture.md §7).
    if let Some(store) = pipeline.snapshot_store() {
        events.on_disk_full(Arc::new(move || store.remove_oldest()));
    }
    // Questions from MQTT; answered by the model stages (see below).
    let mut questions = mqtt.take_questions();
    // Question tasks, awaited at stop so that no answer is left behind.
    let answering = TaskTracker::new();
    // Stops the producers that are not cameras (test events) first at stop.
    let producers = CancellationToken::new();
    #[cfg(feature = "fault-injection")]
    let stall_release = crate::faults::stall(&pipeline);
    #[cfg(feature = "fault-injection")]
    let test_events = crate::faults::test_events(
        events_tx.clone(),
        pipeline.workers().submitter(),
        pipeline.snapshotters(),
        producers.clone(),
    );
    // Only the pipeline's jobs (and the test events) hold the sink now, so
    // the channel closes once they are all gone.
    drop(events_tx);
    let connect_wait = Duration::from_millis(config.mqtt.connect_wait_ms);
    if !events.wait_connected(connect_wait).await {
        tracing::warn!(broker = %config.mqtt.broker, "MQTT broker not reached yet; events wait in the outbox");
    }

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

    let stall_timeout = Arc::new(AtomicU64::new(config.service.stall_timeout_ms));
    let stalled = Arc::new(AtomicBool::new(false));
    // The HTTP endpoint reads copies of the state from the board, which
    // this loop keeps up to date; its questions come back here.
    let (http_asks_tx, mut http_asks) = mpsc::channel::<AskRequest>(HTTP_QUESTIONS);
    let board = Arc::new(Board::new(
        heartbeats.clone(),
        stall_timeout.clone(),
        pipeline.rule_states(),
        http_asks_tx,
        Some(state_dir.clone()),
        config.mqtt.max_question_bytes,
    ));
    update_board(&board, &pipeline, &events, pipeline.stats());
    let http = match http_listener {
        Some(listener) => Some(
            HttpServer::serve(listener, &config.http, board.clone())
                .context("cannot start the HTTP endpoint")?,
        ),
        None => None,
    };
    let pings = CancellationToken::new();
    let watchdog_task = notifier.watchdog_period().map(|period| {
        tokio::spawn(watchdog(
            heartbeats.clone(),
            period,
            stall_timeout.clone(),
            stalled.clone(),
            pings.clone(),
        ))
    });
    let mut stats_tick =
        tokio::time::interval(Duration::from_secs(config.service.stats_interval_s));
    stats_tick.tick().await; // the first tick is immediate; skip it
    let mut stats = StatsWindow::new(&pipeline);
    // Activity (idle/changing) is read from the pipeline every second and
    // published when it changes.
    let mut activity_tick = tokio::time::interval(Duration::from_secs(1));
    let mut activities: BTreeMap<String, Activity> = BTreeMap::new();
    // Later changes of the rules and the paused cameras (above) reach the
    // cameras as they come.
    // The rules' states go from the pipeline to MQTT as plain data.
    let mut rule_states = pipeline.rule_states();
    events.set_rule_states(rule_states.borrow_and_update().clone());
    let mut pending: Option<PendingReload> = None;
    // A SIGHUP that came while a model was loading: reload again after.
    let mut pending_again = false;
    let reload_again = tokio::sync::Notify::new();

    let reason = loop {
        let action = tokio::select! {
            action = signals.next() => action,
            () = reload_again.notified() => Action::Reload,
            loaded = model_loaded(&mut pending) => {
                let Some(reload) = pending.take() else { continue };
                match loaded {
                    Ok(model) => {
                        tracing::info!(
                            load_s = format_args!("{:.1}", reload.started.elapsed().as_secs_f64()),
                            "the new model is loaded; switching every camera to it"
                        );
                        apply(&mut config, reload.config, Some(model), &mut pipeline, &logging, &notifier, &events, &stall_timeout).await;
                        stats_tick = restart_stats_tick(&config).await;
                    }
                    Err(e) => {
                        let status = format!("reload refused, still running the previous config: {e}");
                        tracing::error!("{status}");
                        notifier.ready(&status);
                    }
                }
                continue;
            }
            Some(event) = produced.recv() => {
                store_event(&events, &board, event).await;
                continue;
            }
            Some(question) = next_question(&mut questions) => {
                ask(&pipeline, &events, question, &answering, &board, None);
                continue;
            }
            Some(request) = http_asks.recv() => {
                // HTTP questions take from the same budget as MQTT's.
                let question = request.question;
                match events.admit_question(&question.camera) {
                    Ok(()) => ask(&pipeline, &events, question, &answering, &board, Some(request.reply)),
                    Err(why) => {
                        board.record_question(&question.camera, Outcome::Failed);
                        let payload = crate::mqtt::error_answer(&question.camera, &question.id, &why);
                        let _ = request.reply.send((false, payload));
                    }
                }
                continue;
            }
            Ok(()) = rules.changed() => {
                let current = rules.borrow_and_update().clone();
                pipeline.set_runtime_rules(current);
                continue;
            }
            Ok(()) = paused.changed() => {
                let current = paused.borrow_and_update().clone();
                pipeline.set_paused(current);
                continue;
            }
            Ok(()) = rule_states.changed() => {
                events.set_rule_states(rule_states.borrow_and_update().clone());
                continue;
            }
            _ = activity_tick.tick() => {
                let stats = pipeline.stats();
                for s in &stats {
                    let activity = match (s.paused, s.changing) {
                        (true, _) => Activity::Paused,
                        (false, true) => Activity::Changing,
                        (false, false) => Activity::Idle,
                    };
                    if activities.insert(s.camera.clone(), activity) != Some(activity) {
                        events.set_activity(&s.camera, activity);
                    }
                }
                if http.is_some() {
                    update_board(&board, &pipeline, &events, stats);
                }
                continue;
            }
            _ = stats_tick.tick() => {
                let line = stats.report(&pipeline, &events);
                if !stalled.load(Ordering::Relaxed) {
                    notifier.status(&line);
                }
                continue;
            }
        };
        match action {
            Action::Shutdown(why) => break why,
            Action::Reload if pending.is_some() => {
                tracing::info!(
                    "SIGHUP received while a model loads; reloading again once it is done"
                );
                // Fires once the pending load has been applied or refused.
                pending_again = true;
            }
            Action::Reload => {
                notifier.reloading();
                tracing::info!(config = %config_path.display(), "SIGHUP received; reloading the config");
                let new = match read_config(&config_path, &config).await {
                    Ok(new) => new,
                    Err(status) => {
                        notifier.ready(&status);
                        continue;
                    }
                };
                match new
                    .model
                    .clone()
                    .filter(|_| pipeline.model_changed(&new.pipeline()))
                {
                    Some(model) => {
                        pending = Some(start_model_load(new, model, &state_dir, &notifier))
                    }
                    None => {
                        apply(
                            &mut config,
                            new,
                            None,
                            &mut pipeline,
                            &logging,
                            &notifier,
                            &events,
                            &stall_timeout,
                        )
                        .await;
                        stats_tick = restart_stats_tick(&config).await;
                    }
                }
            }
        }
        if pending.is_none() && std::mem::take(&mut pending_again) {
            reload_again.notify_one();
        }
    };

    // The stop, in order (docs/architecture.md §8): nothing produced
    // is lost, and the watchdog pings go on until the end.
    tracing::info!("{reason} received; shutting down");
    notifier.stopping();
    // HTTP questions from now on are refused at once; the page and the
    // metrics stay up until MQTT stops.
    drop(http_asks);
    let stopping = Instant::now();
    producers.cancel();
    #[cfg(feature = "fault-injection")]
    stall_release.store(true, Ordering::Relaxed);
    // Capture stops, the workers finish what is queued; the events that
    // work makes keep going into the outbox meanwhile.
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
            Some(event) = produced.recv() => store_event(&events, &board, event).await,
        }
    }
    // Every sender is gone now but a worker abandoned as stuck: take what
    // is left without waiting for those.
    while let Ok(event) = produced.try_recv() {
        store_event(&events, &board, event).await;
    }
    // Questions already handed to the model have their answers (or
    // errors) by now; their tasks publish them into the outbox.
    answering.close();
    if tokio::time::timeout(
        Duration::from_millis(config.service.shutdown_timeout_ms),
        answering.wait(),
    )
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
    if let Some(http) = http {
        http.shutdown().await;
    }
    // The outbox is flushed to the broker within mqtt.drain_timeout_ms;
    // what is left is sent at the next start.
    mqtt.shutdown().await;
    pings.cancel();
    if let Some(task) = watchdog_task {
        let _ = task.await;
    }
    tracing::info!("glimpse stopped");
    Ok(())
}

/// Copies the cameras' counters, MQTT's and the pool's into the board.
fn update_board(board: &Board, pipeline: &Pipeline, mqtt: &MqttHandle, stats: Vec<CameraStats>) {
    board.update(
        stats,
        pipeline.counters(),
        mqtt.stats(),
        pipeline.workers().stats().queued,
    );
}

/// Puts an event into the durable outbox; the MQTT driver publishes it.
async fn store_event(mqtt: &MqttHandle, board: &Board, mut event: Event) {
    board.record_event(&event);
    // The picture first: a reader of the event finds it in place.
    if let Some(jpeg) = event.jpeg.take() {
        mqtt.publish_snapshot(&event.camera, jpeg);
    }
    tracing::info!(
        camera = %event.camera,
        kind = ?event.kind,
        latency_ms = event.latency_ms,
        at_s = format_args!("{:.1}", event.end_s),
        "event: {}", event.text
    );
    if let Err(e) = mqtt.publish_event(event).await {
        tracing::error!("an event could not be stored for MQTT: {e}");
    }
}

/// Pings systemd's watchdog at half its period while every stage's
/// heartbeat is fresh; withholds the pings (and says why) while one is
/// stalled, so that systemd restarts a stuck daemon. A task of its own:
/// a reload or a slow stop in the service loop never delays a ping.
async fn watchdog(
    heartbeats: Heartbeats,
    period: Duration,
    stall_timeout_ms: Arc<AtomicU64>,
    stalled: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let notifier = Notifier;
    // systemd recommends pinging at half the period.
    let mut tick = tokio::time::interval(period / 2);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let timeout = Duration::from_millis(stall_timeout_ms.load(Ordering::Relaxed));
        let stalls = heartbeats.stalled(timeout);
        match stalls.first() {
            None => {
                if stalled.swap(false, Ordering::Relaxed) {
                    tracing::info!("pipeline made progress again; watchdog pings resume");
                }
                notifier.watchdog();
            }
            Some(worst) if !stalled.swap(true, Ordering::Relaxed) => {
                let line = format!(
                    "pipeline stalled: {} has made no progress for {:.1} s; withholding watchdog pings so that systemd restarts glimpse",
                    worst.stage,
                    worst.silent_for.as_secs_f64()
                );
                tracing::error!(stalled = stalls.len(), "{line}");
                notifier.status(&line);
            }
            Some(_) => {}
        }
    }
}

/// Reads the config again for a reload, off the runtime (the check opens
/// the model folder: seconds for a large one); an invalid one is refused
/// (the error is logged, and the returned line is the STATUS to show).
async fn read_config(path: &Path, running: &Config) -> Result<Config, String> {
    let owned = path.to_owned();
    let loaded =
        tokio::task::spawn_blocking(move || cfg::load(&owned, &Environment::from_process())).await;
    match loaded {
        Ok(Ok(new)) => {
            if new.service.state_dir != running.service.state_dir {
                tracing::warn!("service.state_dir changes take effect at the next restart");
            }
            Ok(new)
        }
        Ok(Err(e)) => {
            tracing::error!("reload refused, still running the previous config: {e}");
            Err("reload refused (see the log); still running the previous config".to_owned())
        }
        Err(e) => {
            tracing::error!("reload refused: reading the config failed: {e}");
            Err("reload refused (see the log); still running the previous config".to_owned())
        }
    }
}

/// Starts loading `model` (the one `config` names), in the background: the
/// old model serves and the watchdog pings go on until it is ready.
fn start_model_load(
    config: Config,
    model: crate::infer::ModelConfig,
    state_dir: &Path,
    notifier: &Notifier,
) -> PendingReload {
    tracing::info!(model = %model.path.display(), "loading the new model in the background; the previous model serves meanwhile");
    notifier.status("reloading: loading the new model; the previous model serves meanwhile");
    let state_dir = state_dir.to_owned();
    let load = tokio::spawn(async move { pipeline::load_model(&model, Some(&state_dir)).await });
    PendingReload {
        config,
        load,
        started: Instant::now(),
    }
}

/// The outcome of the pending model load; never resolves without one.
async fn model_loaded(
    pending: &mut Option<PendingReload>,
) -> Result<Arc<ModelStages>, PipelineError> {
    match pending {
        Some(reload) => match (&mut reload.load).await {
            Ok(loaded) => loaded,
            Err(e) => Err(PipelineError::Model(crate::infer::InferError::Input(
                format!("the model loader stopped: {e}"),
            ))),
        },
        None => std::future::pending().await,
    }
}

async fn restart_stats_tick(config: &Config) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(Duration::from_secs(config.service.stats_interval_s));
    tick.tick().await;
    tick
}

/// Applies a valid new config (its model, if changed, is `loaded`), tells
/// MQTT what changed for it, and says READY with what happened.
#[allow(clippy::too_many_arguments)]
async fn apply(
    config: &mut Config,
    new: Config,
    loaded: Option<Arc<ModelStages>>,
    pipeline: &mut Pipeline,
    logging: &logging::Logging,
    notifier: &Notifier,
    mqtt: &MqttHandle,
    stall_timeout: &AtomicU64,
) {
    logging.set_level(&new.service.log_level);
    stall_timeout.store(new.service.stall_timeout_ms, Ordering::Relaxed);
    let status = match pipeline.apply(&new.pipeline(), loaded).await {
        Ok(changes) if changes.is_empty() => "config reloaded; nothing to restart".to_owned(),
        Ok(changes) => {
            let mut status = format!(
                "config reloaded; cameras started {:?}, restarted {:?}, stopped {:?}",
                changes.started, changes.restarted, changes.stopped
            );
            if changes.workers_resized {
                status.push_str("; model workers resized");
            }
            if changes.model_reloaded {
                status.push_str("; model reloaded");
            }
            status
        }
        Err(e) => {
            tracing::error!("reload partly failed: {e:#}");
            format!("reload partly failed: {e}")
        }
    };
    tracing::info!("{status}");
    if new.http != config.http {
        tracing::warn!(
            "[http] changes take effect at the next restart; the endpoint keeps its settings"
        );
    }
    if new.mqtt != config.mqtt || enabled_cameras(&new) != enabled_cameras(config) {
        mqtt.reconfigure(&new.mqtt, enabled_cameras(&new));
    }
    *config = new;
    notifier.ready(&status);
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

/// The next question, or never when questions are not taken.
async fn next_question(questions: &mut Option<mpsc::Receiver<Question>>) -> Option<Question> {
    match questions {
        Some(q) => q.recv().await,
        None => std::future::pending().await,
    }
}

/// How long an asker waits for the model before an error answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Hands a question to the model; a task (tracked, awaited at stop)
/// publishes the answer (or an error answer) when it comes, so the service
/// loop never waits. A question from the HTTP API takes the same path and
/// gets the same JSON on `reply` (true: an answer).
fn ask(
    pipeline: &Pipeline,
    mqtt: &MqttHandle,
    question: Question,
    tasks: &TaskTracker,
    board: &Arc<Board>,
    reply: Option<tokio::sync::oneshot::Sender<(bool, String)>>,
) {
    let pending = pipeline.ask(&question.camera, question.text.clone());
    let mqtt = mqtt.clone();
    let board = board.clone();
    tasks.spawn(async move {
        let outcome = match pending {
            Err(why) => Err(why),
            Ok(rx) => match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err("the model worker stopped before answering".to_owned()),
                Err(_) => Err(format!("no answer within {} s", ANSWER_TIMEOUT.as_secs())),
            },
        };
        let published = match outcome {
            Ok(mut event) => {
                event.latency_ms = question.received.elapsed().as_millis() as u64;
                if let Some(jpeg) = event.jpeg.take() {
                    mqtt.publish_snapshot(&event.camera, jpeg);
                }
                tracing::info!(camera = %question.camera, id = %question.id, latency_ms = event.latency_ms, "answer: {}", event.text);
                // What MQTT sends (MqttHandle::answer sets these too).
                event.kind = crate::event::EventKind::Answer;
                event.reference = Some(question.id.clone());
                board.record_event(&event);
                board.record_question(&question.camera, Outcome::Answered);
                if let Some(reply) = reply {
                    let _ = reply.send((true, serde_json::to_string(&event).unwrap_or_default()));
                }
                mqtt.answer(&question, event).await
            }
            Err(why) => {
                board.record_question(&question.camera, Outcome::Failed);
                if let Some(reply) = reply {
                    let payload = crate::mqtt::error_answer(&question.camera, &question.id, &why);
                    let _ = reply.send((false, payload));
                }
                mqtt.answer_error(&question, &why).await
            }
        };
        if let Err(e) = published {
            tracing::error!("cannot answer question {}: {e}", question.id);
        }
    });
}

/// Turns cumulative camera counters into per-interval rates.
struct StatsWindow {
    since: Instant,
    last: BTreeMap<String, CameraStats>,
}

impl StatsWindow {
    fn new(pipeline: &Pipeline) -> Self {
        StatsWindow {
            since: Instant::now(),
            last: pipeline
                .stats()
                .into_iter()
                .map(|s| (s.camera.clone(), s))
                .collect(),
        }
    }

    /// Logs one line per camera, publishes it on the camera's MQTT stats
    /// topic, and returns a one-line summary.
    fn report(&mut self, pipeline: &Pipeline, mqtt: &MqttHandle) -> String {
        let elapsed = self.since.elapsed().as_secs_f64().max(1e-3);
        let mut parts = Vec::new();
        let now: BTreeMap<String, CameraStats> = pipeline
            .stats()
            .into_iter()
            .map(|s| (s.camera.clone(), s))
            .collect();
        for (name, s) in &now {
            let prev = self.last.get(name);
            let delta = |f: fn(&CameraStats) -> u64| f(s) - prev.map_or(0, f).min(f(s));
            let fps = delta(|s| s.sampled) as f64 / elapsed;
            let analysed_fps = delta(|s| s.analysed) as f64 / elapsed;
            let dropped = delta(|s| s.dropped);
            let queued = pipeline.workers().stats().queued;
            tracing::info!(
                camera = %name,
                state = %s.state,
                fps = format_args!("{fps:.2}"),
                analysed_fps = format_args!("{analysed_fps:.2}"),
                dropped,
                received = s.received,
                analysed = s.analysed,
                reconnects = s.reconnects,
                "camera stats"
            );
            let outbox = mqtt.stats();
            mqtt.publish_stats(
                name,
                serde_json::json!({
                    "camera": name,
                    "state": s.state.to_string(),
                    "fps": (fps * 100.0).round() / 100.0,
                    "analysed_fps": (analysed_fps * 100.0).round() / 100.0,
                    "sampled": s.sampled,
                    "received": s.received,
                    "dropped": s.dropped,
                    "dropped_interval": dropped,
                    "reconnects": s.reconnects,
                    "interval_s": (elapsed * 1000.0).round() / 1000.0,
                    "outbox_pending": outbox.pending,
                    "outbox_dropped": outbox.dropped,
                    "outbox_unstored": outbox.unstored,
                    "outbox_unstored_dropped": outbox.unstored_dropped,
                    // The model stages (zeros without a model).
                    "analysed": s.analysed,
                    "encoded": s.encoded,
                    "retention": (f64::from(s.retention) * 1000.0).round() / 1000.0,
                    "retention_mean": s.retention_mean(),
                    "changing": s.changing,
                    "events": s.events,
                    "held_back": s.held_back,
                    "nothing_changed": s.nothing_changed,
                    "memory": s.memory,
                    "queue_depth": queued,
                    "pending": s.pending,
                    "paused": s.paused,
                    "skipped_paused": s.skipped_paused,
                }),
            );
            parts.push(match s.state {
                CameraState::Up if s.paused => format!("{name}: {fps:.1} fps, analysis paused"),
                CameraState::Up => {
                    format!("{name}: {fps:.1} fps, {analysed_fps:.1} analysed, {dropped} dropped")
                }
                ref other => format!("{name}: {other}"),
            });
        }
        let workers = pipeline.workers().stats();
        tracing::debug!(queued = ?workers.queued, completed = workers.completed, panicked = workers.panicked, "model worker stats");
        self.since = Instant::now();
        self.last = now;
        parts.join("; ")
    }
}
