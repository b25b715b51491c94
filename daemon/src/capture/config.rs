//! What capture samples with ([`CaptureConfig`]: the source, the
//! sampling and the queue of a `[cameras.NAME]` table), and the sources.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::region::Polygon;
use crate::settings::{resolve_secret, Environment, Problems, Secret};

/// What capture samples with: the capture half of a `[cameras.NAME]`
/// table. The camera unit's `pipeline::CameraConfig` holds the whole table
/// (documented there and in config/glimpse.toml) and hands this on.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureConfig {
    /// Frames per second handed on, sampled by stream time.
    pub fps: f64,
    /// Width of the frames handed on (scaled with square pixels and
    /// letterboxed), in pixels.
    pub width: u32,
    /// Height of the frames handed on, in pixels.
    pub height: u32,
    /// Sampled frames that may wait in the camera's queue.
    pub queue_capacity: usize,
    /// A source that delivers no frame for this long is restarted.
    pub frame_timeout_ms: u64,
    /// First delay before reconnecting a failed source.
    pub reconnect_min_ms: u64,
    /// Longest delay between reconnection attempts.
    pub reconnect_max_ms: u64,
    /// Where the frames come from.
    pub source: SourceConfig,
    /// Privacy masks: their pixels are blacked out in every frame before
    /// it leaves capture.
    pub privacy: Vec<Polygon>,
}

/// The defaults of a camera table's capture keys.
pub mod defaults {
    /// `fps`.
    pub const FPS: f64 = 2.0;
    /// `width` and `height`.
    pub const SIZE: u32 = 512;
    /// `queue_capacity`.
    pub const QUEUE_CAPACITY: usize = 2;
    /// `frame_timeout_ms`.
    pub const FRAME_TIMEOUT_MS: u64 = 10_000;
    /// `reconnect_min_ms`.
    pub const RECONNECT_MIN_MS: u64 = 1_000;
    /// `reconnect_max_ms`.
    pub const RECONNECT_MAX_MS: u64 = 30_000;
}

impl CaptureConfig {
    /// `source` with every other key at its default.
    pub fn new(source: SourceConfig) -> CaptureConfig {
        CaptureConfig {
            fps: defaults::FPS,
            width: defaults::SIZE,
            height: defaults::SIZE,
            queue_capacity: defaults::QUEUE_CAPACITY,
            frame_timeout_ms: defaults::FRAME_TIMEOUT_MS,
            reconnect_min_ms: defaults::RECONNECT_MIN_MS,
            reconnect_max_ms: defaults::RECONNECT_MAX_MS,
            source,
            privacy: Vec::new(),
        }
    }
}

fn default_enabled() -> bool {
    true
}

