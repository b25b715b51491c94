//! Home Assistant MQTT discovery, device-based: one device per camera with
//! a "last event" sensor (state cut to 255 characters, the whole event in
//! its attributes), an activity sensor and an `event` entity. Pure
//! functions: the driver publishes what they return, retained.

use serde_json::{json, Value};

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

/// The device discovery payload of `camera`.
pub fn payload(prefix: &str, client_id: &str, camera: &str) -> Value {
    let id = object_id(client_id, camera);
    let base = format!("{prefix}/{camera}");
    let availability = json!([{
        "topic": format!("{prefix}/status"),
        "payload_available": "online",
        "payload_not_available": "offline",
    }]);
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
        "qos": 1,
        "components": {
            format!("{id}_last_event"): {
                "platform": "sensor",
                "unique_id": format!("{id}_last_event"),
                "name": "Last event",
                "icon": "mdi:cctv",
                "state_topic": format!("{base}/event"),
                // A sensor's state holds at most 255 characters; the
                // whole event (text, kind, times) is in the attributes.
                "value_template": format!("{{{{ value_json.text[:{MAX_STATE_CHARS}] }}}}"),
                "json_attributes_topic": format!("{base}/event"),
            },
            format!("{id}_activity"): {
                "platform": "sensor",
                "unique_id": format!("{id}_activity"),
                "name": "Activity",
                "icon": "mdi:motion-sensor",
                "device_class": "enum",
                "options": ["idle", "changing"],
                "state_topic": format!("{base}/activity"),
            },
            format!("{id}_event"): {
                "platform": "event",
                "unique_id": format!("{id}_event"),
                "name": "Event",
                "state_topic": format!("{base}/event"),
                "event_types": ["description", "rule_on", "rule_off", "answer"],
                "value_template": "{{ {'event_type': value_json.kind, 'text': value_json.text, 'id': value_json.id} | to_json }}",
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_what_home_assistant_requires() {
        let p = payload("glimpse", "glimpse-glimpse", "front door");
        assert_eq!(
            topic("homeassistant", "glimpse-glimpse", "front door"),
            "homeassistant/device/glimpse-glimpse_front_door/config"
        );
        assert_eq!(p["device"]["identifiers"][0], "glimpse-glimpse_front_door");
        for (_, c) in p["components"].as_object().unwrap() {
            assert!(
                c["platform"].is_string()
                    && c["unique_id"].is_string()
                    && c["state_topic"].is_string()
            );
        }
        assert_eq!(p["availability"][0]["topic"], "glimpse/status");
    }
}
