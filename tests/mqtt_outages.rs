//! Delivery through broker outages and refusals: events made while
//! mosquitto restarts, or while it is down and the daemon is killed, all
//! arrive (QoS 1, the outbox); a publish the broker refuses becomes a dead
//! letter, not a loss; `glimpse events` shows the history either way.
//!
//! Events come from the daemon's test-event hook
//! (`GLIMPSE_DEBUG_EVENT_EVERY_MS`).

use std::process::Command;
use std::time::Duration;

use crate::harness::broker::{expect_all, json_of, send, Mosquitto, Sub};
use crate::harness::daemon::Daemon;
use crate::harness::glimpse;
use crate::harness::history::{events, history, history_ids, outbox_rows};

const SECS: Duration = Duration::from_secs(10);

/// QoS 1 is "at least once": an event in flight when the broker goes away
/// is sent again after the reconnect, so it may arrive twice. Nothing else
/// is repeated: at most `max_inflight` (here 8) per outage from glimpse,
/// plus what mosquitto itself re-sends to its subscriber (its in-flight
/// window, 20).
#[test]
fn broker_restarted_five_times_while_events_flow_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), "");
    // A persistent session: the subscriber misses nothing while the broker
    // is down, so that every loss would be glimpse's.
    let mut sub = Sub::persistent(broker.port, "restart-test", "glimpse/front/event");
    let daemon = Daemon::start(
        dir.path(),
        &broker.mqtt("max_inflight = 8"),
        &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "25")],
    );
    sub.expect("a first event", SECS, |l| {
        l.starts_with("glimpse/front/event ")
    });
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(400));
        broker.stop();
        std::thread::sleep(Duration::from_millis(400));
        broker.restart();
    }
    std::thread::sleep(Duration::from_millis(400));
    let log = daemon.stop();
    assert!(log.contains("MQTT broker unreachable"), "{log}");
    let produced = history_ids(&dir.path().join("glimpse.toml"));
    assert!(produced.len() > 100, "{} events", produced.len());
    let seen = expect_all(&mut sub, &produced, Duration::from_secs(20));
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "{} events through 5 broker restarts, all delivered, {duplicates} duplicates",
        produced.len()
    );
    assert!(duplicates <= 5 * (8 + 20), "{duplicates} duplicates");
    assert!(
        seen.keys().all(|id| produced.contains(id)),
        "nothing invented"
    );
}

#[test]
fn daemon_killed_while_the_broker_is_down_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), "");
    let mut sub = Sub::persistent(broker.port, "kill-test", "glimpse/front/event");
    let mqtt = broker.mqtt("connect_wait_ms = 500");
    let mut daemon = Daemon::start(dir.path(), &mqtt, &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "50")]);
    sub.expect("a first event", SECS, |l| {
        l.starts_with("glimpse/front/event ")
    });
    broker.stop();
    std::thread::sleep(Duration::from_millis(1000));
    // SIGKILL: no drain, no goodbye; the outbox is all that is left.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let produced = history_ids(&dir.path().join("glimpse.toml"));
    broker.restart();
    // Started again without new events: only the outbox is published.
    let daemon = Daemon::start(dir.path(), &mqtt, &[]);
    expect_all(&mut sub, &produced, Duration::from_secs(20));
    let log = daemon.stop();
    assert!(log.contains("outbox holds messages from before"), "{log}");
}

/// Issue 15: an MQTT 5 broker that refuses a publish (PUBACK 0x87, an ACL)
/// must not have it deleted as delivered: it goes to the dead letters,
/// visible in `glimpse events` and counted in the stats, and what is
/// behind it flows on.
#[test]
fn issue15_a_publish_the_broker_refuses_is_dead_lettered_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    // Anonymous clients (the rules before any `user` line) may use every
    // glimpse topic but the events.
    std::fs::write(
        &acl,
        [
            "status",
            "+/ask",
            "+/answer",
            "+/activity",
            "+/stats",
            "+/rules",
            "+/rules/set",
            "+/rules/error",
        ]
        .map(|t| format!("topic readwrite glimpse/{t}\n"))
        .concat()
            + "topic readwrite homeassistant/#\n",
    )
    .unwrap();
    let _ = Command::new("chmod").arg("644").arg(&acl).status();
    let broker = Mosquitto::start(dir.path(), &format!("acl_file {}", acl.display()));
    let mut daemon = Daemon::start(
        dir.path(),
        &broker.mqtt("protocol = \"v5\""),
        &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "100")],
    );
    let mut sub = Sub::start(
        broker.port,
        &[
            "-V",
            "mqttv5",
            "-t",
            "glimpse/front/answer",
            "-t",
            "glimpse/front/stats",
            "-v",
        ],
    );
    sub.expect("dead letters in the stats", SECS, |l| {
        l.starts_with("glimpse/front/stats ")
            && json_of(l)["outbox_dead_letters"]
                .as_u64()
                .is_some_and(|n| n >= 3)
    });
    // The refused events block nothing: an answer behind them arrives.
    send(
        broker.port,
        "mqttv5",
        "glimpse/front/ask",
        r#"{"id":"q1","question":"anyone?"}"#,
    );
    let answer = json_of(&sub.expect("an answer", SECS, |l| {
        l.starts_with("glimpse/front/answer ")
    }));
    assert_eq!(answer["id"], "q1");
    daemon.assert_running();
    let log = daemon.stop();
    assert!(
        log.contains("message not deliverable, moved to the dead letters")
            && log.contains("refused by the broker: PUBACK reason not authorized (0x87)"),
        "{log}"
    );
    // Nothing deleted silently: every event is still in the outbox or a
    // dead letter, and each dead letter is logged once.
    let config = dir.path().join("glimpse.toml");
    let state = dir.path().join("state");
    let stored = history_ids(&config).len() as i64;
    let dead = outbox_rows(&state, "dead_letters");
    assert!(dead >= 3, "{dead} dead letters");
    assert_eq!(outbox_rows(&state, "outbox") + dead, stored);
    assert_eq!(
        log.matches("moved to the dead letters").count() as i64,
        dead,
        "{log}"
    );
    let listed = history(&config);
    let marked: Vec<_> = listed
        .iter()
        .filter(|e| e["dead_letter"].is_object())
        .collect();
    assert_eq!(marked.len() as i64, dead);
    assert_eq!(marked[0]["kind"], "description");
    assert_eq!(marked[0]["dead_letter"]["topic"], "glimpse/front/event");
    assert_eq!(
        marked[0]["dead_letter"]["reason"],
        "refused by the broker: PUBACK reason not authorized (0x87)"
    );
    let text = events(&config, &["--since", "1h"]);
    assert!(
        text.lines().next().unwrap().ends_with(
            "  [not delivered: refused by the broker: PUBACK reason not authorized (0x87)]"
        ),
        "{text}"
    );
}

#[test]
fn events_command_prints_history_as_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, _) =
        Daemon::start_embedded(dir.path(), "", &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "100")]);
    std::thread::sleep(Duration::from_millis(600));
    daemon.stop();
    let run = |args: &[&str]| events(&dir.path().join("glimpse.toml"), args);
    let text = run(&["--since", "10m"]);
    let first = text.lines().next().unwrap();
    assert!(
        first.contains("  front  description  test event 0"),
        "{text}"
    );
    assert!(run(&["--since", "10m", "--camera", "back"]).is_empty());
    let json = run(&["--since", "1h", "--json", "--camera", "front"]);
    assert_eq!(json.lines().count(), text.lines().count());
    let err = glimpse()
        .args(["events", "--since", "1 week"])
        .output()
        .unwrap();
    assert!(!err.status.success());
}
