//! MQTT round trips: the real binary against real brokers (mosquitto,
//! started here on free loopback ports, and glimpse's embedded rumqttd),
//! over MQTT 3.1.1 and 5, read by clients that are not ours (mosquitto_sub,
//! mosquitto_pub): events, retained status, activity and rules, stats, the
//! analysis switch; and the broker settings (a taken port, an open
//! listener, a reload that changes them).
//!
//! Events come from the daemon's test-event hook
//! (`GLIMPSE_DEBUG_EVENT_EVERY_MS`).

use std::time::{Duration, Instant};

use crate::harness::broker::{cleared, client_version, json_of, publish, send, Mosquitto, Sub};
use crate::harness::daemon::{mqtt_config, Daemon};
use crate::harness::{check, kill, taken_port, wait_exit};

const SECS: Duration = Duration::from_secs(10);

/// Events, retained status/activity/rules, stats and an error answer over
/// one broker and protocol, read by mosquitto_sub.
fn round_trip(port: u16, protocol: &str, mut daemon: Daemon) {
    let version = client_version(protocol);
    let change_rules = |change: &str| send(port, version, "glimpse/front/rules/set", change);
    let mut sub = Sub::start(port, &["-V", version, "-q", "1", "-t", "glimpse/#", "-v"]);
    sub.expect("status online", SECS, |l| l == "glimpse/status online");
    sub.expect("retained activity", SECS, |l| {
        l == "glimpse/front/activity idle"
    });
    sub.expect("retained rules", SECS, |l| {
        l == r#"glimpse/front/rules {"rules":[]}"#
    });
    let event = json_of(&sub.expect("an event", SECS, |l| l.starts_with("glimpse/front/event ")));
    assert_eq!(event["camera"], "front");
    assert_eq!(event["kind"], "description");
    assert!(event["text"].as_str().unwrap().starts_with("test event "));
    assert_eq!(event["id"].as_str().unwrap().len(), 26, "a ULID");
    let stats = json_of(&sub.expect("stats", SECS, |l| l.starts_with("glimpse/front/stats ")));
    assert_eq!(stats["state"], "up");
    assert!(stats["fps"].is_number() && stats["dropped"].is_number());
    send(
        port,
        version,
        "glimpse/front/ask",
        r#"{"id":"q1","question":"what is there?"}"#,
    );
    let answer = json_of(&sub.expect("an answer", SECS, |l| {
        l.starts_with("glimpse/front/answer ")
    }));
    assert_eq!(answer["id"], "q1");
    assert_eq!(
        answer["error"],
        "no model is configured to answer questions"
    );
    change_rules(r#"{"add":["a person is at the door"]}"#);
    // The list names each rule with its id, source and state; each rule
    // has a retained state topic of its own.
    let rules = json_of(&sub.expect("changed rules", SECS, |l| {
        l.starts_with(r#"glimpse/front/rules {"rules":[{"#)
    }));
    let rule = &rules["rules"][0];
    assert_eq!(rule["id"], "a_person_is_at_the_door", "{rules}");
    assert_eq!(rule["rule"], "a person is at the door", "{rules}");
    assert_eq!(rule["source"], "mqtt", "{rules}");
    assert_eq!(rule["state"], "unknown", "no model: never asked; {rules}");
    let state = json_of(&sub.expect("the rule's state", SECS, |l| {
        l.starts_with("glimpse/front/rules/a_person_is_at_the_door/state ")
    }));
    assert_eq!(state["state"], "unknown", "{state}");
    assert!(state["since_ms"].as_u64().unwrap() > 0, "{state}");
    // Removed: its state topic is cleared (empty retained payload).
    change_rules(r#"{"remove":["a person is at the door"]}"#);
    // mosquitto_sub shows an empty payload as "(null)".
    sub.expect("the rule's state cleared", SECS, |l| {
        cleared(l, "glimpse/front/rules/a_person_is_at_the_door/state")
    });
    // The list without it came just before (the first empty list was the
    // retained one at start).
    let empty = r#"glimpse/front/rules {"rules":[]}"#;
    assert_eq!(
        sub.seen.iter().filter(|l| *l == empty).count(),
        2,
        "{:?}",
        sub.seen
    );
    // A refused change is answered, not only logged.
    change_rules(r#"{"delete":"a person is at the door"}"#);
    let error = json_of(&sub.expect("a rules error", SECS, |l| {
        l.starts_with("glimpse/front/rules/error ")
    }));
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed rules change: unknown field `delete`"),
        "{error}"
    );
    assert_eq!(error["camera"], "front");
    daemon.assert_running();
    daemon.stop();
    sub.expect("status offline", SECS, |l| l == "glimpse/status offline");
}

#[test]
fn round_trip_embedded_broker_v311_and_v5() {
    for protocol in ["v311", "v5"] {
        let dir = tempfile::tempdir().unwrap();
        let (daemon, port) = Daemon::start_embedded(
            dir.path(),
            &format!("protocol = \"{protocol}\""),
            &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "200")],
        );
        round_trip(port, protocol, daemon);
    }
}

#[test]
fn round_trip_mosquitto_v311_and_v5() {
    for protocol in ["v311", "v5"] {
        let dir = tempfile::tempdir().unwrap();
        let broker = Mosquitto::start(dir.path(), "");
        let daemon = Daemon::start(
            dir.path(),
            &broker.mqtt(&format!("protocol = \"{protocol}\"")),
            &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "200")],
        );
        round_trip(broker.port, protocol, daemon);
    }
}

