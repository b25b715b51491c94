//! Capture: turns a camera's source into sampled [`Frame`]s.
//!
//! Each camera runs on its own OS thread (plus GStreamer's own streaming
//! threads). A *source* opens a *session* (a GStreamer pipeline, a V4L2
//! stream, the synthetic renderer) and pulls decoded RGB frames from it,
//! already converted and scaled to the camera's `width`×`height` (inside
//! GStreamer where it is used). The [supervisor](supervise) around it:
//!
//! - gives frames a monotonic stream time across loops and reconnections,
//!   and flags the first frame of every new session as a discontinuity;
//! - samples them down to the camera's fps by stream time ([`Sampler`]);
//! - pushes the kept ones into the camera's drop-oldest queue
//!   ([`crate::queue`]), so a slow pipeline never backs up a live source;
//! - turns ends of stream, errors and silent sources into reconnections
//!   with exponential backoff and jitter ([`Backoff`]), reporting each
//!   change of [`CameraState`] once;
//! - gives up only on errors retrying cannot fix (a missing file, a bad
//!   pipeline, an unsupported format), as [`CameraState::Failed`], and on
//!   a file that fails [`FILE_ATTEMPTS`] times in a row without a frame (a
//!   truncated or corrupt file: reading the same bytes again cannot help).
//!
//! A run of retries that fail the same way is logged once: messages are
//! compared with GStreamer's element counters taken out ([`same_failure`]:
//! `qtdemux0` and `qtdemux13` are the same element of a new pipeline).
//!
//! One broken camera never stops the others: each has its own thread and
//! its own supervisor.

mod backoff;
mod clip;
mod config;
#[cfg(feature = "v4l2")]
pub mod convert;
#[cfg(feature = "gstreamer")]
pub mod gst;
mod privacy;
mod sampler;
mod supervise;
mod synthetic;
#[cfg(feature = "v4l2")]
mod v4l2;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use clip::read_clip;
pub use config::{
    defaults, password_env_var, CaptureConfig, PixelFormat, RtspTransport, SourceConfig,
    V4l2Backend,
};
pub use privacy::Privacy;
pub use sampler::Sampler;
use supervise::supervise;
pub use synthetic::Scene;

pub use crate::frame::{CameraState, Frame, FrameMeta};
use crate::queue;

/// Attempts a file source gets when every one fails before its first
/// frame: then it is [`CameraState::Failed`]. A file is read from the same
/// bytes each time, so a failure that repeats is the file's (a truncated
/// mp4, a broken demuxer input), and retrying for ever would only fill the
/// log. The failures need not be alike: a truncated mp4 is refused by the
/// demuxer on most attempts but sometimes goes silent until the frame
/// timeout. Five gives a file that is still being copied in about 15 s at
/// the default backoff (1, 2, 4 and 8 s). Live sources (RTSP, cameras) are
/// retried for ever: networks and devices come back.
pub const FILE_ATTEMPTS: u32 = 5;

/// Whether two failure messages say the same thing to a person: equal once
/// the counters GStreamer appends to element names (`qtdemux0`,
/// `v4l2src12`: a new number for every pipeline) are taken out.
pub fn same_failure(a: &str, b: &str) -> bool {
    without_counters(a) == without_counters(b)
}

