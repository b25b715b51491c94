//! Questions arriving on `<prefix>/<camera>/ask` and watch-rule changes on
//! `<prefix>/<camera>/rules/set`: parsing, limits and rate limiting. Pure
//! functions and small state, used by the driver task; nothing blocks.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Deserialize;
use serde_json::Value;

use crate::event::rule_id;

use super::MqttConfig;

/// A question accepted for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// The asker's id, echoed in the answer; a fresh ULID when none was
    /// given.
    pub id: String,
    /// The camera asked about.
    pub camera: String,
    /// The question text.
    pub text: String,
    /// MQTT 5 response topic: the answer goes there instead of
    /// `<prefix>/<camera>/answer`.
    pub response_topic: Option<String>,
    /// MQTT 5 correlation data, sent back with the answer.
    pub correlation: Option<Vec<u8>>,
    /// When it arrived.
    pub received: Instant,
}

/// A question that cannot be taken, with what to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The question's id, when it could be read.
    pub id: Option<String>,
    /// Why, for the asker.
    pub error: String,
}

/// Reads an ask payload: JSON `{"id": "...", "question": "..."}` (id
/// optional) or plain UTF-8 text.
pub fn parse_question(
    payload: &[u8],
    max_bytes: usize,
) -> Result<(Option<String>, String), Refusal> {
    let refuse = |id: Option<String>, error: String| Err(Refusal { id, error });
    if payload.len() > max_bytes {
        return refuse(
            None,
            format!(
                "question too long: {} bytes, the limit is {max_bytes} (mqtt.max_question_bytes)",
                payload.len()
            ),
        );
    }
    let Ok(text) = std::str::from_utf8(payload) else {
        return refuse(None, "question is not valid UTF-8".to_owned());
    };
    let trimmed = text.trim();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let value: Value = match serde_json::from_str(trimmed) {
            Ok(v) => v,
            Err(e) => return refuse(None, format!("malformed JSON: {e}")),
        };
        let Value::Object(map) = value else {
            return refuse(
                None,
                "expected a JSON object {\"id\", \"question\"}".to_owned(),
            );
        };
        let id = match map.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => return refuse(None, "\"id\" must be a string or a number".to_owned()),
        };
        return match map.get("question") {
            Some(Value::String(q)) if !q.trim().is_empty() => Ok((id, q.trim().to_owned())),
            Some(Value::String(_)) => refuse(id, "the question is empty".to_owned()),
            Some(_) => refuse(id, "\"question\" must be a string".to_owned()),
            None => refuse(id, "missing \"question\"".to_owned()),
        };
    }
    if trimmed.is_empty() {
        return refuse(None, "the question is empty".to_owned());
    }
    Ok((None, trimmed.to_owned()))
}

/// Topic levels under `<prefix>/<camera>/` that glimpse publishes state on
/// or reads: an answer there would read as glimpse's own message.
const OWN_LEAVES: &[&str] = &[
    "ask",
    "event",
    "activity",
    "stats",
    "rules",
    "rules/set",
    "rules/error",
    "snapshot",
];

/// Checks the MQTT 5 response topic of a question or rules change before
/// anything is published on it; the error says why, for the asker. Refused:
/// an empty topic, wildcards (`+`, `#`: rumqttc refuses to publish them,
/// brokers too), NUL, more than 65535 bytes, `$` topics (the broker's),
/// glimpse's own state and input topics and Home Assistant's discovery
/// topics, and, when `mqtt.response_topic_prefixes` is set, anything
/// outside it.
pub fn check_response_topic(topic: &str, config: &MqttConfig) -> Result<(), String> {
    if topic.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if topic.contains(['+', '#']) {
        return Err("must not contain '+' or '#' (MQTT wildcards)".to_owned());
    }
    if topic.contains('\0') {
        return Err("must not contain NUL".to_owned());
    }
    if topic.len() > usize::from(u16::MAX) {
        return Err(format!(
            "must have at most 65535 bytes, got {}",
            topic.len()
        ));
    }
    if topic.starts_with('$') {
        return Err("must not start with '$' (the broker's own topics)".to_owned());
    }
    let under = |prefix: &str| -> Option<&str> {
        topic.strip_prefix(prefix).and_then(|rest| {
            if rest.is_empty() {
                Some(rest)
            } else {
                rest.strip_prefix('/')
            }
        })
    };
    if let Some(rest) = under(&config.prefix) {
        let own = rest == "status"
            || rest.split_once('/').is_some_and(|(_, leaf)| {
                OWN_LEAVES.contains(&leaf)
                    || leaf
                        .strip_prefix("rules/")
                        .is_some_and(|l| l.ends_with("/state"))
            });
        if own {
            return Err(format!(
                "is one of glimpse's own topics under {:?}; use <prefix>/<camera>/answer or a topic of your own",
                config.prefix
            ));
        }
    }
    if config.discovery && under(&config.discovery_prefix).is_some() {
        return Err(format!(
            "is under Home Assistant's discovery prefix {:?}",
            config.discovery_prefix
        ));
    }
    let allowed = &config.response_topic_prefixes;
    if !allowed.is_empty() && !allowed.iter().any(|p| under(p).is_some()) {
        return Err(format!(
            "is not under mqtt.response_topic_prefixes ({})",
            allowed.join(", ")
        ));
    }
    Ok(())
}

