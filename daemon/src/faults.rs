//! Fault injection for the end-to-end tests, built only with the
//! `fault-injection` cargo feature (off in release builds: whoever controls
//! the environment must not be able to inject fake events into MQTT and
//! Home Assistant).
//!
//! Each fault is switched on by an environment variable read at start-up:
//! numbered test events without a model, a model worker that hangs, and a
//! model load that takes longer than the watchdog allows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::pipeline::{EventSink, Pipeline};
use crate::trigger::{Event, EventKind};
use crate::workers::Priority;

/// Makes a model worker hang after this many milliseconds, to check that
/// the watchdog restarts a stalled daemon.
pub const STALL_ENV: &str = "GLIMPSE_DEBUG_STALL_AFTER_MS";

/// Makes every camera produce a numbered test event every this many
/// milliseconds, to exercise the event path (sink, outbox, MQTT) end to
/// end without a model.
pub const TEST_EVENTS_ENV: &str = "GLIMPSE_DEBUG_EVENT_EVERY_MS";

/// Makes every model load (at start and on reload) take this many more
/// milliseconds, as a TensorRT engine build does.
pub const SLOW_LOAD_ENV: &str = "GLIMPSE_DEBUG_MODEL_LOAD_MS";

fn env_ms(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok().filter(|ms| *ms > 0)
}

/// Hangs a model worker after [`STALL_ENV`] milliseconds, if set. Returns
/// the flag that releases it at shutdown.
pub fn stall(pipeline: &Pipeline) -> Arc<AtomicBool> {
    let release = Arc::new(AtomicBool::new(false));
    let Some(after) = env_ms(STALL_ENV) else {
        return release;
    };
    tracing::warn!("{STALL_ENV} is set: a model worker will hang after {after} ms");
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

/// Sends numbered test events into `sink` (the path model events take) if
/// [`TEST_EVENTS_ENV`] is set, until `stop` is cancelled.
pub fn test_events(
    sink: EventSink,
    cameras: Vec<String>,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let every = env_ms(TEST_EVENTS_ENV)?;
    tracing::warn!("{TEST_EVENTS_ENV} is set: making a test event every {every} ms");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(every));
        for n in 0u64.. {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            for camera in &cameras {
                let event = Event::new(
                    camera,
                    EventKind::Description,
                    format!("test event {n}"),
                    (Duration::ZERO, Duration::ZERO),
                );
                // The sink is read until the service has stopped taking
                // events; a closed one means the daemon is going down.
                if sink.send(event).await.is_err() {
                    return;
                }
            }
        }
    }))
}

/// Sleeps [`SLOW_LOAD_ENV`] milliseconds, if set (on the loading thread).
pub fn slow_model_load() {
    if let Some(ms) = env_ms(SLOW_LOAD_ENV) {
        tracing::warn!("{SLOW_LOAD_ENV} is set: this model load takes {ms} ms more");
        std::thread::sleep(Duration::from_millis(ms));
    }
}
