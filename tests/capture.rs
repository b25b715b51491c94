//! Capture through real GStreamer: clips made here with gst-launch, a real
//! RTSP server that is killed and started again, broken inputs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glimpse::capture::{self, CameraState, Frame};
use glimpse::pipeline::CameraConfig;
use glimpse::queue;
use tokio_util::sync::CancellationToken;

use crate::harness::free_port;

/// Encodes `seconds` of a 30 fps test pattern into `path` with `encoder`.
fn make_clip(dir: &Path, name: &str, seconds: u32, encoder: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(format!(
            "videotestsrc num-buffers={} pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! {encoder} ! filesink",
            seconds * 30
        ).split(' '))
        .arg(format!("location={}", path.display()))
        .status()
        .expect("gst-launch-1.0 is missing: run scripts/install-deps");
    assert!(status.success(), "making {name}");
    path
}

/// A camera under test: its frames and every state it went through.
struct Camera {
    frames: queue::Receiver<Frame>,
    states: Arc<Mutex<Vec<CameraState>>>,
    cancel: CancellationToken,
    handle: Option<capture::CaptureHandle>,
}

impl Camera {
    fn start(config: &str, queue_capacity: usize) -> Camera {
        let config: CameraConfig = toml::from_str(config).unwrap();
        let (tx, frames) = queue::channel(queue_capacity);
        let states = Arc::new(Mutex::new(Vec::new()));
        let seen = states.clone();
        let cancel = CancellationToken::new();
        let handle = capture::start(
            "test",
            &config.capture(),
            tx,
            Box::new(move |s| seen.lock().unwrap().push(s.clone())),
            cancel.clone(),
        )
        .unwrap();
        Camera {
            frames,
            states,
            cancel,
            handle: Some(handle),
        }
    }

    fn states(&self) -> Vec<CameraState> {
        self.states.lock().unwrap().clone()
    }

    /// Waits until a state matching `pred` has been reported.
    fn wait_for(&self, what: &str, within: Duration, pred: impl Fn(&CameraState) -> bool) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.states().iter().any(&pred) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no {what} state within {within:?}: {:?}", self.states());
    }

    /// Every frame until the capture thread ends by itself.
    fn drain_to_end(&mut self, within: Duration) -> Vec<Frame> {
        let deadline = Instant::now() + within;
        let mut frames = Vec::new();
        loop {
            while let Some(f) = self.frames.try_recv() {
                frames.push(f);
            }
            if self.handle.as_ref().unwrap().is_finished() {
                while let Some(f) = self.frames.try_recv() {
                    frames.push(f);
                }
                return frames;
            }
            assert!(
                Instant::now() < deadline,
                "capture did not end within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The next `n` frames.
    fn take(&mut self, n: usize, within: Duration) -> Vec<Frame> {
        let deadline = Instant::now() + within;
        let mut frames = Vec::new();
        while frames.len() < n {
            match self.frames.try_recv() {
                Some(f) => frames.push(f),
                None => {
                    assert!(
                        Instant::now() < deadline,
                        "only {} of {n} frames within {within:?}; states {:?}",
                        frames.len(),
                        self.states()
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        frames
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(handle) = self.handle.take() {
            handle.join();
        }
    }
}

fn pts_s(frames: &[Frame]) -> Vec<f64> {
    frames
        .iter()
        .map(|f| (f.pts.as_secs_f64() * 1000.0).round() / 1000.0)
        .collect()
}

#[test]
fn a_30fps_clip_sampled_at_2fps_gives_frames_half_a_second_apart_at_any_decode_speed() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), "clip.avi", 3, "jpegenc ! avimux");
    let expected = vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5];
    for realtime in [false, true] {
        let started = Instant::now();
        let mut camera = Camera::start(
            &format!("fps = 2\nwidth = 64\nheight = 48\nqueue_capacity = 100\nsource = {{ kind = \"file\", path = {:?}, realtime = {realtime} }}", clip),
            100,
        );
        let frames = camera.drain_to_end(Duration::from_secs(30));
        let took = started.elapsed();
        assert_eq!(pts_s(&frames), expected, "realtime = {realtime}");
        assert!(frames
            .iter()
            .all(|f| f.width == 64 && f.height == 48 && f.rgb.len() == 64 * 48 * 3));
        assert_eq!(
            frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
            (0..6).collect::<Vec<_>>()
        );
        assert!(frames[0].discont && frames[1..].iter().all(|f| !f.discont));
        assert_eq!(
            camera.states(),
            vec![CameraState::Starting, CameraState::Up, CameraState::Ended]
        );
        if realtime {
            assert!(
                took >= Duration::from_millis(2400),
                "played at the clip's speed: {took:?}"
            );
        }
    }
}

#[test]
fn a_looped_clip_keeps_going_with_monotonic_stream_time() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), "clip.mp4", 1, "x264enc ! mp4mux");
    let mut camera = Camera::start(
        &format!("fps = 4\nwidth = 32\nheight = 32\nsource = {{ kind = \"file\", path = {:?}, loop = true, realtime = false }}", clip),
        100,
    );
    let frames = camera.take(12, Duration::from_secs(30));
    // A 30 fps clip has no frame at 0.25 s: the sampler takes the first frame
    // at or after each due time (8/30 s), then keeps the 4 fps grid.
    assert_eq!(pts_s(&frames[..4]), vec![0.0, 0.267, 0.5, 0.767]);
    for pair in frames.windows(2) {
        let gap = (pair[1].pts - pair[0].pts).as_secs_f64();
        assert!((0.2..=0.3).contains(&gap), "{:?}", pts_s(&frames));
    }
    let disconts: Vec<u64> = frames.iter().filter(|f| f.discont).map(|f| f.seq).collect();
    assert_eq!(disconts, vec![0, 4, 8], "each loop starts a new stream");
    assert!(!camera.states().contains(&CameraState::Ended));
}