/// `text` without the digits that end a word after a letter (`qtdemux13`
/// becomes `qtdemux`; `v4l2src`, `10.5 s` and `:554` stay as they are).
fn without_counters(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() && i > 0 && chars[i - 1].is_alphabetic() {
            let end = (i..chars.len())
                .find(|&j| !chars[j].is_ascii_digit())
                .unwrap_or(chars.len());
            let ends_word = chars.get(end).is_none_or(|c| !c.is_alphanumeric());
            if ends_word {
                i = end;
                continue;
            }
            out.extend(&chars[i..end]);
            i = end;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Receives every change of a camera's state, on the capture thread.
pub type StateReporter = Box<dyn Fn(&CameraState) + Send>;

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

/// Why a session failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceError {
    pub message: String,
    pub permanent: bool,
}

impl SourceError {
    /// A failure that may go away (network, unplugged device).
    pub fn transient(message: impl Into<String>) -> Self {
        SourceError {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure retrying cannot fix (bad config, unsupported input).
    pub fn permanent(message: impl Into<String>) -> Self {
        SourceError {
            message: message.into(),
            permanent: true,
        }
    }
}

/// A decoded picture from a session, before stream time and sampling.
pub(crate) struct Picture {
    /// The source's own timestamp, if it has one.
    pub pts: Option<Duration>,
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// What waiting on a session gave.
pub(crate) enum Pulled {
    Picture(Picture),
    /// Nothing within the timeout; the session is still open.
    Idle,
    /// The stream ended (end of file, the server closed it). Only
    /// GStreamer sessions end; the others run until they fail.
    #[cfg_attr(not(feature = "gstreamer"), allow(dead_code))]
    End,
}

/// One open connection to a source.
pub(crate) trait Session {
    /// Waits up to `timeout` for the next picture.
    fn pull(&mut self, timeout: Duration) -> Result<Pulled, SourceError>;
}

/// Opens sessions of one source, again after each failure.
pub(crate) trait Source {
    /// Opens a new session.
    fn open(&mut self) -> Result<Box<dyn Session>, SourceError>;
}

/// Counters a camera's capture keeps; read by the stats.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    /// Frames the source delivered to glimpse (GStreamer sources already
    /// thin them out to about the camera's fps).
    pub produced: AtomicU64,
    /// Frames kept by the sampler and handed to the queue.
    pub sampled: AtomicU64,
    /// Sessions opened after a failure or the end of a stream.
    pub reconnects: AtomicU64,
}

/// A running camera capture.
pub struct CaptureHandle {
    thread: JoinHandle<()>,
    /// The capture's counters.
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

/// Starts capturing `camera`: frames go to `out` and state changes to
/// `report` until `cancel` fires, the queue's receiver goes away, or the
/// source fails for good.
pub fn start(
    camera: &str,
    config: &CaptureConfig,
    out: queue::Sender<Frame>,
    report: StateReporter,
    cancel: CancellationToken,
) -> Result<CaptureHandle, CaptureError> {
    let counters = Arc::new(CaptureCounters::default());
    let name: Arc<str> = Arc::from(camera);
    let config = config.clone();
    let thread_counters = counters.clone();
    let thread = std::thread::Builder::new()
        .name(format!("capture-{camera}"))
        .spawn(move || {
            let reporter = Reporter::new(name.clone(), report);
            match open_source(&name, &config) {
                Ok(source) => supervise(
                    &name,
                    &config,
                    source,
                    &out,
                    &thread_counters,
                    &reporter,
                    &cancel,
                ),
                Err(error) => reporter.set(CameraState::Failed {
                    error: error.message,
                }),
            }
        })
        .map_err(|source| CaptureError::Thread {
            camera: camera.to_owned(),
            source,
        })?;
    Ok(CaptureHandle { thread, counters })
}

/// Picks the implementation for the configured source kind.
fn open_source(camera: &str, config: &CaptureConfig) -> Result<Box<dyn Source>, SourceError> {
    match &config.source {
        SourceConfig::Synthetic {
            frame_rate,
            shapes,
            seed,
        } => Ok(Box::new(synthetic::SyntheticSource::new(
            Scene::new(config.width, config.height, *shapes, *seed),
            *frame_rate,
            config.fps,
        ))),
        SourceConfig::V4l2 {
            backend: V4l2Backend::Direct,
            ..
        } => direct_v4l2(config),
        _ => gstreamer_source(camera, config),
    }
}

#[cfg(feature = "gstreamer")]
fn gstreamer_source(camera: &str, config: &CaptureConfig) -> Result<Box<dyn Source>, SourceError> {
    Ok(Box::new(gst::GstSource::new(camera, config)?))
}

#[cfg(not(feature = "gstreamer"))]
fn gstreamer_source(_: &str, config: &CaptureConfig) -> Result<Box<dyn Source>, SourceError> {
    Err(SourceError::permanent(format!(
        "source kind {:?} needs GStreamer, and this glimpse was built without the `gstreamer` feature",
        config.source.kind()
    )))
}

#[cfg(feature = "v4l2")]
fn direct_v4l2(config: &CaptureConfig) -> Result<Box<dyn Source>, SourceError> {
    Ok(Box::new(v4l2::V4l2Source::new(config)))
}

#[cfg(not(feature = "v4l2"))]
fn direct_v4l2(_: &CaptureConfig) -> Result<Box<dyn Source>, SourceError> {
    Err(SourceError::permanent(
        "backend = \"direct\" needs the `v4l2` build feature (cargo build --features v4l2)",
    ))
}

/// Reports state changes once each, and logs them.
struct Reporter {
    camera: Arc<str>,
    report: StateReporter,
    last: std::cell::RefCell<Option<CameraState>>,
}

impl Reporter {
    fn new(camera: Arc<str>, report: StateReporter) -> Self {
        Reporter {
            camera,
            report,
            last: std::cell::RefCell::new(None),
        }
    }

    fn set(&self, state: CameraState) {
        let mut last = self.last.borrow_mut();
        // A retry with the same error is the same state to a person; only
        // the first of a run is logged, every one is reported.
        let same_kind = match (&*last, &state) {
            (
                Some(CameraState::Retrying { error: a, .. }),
                CameraState::Retrying { error: b, .. },
            ) => same_failure(a, b),
            (Some(a), b) => a == b,
            (None, _) => false,
        };
        if !same_kind {
            match &state {
                CameraState::Failed { .. } => {
                    tracing::error!(camera = %self.camera, "camera {:?} {state}", &*self.camera)
                }
                CameraState::Retrying { .. } => {
                    tracing::warn!(camera = %self.camera, "camera {:?} {state}", &*self.camera)
                }
                _ => tracing::info!(camera = %self.camera, "camera {:?} is {state}", &*self.camera),
            }
        }
        if last.as_ref() != Some(&state) {
            (self.report)(&state);
            *last = Some(state);
        }
    }
}

/// Sleeps for `duration`, waking early to notice cancellation. Returns
/// false when cancelled.
pub(crate) fn sleep_cancellable(duration: Duration, cancel: &CancellationToken) -> bool {
    let deadline = Instant::now() + duration;
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
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// A scripted source: each session yields the given steps in order.
    struct Scripted {
        sessions: VecDeque<Result<Vec<Step>, SourceError>>,
    }

    #[derive(Clone)]
    enum Step {
        Picture(u64),
        End,
        Fail(&'static str),
    }

    struct ScriptedSession(VecDeque<Step>);

    impl Session for ScriptedSession {
        fn pull(&mut self, _: Duration) -> Result<Pulled, SourceError> {
            match self.0.pop_front() {
                Some(Step::Picture(ms)) => Ok(Pulled::Picture(Picture {
                    pts: Some(Duration::from_millis(ms)),
                    width: 2,
                    height: 2,
                    rgb: vec![0; 12],
                })),
                Some(Step::End) => Ok(Pulled::End),
                Some(Step::Fail(why)) => Err(SourceError::transient(why)),
                None => {
                    std::thread::sleep(Duration::from_millis(5));
                    Ok(Pulled::Idle)
                }
            }
        }
    }

    impl Source for Scripted {
        fn open(&mut self) -> Result<Box<dyn Session>, SourceError> {
            match self.sessions.pop_front() {
                Some(Ok(steps)) => Ok(Box::new(ScriptedSession(steps.into()))),
                Some(Err(e)) => Err(e),
                None => Err(SourceError::permanent("script exhausted")),
            }
        }
    }

    fn run(
        source_kind: &str,
        sessions: Vec<Result<Vec<Step>, SourceError>>,
    ) -> (Vec<Frame>, Vec<CameraState>) {
        let config = CaptureConfig {
            fps: 10.0,
            reconnect_min_ms: 10,
            reconnect_max_ms: 20,
            frame_timeout_ms: 200,
            ..CaptureConfig::new(config::inline_source(source_kind))
        };
        let (tx, mut rx) = queue::channel(1000);
        let states = Arc::new(Mutex::new(Vec::new()));
        let seen = states.clone();
        let reporter = Reporter::new(
            Arc::from("cam"),
            Box::new(move |s| seen.lock().unwrap().push(s.clone())),
        );
        let counters = CaptureCounters::default();
        supervise(
            &Arc::from("cam"),
            &config,
            Box::new(Scripted {
                sessions: sessions.into(),
            }),
            &tx,
            &counters,
            &reporter,
            &CancellationToken::new(),
        );
        drop(tx);
        let mut frames = Vec::new();
        while let Some(f) = rx.try_recv() {
            frames.push(f);
        }
        let states = states.lock().unwrap().clone();
        (frames, states)
    }

    fn pts_ms(frames: &[Frame]) -> Vec<u128> {
        frames.iter().map(|f| f.pts.as_millis()).collect()
    }

    #[test]
    fn a_file_that_ends_without_loop_reports_ended() {
        let (frames, states) = run(
            r#"{ kind = "file", path = "x.mp4" }"#,
            vec![Ok(vec![
                Step::Picture(1000),
                Step::Picture(1100),
                Step::Picture(1200),
                Step::End,
            ])],
        );
        assert_eq!(
            pts_ms(&frames),
            vec![0, 100, 200],
            "stream time starts at 0"
        );
        assert_eq!(
            frames.iter().map(|f| f.discont).collect::<Vec<_>>(),
            vec![true, false, false]
        );
        assert_eq!(
            states,
            vec![CameraState::Starting, CameraState::Up, CameraState::Ended]
        );
    }

    #[test]
    fn a_looped_file_without_frames_fails_instead_of_spinning() {
        let (frames, states) = run(
            r#"{ kind = "file", path = "x.mp4", loop = true }"#,
            vec![Ok(vec![Step::End]), Ok(vec![Step::End])],
        );
        assert!(frames.is_empty());
        assert_eq!(
            states,
            vec![
                CameraState::Starting,
                CameraState::Failed {
                    error: "the stream ended before its first frame".into()
                }
            ]
        );
    }

    #[test]
    fn a_looped_file_continues_its_stream_time() {
        let (frames, states) = run(
            r#"{ kind = "file", path = "x.mp4", loop = true }"#,
            vec![
                Ok(vec![Step::Picture(0), Step::Picture(100), Step::End]),
                Ok(vec![Step::Picture(0), Step::Picture(100), Step::End]),
                Err(SourceError::permanent("file deleted")),
            ],
        );
        assert_eq!(pts_ms(&frames), vec![0, 100, 200, 300]);
        assert_eq!(
            frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert!(frames[2].discont, "the loop restarts the stream");
        assert_eq!(
            states.last(),
            Some(&CameraState::Failed {
                error: "file deleted".into()
            })
        );
    }

    #[test]
    fn errors_are_retried_with_growing_delays_until_the_source_is_back() {
        let (frames, states) = run(
            r#"{ kind = "test" }"#,
            vec![
                Err(SourceError::transient("connection refused")),
                Err(SourceError::transient("connection refused")),
                Ok(vec![Step::Picture(0), Step::Fail("server went away")]),
                Ok(vec![Step::Picture(50)]),
            ],
        );
        let names: Vec<String> = states
            .iter()
            .map(|s| s.to_string().split(' ').next().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            vec!["starting", "retrying", "retrying", "up", "retrying", "up", "retrying", "failed"]
        );
        let CameraState::Retrying { attempt, .. } = &states[2] else {
            panic!()
        };
        assert_eq!(*attempt, 2);
        // After a session was up the count starts again.
        let CameraState::Retrying { attempt, error, .. } = &states[4] else {
            panic!()
        };
        assert_eq!((*attempt, error.as_str()), (1, "server went away"));
        // The second session is silent after one frame: the frame timeout restarts it.
        let CameraState::Retrying { error, .. } = &states[6] else {
            panic!()
        };
        assert!(error.starts_with("no frame for"), "{error}");
        assert_eq!(frames.len(), 2);
        assert!(frames[1].discont && frames[1].pts > frames[0].pts);
    }

    fn failing(message: &str) -> Result<Vec<Step>, SourceError> {
        Err(SourceError::transient(message))
    }

    #[test]
    fn a_file_failing_again_and_again_is_given_up() {
        // GStreamer numbers the demuxer anew in every pipeline.
        let sessions = (0..10)
            .map(|i| failing(&format!("x.mp4: no playable streams (qtdemux{i})")))
            .collect();
        let (frames, states) = run(
            r#"{ kind = "file", path = "x.mp4", loop = true }"#,
            sessions,
        );
        assert!(frames.is_empty());
        assert_eq!(states.len(), 1 + FILE_ATTEMPTS as usize, "{states:?}");
        assert_eq!(
            states.last(),
            Some(&CameraState::Failed {
                error:
                    "x.mp4: no playable streams (qtdemux4) (5 attempts in a row without a frame)"
                        .into()
            })
        );
    }

    #[test]
    fn a_file_that_plays_in_between_is_retried() {
        let mut sessions: Vec<_> = (0..FILE_ATTEMPTS - 1)
            .map(|_| failing("x.mp4: busy"))
            .collect();
        // A frame in between starts the count again.
        sessions.push(Ok(vec![Step::Picture(0), Step::Fail("x.mp4: busy")]));
        sessions.extend((0..FILE_ATTEMPTS - 2).map(|_| failing("x.mp4: busy")));
        sessions.push(Ok(vec![Step::Picture(0), Step::Fail("x.mp4: busy")]));
        let (_, states) = run(r#"{ kind = "file", path = "x.mp4" }"#, sessions);
        assert_eq!(
            states.last(),
            Some(&CameraState::Failed {
                error: "script exhausted".into()
            }),
            "never given up while it delivers frames: {states:?}"
        );
        let mut sessions: Vec<_> = (0..FILE_ATTEMPTS - 1)
            .map(|i| {
                failing(if i % 2 == 0 {
                    "x.mp4: refused"
                } else {
                    "no frame for 10.0 s"
                })
            })
            .collect();
        sessions.push(failing("x.mp4: refused"));
        let (_, states) = run(r#"{ kind = "file", path = "x.mp4" }"#, sessions);
        assert_eq!(
            states.last(),
            Some(&CameraState::Failed {
                error: "x.mp4: refused (5 attempts in a row without a frame)".into()
            }),
            "unlike failures count too: {states:?}"
        );
    }

    #[test]
    fn live_sources_are_retried_however_often_they_fail() {
        let sessions = (0..2 * FILE_ATTEMPTS)
            .map(|_| failing("connection refused"))
            .collect();
        let (_, states) = run(r#"{ kind = "test" }"#, sessions);
        let retries = states
            .iter()
            .filter(|s| matches!(s, CameraState::Retrying { .. }))
            .count();
        assert_eq!(retries, 2 * FILE_ATTEMPTS as usize);
    }

    #[test]
    fn element_counters_do_not_make_a_new_failure() {
        let same = |a: &str, b: &str| same_failure(a, b);
        assert!(same(
            "/x.mp4: This file contains no playable streams (qtdemux0)",
            "/x.mp4: This file contains no playable streams (qtdemux13)"
        ));
        assert!(same(
            "/dev/video0: Cannot identify device (v4l2src0)",
            "/dev/video0: Cannot identify device (v4l2src7)"
        ));
        assert!(same("decodebin0/qtdemux1: x", "decodebin2/qtdemux0: x"));
        assert!(!same("no frame for 10.1 s", "no frame for 10.2 s"));
        assert!(!same(
            "rtsp://cam:554/a: refused",
            "rtsp://cam:555/a: refused"
        ));
        assert!(!same("connection refused (src0)", "timed out (src0)"));
        assert_eq!(without_counters("v4l2src12 x264enc0"), "v4l2src x264enc");
    }
}
