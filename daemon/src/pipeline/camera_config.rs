//! `[cameras.NAME]`: the whole camera, as the config file writes it. It
//! belongs to the camera unit: capture gets only what it samples with
//! ([`CaptureConfig`]), and each stage's section is that stage's own type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::capture::{defaults, CaptureConfig, SourceConfig};
use crate::dtd::DtdConfig;
use crate::memory::MemoryConfig;
use crate::region::Polygon;
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
    /// Where not to look (`[cameras.<name>.masks]`).
    #[serde(default, skip_serializing_if = "MasksConfig::is_empty")]
    pub masks: MasksConfig,
    /// Named areas of the picture (`[cameras.<name>.zones.<zone>]`): events
    /// say which their change touched; `trigger.zones` limits descriptions
    /// to changes inside some. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub zones: BTreeMap<String, ZoneConfig>,
}

/// `[cameras.NAME.masks]`: polygons in fractions of the frame (0–1, x
/// right, y down), each `[[x, y], [x, y], [x, y], ...]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MasksConfig {
    /// Blacked out at capture, before anything else sees the frame: the
    /// pixel gate, the encoder, the memory, snapshots, the status page.
    /// Default: none.
    #[serde(default)]
    pub privacy: Vec<Polygon>,
    /// Their patches never count as change, for the pixel gate and the
    /// trigger (a tree in the wind, a road); the model still sees them.
    /// Default: none.
    #[serde(default)]
    pub motion: Vec<Polygon>,
}

impl MasksConfig {
    fn is_empty(&self) -> bool {
        self.privacy.is_empty() && self.motion.is_empty()
    }
}

/// A camera's masks and zones as polygons, for whoever draws them (the
/// status page's overlay).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outlines {
    /// Privacy masks.
    pub privacy: Vec<Polygon>,
    /// Motion masks.
    pub motion: Vec<Polygon>,
    /// Zones by name.
    pub zones: BTreeMap<String, Polygon>,
}

/// `[cameras.NAME.zones.ZONE]`: a named area.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The polygon, in fractions of the frame.
    pub points: Polygon,
    /// The zone turns idle once it has looked empty this long (s): a
    /// debounce, so a shape that flickers does not flap the state.
    /// Default: 1.
    #[serde(default = "default_idle_after_s")]
    pub idle_after_s: f64,
    /// Something that stays still in the zone this long (s) becomes part
    /// of its empty scene, and the zone turns idle: a parked car, a moved
    /// chair, a light left on. Default: 600.
    #[serde(default = "default_absorb_after_s")]
    pub absorb_after_s: f64,
    /// Watch rules about this zone only, e.g. "is there a car?": states
    /// and events like the camera's `rules`, named `ZONE: RULE`.
    /// Default: none.
    #[serde(default)]
    pub rules: Vec<String>,
    /// How the model looks at the zone for its rules: `tokens` (only the
    /// zone's visual tokens of the memory, at their places: no extra
    /// encoder call) or `crop` (the zone's bounding box cut out of the
    /// frame and encoded as an image of its own: one more encoder call
    /// per check, the zone at the encoder's full resolution). Default: by
    /// the model's family ([`Look::default_for`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub look: Option<Look>,
}

/// `[cameras.NAME.zones.ZONE] look`: what a zone-scoped rule shows the
/// model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Look {
    /// The zone's tokens of the memory and the canvas.
    Tokens,
    /// The zone's bounding box, encoded as its own image.
    Crop,
}

impl Look {
    /// The default for a model family, from `cargo bench --bench zones`
    /// on the shapes world (2026-12-07, 958 questions about half of a
    /// frame; whole frame 50.0%): glimpse's own models were trained on
    /// gapped token grids (token dropping), and their zone's tokens answer
    /// 94.1% right in 8.2 ms and 32 tokens a check, against 92.3% in
    /// 17.4 ms and 64 tokens for the crop. SmolVLM2 never saw a partial
    /// grid in training, and a crop is an ordinary image to it (at its
    /// encoder's full 512 px): crop, unmeasured here without its weights.
    pub fn default_for(layout: crate::infer::PromptLayout) -> Look {
        match layout {
            crate::infer::PromptLayout::SmolvlmVideo => Look::Crop,
            _ => Look::Tokens,
        }
    }
}

impl ZoneConfig {
    /// The name a rule of zone `zone` goes by in the rules' states, MQTT
    /// and events: `ZONE: RULE`.
    pub fn rule_name(zone: &str, rule: &str) -> String {
        format!("{zone}: {rule}")
    }
}

