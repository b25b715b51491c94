//! Capture: turns a camera's source into sampled [`Frame`]s.
//!
//! Each camera's source runs on its own OS thread (later: GStreamer's and
//! V4L2's threads), samples the stream down to the camera's fps by stream
//! time ([`Sampler`]), and pushes the kept frames into a drop-oldest queue
//! ([`crate::queue`]) that the pipeline owns. The thread stops when the
//! cancellation token fires or the queue's receiver goes away.
//!
//! Sources so far: `synthetic` (drawn by glimpse, needs nothing installed).

mod config;
mod sampler;
mod synthetic;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

pub use config::{CameraConfig, SourceConfig};
pub use sampler::Sampler;
pub use synthetic::Scene;

use crate::queue::{self, Sent};

/// One sampled frame, packed RGB, as it leaves capture.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The camera's name.
    pub camera: Arc<str>,
    /// Number of this frame among the camera's sampled frames, from 0; a
    /// gap downstream means frames were dropped.
    pub seq: u64,
    /// Presentation time in the stream.
    pub pts: Duration,
    /// When the frame was captured.
    pub wall_time: SystemTime,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes, row-major RGB.
    pub rgb: Vec<u8>,
}

/// Why a source could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The capture thread could not be spawned.
    #[error("camera {camera:?}: cannot start the capture thread: {source}")]
    Thread {
        /// The camera.
        camera: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Counters a source keeps; read by the stats.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    /// Frames the source produced (before sampling).
    pub produced: AtomicU64,
    /// Frames kept by the sampler and handed to the queue.
    pub sampled: AtomicU64,
}

/// A running source.
pub struct CaptureHandle {
    thread: JoinHandle<()>,
    /// The source's counters.
    pub counters: Arc<CaptureCounters>,
}

impl CaptureHandle {
    /// True once the capture thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the capture thread (blocking; call it off the runtime).
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("a capture thread panicked");
        }
    }
}

/// Starts `camera`'s source; frames go to `out` until `cancel` fires.
pub fn start(
    camera: &str,
    config: &CameraConfig,
    out: queue::Sender<Frame>,
    cancel: CancellationToken,
) -> Result<CaptureHandle, CaptureError> {
    let counters = Arc::new(CaptureCounters::default());
    let name: Arc<str> = Arc::from(camera);
    let sampler = Sampler::new(config.fps);
    let body = match &config.source {
        SourceConfig::Synthetic {
            width,
            height,
            frame_rate,
            shapes,
            seed,
        } => {
            let scene = Scene::new(*width, *height, *shapes, *seed);
            let (width, height, rate) = (*width, *height, *frame_rate);
            let counters = counters.clone();
            move || {
                run_synthetic(
                    &name, scene, width, height, rate, sampler, &out, &counters, &cancel,
                )
            }
        }
    };
    let thread = std::thread::Builder::new()
        .name(format!("capture-{camera}"))
        .spawn(body)
        .map_err(|source| CaptureError::Thread {
            camera: camera.to_owned(),
            source,
        })?;
    Ok(CaptureHandle { thread, counters })
}

#[allow(clippy::too_many_arguments)]
fn run_synthetic(
    camera: &Arc<str>,
    scene: Scene,
    width: u32,
    height: u32,
    frame_rate: f64,
    mut sampler: Sampler,
    out: &queue::Sender<Frame>,
    counters: &CaptureCounters,
    cancel: &CancellationToken,
) {
    // Whole nanoseconds, so that pts are exact multiples of the period.
    let period = Duration::from_nanos((1e9 / frame_rate).round() as u64);
    let started = Instant::now();
    let mut seq = 0;
    for n in 0u32.. {
        let pts = period * n;
        if !sleep_until(started + pts, cancel) || out.is_closed() {
            return;
        }
        counters.produced.fetch_add(1, Ordering::Relaxed);
        if !sampler.admit(pts) {
            continue;
        }
        let frame = Frame {
            camera: camera.clone(),
            seq,
            pts,
            wall_time: SystemTime::now(),
            width,
            height,
            rgb: scene.render(pts),
        };
        seq += 1;
        counters.sampled.fetch_add(1, Ordering::Relaxed);
        if out.send(frame) == Sent::Closed {
            return;
        }
    }
}

/// Sleeps until `deadline`, waking early to notice cancellation. Returns
/// false when cancelled.
fn sleep_until(deadline: Instant, cancel: &CancellationToken) -> bool {
    loop {
        if cancel.is_cancelled() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn synthetic_source_delivers_sampled_frames_until_cancelled() {
        let config: CameraConfig = toml::from_str(
            "fps = 20\nsource = { kind = \"synthetic\", width = 32, height = 24, frame_rate = 40 }",
        )
        .unwrap();
        let (tx, mut rx) = queue::channel(64);
        let cancel = CancellationToken::new();
        let handle = start("test", &config, tx, cancel.clone()).unwrap();
        let mut frames = Vec::new();
        while frames.len() < 5 {
            frames.push(rx.recv().await.unwrap());
        }
        cancel.cancel();
        while rx.recv().await.is_some() {}
        tokio::task::spawn_blocking(move || handle.join())
            .await
            .unwrap();
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.seq, i as u64);
            assert_eq!(f.rgb.len(), 32 * 24 * 3);
            assert_eq!(&*f.camera, "test");
        }
        // 40 fps sampled at 20: every other source frame, 50 ms apart.
        for pair in frames.windows(2) {
            assert_eq!(pair[1].pts - pair[0].pts, Duration::from_millis(50));
        }
    }
}
