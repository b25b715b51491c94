//! Questions over MQTT: answered by the model (and by `glimpse ask`
//! through the same broker), malformed, oversized or flooding ones answered
//! with an error while events keep flowing on the same connection, and
//! answers or retained messages over the packet limit that must not make
//! the connection flap.
//!
//! Events come from the daemon's test-event hook
//! (`GLIMPSE_DEBUG_EVENT_EVERY_MS`).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::broker::{
    client_version, event_ids, expect_all, json_of, publish, retained_question, Mosquitto, Sub,
};
use crate::harness::daemon::Daemon;
use crate::harness::history::{events, history_ids};
use crate::harness::{glimpse, output_ok, repo};

const SECS: Duration = Duration::from_secs(10);

#[test]
fn malformed_questions_get_error_answers_and_the_daemon_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    // Every question takes from the budget, bad ones too (issue 43): the
    // eight to "front" before m10 fit ("garden" has a budget of its own),
    // m10 is over it.
    let budget = "max_question_bytes = 64\nquestions_per_minute = 8";
    let mut daemon = Daemon::start(dir.path(), &broker.mqtt(budget), &[]);
    let mut sub = Sub::start(broker.port, &["-q", "1", "-t", "glimpse/#", "-v"]);
    sub.expect("online", SECS, |l| l == "glimpse/status online");
    let bad_utf8 = dir.path().join("bad.bin");
    std::fs::write(&bad_utf8, b"what \xff\xfe is this?").unwrap();
    let oversized = format!("{{\"id\":\"big\",\"question\":\"{}\"}}", "x".repeat(100));
    // How the payload is given (`-m` or a file, `-f`), the payload, the
    // camera asked, the id its answer must carry, what its error must say.
    #[rustfmt::skip]
    let cases: Vec<(&str, String, &str, Option<&str>, &str)> = vec![
        ("-m", r#"{"id":"m1","question":"#.into(), "front", None, "malformed JSON"),
        ("-m", oversized, "front", None, "question too long: 126 bytes, the limit is 64"),
        ("-f", bad_utf8.display().to_string(), "front", None, "not valid UTF-8"),
        ("-m", r#"{"id":"m4","question":"who?"}"#.into(), "garden", Some("m4"), "unknown camera \"garden\""),
        ("-m", r#"{"id":"m5"}"#.into(), "front", Some("m5"), "missing \"question\""),
        ("-m", r#"{"id":"m6","question":42}"#.into(), "front", Some("m6"), "must be a string"),
        ("-m", r#"["not","an","object"]"#.into(), "front", None, "expected a JSON object"),
        ("-m", r#"{"id":"m8","question":"a?"}"#.into(), "front", Some("m8"), "no model is configured"),
        ("-m", r#"{"id":"m9","question":"b?"}"#.into(), "front", Some("m9"), "no model is configured"),
        ("-m", r#"{"id":"m10","question":"c?"}"#.into(), "front", Some("m10"), "too many questions for camera \"front\""),
    ];
    for (how, payload, camera, id, error) in cases {
        sub.seen.clear();
        let topic = format!("glimpse/{camera}/ask");
        publish(broker.port, &["-t", &topic, how, &payload]);
        let prefix = format!("glimpse/{camera}/answer ");
        let answer = json_of(&sub.expect(error, SECS, |l| l.starts_with(&prefix)));
        let id = id.map_or(serde_json::Value::Null, Into::into);
        assert_eq!(answer["id"], id, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(error),
            "{answer}"
        );
        daemon.assert_running();
    }
    daemon.stop();
}

#[test]
fn a_question_is_answered_by_the_model_from_memory_and_canvas() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo().join("models/test-tiny");
    let model = format!(
        "\n[model]\npath = {:?}\nthreads = 1",
        model.display().to_string()
    );
    let (mut daemon, port) = Daemon::start_embedded(dir.path(), &model, &[]);
    let mut sub = Sub::start(port, &["-q", "1", "-t", "glimpse/front/answer", "-v"]);
    // Wait until frames are in memory (the stats say so), however busy
    // the machine is.
    let mut stats = Sub::start(port, &["-t", "glimpse/front/stats"]);
    stats.expect("frames in memory", Duration::from_secs(30), |l| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
            v["memory"]
                .as_array()
                .is_some_and(|m| m.iter().filter_map(|n| n.as_u64()).sum::<u64>() >= 2)
        })
    });
    publish(
        port,
        &[
            "-t",
            "glimpse/front/ask",
            "-m",
            r#"{"id":"q7","question":"what colour is the square ?"}"#,
        ],
    );
    let answer = json_of(&sub.expect("an answer", Duration::from_secs(30), |l| {
        l.starts_with("glimpse/front/answer ")
    }));
    assert_eq!(answer["kind"], "answer", "{answer}");
    assert_eq!(answer["reference"], "q7", "the question's id");
    assert!(answer["text"].is_string());
    let kept = answer["evidence"]["kept_tokens"].as_array().unwrap();
    assert!(kept.len() >= 2, "memory and canvas: {answer}");
    assert_eq!(
        kept.last().unwrap(),
        64,
        "the canvas is the whole grid: {answer}"
    );
    assert!(answer["latency_ms"].as_u64().unwrap() < 30_000);

    // The same from the command line, through the same broker.
    let out = output_ok(
        glimpse()
            .args(["ask", "--camera", "front", "--json", "--config"])
            .arg(dir.path().join("glimpse.toml"))
            .arg("how many shapes are there ?"),
    );
    let cli = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
    assert_eq!(cli["kind"], "answer", "{cli}");
    let out = glimpse()
        .args(["ask", "--camera", "back", "--config"])
        .arg(dir.path().join("glimpse.toml"))
        .arg("anything ?")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(65),
        "unknown camera: an error answer"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: glimpse could not answer: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    daemon.assert_running();
    daemon.stop();
}

/// Issue 15: `glimpse ask` speaks the config's protocol: an embedded
/// broker set to MQTT 5 takes no 3.1.1 client.
#[test]
fn issue15_ask_speaks_the_configured_mqtt5() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, port) = Daemon::start_embedded(dir.path(), "protocol = \"v5\"", &[]);
    let mut sub = Sub::start(port, &["-V", "mqttv5", "-t", "glimpse/#", "-v"]);
    sub.expect("status online", SECS, |l| l == "glimpse/status online");
    let out = glimpse()
        .args(["ask", "--camera", "front", "--timeout-s", "10", "--config"])
        .arg(dir.path().join("glimpse.toml"))
        .arg("anything ?")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: glimpse could not answer: no model is configured to answer questions"
    );
    daemon.stop();
}

