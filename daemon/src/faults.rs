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

use crate::event::{Event, EventKind, Produced};
use crate::pipeline::{EventSink, Pipeline};
use crate::snapshot::Picture;
use crate::workers::{Priority, Submitter};

/// Makes a model worker hang after this many milliseconds, to check that
/// the watchdog restarts a stalled daemon.
pub const STALL_ENV: &str = "GLIMPSE_DEBUG_STALL_AFTER_MS";

/// Makes every camera produce a numbered test event every this many
/// milliseconds, to exercise the event path (sink, outbox, MQTT) end to
/// end without a model.
pub const TEST_EVENTS_ENV: &str = "GLIMPSE_DEBUG_EVENT_EVERY_MS";

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

/// Makes numbered test events, per camera, every [`TEST_EVENTS_ENV`]
/// milliseconds if set, until `stop` is cancelled. Each is made the way a
/// model's response is: a `Proactive` job on the worker pool (slowed by
/// `crate::slow::SLOW_ANALYSIS_ENV` like a frame) that sends the event into `sink`.
/// So at a stop, queued jobs still make events while the pipeline drains.
/// A camera with snapshots on gives each its snapshot: a test pattern of
/// its frame size, scaled and encoded on the worker as a real one is.
pub fn test_events(
    sink: EventSink,
    pool: Submitter,
    cameras: Vec<crate::snapshot::CameraSnapshots>,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let every = env_ms(TEST_EVENTS_ENV)?;
    tracing::warn!("{TEST_EVENTS_ENV} is set: making a test event every {every} ms");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(every));
        // Per camera, the number of the next event.
        let mut next = vec![0u64; cameras.len()];
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            for ((camera, snapshots), n) in cameras.iter().zip(next.iter_mut()) {
                let snapshots = snapshots.clone();
                let number = *n;
                let mut event = Event::new(
                    camera,
                    EventKind::Description,
                    format!("test event {n}"),
                    (Duration::ZERO, Duration::ZERO),
                );
                let sink = sink.clone();
                let job = Box::new(move || {
                    crate::slow::slow_analysis();
                    let mut jpeg = None;
                    if let Some((snapshotter, width, height)) = snapshots {
                        let frame = Picture::pattern(width, height, number);
                        let (w, h) =
                            crate::snapshot::fit(width, height, snapshotter.config.max_side);
                        let picture = Picture {
                            rgb: crate::imageops::resize_bilinear(&frame.rgb, width, height, w, h),
                            width: w,
                            height: h,
                            ..frame
                        };
                        jpeg = snapshotter.attach(&picture, std::slice::from_mut(&mut event));
                    }
                    let text = event.text.clone();
                    // As a model's response does: wait for room, never drop.
                    if sink.blocking_send(Produced { event, jpeg }).is_err() {
                        tracing::error!("{text} lost: the event sink is closed");
                    }
                });
                // A full queue makes this number wait for the next tick.
                if pool.submit(Priority::Proactive, job).is_ok() {
                    *n += 1;
                }
            }
        }
        // The tests compare this with what reached the outbox.
        for ((camera, _), n) in cameras.iter().zip(next) {
            tracing::info!(
                camera = %camera,
                "fault injection: made test events 0 to {} of camera {camera}",
                n.saturating_sub(1)
            );
        }
    }))
}