/// A change to a camera's watch rules.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesChange {
    /// Replace every rule with these.
    #[serde(default)]
    pub set: Option<Vec<String>>,
    /// Rules to add (ignored when already present).
    #[serde(default, deserialize_with = "one_or_many")]
    pub add: Vec<String>,
    /// Rules to remove (exact text).
    #[serde(default, deserialize_with = "one_or_many")]
    pub remove: Vec<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Longest watch rule, in bytes.
pub const MAX_RULE_BYTES: usize = 1024;
/// Most watch rules per camera.
pub const MAX_RULES: usize = 64;

/// Reads a rules/set payload (JSON `{"add"|"remove"|"set": ...}` or plain
/// text, which adds one rule) and applies it to `rules`, the rules set over
/// MQTT. A rule to remove is named by its text or its id (Home Assistant's
/// remove buttons send the id); one of `config_rules` cannot be removed
/// here.
pub fn apply_rules(
    payload: &[u8],
    rules: &mut Vec<String>,
    config_rules: &[String],
) -> Result<(), String> {
    let text =
        std::str::from_utf8(payload).map_err(|_| "rules change is not valid UTF-8".to_owned())?;
    let trimmed = text.trim();
    let change = if trimmed.starts_with('{') {
        serde_json::from_str::<RulesChange>(trimmed)
            .map_err(|e| format!("malformed rules change: {e}"))?
    } else {
        RulesChange {
            add: vec![trimmed.to_owned()],
            ..RulesChange::default()
        }
    };
    let names = |rule: &str, x: &str| x.trim() == rule || x.trim() == rule_id(rule);
    for x in &change.remove {
        let ours = rules.iter().any(|r| names(r, x));
        if let Some(rule) = config_rules.iter().find(|r| !ours && names(r, x)) {
            return Err(format!(
                "{rule:?} is a rule of the config file; remove it from the camera's rules there"
            ));
        }
    }
    let mut new = change.set.unwrap_or_else(|| rules.clone());
    new.retain(|r| !change.remove.iter().any(|x| names(r, x)));
    for rule in change.add.into_iter().map(|r| r.trim().to_owned()) {
        if !new.contains(&rule) {
            new.push(rule);
        }
    }
    new.iter_mut().for_each(|r| *r = r.trim().to_owned());
    new.dedup();
    if let Some(bad) = new
        .iter()
        .find(|r| r.is_empty() || r.len() > MAX_RULE_BYTES)
    {
        return Err(format!(
            "a rule must have 1 to {MAX_RULE_BYTES} bytes, got {}",
            bad.len()
        ));
    }
    if new.len() > MAX_RULES {
        return Err(format!(
            "at most {MAX_RULES} rules per camera, got {}",
            new.len()
        ));
    }
    *rules = new;
    Ok(())
}

/// A token bucket per camera: `per_minute` questions, refilled evenly.
#[derive(Debug)]
pub struct RateLimit {
    per_minute: f64,
    buckets: BTreeMap<String, (f64, Instant)>,
}

impl RateLimit {
    /// A limiter allowing `per_minute` questions per camera.
    pub fn new(per_minute: u32) -> RateLimit {
        RateLimit {
            per_minute: f64::from(per_minute.max(1)),
            buckets: BTreeMap::new(),
        }
    }