/// `[cameras.NAME.source]`: the kind of source and its settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Frames drawn by glimpse itself: a textured, noisy background with
    /// moving squares. Needs nothing installed.
    Synthetic {
        /// Frames per second the source produces, in real time. Default: 10.
        #[serde(default = "default_frame_rate")]
        frame_rate: f64,
        /// Moving squares in the scene (0 gives a static scene). Default: 2.
        #[serde(default = "default_shapes")]
        shapes: u32,
        /// Seed of the noise and the motion, for repeatable streams. Default: 1.
        #[serde(default = "default_seed")]
        seed: u64,
    },
    /// A video file in any container and codec GStreamer decodes.
    File {
        /// The file; a relative path is relative to the config file's
        /// folder. `glimpse check` verifies that it can be read.
        path: PathBuf,
        /// Start again from the beginning at the end. Default: false.
        #[serde(default, rename = "loop")]
        looped: bool,
        /// Play at the clip's own speed, like a camera; false decodes as
        /// fast as the pipeline takes frames. Default: true.
        #[serde(default = "default_enabled")]
        realtime: bool,
    },
    /// An RTSP stream (IP cameras, NVRs).
    Rtsp {
        /// `rtsp://host[:port]/path`, without credentials.
        url: String,
        /// `tcp` (works through NAT and firewalls), `udp` (lower latency)
        /// or `auto`. Default: tcp.
        #[serde(default)]
        transport: RtspTransport,
        /// Jitter buffer, in milliseconds. Default: 200.
        #[serde(default = "default_latency_ms")]
        latency_ms: u32,
        /// User name. Default: none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        /// File holding the password (relative to the config file's folder).
        /// `GLIMPSE_CAMERA_<NAME>_PASSWORD` (name upper-cased, '-' as '_'),
        /// when set, wins. Default: none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password_file: Option<PathBuf>,
        /// The resolved password; never read from nor written to the file.
        #[serde(skip)]
        password: Option<Secret>,
    },
    /// A V4L2 device (USB and most CSI cameras outside Jetson).
    V4l2 {
        /// The device. Default: /dev/video0.
        #[serde(default = "default_device")]
        device: PathBuf,
        /// `auto`, `yuyv` or `mjpeg`. Default: auto.
        #[serde(default)]
        format: PixelFormat,
        /// Capture width asked of the device. Default: the device's choice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capture_width: Option<u32>,
        /// Capture height asked of the device. Default: the device's choice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capture_height: Option<u32>,
        /// Capture frame rate asked of the device. Default: the device's choice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        frame_rate: Option<u32>,
        /// `gstreamer` (v4l2src) or `direct` (glimpse reads the device
        /// itself; for installs without GStreamer, needs the `v4l2` build
        /// feature). Default: gstreamer.
        #[serde(default)]
        backend: V4l2Backend,
    },
    /// A Jetson CSI camera through nvarguscamerasrc (JetPack only).
    JetsonCsi {
        /// The sensor. Default: 0.
        #[serde(default)]
        sensor_id: u32,
        /// Sensor mode width. Default: 1920.
        #[serde(default = "default_csi_width")]
        capture_width: u32,
        /// Sensor mode height. Default: 1080.
        #[serde(default = "default_csi_height")]
        capture_height: u32,
        /// Sensor frame rate. Default: 30.
        #[serde(default = "default_csi_rate")]
        frame_rate: u32,
        /// nvvidconv flip-method (0 none, 2 rotate 180, ...). Default: 0.
        #[serde(default)]
        flip_method: u32,
    },
    /// GStreamer's test pattern (videotestsrc), live.
    Test {
        /// videotestsrc pattern: `ball`, `smpte`, `snow`, ... Default: ball.
        #[serde(default = "default_pattern")]
        pattern: String,
        /// Frames per second. Default: 30.
        #[serde(default = "default_test_rate")]
        frame_rate: u32,
    },
    /// A raw GStreamer pipeline that ends in `appsink name=sink`; glimpse
    /// converts and scales whatever it delivers.
    Pipeline {
        /// The pipeline, in gst-launch syntax.
        pipeline: String,
        /// True for a live source (frames are dropped rather than queued
        /// when the pipeline is behind). Default: true.
        #[serde(default = "default_enabled")]
        live: bool,
    },
}

/// RTSP lower transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RtspTransport {
    /// Interleaved in the RTSP TCP connection.
    #[default]
    Tcp,
    /// RTP over UDP.
    Udp,
    /// Let rtspsrc try UDP, then TCP.
    Auto,
}

/// Pixel format asked of a V4L2 device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PixelFormat {
    /// Whatever the device offers (MJPEG or YUYV).
    #[default]
    Auto,
    /// Packed YUV 4:2:2.
    Yuyv,
    /// Motion JPEG.
    Mjpeg,
}

/// How a V4L2 device is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum V4l2Backend {
    /// Through GStreamer's v4l2src.
    #[default]
    Gstreamer,
    /// By glimpse itself (the `v4l2` build feature).
    Direct,
}

fn default_frame_rate() -> f64 {
    10.0
}
fn default_shapes() -> u32 {
    2
}
fn default_seed() -> u64 {
    1
}
fn default_latency_ms() -> u32 {
    200
}
fn default_device() -> PathBuf {
    PathBuf::from("/dev/video0")
}
fn default_csi_width() -> u32 {
    1920
}
fn default_csi_height() -> u32 {
    1080
}
fn default_csi_rate() -> u32 {
    30
}
fn default_pattern() -> String {
    "ball".to_owned()
}
fn default_test_rate() -> u32 {
    30
}

