//! The service: lifecycle, signals and systemd.
//!
//! [`run`] is the daemon's main loop. It builds the pipeline, tells systemd
//! it is ready, and then only reacts: SIGTERM/SIGINT stop it, SIGHUP
//! reloads the config (an invalid one is refused and the old one keeps
//! running), a timer pings the watchdog while every stage's heartbeat is
//! fresh, and another logs statistics and publishes them over MQTT. The
//! MQTT stage starts first (embedded broker, outbox) and stops last, so
//! that `offline` and the last events get out. All of it runs on tokio;
//! nothing here touches a frame or a model.

mod config;
pub mod logging;
mod notify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};

pub use config::ServiceConfig;
pub use notify::Notifier;

use crate::capture::CameraState;
use crate::config::{self as cfg, Config, Environment};
use crate::health::Heartbeats;
use crate::mqtt::{Activity, Mqtt, MqttHandle, Question};
use crate::pipeline::{CameraStats, Pipeline};
use crate::workers::Priority;

/// Environment variable that makes a model worker hang after this many
/// milliseconds, to check that the watchdog restarts a stalled daemon.
pub const STALL_FAULT_ENV: &str = "GLIMPSE_DEBUG_STALL_AFTER_MS";

/// Events waiting between the model workers and the service.
const EVENT_QUEUE: usize = 64;

/// Environment variable that makes every camera publish a numbered test
/// event every this many milliseconds, to exercise the MQTT path end to
/// end without a model.
pub const TEST_EVENTS_ENV: &str = "GLIMPSE_DEBUG_EVENT_EVERY_MS";

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
    let enabled = |c: &Config| -> Vec<String> {
        c.cameras
            .iter()
            .filter(|(_, c)| c.enabled)
            .map(|(n, _)| n.clone())
            .collect()
    };
    let mut mqtt = Mqtt::start(&config.mqtt, enabled(&config), &state_dir)
        .await
        .context("cannot start MQTT")?;
    let heartbeats = Heartbeats::new();
    // Bounded: a burst of events makes the workers wait rather than grow
    // memory; events are never dropped.
    let (events_tx, mut produced) = tokio::sync::mpsc::channel(EVENT_QUEUE);
    let mut pipeline = Pipeline::build(&config, &heartbeats, events_tx)
        .await
        .context("cannot start the pipeline")?;
    let stall_release = inject_stall_fault(&pipeline);
    let events = mqtt.handle.clone();
    // Questions from MQTT; answered by the model stages (see below).
    let mut questions = mqtt.take_questions();
    let test_events = inject_test_events(&events, &pipeline);
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
        format!("model {}", m.folder().path.display())
    });
    notifier.ready(&format!(
        "running {} camera(s): {}; {model}",
        cameras.len(),
        cameras.join(", ")
    ));

    let watchdog = notifier.watchdog_period();
    // systemd recommends pinging at half the period.
    let mut watchdog_tick =
        tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |p| p / 2));
    let mut stats_tick =
        tokio::time::interval(Duration::from_secs(config.service.stats_interval_s));
    stats_tick.tick().await; // the first tick is immediate; skip it
    let mut stats = StatsWindow::new(&pipeline);
    let mut stalled = false;
    // Activity (idle/changing) is read from the pipeline every second and
    // published when it changes.
    let mut activity_tick = tokio::time::interval(Duration::from_secs(1));
    let mut activities: BTreeMap<String, Activity> = BTreeMap::new();
    // Watch rules set over MQTT reach the model stages.
    let mut rules = events.rules();
    pipeline.set_runtime_rules(rules.borrow_and_update().clone());

    let reason = loop {
        tokio::select! {
            action = signals.next() => match action {
                Action::Shutdown(why) => break why,
                Action::Reload => {
                    let old_mqtt = config.mqtt.clone();
                    let old_cameras = enabled(&config);
                    reload(&config_path, &mut config, &mut pipeline, &logging, &notifier).await;
                    if config.mqtt != old_mqtt || enabled(&config) != old_cameras {
                        events.reconfigure(&config.mqtt, enabled(&config));
                    }
                    stats_tick = tokio::time::interval(Duration::from_secs(config.service.stats_interval_s));
                    stats_tick.tick().await;
                }
            },
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                let stalls = heartbeats.stalled(Duration::from_millis(config.service.stall_timeout_ms));
                match stalls.first() {
                    None => {
                        if stalled {
                            tracing::info!("pipeline made progress again; watchdog pings resume");
                            stalled = false;
                        }
                        notifier.watchdog();
                    }
                    Some(worst) if !stalled => {
                        stalled = true;
                        let line = format!(
                            "pipeline stalled: {} has made no progress for {:.1} s; withholding watchdog pings so that systemd restarts glimpse",
                            worst.stage, worst.silent_for.as_secs_f64()
                        );
                        tracing::error!(stalled = stalls.len(), "{line}");
                        notifier.status(&line);
                    }
                    Some(_) => {}
                }
            }
            Some(event) = produced.recv() => {
                tracing::info!(
                    camera = %event.camera,
                    kind = ?event.kind,
                    latency_ms = event.latency_ms,
                    at_s = format_args!("{:.1}", event.end_s),
                    "event: {}", event.text
                );
                // Into the durable outbox; the MQTT driver publishes it.
                if let Err(e) = events.publish_event(event).await {
                    tracing::error!("an event could not be stored for MQTT: {e}");
                }
            }
            Some(question) = next_question(&mut questions) => {
                ask(&pipeline, &events, question);
            }
            Ok(()) = rules.changed() => {
                let current = rules.borrow_and_update().clone();
                pipeline.set_runtime_rules(current);
            }
            _ = activity_tick.tick() => {
                for s in pipeline.stats() {
                    let activity = if s.changing { Activity::Changing } else { Activity::Idle };
                    if activities.insert(s.camera.clone(), activity) != Some(activity) {
                        events.set_activity(&s.camera, activity);
                    }
                }
            }
            _ = stats_tick.tick() => {
                let line = stats.report(&pipeline, &events);
                if !stalled {
                    notifier.status(&line);
                }
            }
        }
    };

    tracing::info!("{reason} received; shutting down");
    notifier.stopping();
    stall_release.store(true, Ordering::Relaxed);
    if let Some(task) = test_events {
        task.abort();
    }
    pipeline.shutdown().await;
    mqtt.shutdown().await;
    tracing::info!("glimpse stopped");
    Ok(())
}

