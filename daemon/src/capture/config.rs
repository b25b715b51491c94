//! `[cameras.NAME]`: one camera, its source, its sampling and its queue.

use serde::{Deserialize, Serialize};

use crate::config::Problems;

/// `[cameras.NAME]` table.
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
    /// Sampled frames that may wait between capture and the pipeline; when
    /// full, the oldest is dropped and counted. Default: 4.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Where the frames come from; `kind` picks the source.
    pub source: SourceConfig,
}

fn default_enabled() -> bool {
    true
}
fn default_fps() -> f64 {
    2.0
}
fn default_queue_capacity() -> usize {
    4
}

/// `[cameras.NAME.source]`: the kind of source and its settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Frames drawn by glimpse itself: a textured, noisy background with
    /// moving squares. Needs nothing installed; for trying glimpse out and
    /// for tests.
    Synthetic {
        /// Frame width in pixels. Default: 256.
        #[serde(default = "default_width")]
        width: u32,
        /// Frame height in pixels. Default: 256.
        #[serde(default = "default_height")]
        height: u32,
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
}

fn default_width() -> u32 {
    256
}
fn default_height() -> u32 {
    256
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

impl CameraConfig {
    /// Checks every value of the camera table at `key`; `name` is the
    /// camera's name, which ends up in MQTT topics.
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
        if !(self.fps > 0.0 && self.fps <= 120.0) {
            let reason = if self.fps > 120.0 {
                "must be at most 120"
            } else {
                "must be > 0"
            };
            problems.push(format!("{key}.fps"), format!("{reason}, got {}", self.fps));
        }
        if !(1..=1024).contains(&self.queue_capacity) {
            problems.push(
                format!("{key}.queue_capacity"),
                format!("must be between 1 and 1024, got {}", self.queue_capacity),
            );
        }
        match &self.source {
            SourceConfig::Synthetic {
                width,
                height,
                frame_rate,
                shapes,
                ..
            } => {
                for (field, value) in [("width", width), ("height", height)] {
                    if !(16..=4096).contains(value) {
                        problems.push(
                            format!("{key}.source.{field}"),
                            format!("must be between 16 and 4096, got {value}"),
                        );
                    }
                }
                if !(*frame_rate > 0.0 && *frame_rate <= 240.0) {
                    problems.push(
                        format!("{key}.source.frame_rate"),
                        format!("must be > 0 and at most 240, got {frame_rate}"),
                    );
                }
                if *shapes > 16 {
                    problems.push(
                        format!("{key}.source.shapes"),
                        format!("must be at most 16, got {shapes}"),
                    );
                }
            }
        }
    }
}
