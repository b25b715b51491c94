//! The event model, a leaf every stage may use (docs/architecture.md §1):
//! [`Event`], what glimpse says, on its own or when asked; [`Activity`],
//! what a camera's scene is doing; and the watch rules' [`RuleStatus`].
//! They leave the daemon as JSON (MQTT, the event history, the HTTP API),
//! so these types are also the wire format: field names are part of the
//! public interface.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Something glimpse says about a camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique, sortable by creation time (a ULID).
    pub id: String,
    /// The camera it is about.
    pub camera: String,
    /// What kind of event.
    pub kind: EventKind,
    /// What the model said.
    pub text: String,
    /// Stream time span it covers, in seconds: [start, end].
    pub start_s: f64,
    /// End of the span, in seconds of stream time.
    pub end_s: f64,
    /// When the event was made, milliseconds since the Unix epoch.
    pub wall_time_ms: u64,
    /// What the model looked at.
    pub evidence: Evidence,
    /// From the frame that triggered it to the event, in milliseconds.
    pub latency_ms: u64,
    /// How sure the model was of `text`: the lowest probability it gave
    /// any token of the answer, its end included (0–1; `rule_on`/`rule_off`:
    /// of the answer that made the transition). Absent in histories written
    /// before it existed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "three_decimals"
    )]
    pub confidence: Option<f32>,
    /// The watch rule's id (`rule_on`, `rule_off`) or the question's id
    /// (answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The picture the event is about: a file of the state directory's
    /// `snapshots/` folder (`<event id>.jpg`, `glimpse events --snapshot`),
    /// also published retained on `<prefix>/<camera>/snapshot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The zones (`[cameras.<name>.zones]`) the change touched: those with
    /// a kept token of the frame that fired, outside the motion masks.
    /// Empty for answers and where no zone is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
}

/// An event on its way from the job that made it to the outbox, and
/// beside it the JPEG its `snapshot` names, for MQTT's retained snapshot
/// topic (the history keeps the name, the snapshots folder the bytes).
#[derive(Debug, Clone)]
pub struct Produced {
    /// The event, as it goes on the wire.
    pub event: Event,
    /// The snapshot's bytes, if the event has one.
    pub jpeg: Option<std::sync::Arc<Vec<u8>>>,
}

/// A confidence on the wire: three decimals, the rest is noise.
fn three_decimals<S: serde::Serializer>(c: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
    c.map(|c| (c * 1000.0).round() / 1000.0).serialize(s)
}

/// Kinds of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The scene changed; what changed.
    Description,
    /// A watch rule turned on (it holds now). Histories written before
    /// rules were states call it `alert`.
    #[serde(alias = "alert")]
    RuleOn,
    /// A watch rule turned off (it no longer holds).
    RuleOff,
    /// The answer to a question.
    Answer,
}

/// The frames behind an event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Stream times of the frames in the model's context, in seconds.
    pub frame_times_s: Vec<f64>,
    /// Visual tokens kept of each of those frames.
    pub kept_tokens: Vec<usize>,
}

impl Event {
    /// A new event with a fresh id, stamped now.
    pub fn new(camera: &str, kind: EventKind, text: String, span: (Duration, Duration)) -> Event {
        let now = SystemTime::now();
        Event {
            id: ulid::Ulid::from_datetime(now).to_string(),
            camera: camera.to_owned(),
            kind,
            text,
            start_s: span.0.as_secs_f64(),
            end_s: span.1.as_secs_f64(),
            wall_time_ms: now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            evidence: Evidence::default(),
            latency_ms: 0,
            confidence: None,
            reference: None,
            snapshot: None,
            zones: Vec::new(),
        }
    }
}

/// What a camera's scene is doing, published retained on
/// `<prefix>/<camera>/activity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Nothing changes (the scene trigger is armed).
    Idle,
    /// The scene is changing.
    Changing,
    /// The operator paused the camera's analysis.
    Paused,
}

impl Activity {
    /// The payload of the activity topic.
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Idle => "idle",
            Activity::Changing => "changing",
            Activity::Paused => "paused",
        }
    }
}

/// Every camera's watch rules and their states, by camera.
pub type RuleStates = std::collections::BTreeMap<String, Vec<RuleStatus>>;