fn default_idle_after_s() -> f64 {
    1.0
}
fn default_absorb_after_s() -> f64 {
    600.0
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
    /// Its masks and zones, to draw.
    pub fn outlines(&self) -> Outlines {
        Outlines {
            privacy: self.masks.privacy.clone(),
            motion: self.masks.motion.clone(),
            zones: self
                .zones
                .iter()
                .map(|(name, zone)| (name.clone(), zone.points.clone()))
                .collect(),
        }
    }

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
            privacy: self.masks.privacy.clone(),
        }
    }

    /// The masks' and zones' polygons, the zones' names, and the zones
    /// the trigger names.
    fn validate_regions(&self, key: &str, problems: &mut Problems) {
        for (kind, polygons) in [
            ("privacy", &self.masks.privacy),
            ("motion", &self.masks.motion),
        ] {
            for (i, polygon) in polygons.iter().enumerate() {
                polygon.validate(&format!("{key}.masks.{kind}[{i}]"), problems);
            }
        }
        for (name, zone) in &self.zones {
            if !topic_safe(name) {
                problems.push(
                    format!("{key}.zones.{name}"),
                    format!("zone names appear in MQTT topics: use 1 to 64 letters, digits, '_' or '-', got {name:?}"),
                );
            }
            zone.points
                .validate(&format!("{key}.zones.{name}.points"), problems);
            for (field, value) in [
                ("idle_after_s", zone.idle_after_s),
                ("absorb_after_s", zone.absorb_after_s),
            ] {
                if !(value.is_finite() && (0.0..=86_400.0).contains(&value)) {
                    problems.push(
                        format!("{key}.zones.{name}.{field}"),
                        format!("must be 0 to 86400 seconds, got {value}"),
                    );
                }
            }
        }
        for (i, zone) in self.trigger.zones.iter().enumerate() {
            if !self.zones.contains_key(zone) {
                let known: Vec<&String> = self.zones.keys().collect();
                problems.push(
                    format!("{key}.trigger.zones[{i}]"),
                    format!("no zone {zone:?} in [cameras.<name>.zones] (zones: {known:?})"),
                );
            }
        }
    }

    /// Checks every value of the camera table at `key`; `name` is the
    /// camera's name, which ends up in MQTT topics. Each stage checks its
    /// own section.
    pub fn validate(&self, name: &str, key: &str, problems: &mut Problems) {
        if !topic_safe(name) {
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
        self.validate_regions(key, problems);
        let zone_rules = self.zones.iter().flat_map(|(name, zone)| {
            zone.rules
                .iter()
                .enumerate()
                .map(move |(i, rule)| (format!("{key}.zones.{name}.rules[{i}]"), rule))
        });
        let rules = self.rules.iter().enumerate();
        for (at, rule) in rules
            .map(|(i, rule)| (format!("{key}.rules[{i}]"), rule))
            .chain(zone_rules)
        {
            if rule.trim().is_empty() || rule.len() > 500 {
                problems.push(
                    at,
                    format!("must be 1 to 500 characters, got {}", rule.len()),
                );
            }
        }
    }

    /// Every watch rule of the camera: its `rules`, then each zone's,
    /// named `ZONE: RULE`.
    pub fn all_rules(&self) -> Vec<String> {
        let zoned = self.zones.iter().flat_map(|(name, zone)| {
            zone.rules
                .iter()
                .map(move |rule| ZoneConfig::rule_name(name, rule))
        });
        self.rules.iter().cloned().chain(zoned).collect()
    }
}

/// Whether `name` can be a level of an MQTT topic as glimpse writes them:
/// 1 to 64 letters, digits, '_' or '-'.
fn topic_safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
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

    #[test]
    fn bad_masks_zones_and_unknown_zones_are_refused_naming_the_key() {
        let found = problems(
            "source = { kind = \"synthetic\" }\n\
             rules = []\n\
             [trigger]\nzones = [\"door\", \"street\"]\n\
             [masks]\nprivacy = [[[0.0, 0.0], [0.5, 0.5]]]\n\
             motion = [[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]]\n\
             [zones.door]\npoints = [[0.1, 0.1], [0.9, 0.1], [0.9, 1.5]]\n\
             idle_after_s = -1\nrules = [\"is the door open?\", \" \"]\n\
             [zones.\"front door\"]\npoints = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]\n",
        );
        assert_eq!(
            found,
            vec![
                "cameras.cam.masks.privacy[0]: a polygon needs at least 3 points [x, y], got 2",
                "cameras.cam.masks.motion[0]: the polygon crosses itself: edge 0 (0→1) crosses edge 2; list the points in order around the area",
                "cameras.cam.zones.door.points[2]: coordinates are fractions of the frame, 0 to 1 (x right, y down), got [0.9, 1.5]",
                "cameras.cam.zones.door.idle_after_s: must be 0 to 86400 seconds, got -1",
                "cameras.cam.zones.front door: zone names appear in MQTT topics: use 1 to 64 letters, digits, '_' or '-', got \"front door\"",
                "cameras.cam.trigger.zones[1]: no zone \"street\" in [cameras.<name>.zones] (zones: [\"door\", \"front door\"])",
                "cameras.cam.zones.door.rules[1]: must be 1 to 500 characters, got 1",
            ]
        );
        // A zone's rules go by `ZONE: RULE`, after the camera's.
        let config: CameraConfig = toml::from_str(
            "source = { kind = \"synthetic\" }\nrules = [\"is it dark?\"]\n\
             [zones.door]\npoints = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]\nrules = [\"is the door open?\"]\n",
        )
        .unwrap();
        assert_eq!(
            config.all_rules(),
            ["is it dark?", "door: is the door open?"]
        );
        assert_eq!(config.zones["door"].look, None);
    }
}