/// Issue 15: a question with a wildcard response topic, then a retained
/// question of 1.1 MB, then 100 events. Each bad question gets an error
/// answer, every event arrives, and the connection never drops (no
/// `offline` status, one connection in the log).
fn bad_questions_then_events(
    client_port: u16,
    glimpse_protocol: &str,
    mut daemon: Daemon,
    dir: &Path,
) {
    let version = client_version(glimpse_protocol);
    let mut sub = Sub::start(
        client_port,
        &[
            "-V",
            version,
            "-q",
            "1",
            "-t",
            "glimpse/status",
            "-t",
            "glimpse/front/event",
            "-t",
            "glimpse/front/answer",
            "-v",
        ],
    );
    sub.expect("online", SECS, |l| l == "glimpse/status online");
    if glimpse_protocol == "v5" {
        publish(
            client_port,
            &[
                "-V",
                "mqttv5",
                "-t",
                "glimpse/front/ask",
                "-m",
                r#"{"id":"w1","question":"how many?"}"#,
                "-D",
                "publish",
                "response-topic",
                "me/+/x",
            ],
        );
        let answer = json_of(&sub.expect("the wildcard's error answer", SECS, |l| {
            l.starts_with("glimpse/front/answer ") && l.contains("\"w1\"")
        }));
        assert_eq!(
            answer["error"],
            "response topic \"me/+/x\" refused: must not contain '+' or '#' (MQTT wildcards)"
        );
    }
    let big = dir.join("big.json");
    std::fs::write(
        &big,
        format!(
            "{{\"id\":\"big\",\"question\":\"{}\"}}",
            "x".repeat(1_100_000)
        ),
    )
    .unwrap();
    retained_question(client_port, version, &big);
    let answer = json_of(&sub.expect("the big question's error answer", SECS, |l| {
        l.starts_with("glimpse/front/answer ") && l.contains("question too long")
    }));
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("question too long: 1100026 bytes"),
        "{answer}"
    );
    let before = event_ids(&sub.seen).len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while event_ids(sub.drain(Duration::from_millis(100))).len() < before + 100 {
        assert!(
            Instant::now() < deadline,
            "fewer than 100 events after the bad questions"
        );
    }
    daemon.assert_running();
    assert!(
        !sub.seen.iter().any(|l| l == "glimpse/status offline"),
        "the connection dropped:\n{}",
        daemon.log()
    );
    let log = daemon.stop();
    assert_eq!(
        log.matches("connected to the MQTT broker").count(),
        1,
        "{log}"
    );
    expect_all(&mut sub, &history_ids(&dir.join("glimpse.toml")), SECS);
}

