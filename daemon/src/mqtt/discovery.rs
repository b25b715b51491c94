//! Home Assistant MQTT discovery, device-based: one device per camera with
//! sensors for the last event, the last description, the activity and the
//! last answer (states cut to 255 characters, the whole JSON in the
//! attributes), `event` entities for events and answers, a `text` entity
//! to ask, a `binary_sensor` per watch rule, and diagnostic sensors from
//! the stats. Pure functions: the driver publishes what they return,
//! retained.

use serde_json::{json, Map, Value};

use crate::event::{RuleSource, RuleStatus, ZoneStatus};

/// Home Assistant's limit on a sensor's state.
pub const MAX_STATE_CHARS: usize = 255;

/// The discovery topic of `camera`'s device.
pub fn topic(discovery_prefix: &str, client_id: &str, camera: &str) -> String {
    format!(
        "{discovery_prefix}/device/{}/config",
        object_id(client_id, camera)
    )
}

/// Home Assistant ids allow `[a-zA-Z0-9_-]` only.
fn object_id(client_id: &str, camera: &str) -> String {
    format!("{client_id}_{camera}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Marks in `payload` the components of `before` (component key →
/// platform) that it no longer has as removed: Home Assistant removes a
/// device's component when an update lists it with only its `platform`.
/// Returns the payload's own components (key → platform), the `before` of
/// the next update.
pub fn retract_missing(payload: &mut Value, before: &Map<String, Value>) -> Map<String, Value> {
    let Some(components) = payload["components"].as_object_mut() else {
        return Map::new();
    };
    let now: Map<String, Value> = components
        .iter()
        .map(|(key, c)| (key.clone(), c["platform"].clone()))
        .collect();
    for (key, platform) in before {
        if !components.contains_key(key) {
            components.insert(key.clone(), json!({ "platform": platform }));
        }
    }
    now
}

/// One component of a device: its key (without the device's id) and
/// its configuration.
type Component = (String, Value);

/// The device discovery payload of `camera`, whose watch rules are
/// `rules` (one `binary_sensor` each). Home Assistant reads `qos` per
/// component (at the device level it is ignored), so every component has it.
pub fn payload(
    prefix: &str,
    client_id: &str,
    camera: &str,
    rules: &[RuleStatus],
    zones: &[ZoneStatus],
) -> Value {
    let id = object_id(client_id, camera);
    let base = format!("{prefix}/{camera}");
    let availability = json!([{
        "topic": format!("{prefix}/status"),
        "payload_available": "online",
        "payload_not_available": "offline",
    }]);
    let mut components = Map::new();
    let all = [
        event_components(&base),
        control_components(&base),
        diagnostic_components(&base),
        rule_components(&base, rules),
        zone_components(&base, zones),
    ];
    for (key, mut component) in all.into_iter().flatten() {
        let key = format!("{id}_{key}");
        component["unique_id"] = key.clone().into();
        component["qos"] = 1.into();
        components.insert(key, component);
    }
    json!({
        "device": {
            "identifiers": [id],
            "name": format!("glimpse {camera}"),
            "manufacturer": "glimpse",
            "model": "edge video analytics",
            "sw_version": env!("CARGO_PKG_VERSION"),
        },
        "origin": {
            "name": "glimpse",
            "sw_version": env!("CARGO_PKG_VERSION"),
        },
        "availability": availability,
        "components": components,
    })
}

/// What the camera said: its last event, description, activity and
/// answer, as sensors and `event` entities.
fn event_components(base: &str) -> Vec<Component> {
    let mut out = Vec::new();
    out.push((
        "last_event".to_owned(),
        json!({
            "platform": "sensor",
            "name": "Last event",
            "icon": "mdi:cctv",
            "state_topic": format!("{base}/event"),
            // A sensor's state holds at most 255 characters; the
            // whole event (text, kind, times) is in the attributes.
            "value_template": format!("{{{{ value_json.text[:{MAX_STATE_CHARS}] }}}}"),
            "json_attributes_topic": format!("{base}/event"),
        }),
    ));
    // Only descriptions: a rule event that follows a description a
    // millisecond later must not hide it, so other kinds keep the state
    // (`this`: the entity's own state in Home Assistant's MQTT templates).
    out.push((
        "description".to_owned(),
        json!({
            "platform": "sensor",
            "name": "Last description",
            "icon": "mdi:text-box-outline",
            "state_topic": format!("{base}/event"),
            "value_template": format!(
                "{{% if value_json.kind == 'description' %}}{{{{ value_json.text[:{MAX_STATE_CHARS}] }}}}{{% else %}}{{{{ this.state }}}}{{% endif %}}"
            ),
            "json_attributes_topic": format!("{base}/event"),
            "json_attributes_template": "{% if value_json.kind == 'description' %}{{ value }}{% else %}{{ this.attributes | to_json }}{% endif %}",
        }),
    ));
    out.push((
        "activity".to_owned(),
        json!({
            "platform": "sensor",
            "name": "Activity",
            "icon": "mdi:motion-sensor",
            "device_class": "enum",
            "options": ["idle", "changing", "paused"],
            "state_topic": format!("{base}/activity"),
        }),
    ));
    out.push((
        "event".to_owned(),
        json!({
            "platform": "event",
            "name": "Event",
            "state_topic": format!("{base}/event"),
            "event_types": ["description", "rule_on", "rule_off"],
            // Descriptions have no reference (rule events name the rule);
            // an undefined
            // value cannot be made JSON, so it is made null.
            "value_template": "{{ {'event_type': value_json.kind, 'text': value_json.text, 'id': value_json.id, 'reference': value_json.reference | default(none)} | to_json }}",
        }),
    ));
    // Answers have a topic of their own; an error answer has `error`
    // instead of `text`.
    out.push((
        "answer_event".to_owned(),
        json!({
            "platform": "event",
            "name": "Answer event",
            "state_topic": format!("{base}/answer"),
            "event_types": ["answer"],
            "value_template": "{{ {'event_type': 'answer', 'text': value_json.text if value_json.text is defined else value_json.error, 'id': value_json.id} | to_json }}",
        }),
    ));
    out.push((
        "answer".to_owned(),
        json!({
            "platform": "sensor",
            "name": "Answer",
            "icon": "mdi:chat-outline",
            "state_topic": format!("{base}/answer"),
            "value_template": format!(
                "{{{{ (value_json.text if value_json.text is defined else 'error: ' ~ value_json.error)[:{MAX_STATE_CHARS}] }}}}"
            ),
            "json_attributes_topic": format!("{base}/answer"),
        }),
    ));
    out
}

/// What a user does: ask, pause the analysis, add a rule; and the picture.
fn control_components(base: &str) -> Vec<Component> {
    let mut out = Vec::new();
    out.push((
        "ask".to_owned(),
        json!({
            "platform": "text",
            "name": "Ask",
            "icon": "mdi:comment-question-outline",
            "command_topic": format!("{base}/ask"),
            "max": MAX_STATE_CHARS,
        }),
    ));
    // Pause and resume the camera's analysis (persisted by glimpse).
    out.push((
        "analysis".to_owned(),
        json!({
            "platform": "switch",
            "name": "Analysis",
            "icon": "mdi:eye",
            "command_topic": format!("{base}/analysis/set"),
            "state_topic": format!("{base}/analysis"),
            "payload_on": "on",
            "payload_off": "off",
            "entity_category": "config",
        }),
    ));
    // A new watch rule: the text is the rule (a plain-text rules/set
    // adds one rule). Errors go to `<camera>/rules/error`.
    out.push((
        "add_rule".to_owned(),
        json!({
            "platform": "text",
            "name": "Add rule",
            "icon": "mdi:eye-plus-outline",
            "command_topic": format!("{base}/rules/set"),
            "max": MAX_STATE_CHARS,
            "entity_category": "config",
        }),
    ));
    // The picture of the last event (binary JPEG, retained).
    out.push((
        "snapshot".to_owned(),
        json!({
            "platform": "image",
            "name": "Snapshot",
            "image_topic": format!("{base}/snapshot"),
            "content_type": "image/jpeg",
        }),
    ));
    out
}

/// Diagnostics from the stats.
fn diagnostic_components(base: &str) -> Vec<Component> {
    let mut out = Vec::new();
    // Diagnostics from the stats (published every
    // service.stats_interval_s): key, name, unit, state class.
    for (key, name, unit, class) in [
        ("fps", "Frames per second", Some("fps"), "measurement"),
        (
            "analysed_fps",
            "Analysed frames per second",
            Some("fps"),
            "measurement",
        ),
        // Counted since start: back to 0 after a restart.
        ("dropped", "Frames dropped", None, "total_increasing"),
        ("outbox_pending", "Outbox pending", None, "measurement"),
    ] {
        let mut sensor = json!({
            "platform": "sensor",
            "name": name,
            "entity_category": "diagnostic",
            "state_class": class,
            "state_topic": format!("{base}/stats"),
            "value_template": format!("{{{{ value_json.{key} }}}}"),
        });
        if let Some(unit) = unit {
            sensor["unit_of_measurement"] = unit.into();
        }
        out.push((key.to_owned(), sensor));
    }
    out
}

/// A `binary_sensor` per watch rule, and a remove button for the rules
/// set over MQTT.
fn rule_components(base: &str, rules: &[RuleStatus]) -> Vec<Component> {
    let mut out = Vec::new();
    for rule in rules {
        let topic = format!("{base}/rules/{}/state", rule.id);
        out.push((
            format!("rule_{}", rule.id),
            json!({
                "platform": "binary_sensor",
                "name": rule.rule.chars().take(MAX_STATE_CHARS).collect::<String>(),
                "icon": "mdi:eye-check-outline",
                "state_topic": topic,
                // `None` is Home Assistant's unknown.
                "value_template": "{{ value_json.state if value_json.state in ['on', 'off'] else 'None' }}",
                "payload_on": "on",
                "payload_off": "off",
                "json_attributes_topic": topic,
                // A removed rule's topic is cleared (empty payload) while
                // Home Assistant may still read it: no attributes, no error.
                "json_attributes_template": "{{ value if value else '{}' }}",
            }),
        ));
        // Rules set over MQTT can be removed from Home Assistant; the
        // config's stay until the config changes.
        if rule.source == RuleSource::Mqtt {
            out.push((
                format!("remove_rule_{}", rule.id),
                json!({
                    "platform": "button",
                    "name": format!("Remove rule: {}", rule.rule.chars().take(MAX_STATE_CHARS - 13).collect::<String>()),
                    "icon": "mdi:eye-remove-outline",
                    "command_topic": format!("{base}/rules/set"),
                    "payload_press": json!({ "remove": [rule.id] }).to_string(),
                    "entity_category": "config",
                }),
            ));
        }
    }
    out
}

/// An occupancy `binary_sensor` per zone: on while something is in it.
fn zone_components(base: &str, zones: &[ZoneStatus]) -> Vec<Component> {
    zones
        .iter()
        .map(|zone| {
            let topic = format!("{base}/zones/{}/state", zone.zone);
            (
                format!("zone_{}", zone.zone),
                json!({
                    "platform": "binary_sensor",
                    "name": format!("Zone {}", zone.zone),
                    "device_class": "occupancy",
                    "state_topic": topic,
                    // A removed zone's topic is cleared (empty payload)
                    // while Home Assistant may still read it.
                    "value_template": "{{ value_json.state if value else 'None' }}",
                    "payload_on": "active",
                    "payload_off": "idle",
                    "json_attributes_topic": topic,
                    "json_attributes_template": "{{ value if value else '{}' }}",
                }),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{RuleSource, RuleState};

    #[test]
    fn carries_what_home_assistant_requires() {
        let rule = RuleStatus {
            id: "is_there_a_red_shape".into(),
            rule: "is there a red shape?".into(),
            source: RuleSource::Config,
            state: RuleState::Unknown,
            since_ms: 1,
            since_s: None,
            last_answer: None,
        };
        let added = RuleStatus {
            id: "a_car_is_parked".into(),
            rule: "a car is parked".into(),
            source: RuleSource::Mqtt,
            ..rule.clone()
        };
        let zone = ZoneStatus {
            zone: "driveway".into(),
            state: crate::event::ZoneState::Idle,
            since_ms: 1,
            since_s: 0.0,
        };
        let p = payload(
            "glimpse",
            "glimpse-glimpse",
            "front door",
            &[rule, added],
            &[zone],
        );
        assert_eq!(
            topic("homeassistant", "glimpse-glimpse", "front door"),
            "homeassistant/device/glimpse-glimpse_front_door/config"
        );
        assert_eq!(p["device"]["identifiers"][0], "glimpse-glimpse_front_door");
        assert!(p.get("qos").is_none(), "ignored at the device level");
        let components = p["components"].as_object().unwrap();
        for (key, c) in components {
            // Every component: its platform, its unique id (device
            // discovery requires it), QoS 1.
            assert!(c["platform"].is_string(), "{key}");
            assert_eq!(c["unique_id"], key.as_str());
            assert_eq!(c["qos"], 1, "{key}");
            // What each platform requires.
            match c["platform"].as_str().unwrap() {
                "sensor" | "binary_sensor" => assert!(c["state_topic"].is_string(), "{key}"),
                "event" => {
                    assert!(c["state_topic"].is_string(), "{key}");
                    assert!(!c["event_types"].as_array().unwrap().is_empty(), "{key}");
                }
                "text" => assert!(c["command_topic"].is_string(), "{key}"),
                "switch" => assert!(c["command_topic"].is_string(), "{key}"),
                "button" => {
                    assert!(c["command_topic"].is_string(), "{key}");
                    assert!(c["payload_press"].is_string(), "{key}");
                }
                // One of image_topic or url_topic; a binary payload needs
                // its content type.
                "image" => {
                    assert!(c["image_topic"].is_string(), "{key}");
                    assert_eq!(c["content_type"], "image/jpeg", "{key}");
                    assert!(c.get("url_topic").is_none(), "{key}");
                }
                other => panic!("unexpected platform {other}"),
            }
        }
        let c = |k: &str| &components[&format!("glimpse-glimpse_front_door_{k}")];
        let rule = c("rule_is_there_a_red_shape");
        assert_eq!(rule["platform"], "binary_sensor");
        assert_eq!(
            rule["state_topic"],
            "glimpse/front door/rules/is_there_a_red_shape/state"
        );
        assert_eq!(
            (&rule["payload_on"], &rule["payload_off"]),
            (&"on".into(), &"off".into())
        );
        let zone = c("zone_driveway");
        assert_eq!(
            (&zone["platform"], &zone["device_class"]),
            (&"binary_sensor".into(), &"occupancy".into())
        );
        assert_eq!(
            zone["state_topic"],
            "glimpse/front door/zones/driveway/state"
        );
        assert_eq!(
            (&zone["payload_on"], &zone["payload_off"]),
            (&"active".into(), &"idle".into())
        );
        assert_eq!(c("description")["state_topic"], "glimpse/front door/event");
        assert!(c("description")["value_template"]
            .as_str()
            .unwrap()
            .contains("value_json.kind == 'description'"));
        assert_eq!(c("answer")["state_topic"], "glimpse/front door/answer");
        assert_eq!(c("ask")["command_topic"], "glimpse/front door/ask");
        assert_eq!(c("snapshot")["image_topic"], "glimpse/front door/snapshot");
        assert_eq!(
            c("event")["event_types"],
            json!(["description", "rule_on", "rule_off"])
        );
        assert_eq!(c("answer_event")["event_types"], json!(["answer"]));
        for k in ["fps", "analysed_fps", "dropped", "outbox_pending"] {
            assert_eq!(c(k)["entity_category"], "diagnostic", "{k}");
            assert_eq!(c(k)["state_topic"], "glimpse/front door/stats", "{k}");
        }
        assert_eq!(p["availability"][0]["topic"], "glimpse/status");
        // Pause and resume; add and remove rules.
        let switch = c("analysis");
        assert_eq!(switch["command_topic"], "glimpse/front door/analysis/set");
        assert_eq!(switch["state_topic"], "glimpse/front door/analysis");
        assert_eq!(
            c("add_rule")["command_topic"],
            "glimpse/front door/rules/set"
        );
        let remove = c("remove_rule_a_car_is_parked");
        assert_eq!(remove["command_topic"], "glimpse/front door/rules/set");
        assert_eq!(remove["payload_press"], r#"{"remove":["a_car_is_parked"]}"#);
        assert!(
            !components.contains_key("glimpse-glimpse_front_door_remove_rule_is_there_a_red_shape"),
            "a config rule has no remove button"
        );
    }

    #[test]
    fn removed_components_are_retracted_once() {
        let mut first = json!({"components": {
            "a": {"platform": "sensor"}, "b": {"platform": "button", "name": "x"}}});
        let before = retract_missing(&mut first, &Map::new());
        let mut second = json!({"components": {"a": {"platform": "sensor"}}});
        let after = retract_missing(&mut second, &before);
        assert_eq!(second["components"]["b"], json!({"platform": "button"}));
        assert_eq!(after.len(), 1, "the next update no longer names b");
        let mut third = json!({"components": {"a": {"platform": "sensor"}}});
        retract_missing(&mut third, &after);
        assert!(third["components"].get("b").is_none());
    }
}