#[test]
fn a_pipeline_that_errors_mid_stream_is_restarted() {
    let mut camera = Camera::start(
        r#"fps = 30
width = 32
height = 32
reconnect_min_ms = 50
reconnect_max_ms = 100
source = { kind = "pipeline", live = false, pipeline = "videotestsrc ! video/x-raw,framerate=30/1 ! identity error-after=10 ! videoconvert ! videoscale ! appsink name=sink" }"#,
        1000,
    );
    camera.wait_for("second retry", Duration::from_secs(20), |s| {
        matches!(s, CameraState::Retrying { attempt: 1, .. })
    });
    let frames = camera.take(12, Duration::from_secs(20));
    let states = camera.states();
    assert_eq!(states[..2], [CameraState::Starting, CameraState::Up]);
    let CameraState::Retrying { error, .. } = &states[2] else {
        panic!("{states:?}")
    };
    assert!(
        error.contains("identity"),
        "the error names the element: {error}"
    );
    assert!(
        frames.iter().filter(|f| f.discont).count() >= 2,
        "frames resumed after the restart"
    );
    assert!(
        frames.windows(2).all(|w| w[1].pts >= w[0].pts),
        "stream time never goes back"
    );
}

/// A real RTSP server (tests/rtsp_server.py) on a free loopback port.
struct RtspServer {
    child: Child,
}