/// Re-reads the config; applies it if valid, keeps the old one otherwise.
async fn reload(
    path: &Path,
    config: &mut Config,
    pipeline: &mut Pipeline,
    logging: &logging::Logging,
    notifier: &Notifier,
) {
    notifier.reloading();
    tracing::info!(config = %path.display(), "SIGHUP received; reloading the config");
    let new = match cfg::load(path, &Environment::from_process()) {
        Ok(new) => new,
        Err(e) => {
            tracing::error!("reload refused, still running the previous config: {e}");
            notifier.ready("reload refused (see the log); still running the previous config");
            return;
        }
    };
    if new.service.state_dir != config.service.state_dir {
        tracing::warn!("service.state_dir changes take effect at the next restart");
    }
    logging.set_level(&new.service.log_level);
    let outcome = pipeline.apply(&new).await;
    let status = match outcome {
        Ok(changes) if changes.is_empty() => "config reloaded; nothing to restart".to_owned(),
        Ok(changes) => {
            let mut status = format!(
                "config reloaded; cameras started {:?}, restarted {:?}, stopped {:?}",
                changes.started, changes.restarted, changes.stopped
            );
            if changes.workers_rebuilt {
                status.push_str("; model workers rebuilt");
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
    *config = new;
    notifier.ready(&status);
}

/// Hangs a model worker after [`STALL_FAULT_ENV`] milliseconds, if set.
/// Returns the flag that releases it at shutdown.
fn inject_stall_fault(pipeline: &Pipeline) -> Arc<AtomicBool> {
    let release = Arc::new(AtomicBool::new(false));
    let Some(after) = std::env::var(STALL_FAULT_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return release;
    };
    tracing::warn!("{STALL_FAULT_ENV} is set: a model worker will hang after {after} ms");
    let flag = release.clone();
    let submitted = pipeline.workers().submit(
        Priority::Answer,
        Box::new(move || {
            std::thread::sleep(Duration::from_millis(after));
            tracing::warn!("fault injection: this model worker now hangs");
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }),
    );
    if let Err(e) = submitted {
        tracing::warn!("cannot inject the stall fault: {e}");
    }
    release
}

/// Answers every question with an error until a responder (the model
/// stages) exists: askers learn why instead of waiting forever.
/// The next question, or never when questions are not taken.
async fn next_question(
    questions: &mut Option<tokio::sync::mpsc::Receiver<Question>>,
) -> Option<Question> {
    match questions {
        Some(q) => q.recv().await,
        None => std::future::pending().await,
    }
}

/// How long an asker waits for the model before an error answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Hands a question to the model; a task publishes the answer (or an
/// error answer) when it comes, so the service loop never waits.
fn ask(pipeline: &Pipeline, mqtt: &MqttHandle, question: Question) {
    let pending = pipeline.ask(&question.camera, question.text.clone());
    let mqtt = mqtt.clone();
    tokio::spawn(async move {
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
                tracing::info!(camera = %question.camera, id = %question.id, latency_ms = event.latency_ms, "answer: {}", event.text);
                mqtt.answer(&question, event).await
            }
            Err(why) => mqtt.answer_error(&question, &why).await,
        };
        if let Err(e) = published {
            tracing::error!("cannot answer question {}: {e}", question.id);
        }
    });
}

/// Publishes numbered test events if [`TEST_EVENTS_ENV`] is set.
fn inject_test_events(
    mqtt: &MqttHandle,
    pipeline: &Pipeline,
) -> Option<tokio::task::JoinHandle<()>> {
    let every = std::env::var(TEST_EVENTS_ENV)
        .ok()?
        .parse::<u64>()
        .ok()
        .filter(|ms| *ms > 0)?;
    tracing::warn!("{TEST_EVENTS_ENV} is set: publishing a test event every {every} ms");
    let cameras: Vec<String> = pipeline.cameras().map(str::to_owned).collect();
    let mqtt = mqtt.clone();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(every));
        for n in 0u64.. {
            tick.tick().await;
            for camera in &cameras {
                let event = crate::trigger::Event::new(
                    camera,
                    crate::trigger::EventKind::Description,
                    format!("test event {n}"),
                    (Duration::ZERO, Duration::ZERO),
                );
                if let Err(e) = mqtt.publish_event(event).await {
                    tracing::error!("test event: {e}");
                }
            }
        }
    }))
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
            let fps = delta(|s| s.received) as f64 / elapsed;
            let dropped = delta(|s| s.dropped);
            let queued = pipeline.workers().stats().queued;
            tracing::info!(
                camera = %name,
                state = %s.state,
                fps = format_args!("{fps:.2}"),
                dropped,
                received = s.received,
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
                    "received": s.received,
                    "dropped": s.dropped,
                    "dropped_interval": dropped,
                    "reconnects": s.reconnects,
                    "interval_s": (elapsed * 1000.0).round() / 1000.0,
                    "outbox_pending": outbox.pending,
                    "outbox_dropped": outbox.dropped,
                    // The model stages (zeros without a model).
                    "analysed": s.analysed,
                    "encoded": s.encoded,
                    "retention": (f64::from(s.retention) * 1000.0).round() / 1000.0,
                    "retention_mean": if s.total_tokens == 0 { 0.0 } else { ((s.kept_tokens as f64 / s.total_tokens as f64) * 1000.0).round() / 1000.0 },
                    "changing": s.changing,
                    "events": s.events,
                    "memory": s.memory,
                    "queue_depth": queued,
                }),
            );
            parts.push(match s.state {
                CameraState::Up => format!("{name}: {fps:.1} fps, {dropped} dropped"),
                ref other => format!("{name}: {other}"),
            });
        }
        let workers = pipeline.workers().stats();
        tracing::debug!(queued = ?workers.queued, completed = workers.completed, dropped = workers.dropped, "model worker stats");
        self.since = Instant::now();
        self.last = now;
        parts.join("; ")
    }
}
