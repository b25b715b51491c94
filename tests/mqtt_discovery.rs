//! Home Assistant MQTT discovery as mosquitto_sub reads it: one device
//! config per camera with the fields Home Assistant's schemas require,
//! components added and removed with the rules, and the config sent again
//! when Home Assistant comes back online.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::broker::{cleared, json_of, publish, Mosquitto, Sub};
use crate::harness::daemon::Daemon;

const SECS: Duration = Duration::from_secs(10);

/// What Home Assistant requires of each component of a device discovery
/// payload, by platform (its MQTT schemas), and what glimpse promises:
/// unique ids, QoS 1 on each component (ignored at the device level).
fn check_components(config: &serde_json::Value) {
    assert!(config.get("qos").is_none(), "{config}");
    let components = config["components"].as_object().unwrap();
    let mut unique = BTreeSet::new();
    for (key, c) in components {
        if c.as_object().is_some_and(|o| o.len() == 1) {
            // A removed component: Home Assistant removes it when an
            // update names only its platform.
            assert!(c["platform"].is_string(), "{key}: {c}");
            continue;
        }
        assert_eq!(c["unique_id"], key.as_str(), "{c}");
        assert!(unique.insert(key.clone()));
        assert_eq!(c["qos"], 1, "{key}");
        assert!(c["name"].is_string(), "{key}");
        match c["platform"].as_str() {
            Some("sensor" | "binary_sensor") => assert!(c["state_topic"].is_string(), "{key}"),
            Some("event") => {
                assert!(c["state_topic"].is_string(), "{key}");
                assert!(c["event_types"].as_array().is_some_and(|t| !t.is_empty()));
            }
            Some("text" | "switch") => assert!(c["command_topic"].is_string(), "{key}"),
            Some("button") => {
                assert!(c["command_topic"].is_string(), "{key}");
                assert!(c["payload_press"].is_string(), "{key}");
            }
            // One of image_topic or url_topic; a binary image needs its
            // content type.
            Some("image") => {
                assert!(c["image_topic"].is_string(), "{key}");
                assert_eq!(c["content_type"], "image/jpeg", "{key}");
            }
            other => panic!("{key}: unexpected platform {other:?}"),
        }
        if let Some(category) = c.get("entity_category") {
            assert!(["diagnostic", "config"].contains(&category.as_str().unwrap()));
        }
    }
}