impl RtspServer {
    fn start(port: u16) -> RtspServer {
        let mut child = Command::new("/usr/bin/python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/rtsp_server.py"))
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0)");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready", "RTSP server on port {port}");
        RtspServer { child }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_rtsp_source_resumes_by_itself_when_its_server_comes_back() {
    let port = free_port();
    let server = RtspServer::start(port);
    let mut camera = Camera::start(
        &format!(
            "fps = 5\nwidth = 32\nheight = 32\nreconnect_min_ms = 200\nreconnect_max_ms = 400\nframe_timeout_ms = 3000\n\
             source = {{ kind = \"rtsp\", url = \"rtsp://127.0.0.1:{port}/test\", latency_ms = 0 }}"
        ),
        100,
    );
    camera.take(3, Duration::from_secs(20));
    server.kill();
    camera.wait_for("retrying", Duration::from_secs(20), |s| {
        matches!(s, CameraState::Retrying { .. })
    });
    // Let it fail against the absent server at least once more.
    camera.wait_for("second attempt", Duration::from_secs(20), |s| {
        matches!(s, CameraState::Retrying { attempt: 2, .. })
    });
    let _server = RtspServer::start(port);
    while camera.frames.try_recv().is_some() {}
    let after = camera.take(3, Duration::from_secs(30));
    assert!(
        after[0].discont,
        "the first frame after the reconnection starts a new stream"
    );
    let states = camera.states();
    let kinds: Vec<&str> = states
        .iter()
        .map(|s| match s {
            CameraState::Starting => "starting",
            CameraState::Up => "up",
            CameraState::Retrying { .. } => "retrying",
            CameraState::Failed { .. } => "failed",
            CameraState::Ended => "ended",
        })
        .collect();
    let mut dedup = kinds.clone();
    dedup.dedup();
    assert_eq!(
        dedup,
        vec!["starting", "up", "retrying", "up"],
        "{states:?}"
    );
}

#[test]
fn a_slow_consumer_sees_the_newest_frames_and_the_drop_count_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), "clip.avi", 2, "jpegenc ! avimux");
    let mut camera = Camera::start(
        &format!("fps = 30\nwidth = 32\nheight = 32\nsource = {{ kind = \"file\", path = {:?}, realtime = true }}", clip),
        2,
    );
    let dropped = camera.frames.dropped();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(150));
        while let Some(f) = camera.frames.try_recv() {
            seen.push(f.seq);
        }
        if camera.handle.as_ref().unwrap().is_finished() {
            while let Some(f) = camera.frames.try_recv() {
                seen.push(f.seq);
            }
            break;
        }
        assert!(Instant::now() < deadline);
    }
    let total = 60u64;
    let dropped = dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        seen.last(),
        Some(&(total - 1)),
        "the newest frame always arrives"
    );
    assert_eq!(seen.len() as u64 + dropped, total, "seen {seen:?}");
    let gaps: u64 = seen.windows(2).map(|w| w[1] - w[0] - 1).sum::<u64>() + seen[0];
    assert_eq!(
        gaps, dropped,
        "the drop counter equals the frames never seen"
    );
    assert!(dropped > 0, "the consumer was slow enough to lose frames");
}

fn failure_of(config: &str) -> CameraState {
    let camera = Camera::start(config, 4);
    camera.wait_for("failed or retrying", Duration::from_secs(20), |s| {
        matches!(s, CameraState::Failed { .. } | CameraState::Retrying { .. })
    });
    camera
        .states()
        .into_iter()
        .find(|s| !matches!(s, CameraState::Starting))
        .unwrap()
}

#[test]
fn broken_inputs_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let missing = failure_of(r#"source = { kind = "file", path = "/nonexistent/clip.mp4" }"#);
    assert_eq!(
        missing,
        CameraState::Failed {
            error: "/nonexistent/clip.mp4: no such file".into()
        }
    );

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "this is not a video\n".repeat(100)).unwrap();
    let CameraState::Failed { error } =
        failure_of(&format!("source = {{ kind = \"file\", path = {text:?} }}"))
    else {
        panic!("a text file is not a video: permanent")
    };
    assert!(
        error.contains("text file"),
        "GStreamer says what it found: {error}"
    );

    let CameraState::Failed { error } = failure_of(
        r#"source = { kind = "pipeline", pipeline = "videotestsrc ! nosuchelement ! appsink name=sink" }"#,
    ) else {
        panic!()
    };
    assert!(
        error.starts_with("bad pipeline: ") && error.contains("nosuchelement"),
        "{error}"
    );

    // An unplugged camera may come back: it is retried, not given up.
    let CameraState::Retrying { error, .. } =
        failure_of(r#"source = { kind = "v4l2", device = "/dev/video99" }"#)
    else {
        panic!()
    };
    assert!(error.contains("/dev/video99"), "{error}");
}