#[test]
fn mqtt5_response_topic_and_correlation_data_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let mut daemon = Daemon::start(dir.path(), &broker.mqtt("protocol = \"v5\""), &[]);
    let mut status = Sub::start(broker.port, &["-V", "mqttv5", "-t", "glimpse/status", "-v"]);
    status.expect("online", SECS, |l| l == "glimpse/status online");
    let mut replies = Sub::start(
        broker.port,
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            "replies/me",
            "-F",
            "%t|%D|%p",
        ],
    );
    std::thread::sleep(Duration::from_millis(200));
    publish(
        broker.port,
        &[
            "-V",
            "mqttv5",
            "-t",
            "glimpse/front/ask",
            "-m",
            "how many shapes?",
            "-D",
            "publish",
            "response-topic",
            "replies/me",
            "-D",
            "publish",
            "correlation-data",
            "corr-42",
        ],
    );
    let line = replies.expect("the answer on the response topic", SECS, |l| {
        l.starts_with("replies/me|")
    });
    let mut parts = line.splitn(3, '|');
    assert_eq!(parts.nth(1), Some("corr-42"), "{line}");
    let answer: serde_json::Value = serde_json::from_str(parts.next().unwrap()).unwrap();
    assert!(
        answer["id"].as_str().is_some_and(|id| id.len() == 26),
        "a fresh id: {answer}"
    );
    assert!(answer["error"].is_string());
    daemon.assert_running();
    daemon.stop();
}

#[test]
fn a_taken_embedded_broker_port_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_taken, port) = taken_port();
    let mut daemon = Daemon::start(dir.path(), &format!("listen = \"127.0.0.1:{port}\""), &[]);
    let status = wait_exit(&mut daemon.child, SECS);
    assert_eq!(status.code(), Some(70));
    let log = daemon.log();
    assert!(
        log.contains(&format!(
            "error: cannot start MQTT: mqtt.listen 127.0.0.1:{port}: the address is already in use"
        )),
        "{log}"
    );
    assert!(log.contains("mqtt.broker = \"mqtt://HOST:PORT\""), "{log}");
}

/// Issue 15: an embedded broker off loopback takes anyone; `glimpse check`
/// says so (the daemon logs the same at start).
#[test]
fn issue15_check_warns_about_an_embedded_broker_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let config = mqtt_config(dir.path(), "listen = \"0.0.0.0:1883\"");
    let out = check(&config);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "warning: mqtt.listen = \"0.0.0.0:1883\": the embedded broker has no authentication"
        ),
        "{stderr}"
    );
    let config = mqtt_config(dir.path(), "listen = \"127.0.0.1:1883\"");
    let out = check(&config);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}

