//! [`Event`]: what glimpse says, on its own or when asked. Events leave the
//! daemon as JSON (MQTT, the event history), so this type is also the wire
//! format: field names are part of the public interface.

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
    /// The snapshot's JPEG bytes on their way to MQTT; not in the JSON
    /// (the history keeps the name, the folder the bytes).
    #[serde(skip)]
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
            jpeg: None,
        }
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
