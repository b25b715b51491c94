//! A camera's capture loop: sessions of its source, one after another,
//! with backoff between failures; each picture stamped with stream time,
//! sampled to the camera's fps and queued (docs/architecture.md §2).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use super::privacy::Privacy;
use super::{
    sleep_cancellable, Backoff, CameraState, CaptureConfig, CaptureCounters, Frame, Picture,
    Pulled, Reporter, Sampler, Session, Source, SourceConfig, SourceError, FILE_ATTEMPTS,
};
use crate::queue::{self, Sent};

/// Runs sessions of `source` until cancelled, ended or failed for good.
pub(super) fn supervise(
    camera: &Arc<str>,
    config: &CaptureConfig,
    mut source: Box<dyn Source>,
    out: &queue::Sender<Frame>,
    counters: &CaptureCounters,
    reporter: &Reporter,
    cancel: &CancellationToken,
) {
    let looped = matches!(config.source, SourceConfig::File { looped: true, .. });
    let mut camera = Supervisor {
        camera,
        config,
        out,
        counters,
        reporter,
        cancel,
        live: config.source.is_live(),
        without_frame: 0,
        backoff: Backoff::new(
            Duration::from_millis(config.reconnect_min_ms),
            Duration::from_millis(config.reconnect_max_ms),
        ),
        sampler: Sampler::new(config.fps),
        started: Instant::now(),
        seq: 0,
        last_time: None,
        privacy: Privacy::new(config.privacy.clone()),
    };
    reporter.set(CameraState::Starting);
    loop {
        if camera.stopped() {
            return;
        }
        let failure = match source.open() {
            Err(e) => e,
            Ok(session) => match camera.session(session) {
                SessionEnd::Stop => return,
                SessionEnd::Ended if looped => {
                    counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                SessionEnd::Ended if !camera.live => {
                    reporter.set(CameraState::Ended);
                    return;
                }
                SessionEnd::Ended => SourceError::transient("the stream ended"),
                SessionEnd::Failed(e) => e,
            },
        };
        if !camera.wait_to_retry(failure) {
            return;
        }
    }
}

/// How a session ended.
enum SessionEnd {
    /// Cancelled, or nobody takes frames any more: capture stops.
    Stop,
    /// The stream ended.
    Ended,
    /// It failed.
    Failed(SourceError),
}

/// One camera's capture, across its sessions.
struct Supervisor<'a> {
    camera: &'a Arc<str>,
    config: &'a CaptureConfig,
    out: &'a queue::Sender<Frame>,
    counters: &'a CaptureCounters,
    reporter: &'a Reporter,
    cancel: &'a CancellationToken,
    live: bool,
    /// Failures in a row since the source last delivered a frame.
    without_frame: u32,
    backoff: Backoff,
    sampler: Sampler,
    started: Instant,
    /// The next frame's sequence number.
    seq: u64,
    /// Stream time of the last picture.
    last_time: Option<Duration>,
    /// Privacy masks: applied to every frame before it is queued.
    privacy: Privacy,
}

impl Supervisor<'_> {
    fn stopped(&self) -> bool {
        self.cancel.is_cancelled() || self.out.is_closed()
    }

    /// Pulls pictures from `session` until it ends or fails.
    fn session(&mut self, mut session: Box<dyn Session>) -> SessionEnd {
        // Stream time continues where the last session stopped: for a live
        // source, at the wall time since the camera started (the outage
        // shows as a gap); for a file, right after the last frame.
        let offset = match (self.live, self.last_time) {
            (true, Some(_)) => self.started.elapsed(),
            (false, Some(t)) => t + Duration::from_secs_f64(1.0 / self.config.fps),
            (_, None) => Duration::ZERO,
        };
        let frame_timeout = Duration::from_millis(self.config.frame_timeout_ms);
        let session_start = Instant::now();
        let mut first_pts: Option<Duration> = None;
        let mut last_picture = Instant::now();
        loop {
            if self.stopped() {
                return SessionEnd::Stop;
            }
            match session.pull(Duration::from_millis(100)) {
                Ok(Pulled::Picture(picture)) => {
                    last_picture = Instant::now();
                    let own = picture.pts.unwrap_or_else(|| session_start.elapsed());
                    let discont = first_pts.is_none();
                    let base = *first_pts.get_or_insert(own);
                    let pts = offset + own.saturating_sub(base);
                    if !self.deliver(picture, pts, discont) {
                        return SessionEnd::Stop;
                    }
                }
                Ok(Pulled::Idle) if last_picture.elapsed() > frame_timeout => {
                    return SessionEnd::Failed(SourceError::transient(format!(
                        "no frame for {:.1} s",
                        last_picture.elapsed().as_secs_f64()
                    )));
                }
                Ok(Pulled::Idle) => {}
                // A stream that ends before its first frame would make a
                // looped file spin: it is a failure, not an end.
                Ok(Pulled::End) if first_pts.is_none() => {
                    let message = "the stream ended before its first frame";
                    return SessionEnd::Failed(if self.live {
                        SourceError::transient(message)
                    } else {
                        SourceError::permanent(message)
                    });
                }
                Ok(Pulled::End) => return SessionEnd::Ended,
                Err(e) => return SessionEnd::Failed(e),
            }
        }
    }

    /// A picture at stream time `pts` (`discont`: a session's first):
    /// sampled, and queued as a frame. False when nobody takes frames.
    fn deliver(&mut self, picture: Picture, pts: Duration, discont: bool) -> bool {
        self.counters.produced.fetch_add(1, Ordering::Relaxed);
        if discont {
            self.reporter.set(CameraState::Up);
            self.backoff.reset();
            self.without_frame = 0;
            self.sampler = Sampler::new(self.config.fps);
        }
        // Never let stream time go backwards, whatever the source says.
        let pts = self.last_time.map_or(pts, |t| pts.max(t));
        self.last_time = Some(pts);
        if !self.sampler.admit(pts) {
            return true;
        }
        let mut picture = picture;
        self.privacy
            .apply(&mut picture.rgb, picture.width, picture.height);
        let frame = Frame {
            camera: self.camera.clone(),
            seq: self.seq,
            pts,
            wall_time: SystemTime::now(),
            discont,
            width: picture.width,
            height: picture.height,
            rgb: picture.rgb,
        };
        self.seq += 1;
        self.counters.sampled.fetch_add(1, Ordering::Relaxed);
        self.out.send(frame) != Sent::Closed
    }

    /// After `failure`: gives up (false) on a permanent one or a file that
    /// keeps failing, else says so and waits out the backoff.
    fn wait_to_retry(&mut self, failure: SourceError) -> bool {
        self.without_frame += 1;
        if failure.permanent {
            self.reporter.set(CameraState::Failed {
                error: failure.message,
            });
            return false;
        }
        let file = matches!(self.config.source, SourceConfig::File { .. });
        if file && self.without_frame >= FILE_ATTEMPTS {
            self.reporter.set(CameraState::Failed {
                error: format!(
                    "{} ({} attempts in a row without a frame)",
                    failure.message, self.without_frame
                ),
            });
            return false;
        }
        let (attempt, delay) = self.backoff.next_delay();
        self.reporter.set(CameraState::Retrying {
            attempt,
            retry_in: delay,
            error: failure.message,
        });
        if !sleep_cancellable(delay, self.cancel) {
            return false;
        }
        self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        true
    }
}