impl SourceConfig {
    /// Reads camera `name`'s RTSP password from the environment or its
    /// file; `key` is the camera's table.
    pub fn resolve_password(
        &mut self,
        name: &str,
        env: &Environment,
        key: &str,
        problems: &mut Problems,
    ) {
        let SourceConfig::Rtsp {
            password_file,
            password,
            ..
        } = self
        else {
            return;
        };
        let var = password_env_var(name);
        *password = resolve_secret(
            env.camera_passwords.get(&var),
            password_file.as_deref(),
            &format!("{key}.source.password_file"),
            problems,
        );
    }

    /// True for sources that run in real time and must never back up.
    pub fn is_live(&self) -> bool {
        match self {
            SourceConfig::File { .. } => false,
            SourceConfig::Pipeline { live, .. } => *live,
            _ => true,
        }
    }

    /// The `kind` as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Synthetic { .. } => "synthetic",
            SourceConfig::File { .. } => "file",
            SourceConfig::Rtsp { .. } => "rtsp",
            SourceConfig::V4l2 { .. } => "v4l2",
            SourceConfig::JetsonCsi { .. } => "jetson_csi",
            SourceConfig::Test { .. } => "test",
            SourceConfig::Pipeline { .. } => "pipeline",
        }
    }
}

impl CaptureConfig {
    /// Checks the capture keys of the camera table at `key`.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        if !(self.fps > 0.0 && self.fps <= 120.0) {
            let reason = if self.fps > 120.0 {
                "must be at most 120"
            } else {
                "must be > 0"
            };
            problems.push(format!("{key}.fps"), format!("{reason}, got {}", self.fps));
        }
        for (field, value) in [("width", self.width), ("height", self.height)] {
            if !(16..=4096).contains(&value) || value % 2 != 0 {
                problems.push(
                    format!("{key}.{field}"),
                    format!("must be an even number between 16 and 4096, got {value}"),
                );
            }
        }
        let ranges = [
            ("queue_capacity", self.queue_capacity as u64, 1, 1024),
            ("frame_timeout_ms", self.frame_timeout_ms, 100, 3_600_000),
            ("reconnect_min_ms", self.reconnect_min_ms, 10, 3_600_000),
            ("reconnect_max_ms", self.reconnect_max_ms, 10, 3_600_000),
        ];
        for (field, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                problems.push(
                    format!("{key}.{field}"),
                    format!("must be between {min} and {max}, got {value}"),
                );
            }
        }
        if self.reconnect_max_ms < self.reconnect_min_ms {
            problems.push(
                format!("{key}.reconnect_max_ms"),
                format!(
                    "must be at least reconnect_min_ms ({}), got {}",
                    self.reconnect_min_ms, self.reconnect_max_ms
                ),
            );
        }
        self.validate_source(&format!("{key}.source"), problems);
    }

    fn validate_source(&self, key: &str, problems: &mut Problems) {
        match &self.source {
            SourceConfig::Synthetic {
                frame_rate, shapes, ..
            } => {
                if !(*frame_rate > 0.0 && *frame_rate <= 240.0) {
                    problems.push(
                        format!("{key}.frame_rate"),
                        format!("must be > 0 and at most 240, got {frame_rate}"),
                    );
                }
                if *shapes > 16 {
                    problems.push(
                        format!("{key}.shapes"),
                        format!("must be at most 16, got {shapes}"),
                    );
                }
            }
            SourceConfig::File { path, .. } => {
                if path.as_os_str().is_empty() {
                    problems.push(format!("{key}.path"), "must not be empty");
                }
            }
            SourceConfig::Rtsp { url, .. } => check_rtsp_url(&format!("{key}.url"), url, problems),
            SourceConfig::V4l2 {
                capture_width,
                capture_height,
                frame_rate,
                ..
            } => {
                if capture_width.is_some() != capture_height.is_some() {
                    problems.push(
                        format!("{key}.capture_width"),
                        "set capture_width and capture_height together, or neither",
                    );
                }
                for (field, size) in [
                    ("capture_width", capture_width),
                    ("capture_height", capture_height),
                ] {
                    if let Some(size) = size {
                        check_capture_size(&format!("{key}.{field}"), *size, problems);
                    }
                }
                if frame_rate.is_some_and(|r| r == 0 || r > 240) {
                    problems.push(
                        format!("{key}.frame_rate"),
                        format!("must be between 1 and 240, got {}", frame_rate.unwrap_or(0)),
                    );
                }
            }
            SourceConfig::JetsonCsi {
                frame_rate,
                flip_method,
                capture_width,
                capture_height,
                ..
            } => {
                check_capture_size(&format!("{key}.capture_width"), *capture_width, problems);
                check_capture_size(&format!("{key}.capture_height"), *capture_height, problems);
                if !(1..=240).contains(frame_rate) {
                    problems.push(
                        format!("{key}.frame_rate"),
                        format!("must be between 1 and 240, got {frame_rate}"),
                    );
                }
                if *flip_method > 7 {
                    problems.push(
                        format!("{key}.flip_method"),
                        format!("must be between 0 and 7, got {flip_method}"),
                    );
                }
            }
            SourceConfig::Test {
                pattern,
                frame_rate,
            } => {
                if pattern.is_empty()
                    || !pattern
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-')
                {
                    problems.push(
                        format!("{key}.pattern"),
                        format!(
                            "must be a videotestsrc pattern name such as \"ball\", got {pattern:?}"
                        ),
                    );
                }
                if !(1..=240).contains(frame_rate) {
                    problems.push(
                        format!("{key}.frame_rate"),
                        format!("must be between 1 and 240, got {frame_rate}"),
                    );
                }
            }
            SourceConfig::Pipeline { pipeline, .. } => {
                if !pipeline.contains("appsink") || !pipeline.contains("name=sink") {
                    problems.push(
                        format!("{key}.pipeline"),
                        "must end in an appsink named sink (`... ! appsink name=sink`)",
                    );
                }
            }
        }
    }
}