/// An mp4 cut short, as a recording stopped mid-write: its index (`moov`,
/// written last by mp4mux) is gone.
fn truncated_mp4(dir: &Path) -> PathBuf {
    let clip = make_clip(dir, "whole.mp4", 2, "x264enc ! mp4mux");
    let bytes = std::fs::read(&clip).unwrap();
    let cut = dir.join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    cut
}

/// Issue 15: a truncated mp4 was retried for ever; it never gives a frame,
/// so it is given up after `FILE_ATTEMPTS` tries. (qtdemux refuses it on
/// most tries; on some, decodebin swallows that error and the pipeline goes
/// silent until the frame timeout: both count.)
#[test]
fn a_truncated_mp4_is_given_up_after_a_few_tries() {
    let dir = tempfile::tempdir().unwrap();
    let cut = truncated_mp4(dir.path());
    let camera = Camera::start(
        &format!(
            "reconnect_min_ms = 10\nreconnect_max_ms = 20\nframe_timeout_ms = 1000\nsource = {{ kind = \"file\", path = {cut:?}, loop = true }}"
        ),
        4,
    );
    camera.wait_for("failed", Duration::from_secs(20), |s| {
        matches!(s, CameraState::Failed { .. })
    });
    let states = camera.states();
    let retries = states
        .iter()
        .filter(|s| matches!(s, CameraState::Retrying { .. }))
        .count();
    assert_eq!(retries as u32, capture::FILE_ATTEMPTS - 1, "{states:?}");
    let Some(CameraState::Failed { error }) = states.last() else {
        panic!("{states:?}")
    };
    assert!(
        error.ends_with("(5 attempts in a row without a frame)"),
        "{error}"
    );
    let refused = format!("{}: This file contains no playable streams", cut.display());
    assert!(
        states.iter().any(|s| s.to_string().contains(&refused)),
        "{states:?}"
    );
}

/// Issue 15: GStreamer numbers its elements anew in every pipeline
/// (`qtdemux0`, `qtdemux1`, ...; `v4l2src0`, ...), which made every retry
/// look like a new failure and log a line. A run of the same failure logs
/// one line, read here from the daemon's own log.
#[test]
fn a_failure_that_repeats_is_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let cut = truncated_mp4(dir.path());
    let config = dir.path().join("glimpse.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[service]
state_dir = "state"
[mqtt]
listen = "127.0.0.1:{port}"
[cameras.cut]
reconnect_min_ms = 10
reconnect_max_ms = 20
frame_timeout_ms = 1000
source = {{ kind = "file", path = {cut:?}, loop = true }}
[cameras.usb]
reconnect_min_ms = 10
reconnect_max_ms = 20
source = {{ kind = "v4l2", device = "/dev/video99" }}
"#,
            port = free_port()
        ),
    )
    .unwrap();
    let log = dir.path().join("glimpse.log");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_glimpse"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env("GLIMPSE_HTTP_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !read_log().contains("camera \"cut\" failed") {
        assert!(
            Instant::now() < deadline,
            "cut never failed:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the camera that is retried for ever try a few dozen times more.
    std::thread::sleep(Duration::from_millis(1500));
    let _ = daemon.kill();
    let _ = daemon.wait();
    let text = read_log();
    let lines =
        |needle: &str| -> Vec<&str> { text.lines().filter(|l| l.contains(needle)).collect() };
    // Dozens of tries, each `Cannot identify device ... (v4l2srcN)`: one line.
    assert_eq!(lines("camera \"usb\" retrying").len(), 1, "{text}");
    // The mp4's tries alternate between the demuxer's refusal and silence
    // (see above); a refusal is logged again only after a silence.
    let cut = lines("camera \"cut\" retrying");
    assert!(!cut.is_empty(), "{text}");
    let refusal = "no playable streams";
    assert!(
        cut.windows(2)
            .all(|pair| !(pair[0].contains(refusal) && pair[1].contains(refusal))),
        "{text}"
    );
    assert_eq!(lines("camera \"cut\" failed").len(), 1, "{text}");
    assert!(
        text.contains("(v4l2src0)"),
        "GStreamer's element name is in the line: {text}"
    );
}