#[test]
fn a_reload_that_changes_mqtt_settings_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let mut daemon = Daemon::start(dir.path(), &broker.mqtt(""), &[]);
    let mut sub = Sub::start(broker.port, &["-t", "+/status", "-v"]);
    sub.expect("online", SECS, |l| l == "glimpse/status online");
    let config = dir.path().join("glimpse.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[mqtt]\n", "[mqtt]\nprefix = \"site2\"\n"),
    )
    .unwrap();
    kill(daemon.child.id(), "HUP");
    sub.expect("the old prefix offline", SECS, |l| {
        l == "glimpse/status offline"
    });
    sub.expect("the new prefix online", SECS, |l| {
        l == "site2/status online"
    });
    daemon.assert_running();
    daemon.stop();
}

/// The next stats of camera `front` that `sub` reads.
fn next_stats(sub: &mut Sub, what: &str) -> serde_json::Value {
    json_of(&sub.next(what, SECS, |l| l.starts_with("glimpse/front/stats ")))
}

#[test]
fn issue16_pausing_a_camera_stops_its_analysis_survives_a_restart_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let mqtt = broker.mqtt("");
    let daemon = Daemon::start(dir.path(), &mqtt, &[]);
    let mut sub = Sub::start(broker.port, &["-t", "glimpse/front/#", "-v"]);
    sub.expect("analysing", SECS, |l| l == "glimpse/front/analysis on");
    next_stats(&mut sub, "stats");
    // Home Assistant's switch sends OFF.
    publish(
        broker.port,
        &["-t", "glimpse/front/analysis/set", "-m", "OFF"],
    );
    sub.expect("paused", SECS, |l| l == "glimpse/front/analysis off");
    sub.expect("activity paused", SECS, |l| {
        l == "glimpse/front/activity paused"
    });
    // Frames keep coming and are let go: none reaches the model.
    let first = next_stats(&mut sub, "stats while paused");
    let second = next_stats(&mut sub, "stats while paused");
    let third = next_stats(&mut sub, "stats while paused");
    assert_eq!(third["paused"], true, "{third}");
    assert_eq!(second["received"], third["received"], "{second} {third}");
    assert!(
        third["skipped_paused"].as_u64() > first["skipped_paused"].as_u64(),
        "{first} {third}"
    );
    // A bad payload gets an error, not a change.
    publish(
        broker.port,
        &["-t", "glimpse/front/analysis/set", "-m", "maybe"],
    );
    let error = json_of(&sub.expect("an error", SECS, |l| {
        l.starts_with("glimpse/front/analysis/error ")
    }));
    assert!(
        error["error"].as_str().unwrap().contains("on or off"),
        "{error}"
    );
    daemon.stop();

    // Persisted: the camera is still paused after a restart.
    let daemon = Daemon::start(dir.path(), &mqtt, &[]);
    let mut sub = Sub::start(broker.port, &["-R", "-t", "glimpse/front/#", "-v"]);
    sub.expect("still paused", SECS, |l| l == "glimpse/front/analysis off");
    let stats = next_stats(&mut sub, "stats after the restart");
    assert_eq!(
        (stats["paused"].clone(), stats["received"].clone()),
        (true.into(), 0.into()),
        "{stats}"
    );
    publish(
        broker.port,
        &["-t", "glimpse/front/analysis/set", "-m", "on"],
    );
    sub.expect("resumed", SECS, |l| l == "glimpse/front/analysis on");
    let deadline = Instant::now() + SECS;
    loop {
        let stats = next_stats(&mut sub, "stats after resuming");
        if stats["paused"] == false && stats["received"].as_u64() > Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "frames are not analysed again: {stats}"
        );
    }
    daemon.stop();
}