/// A source written as an inline TOML table, for tests:
/// `{ kind = "synthetic" }`.
#[cfg(test)]
pub(crate) fn inline_source(table: &str) -> SourceConfig {
    let parsed: toml::Table = toml::from_str(&format!("source = {table}")).unwrap();
    parsed["source"].clone().try_into().unwrap()
}

/// An RTSP URL: its scheme, a host, and no credentials in it.
fn check_rtsp_url(key: &str, url: &str, problems: &mut Problems) {
    let rest = url
        .strip_prefix("rtsp://")
        .or_else(|| url.strip_prefix("rtsps://"));
    match rest {
        None => problems.push(
            key,
            format!("must start with rtsp:// or rtsps://, got {url:?}"),
        ),
        Some(rest) if rest.split('/').next().unwrap_or("").contains('@') => problems.push(
            key,
            "must not contain credentials: use username and password_file (or GLIMPSE_CAMERA_<NAME>_PASSWORD)",
        ),
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            problems.push(key, format!("has no host, got {url:?}"))
        }
        Some(_) => {}
    }
}

/// A size asked of a sensor or device, in pixels.
fn check_capture_size(key: &str, size: u32, problems: &mut Problems) {
    if !(16..=16_384).contains(&size) {
        problems.push(key, format!("must be between 16 and 16384, got {size}"));
    }
}

/// The environment variable that holds camera `name`'s RTSP password.
pub fn password_env_var(name: &str) -> String {
    format!(
        "GLIMPSE_CAMERA_{}_PASSWORD",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_variable_name() {
        assert_eq!(
            password_env_var("front-door"),
            "GLIMPSE_CAMERA_FRONT_DOOR_PASSWORD"
        );
    }
}