#[test]
fn home_assistant_discovery_has_the_required_fields_and_is_resent() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let daemon = Daemon::start(dir.path(), &broker.mqtt(""), &[]);
    let mut sub = Sub::start(broker.port, &["-t", "homeassistant/#", "-v"]);
    let line = sub.expect("discovery", SECS, |l| {
        l.starts_with("homeassistant/device/glimpse-glimpse_front/config ")
    });
    let config = json_of(&line);
    assert_eq!(config["device"]["identifiers"][0], "glimpse-glimpse_front");
    assert!(config["device"]["name"].is_string());
    assert_eq!(config["origin"]["name"], "glimpse");
    assert_eq!(config["availability"][0]["topic"], "glimpse/status");
    check_components(&config);
    let components = config["components"].as_object().unwrap();
    let c = |k: &str| components[&format!("glimpse-glimpse_front_{k}")].clone();
    let last = c("last_event");
    assert_eq!(last["platform"], "sensor");
    assert_eq!(last["state_topic"], "glimpse/front/event");
    assert_eq!(last["json_attributes_topic"], "glimpse/front/event");
    assert!(last["value_template"].as_str().unwrap().contains("[:255]"));
    assert_eq!(c("description")["state_topic"], "glimpse/front/event");
    assert_eq!(
        c("event")["event_types"],
        serde_json::json!(["description", "rule_on", "rule_off"])
    );
    assert_eq!(c("answer_event")["state_topic"], "glimpse/front/answer");
    assert_eq!(c("answer")["state_topic"], "glimpse/front/answer");
    assert_eq!(c("ask")["platform"], "text");
    assert_eq!(c("snapshot")["image_topic"], "glimpse/front/snapshot");
    assert_eq!(c("ask")["command_topic"], "glimpse/front/ask");
    assert_eq!(c("activity")["state_topic"], "glimpse/front/activity");
    for k in ["fps", "analysed_fps", "dropped", "outbox_pending"] {
        assert_eq!(c(k)["state_topic"], "glimpse/front/stats", "{k}");
        assert_eq!(c(k)["entity_category"], "diagnostic", "{k}");
    }
    assert!(
        !components.keys().any(|k| k.contains("_rule_")),
        "no rules yet: {config}"
    );
    // A rule added over MQTT gets its binary_sensor, reading its state
    // topic; removing it removes the component.
    let rule_key = "glimpse-glimpse_front_rule_a_person_is_at_the_door";
    publish(
        broker.port,
        &[
            "-t",
            "glimpse/front/rules/set",
            "-m",
            "a person is at the door",
        ],
    );
    let with_rule = json_of(&sub.expect("discovery with the rule", SECS, |l| {
        l.starts_with("homeassistant/device/glimpse-glimpse_front/config ") && l.contains(rule_key)
    }));
    check_components(&with_rule);
    let rule = &with_rule["components"][rule_key];
    assert_eq!(rule["platform"], "binary_sensor", "{rule}");
    assert_eq!(
        rule["state_topic"],
        "glimpse/front/rules/a_person_is_at_the_door/state"
    );
    assert_eq!(rule["name"], "a person is at the door");
    // Its remove button sends the rule's id to rules/set.
    let button_key = "glimpse-glimpse_front_remove_rule_a_person_is_at_the_door";
    let button = &with_rule["components"][button_key];
    assert_eq!(button["platform"], "button", "{with_rule}");
    assert_eq!(button["command_topic"], "glimpse/front/rules/set");
    let press = button["payload_press"].as_str().unwrap().to_owned();
    // The switch that pauses the analysis, and the text that adds rules.
    assert_eq!(c("analysis")["platform"], "switch");
    assert_eq!(c("analysis")["command_topic"], "glimpse/front/analysis/set");
    assert_eq!(c("add_rule")["command_topic"], "glimpse/front/rules/set");
    let mut states = Sub::start(broker.port, &["-t", "glimpse/front/rules/#", "-v"]);
    states.expect("the rule's state", SECS, |l| {
        l.starts_with("glimpse/front/rules/a_person_is_at_the_door/state {")
    });
    publish(
        broker.port,
        &["-t", "glimpse/front/rules/set", "-m", &press],
    );
    // The update names the removed rule's components with their platform
    // only (Home Assistant removes them), once.
    let removed = json_of(&sub.next("discovery without the rule", SECS, |l| {
        l.starts_with("homeassistant/device/glimpse-glimpse_front/config ")
            && !l.contains("a person is at the door")
    }));
    check_components(&removed);
    assert_eq!(
        removed["components"][rule_key],
        serde_json::json!({"platform": "binary_sensor"})
    );
    assert_eq!(
        removed["components"][button_key],
        serde_json::json!({"platform": "button"})
    );
    states.expect("the rule's state cleared", SECS, |l| {
        cleared(l, "glimpse/front/rules/a_person_is_at_the_door/state")
    });
    states.expect("the rules list without it", SECS, |l| {
        l == r#"glimpse/front/rules {"rules":[]}"#
    });
    // Home Assistant restarts: its birth message brings the config again
    // (a live message, not the retained copy: -R hides retained ones).
    let mut live = Sub::start(broker.port, &["-R", "-t", "homeassistant/device/#", "-v"]);
    std::thread::sleep(Duration::from_millis(300));
    publish(broker.port, &["-t", "homeassistant/status", "-m", "online"]);
    live.expect("discovery again", SECS, |l| {
        l.starts_with("homeassistant/device/glimpse-glimpse_front/config {")
    });
    daemon.stop();
}