#[test]
fn issue15_bad_questions_block_nothing_and_drop_no_connection_mosquitto() {
    for protocol in ["v5", "v311"] {
        let dir = tempfile::tempdir().unwrap();
        let broker = Mosquitto::start(dir.path(), "");
        let daemon = Daemon::start(
            dir.path(),
            &broker.mqtt(&format!("protocol = \"{protocol}\"")),
            &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "20")],
        );
        bad_questions_then_events(broker.port, protocol, daemon, dir.path());
    }
}

#[test]
fn issue15_bad_questions_block_nothing_and_drop_no_connection_embedded() {
    for protocol in ["v5", "v311"] {
        let dir = tempfile::tempdir().unwrap();
        let (daemon, port) = Daemon::start_embedded(
            dir.path(),
            &format!("protocol = \"{protocol}\""),
            &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "20")],
        );
        bad_questions_then_events(port, protocol, daemon, dir.path());
    }
}

/// Issue 15: a retained message over `mqtt.max_packet_bytes` (MQTT 3.1.1,
/// where the broker cannot be told the limit) makes rumqttc drop the
/// connection that subscribes at every subscribe; glimpse waits the longest
/// backoff instead of reconnecting at once, and says why once. Since issue
/// 43 that is the inbound connection (`<client id>-in`, read from
/// mosquitto's own log); the publishing one stays up.
#[test]
fn issue15_an_oversized_retained_message_backs_off_instead_of_flapping() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let big = dir.path().join("big.txt");
    std::fs::write(&big, "x".repeat(100_000)).unwrap();
    retained_question(broker.port, "mqttv311", &big);
    let daemon = Daemon::start(
        dir.path(),
        &broker.mqtt("max_packet_bytes = 65536\nreconnect_min_ms = 100\nreconnect_max_ms = 3000"),
        &[],
    );
    // mosquitto logs each connection with its Unix time: "T: New client
    // connected from … as <id> (…)".
    let broker_log = dir.path().join("mosquitto.log");
    let inbound_connections = || -> Vec<u64> {
        std::fs::read_to_string(&broker_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("New client connected") && l.contains("-in "))
            .filter_map(|l| l.split(':').next()?.trim().parse().ok())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while inbound_connections().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "no third inbound connection:\n{}\n{}",
            daemon.log(),
            std::fs::read_to_string(&broker_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = daemon.stop();
    let times = inbound_connections();
    for pair in times.windows(2) {
        // reconnect_max_ms (3 s; whole seconds in mosquitto's log); without
        // the backoff, 100 to 200 ms.
        assert!(
            pair[1] - pair[0] >= 2,
            "reconnected after {} s: {times:?}",
            pair[1] - pair[0]
        );
    }
    assert_eq!(
        log.matches("over mqtt.max_packet_bytes (65536 bytes)")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("connected to the MQTT broker").count(),
        1,
        "the publishing connection stays up:\n{log}"
    );
}

/// Issue 15: an answer over the packet limit (here through a long MQTT 5
/// response topic: the question fits the embedded broker's limit, its
/// answer would not) goes to the dead letters instead of making the broker
/// drop the connection again after every reconnect.
#[test]
fn issue15_an_answer_over_the_packet_limit_is_dead_lettered_not_resent() {
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, port) = Daemon::start_embedded(
        dir.path(),
        "protocol = \"v5\"\nmax_packet_bytes = 65536",
        &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "100")],
    );
    let mut sub = Sub::start(port, &["-V", "mqttv5", "-t", "glimpse/front/event", "-v"]);
    sub.expect("an event", SECS, |l| l.starts_with("glimpse/front/event "));
    // The embedded broker takes packets up to 65536 - 1024 bytes.
    let long_topic = format!("r/{}", "a".repeat(64_418));
    publish(
        port,
        &[
            "-V",
            "mqttv5",
            "-t",
            "glimpse/front/ask",
            "-m",
            "how many?",
            "-D",
            "publish",
            "response-topic",
            &long_topic,
        ],
    );
    let deadline = Instant::now() + SECS;
    while !daemon.log().contains("moved to the dead letters") {
        assert!(
            Instant::now() < deadline,
            "no dead letter:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Events still flow, on the same connection.
    sub.seen.clear();
    sub.expect("an event after it", SECS, |l| {
        l.starts_with("glimpse/front/event ")
    });
    daemon.assert_running();
    let log = daemon.stop();
    assert_eq!(
        log.matches("connected to the MQTT broker").count(),
        1,
        "{log}"
    );
    let text = events(&dir.path().join("glimpse.toml"), &["--since", "1h"]);
    let line = text
        .lines()
        .find(|l| l.contains("  front  not delivered  r/aaa"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(": message of ")
            && line.contains("bytes is over the largest packet, 64512 bytes"),
        "{line}"
    );
    assert!(
        line.contains("no model is configured"),
        "the payload: {line}"
    );
}