    /// Takes a token for `camera` at `now`; false when none is left.
    pub fn allow(&mut self, camera: &str, now: Instant) -> bool {
        let capacity = self.per_minute;
        let (tokens, last) = self
            .buckets
            .entry(camera.to_owned())
            .or_insert((capacity, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * capacity / 60.0;
        *tokens = (*tokens + refill).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What [`QuestionGate::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Within the camera's budget: answer it (with an error if it is
    /// refused for another reason).
    Admitted,
    /// Over the budget, the first time in this spell: one error answer
    /// says so.
    Refuse,
    /// Over the budget again: no answer at all, only a count.
    Silence,
}

/// One camera's refusals since the last report.
#[derive(Debug, Default, Clone, Copy)]
struct Refused {
    /// Questions over the budget since the last report.
    count: u64,
    /// Whether the error answer of this spell was sent: later refusals are
    /// silent until a question is admitted again.
    told: bool,
}

/// The budget of questions per camera (`mqtt.questions_per_minute`),
/// shared by MQTT and HTTP askers. A question over it gets one error
/// answer; until one is admitted again, later ones get none (a flood of
/// 10 000 questions costs one error answer, not 10 000 outbox writes).
/// Keys are the cameras the caller names (unknown cameras share one key),
/// so the state is bounded.
#[derive(Debug)]
pub struct QuestionGate {
    per_minute: u32,
    limit: RateLimit,
    refused: BTreeMap<String, Refused>,
    /// Questions silenced since start, all cameras.
    silenced: u64,
}

impl QuestionGate {
    /// A gate admitting `per_minute` questions per camera.
    pub fn new(per_minute: u32) -> QuestionGate {
        QuestionGate {
            per_minute,
            limit: RateLimit::new(per_minute),
            refused: BTreeMap::new(),
            silenced: 0,
        }
    }

    /// Takes one question of `camera`'s budget at `now`.
    pub fn admit(&mut self, camera: &str, now: Instant) -> Admission {
        if self.limit.allow(camera, now) {
            if let Some(r) = self.refused.get_mut(camera) {
                r.told = false;
            }
            return Admission::Admitted;
        }
        let r = self.refused.entry(camera.to_owned()).or_default();
        r.count += 1;
        if std::mem::replace(&mut r.told, true) {
            self.silenced += 1;
            Admission::Silence
        } else {
            Admission::Refuse
        }
    }

    /// What an asker over `camera`'s budget is told.
    pub fn refusal(&self, camera: &str) -> String {
        format!(
            "too many questions for camera {camera:?}: at most {} per minute (mqtt.questions_per_minute)",
            self.per_minute
        )
    }

    /// Questions silenced since start.
    pub fn silenced(&self) -> u64 {
        self.silenced
    }

    /// The cameras with questions over the budget since the last call, and
    /// how many; resets the counts (one log line per camera per report).
    pub fn take_refused(&mut self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (camera, r) in &mut self.refused {
            if r.count > 0 {
                out.push((camera.clone(), std::mem::take(&mut r.count)));
            }
        }
        self.refused.retain(|_, r| r.told);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn questions_table() {
        let ok = |p: &[u8]| parse_question(p, 64).unwrap();
        let bad = |p: &[u8]| parse_question(p, 64).unwrap_err();
        assert_eq!(ok(b"what is red?"), (None, "what is red?".into()));
        assert_eq!(
            ok(br#"{"id":"q1","question":"how many?"}"#),
            (Some("q1".into()), "how many?".into())
        );
        assert_eq!(ok(br#"{"id":7,"question":"x"}"#).0, Some("7".into()));
        assert_eq!(ok(br#"{"question":"x"}"#).0, None);
        for (payload, id, error) in [
            (&b"{\"id\":\"q2\",\"question\":"[..], None, "malformed JSON"),
            (&b"\xff\xfe"[..], None, "not valid UTF-8"),
            (&[b'a'; 65][..], None, "question too long: 65 bytes"),
            (&b"{\"id\":\"q3\"}"[..], Some("q3"), "missing \"question\""),
            (
                &b"{\"id\":\"q4\",\"question\":5}"[..],
                Some("q4"),
                "must be a string",
            ),
            (&b"[1]"[..], None, "expected a JSON object"),
            (&b"  "[..], None, "empty"),
        ] {
            let r = bad(payload);
            assert_eq!(r.id.as_deref(), id, "{payload:?}");
            assert!(r.error.contains(error), "{payload:?}: {}", r.error);
        }
    }

    #[test]
    fn rules_changes() {
        let mut rules = vec![];
        let config = ["is the door open?".to_owned()];
        let apply = |payload: &[u8], rules: &mut Vec<String>| apply_rules(payload, rules, &config);
        apply(b"a person is at the door", &mut rules).unwrap();
        apply(
            br#"{"add":["a car is parked","a person is at the door"]}"#,
            &mut rules,
        )
        .unwrap();
        assert_eq!(rules, ["a person is at the door", "a car is parked"]);
        apply(br#"{"remove":"a person is at the door"}"#, &mut rules).unwrap();
        assert_eq!(rules, ["a car is parked"]);
        // By id, as Home Assistant's remove button sends it.
        apply(br#"{"remove":["a_car_is_parked"]}"#, &mut rules).unwrap();
        assert!(rules.is_empty());
        apply(br#"{"set":["x"]}"#, &mut rules).unwrap();
        apply(br#"{"set":[]}"#, &mut rules).unwrap();
        assert!(rules.is_empty());
        let error = apply(br#"{"remove":"is_the_door_open"}"#, &mut rules).unwrap_err();
        assert!(error.contains("config file"), "{error}");
        assert!(apply(br#"{"delete":"x"}"#, &mut rules).is_err());
        assert!(apply(b"{oops", &mut rules).is_err());
    }

    #[test]
    fn response_topics_table() {
        let mut config = MqttConfig::default();
        let check = |topic: &str, config: &MqttConfig| check_response_topic(topic, config);
        for ok in [
            "me/answers",
            "replies",
            "glimpse/front/answer",
            "glimpse/front/answer/alice",
            "glimpse2/status",
            "homeassistantx/y",
        ] {
            assert_eq!(check(ok, &config), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "must not be empty"),
            ("me/+/x", "wildcards"),
            ("me/#", "wildcards"),
            ("a\0b", "NUL"),
            ("$SYS/broker", "'$'"),
            ("glimpse/status", "glimpse's own topics"),
            ("glimpse/front/ask", "glimpse's own topics"),
            ("glimpse/back/rules/set", "glimpse's own topics"),
            ("glimpse/front/event", "glimpse's own topics"),
            ("glimpse/front/rules/r1/state", "glimpse's own topics"),
            ("homeassistant/device/x/config", "discovery prefix"),
        ] {
            let error = check(bad, &config).unwrap_err();
            assert!(error.contains(why), "{bad:?}: {error}");
        }
        assert!(check(&"a".repeat(65_536), &config)
            .unwrap_err()
            .contains("at most 65535 bytes"));
        config.response_topic_prefixes = vec!["replies".into(), "site/a".into()];
        for ok in ["replies", "replies/me", "site/a/x"] {
            assert_eq!(check(ok, &config), Ok(()), "{ok}");
        }
        for bad in ["repliesx/me", "site/ab", "me/answers", "site"] {
            let error = check(bad, &config).unwrap_err();
            assert_eq!(
                error, "is not under mqtt.response_topic_prefixes (replies, site/a)",
                "{bad}"
            );
        }
        config.discovery = false;
        config.response_topic_prefixes.clear();
        assert_eq!(check("homeassistant/x", &config), Ok(()));
    }

    #[test]
    fn rate_limit_refills() {
        let mut limit = RateLimit::new(2);
        let t = Instant::now();
        assert!(limit.allow("a", t) && limit.allow("a", t));
        assert!(!limit.allow("a", t));
        assert!(limit.allow("b", t), "per camera");
        assert!(limit.allow("a", t + Duration::from_secs(30)));
    }

    #[test]
    fn a_flood_gets_one_error_answer_then_silence() {
        let mut gate = QuestionGate::new(2);
        let t = Instant::now();
        let got: Vec<Admission> = (0..1000).map(|_| gate.admit("a", t)).collect();
        assert_eq!(
            &got[..3],
            [Admission::Admitted, Admission::Admitted, Admission::Refuse]
        );
        assert!(got[3..].iter().all(|a| *a == Admission::Silence));
        assert_eq!(gate.silenced(), 997);
        assert_eq!(gate.take_refused(), vec![("a".to_owned(), 998)]);
        assert!(
            gate.take_refused().is_empty(),
            "counts reset at each report"
        );
        // A question admitted again ends the spell: the next refusal is told.
        assert_eq!(
            gate.admit("a", t + Duration::from_secs(30)),
            Admission::Admitted
        );
        assert_eq!(
            gate.admit("a", t + Duration::from_secs(30)),
            Admission::Refuse
        );
        assert_eq!(gate.admit("b", t), Admission::Admitted, "per camera");
    }
}