/// What a rule says about the scene now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleState {
    /// Not decided yet: too few answers since the rule was set.
    Unknown,
    /// The rule holds.
    On,
    /// The rule does not hold.
    Off,
}

/// Where a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSource {
    /// The camera's `rules` in the config file.
    Config,
    /// Set at run time on `<prefix>/<camera>/rules/set`.
    Mqtt,
}

/// One rule of a camera as published: the wire format of
/// `<prefix>/<camera>/rules/<id>/state` and of the entries of
/// `<prefix>/<camera>/rules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleStatus {
    /// Stable id: a slug of the text ([`rule_id`]).
    pub id: String,
    /// The rule as set.
    pub rule: String,
    /// Config file or MQTT.
    pub source: RuleSource,
    /// On, off or unknown.
    pub state: RuleState,
    /// Since when it is in this state (or was set, while unknown),
    /// milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// Stream time of the check that decided the state, in seconds (none
    /// while unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_s: Option<f64>,
    /// The model's last answer to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_answer: Option<String>,
}

/// Every camera's zones and their states, by camera.
pub type ZoneStates = std::collections::BTreeMap<String, Vec<ZoneStatus>>;

/// Whether something is in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneState {
    /// Something differs from the zone's empty scene.
    Active,
    /// The zone looks as it does when empty.
    Idle,
}

impl ZoneState {
    /// The name published on MQTT.
    pub fn as_str(self) -> &'static str {
        match self {
            ZoneState::Active => "active",
            ZoneState::Idle => "idle",
        }
    }
}

/// One zone of a camera as published: the wire format of
/// `<prefix>/<camera>/zones/<zone>/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneStatus {
    /// The zone's name, as in the config.
    pub zone: String,
    /// Active or idle.
    pub state: ZoneState,
    /// Since when it is in this state, milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// Stream time of the frame that decided the state, in seconds.
    pub since_s: f64,
}

/// Longest id before the hash that keeps long rules apart.
const MAX_ID_CHARS: usize = 48;

/// The stable id of a rule: its text lower-cased, every run of other
/// characters than ASCII letters and digits made one `_`, trimmed of `_`
/// (`is there a red shape?` → `is_there_a_red_shape`). A text longer than
/// 48 characters, or one that has none of those characters, gets a short
/// hash of the whole text appended, so that different rules keep different
/// ids. Valid in MQTT topics and Home Assistant ids.
pub fn rule_id(text: &str) -> String {
    let mut slug = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('_') {
            slug.push('_');
        }
    }
    let slug = slug.trim_matches('_');
    if !slug.is_empty() && slug.len() <= MAX_ID_CHARS {
        return slug.to_owned();
    }
    let head = slug[..slug.len().min(MAX_ID_CHARS)].trim_end_matches('_');
    // FNV-1a: stable across builds and platforms (std's hasher is not).
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    if head.is_empty() {
        format!("rule_{:08x}", hash as u32)
    } else {
        format!("{head}_{:08x}", hash as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_as_documented_and_ids_sort_by_time() {
        let a = Event::new(
            "front",
            EventKind::RuleOn,
            "a person is at the door".into(),
            (Duration::from_secs(3), Duration::from_secs(5)),
        );
        std::thread::sleep(Duration::from_millis(2));
        let b = Event::new(
            "front",
            EventKind::Description,
            "the red square left".into(),
            (Duration::ZERO, Duration::ZERO),
        );
        assert!(a.id < b.id);
        let json: serde_json::Value = serde_json::to_value(&a).unwrap();
        assert_eq!(json["kind"], "rule_on");
        assert_eq!(json["start_s"], 3.0);
        assert_eq!(json["evidence"]["kept_tokens"], serde_json::json!([]));
        assert!(json.get("reference").is_none());
        assert!(json.get("confidence").is_none());
        let mut sure = a.clone();
        sure.confidence = Some(0.551_904_3);
        let text = serde_json::to_string(&sure).unwrap();
        assert!(text.contains("\"confidence\":0.552"), "{text}");
        assert!(!text.contains("0.5519"), "{text}");
        let back: Event = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, a);
        // A history written before rules were states still reads.
        let mut old = json;
        old["kind"] = "alert".into();
        let old: Event = serde_json::from_value(old).unwrap();
        assert_eq!(old.kind, EventKind::RuleOn);
    }
}
