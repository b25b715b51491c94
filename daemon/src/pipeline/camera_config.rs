//! `[cameras.NAME]`: the whole camera, as the config file writes it. It
//! belongs to the camera unit: capture gets only what it samples with
//! ([`CaptureConfig`]), and each stage's section is that stage's own type.

use serde::{Deserialize, Serialize};

use crate::capture::{defaults, CaptureConfig, SourceConfig};
use crate::dtd::DtdConfig;
use crate::memory::MemoryConfig;
use crate::settings::Problems;
use crate::snapshot::SnapshotConfig;
use crate::trigger::TriggerConfig;

/// A `[cameras.NAME]` table: the whole camera. Capture gets its part
/// ([`CameraConfig::capture`]); the camera unit keeps the rest.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Whether this camera runs. Default: true.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Frames per second handed to the pipeline, sampled by stream time
    /// (not wall time) from whatever rate the source delivers. Default: 2.
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// Width of the frames handed to the pipeline (the model's input), in
    /// pixels. The picture is scaled with square pixels and letterboxed.
    /// Default: 512.
    #[serde(default = "default_size")]
    pub width: u32,
    /// Height of the frames handed to the pipeline, in pixels. Default: 512.
    #[serde(default = "default_size")]
    pub height: u32,
    /// Sampled frames that may wait in the camera's queue for a model
    /// worker; when full, the oldest is dropped and counted on this camera.
    /// Small, so that a slow encoder sees the newest frames. Default: 2.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// A source that delivers no frame for this long is restarted.
    /// Default: 10000 ms.
    #[serde(default = "default_frame_timeout_ms")]
    pub frame_timeout_ms: u64,
    /// First delay before reconnecting a failed source; it doubles (with
    /// jitter) at each failure in a row. Default: 1000 ms.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// Longest delay between reconnection attempts. Default: 30000 ms.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Where the frames come from; `kind` picks the source.
    pub source: SourceConfig,
    /// Token dropping (change blindness).
    #[serde(default)]
    pub dtd: DtdConfig,
    /// When glimpse speaks up on its own.
    #[serde(default)]
    pub trigger: TriggerConfig,
    /// How much of the past is remembered.
    #[serde(default)]
    pub memory: MemoryConfig,
    /// Watch rules: yes/no questions asked when the scene changes and at
    /// least every `trigger.rule_recheck_s`, e.g. "is there a person at the
    /// door?". Each is a state (on, off, unknown) decided from the answers
    /// (`trigger.rule_window`, `rule_on_after`, `rule_off_after`); a change
    /// publishes a `rule_on` or `rule_off` event. Default: none.
    #[serde(default)]
    pub rules: Vec<String>,
    /// The picture attached to each event (`[cameras.<name>.snapshot]`).
    #[serde(default)]
    pub snapshot: SnapshotConfig,
}

fn default_enabled() -> bool {
    true
}
fn default_fps() -> f64 {
    defaults::FPS
}
fn default_size() -> u32 {
    defaults::SIZE
}
fn default_queue_capacity() -> usize {
    defaults::QUEUE_CAPACITY
}
fn default_frame_timeout_ms() -> u64 {
    defaults::FRAME_TIMEOUT_MS
}
fn default_reconnect_min_ms() -> u64 {
    defaults::RECONNECT_MIN_MS
}
fn default_reconnect_max_ms() -> u64 {
    defaults::RECONNECT_MAX_MS
}

impl CameraConfig {
    /// What capture samples with.
    pub fn capture(&self) -> CaptureConfig {
        CaptureConfig {
            fps: self.fps,
            width: self.width,
            height: self.height,
            queue_capacity: self.queue_capacity,
            frame_timeout_ms: self.frame_timeout_ms,
            reconnect_min_ms: self.reconnect_min_ms,
            reconnect_max_ms: self.reconnect_max_ms,
            source: self.source.clone(),
        }
    }

    /// Checks every value of the camera table at `key`; `name` is the
    /// camera's name, which ends up in MQTT topics. Each stage checks its
    /// own section.
    pub fn validate(&self, name: &str, key: &str, problems: &mut Problems) {
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            problems.push(
                key,
                format!("camera names appear in MQTT topics: use 1 to 64 letters, digits, '_' or '-', got {name:?}"),
            );
        }
        self.capture().validate(key, problems);
        self.dtd.validate(&format!("{key}.dtd"), problems);
        self.trigger.validate(&format!("{key}.trigger"), problems);
        self.memory.validate(&format!("{key}.memory"), problems);
        self.snapshot.validate(&format!("{key}.snapshot"), problems);
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.trim().is_empty() || rule.len() > 500 {
                problems.push(
                    format!("{key}.rules[{i}]"),
                    format!("must be 1 to 500 characters, got {}", rule.len()),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let camera: CameraConfig = toml::from_str(text).unwrap();
        let mut problems = Problems::default();
        camera.validate("cam", "cameras.cam", &mut problems);
        problems
            .0
            .into_iter()
            .map(|p| format!("{}: {}", p.key, p.reason))
            .collect()
    }

    #[test]
    fn every_kind_parses_with_its_defaults() {
        for source in [
            r#"{ kind = "synthetic" }"#,
            r#"{ kind = "file", path = "clip.mp4", loop = true }"#,
            r#"{ kind = "rtsp", url = "rtsp://10.0.0.5:554/stream1", username = "viewer" }"#,
            r#"{ kind = "v4l2", device = "/dev/video2", format = "mjpeg", capture_width = 1280, capture_height = 720 }"#,
            r#"{ kind = "jetson_csi", sensor_id = 1 }"#,
            r#"{ kind = "test", pattern = "smpte" }"#,
            r#"{ kind = "pipeline", pipeline = "videotestsrc ! appsink name=sink" }"#,
        ] {
            assert_eq!(
                problems(&format!("source = {source}")),
                Vec::<String>::new(),
                "{source}"
            );
        }
    }

    #[test]
    fn rtsp_credentials_stay_out_of_the_url() {
        let found = problems(r#"source = { kind = "rtsp", url = "rtsp://admin:pw@10.0.0.5/s" }"#);
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("cameras.cam.source.url: must not contain credentials"));
    }

    #[test]
    fn pipeline_must_end_in_the_named_appsink() {
        let found = problems(
            r#"source = { kind = "pipeline", pipeline = "videotestsrc ! autovideosink" }"#,
        );
        assert_eq!(found, vec!["cameras.cam.source.pipeline: must end in an appsink named sink (`... ! appsink name=sink`)"]);
    }

    #[test]
    fn odd_sizes_and_inverted_backoff_are_refused() {
        let found = problems("width = 33\nreconnect_min_ms = 5000\nreconnect_max_ms = 100\nsource = { kind = \"synthetic\" }");
        assert_eq!(
            found,
            vec![
                "cameras.cam.width: must be an even number between 16 and 4096, got 33",
                "cameras.cam.reconnect_max_ms: must be at least reconnect_min_ms (5000), got 100",
            ]
        );
    }
}
