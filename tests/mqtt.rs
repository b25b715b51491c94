//! MQTT end to end: the real binary against real brokers (mosquitto,
//! started here on free loopback ports, and glimpse's embedded rumqttd),
//! read by clients that are not ours (mosquitto_sub, mosquitto_pub).
//!
//! Events come from the daemon's test-event hook (`GLIMPSE_DEBUG_EVENT_
//! EVERY_MS`) until the model stages produce real ones.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::{free_port, glimpse, kill, wait_exit, Daemon};

/// A mosquitto broker on a loopback port, stopped on drop.
pub(crate) struct Mosquitto {
    child: Option<Child>,
    conf: PathBuf,
    pub(crate) port: u16,
}

impl Mosquitto {
    /// Writes `dir/mosquitto.conf` (listener, anonymous, persistence in
    /// `dir`, plus `extra`) and starts the broker.
    pub(crate) fn start(dir: &Path, extra: &str) -> Mosquitto {
        let port = free_port();
        // mosquitto drops root privileges to its own user: let it write.
        let _ = Command::new("chmod").arg("777").arg(dir).status();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n{extra}\n",
                dir.display()
            ),
        )
        .unwrap();
        let mut broker = Mosquitto {
            child: None,
            conf,
            port,
        };
        broker.restart();
        broker
    }

    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.conf.with_extension("log"))
            .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto is installed (scripts/install-deps)");
        self.child = Some(child);
        wait_port(self.port, Duration::from_secs(10));
    }

    /// Stops the broker with SIGTERM (it saves its persistent sessions).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(child.id(), "TERM");
            wait_exit(&mut child, Duration::from_secs(10));
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn wait_port(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// mosquitto_sub, its output lines collected by a thread.
pub(crate) struct Sub {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub(crate) seen: Vec<String>,
}

impl Sub {
    /// `args` after the host and port, e.g. `["-t", "glimpse/#", "-v"]`.
    pub(crate) fn start(port: u16, args: &[&str]) -> Sub {
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub is installed (scripts/install-deps)");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            // Payloads need not be UTF-8 (the ask topic echoes them).
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches('\n')
                    .to_owned();
                buf.clear();
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Sub {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// [`Sub::start`] once something listens on `port` (a daemon's
    /// embedded broker coming up), within `within`; `context` (the
    /// daemon's log, say) goes into the failure message.
    pub(crate) fn start_when_up(
        port: u16,
        args: &[&str],
        within: Duration,
        context: impl Fn() -> String,
    ) -> Sub {
        let deadline = Instant::now() + within;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "no broker on {port} within {within:?}:\n{}",
                context()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sub::start(port, args)
    }

    /// Waits for a line for which `want` holds; returns it.
    pub(crate) fn expect(
        &mut self,
        what: &str,
        within: Duration,
        want: impl Fn(&str) -> bool,
    ) -> String {
        if let Some(line) = self.seen.iter().find(|l| want(l)) {
            return line.clone();
        }
        self.next(what, within, want)
    }

    /// Waits for a line, arriving after this call, for which `want`
    /// holds; returns it.
    pub(crate) fn next(
        &mut self,
        what: &str,
        within: Duration,
        want: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no new {what} within {within:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything received so far (and during `wait`).
    pub(crate) fn drain(&mut self, wait: Duration) -> &[String] {
        let deadline = Instant::now() + wait;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
        &self.seen
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn publish(port: u16, args: &[&str]) {
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .status()
        .expect("mosquitto_pub is installed");
    assert!(status.success(), "mosquitto_pub {args:?}");
}

/// Writes `dir/glimpse.toml`: one synthetic camera, `front`, and `mqtt`
/// in the `[mqtt]` table (with a quick reconnection unless it sets one).
fn write_config(dir: &Path, mqtt: &str) -> PathBuf {
    let config = dir.join("glimpse.toml");
    let backoff = if mqtt.contains("reconnect_") {
        ""
    } else {
        "reconnect_min_ms = 100\nreconnect_max_ms = 500\n"
    };
    std::fs::write(
        &config,
        format!(
            "[service]\nstate_dir = {:?}\nstats_interval_s = 1\n\n[mqtt]\n{backoff}{mqtt}\n\n[cameras.front]\nfps = 2\nwidth = 32\nheight = 32\nsource = {{ kind = \"synthetic\" }}\n",
            dir.join("state").display().to_string()
        ),
    )
    .unwrap();
    config
}

/// The daemon under test with the config of [`write_config`], killed on
/// drop; its log is in `dir/glimpse.log`.
impl Daemon {
    fn start(dir: &Path, mqtt: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(&write_config(dir, mqtt), env)
    }
}

pub(crate) fn json_of(line: &str) -> serde_json::Value {
    let payload = line.split_once(' ').map_or(line, |(_, p)| p);
    serde_json::from_str(payload).unwrap_or_else(|e| panic!("{e}: {line}"))
}

const SECS: Duration = Duration::from_secs(10);

/// Events, retained status/activity/rules, stats and an error answer over
/// one broker and protocol, read by mosquitto_sub.
fn round_trip(port: u16, protocol: &str, mut daemon: Daemon) {
    let version = if protocol == "v5" {
        "mqttv5"
    } else {
        "mqttv311"
    };
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
    publish(
        port,
        &[
            "-V",
            version,
            "-t",
            "glimpse/front/ask",
            "-m",
            r#"{"id":"q1","question":"what is there?"}"#,
        ],
    );
    let answer = json_of(&sub.expect("an answer", SECS, |l| {
        l.starts_with("glimpse/front/answer ")
    }));
    assert_eq!(answer["id"], "q1");
    assert_eq!(
        answer["error"],
        "no model is configured to answer questions"
    );
    publish(
        port,
        &[
            "-V",
            version,
            "-t",
            "glimpse/front/rules/set",
            "-m",
            r#"{"add":["a person is at the door"]}"#,
        ],
    );
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
    publish(
        port,
        &[
            "-V",
            version,
            "-t",
            "glimpse/front/rules/set",
            "-m",
            r#"{"remove":["a person is at the door"]}"#,
        ],
    );
    // mosquitto_sub shows an empty payload as "(null)".
    sub.expect("the rule's state cleared", SECS, |l| {
        let topic = "glimpse/front/rules/a_person_is_at_the_door/state";
        l.trim_end() == topic || l == format!("{topic} (null)")
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
    publish(
        port,
        &[
            "-V",
            version,
            "-t",
            "glimpse/front/rules/set",
            "-m",
            r#"{"delete":"a person is at the door"}"#,
        ],
    );
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
        let port = free_port();
        let daemon = Daemon::start(
            dir.path(),
            &format!("listen = \"127.0.0.1:{port}\"\nprotocol = \"{protocol}\""),
            &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "200")],
        );
        wait_port(port, SECS);
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
            &format!(
                "broker = \"mqtt://127.0.0.1:{}\"\nprotocol = \"{protocol}\"",
                broker.port
            ),
            &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "200")],
        );
        round_trip(broker.port, protocol, daemon);
    }
}

#[test]
fn mqtt5_response_topic_and_correlation_data_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let mut daemon = Daemon::start(
        dir.path(),
        &format!(
            "broker = \"mqtt://127.0.0.1:{}\"\nprotocol = \"v5\"",
            broker.port
        ),
        &[],
    );
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
fn malformed_questions_get_error_answers_and_the_daemon_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let mut daemon = Daemon::start(
        dir.path(),
        &format!(
            // Every question takes from the budget, bad ones too (issue
            // 43): the eight to "front" before m10 fit ("garden" has a
            // budget of its own), m10 is over it.
            "broker = \"mqtt://127.0.0.1:{}\"\nmax_question_bytes = 64\nquestions_per_minute = 8",
            broker.port
        ),
        &[],
    );
    let mut sub = Sub::start(broker.port, &["-q", "1", "-t", "glimpse/#", "-v"]);
    sub.expect("online", SECS, |l| l == "glimpse/status online");
    let bad_utf8 = dir.path().join("bad.bin");
    std::fs::write(&bad_utf8, b"what \xff\xfe is this?").unwrap();
    let oversized = format!("{{\"id\":\"big\",\"question\":\"{}\"}}", "x".repeat(100));
    let cases: Vec<(Vec<String>, &str, serde_json::Value, &str)> = vec![
        (
            vec!["-m".into(), r#"{"id":"m1","question":"#.into()],
            "front",
            serde_json::Value::Null,
            "malformed JSON",
        ),
        (
            vec!["-m".into(), oversized],
            "front",
            serde_json::Value::Null,
            "question too long: 126 bytes, the limit is 64",
        ),
        (
            vec!["-f".into(), bad_utf8.display().to_string()],
            "front",
            serde_json::Value::Null,
            "not valid UTF-8",
        ),
        (
            vec!["-m".into(), r#"{"id":"m4","question":"who?"}"#.into()],
            "garden",
            "m4".into(),
            "unknown camera \"garden\"",
        ),
        (
            vec!["-m".into(), r#"{"id":"m5"}"#.into()],
            "front",
            "m5".into(),
            "missing \"question\"",
        ),
        (
            vec!["-m".into(), r#"{"id":"m6","question":42}"#.into()],
            "front",
            "m6".into(),
            "must be a string",
        ),
        (
            vec!["-m".into(), r#"["not","an","object"]"#.into()],
            "front",
            serde_json::Value::Null,
            "expected a JSON object",
        ),
        (
            vec!["-m".into(), r#"{"id":"m8","question":"a?"}"#.into()],
            "front",
            "m8".into(),
            "no model is configured",
        ),
        (
            vec!["-m".into(), r#"{"id":"m9","question":"b?"}"#.into()],
            "front",
            "m9".into(),
            "no model is configured",
        ),
        (
            vec!["-m".into(), r#"{"id":"m10","question":"c?"}"#.into()],
            "front",
            "m10".into(),
            "too many questions for camera \"front\"",
        ),
    ];
    for (args, camera, id, error) in cases {
        sub.seen.clear();
        let topic = format!("glimpse/{camera}/ask");
        let mut all = vec!["-t", topic.as_str()];
        all.extend(args.iter().map(String::as_str));
        publish(broker.port, &all);
        let prefix = format!("glimpse/{camera}/answer ");
        let answer = json_of(&sub.expect(error, SECS, |l| l.starts_with(&prefix)));
        assert_eq!(answer["id"], id, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(error),
            "{answer}"
        );
        daemon.assert_running();
    }
    daemon.stop();
}

/// Event ids in mosquitto_sub lines of `glimpse/front/event`.
fn event_ids(lines: &[String]) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for line in lines
        .iter()
        .filter(|l| l.starts_with("glimpse/front/event "))
    {
        *ids.entry(json_of(line)["id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    ids
}

/// Every event in the daemon's history (`glimpse events --json`).
fn history_ids(dir: &Path) -> BTreeSet<String> {
    let out = glimpse()
        .args(["events", "--since", "1h", "--json", "--config"])
        .arg(dir.join("glimpse.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        // Dead letters that are not events (error answers) have no id.
        .filter(|event| event["kind"] != "dead_letter")
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the subscriber has seen every id in `want`.
fn expect_all(sub: &mut Sub, want: &BTreeSet<String>, within: Duration) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + within;
    loop {
        let seen = event_ids(sub.drain(Duration::from_millis(200)));
        let missing: Vec<_> = want.iter().filter(|id| !seen.contains_key(*id)).collect();
        if missing.is_empty() {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events never arrived, e.g. {:?}",
            missing.len(),
            want.len(),
            &missing[..missing.len().min(5)]
        );
    }
}

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
    let mut sub = Sub::start(
        broker.port,
        &[
            "-q",
            "1",
            "-c",
            "-i",
            "restart-test",
            "-t",
            "glimpse/front/event",
            "-v",
        ],
    );
    let daemon = Daemon::start(
        dir.path(),
        &format!(
            "broker = \"mqtt://127.0.0.1:{}\"\nmax_inflight = 8",
            broker.port
        ),
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
    let produced = history_ids(dir.path());
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
    let mut sub = Sub::start(
        broker.port,
        &[
            "-q",
            "1",
            "-c",
            "-i",
            "kill-test",
            "-t",
            "glimpse/front/event",
            "-v",
        ],
    );
    let mqtt = format!(
        "broker = \"mqtt://127.0.0.1:{}\"\nconnect_wait_ms = 500",
        broker.port
    );
    let mut daemon = Daemon::start(dir.path(), &mqtt, &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "50")]);
    sub.expect("a first event", SECS, |l| {
        l.starts_with("glimpse/front/event ")
    });
    broker.stop();
    std::thread::sleep(Duration::from_millis(1000));
    // SIGKILL: no drain, no goodbye; the outbox is all that is left.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let produced = history_ids(dir.path());
    broker.restart();
    // Started again without new events: only the outbox is published.
    let daemon = Daemon::start(dir.path(), &mqtt, &[]);
    expect_all(&mut sub, &produced, Duration::from_secs(20));
    let log = daemon.stop();
    assert!(log.contains("outbox holds messages from before"), "{log}");
}

#[test]
fn tls_with_a_ca_and_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=glimpse test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    // Extensions make v3 certificates (webpki refuses v1 ones).
    std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for name in ["server", "client"] {
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }
    let _ = Command::new("chmod")
        .args(["644", "server.key", "client.key"])
        .current_dir(d)
        .status();
    let path = |f: &str| d.join(f).display().to_string();
    let broker = Mosquitto::start(
        d,
        &format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true",
            path("ca.pem"),
            path("server.pem"),
            path("server.key")
        ),
    );
    let mut daemon = Daemon::start(
        d,
        &format!(
            "broker = \"mqtts://127.0.0.1:{}\"\nca_file = {:?}\nclient_cert_file = {:?}\nclient_key_file = {:?}",
            broker.port,
            path("ca.pem"),
            path("client.pem"),
            path("client.key")
        ),
        &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "200")],
    );
    let port = broker.port.to_string();
    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client.key"));
    let mut sub = Sub::start(
        broker.port,
        &[
            "--cafile",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "-t",
            "glimpse/#",
            "-v",
        ],
    );
    sub.expect("status online over TLS", SECS, |l| {
        l == "glimpse/status online"
    });
    sub.expect("an event over TLS", SECS, |l| {
        l.starts_with("glimpse/front/event ")
    });
    daemon.assert_running();
    assert!(
        daemon.log().contains(&format!(
            "connected to the MQTT broker broker=mqtts://127.0.0.1:{port}"
        )),
        "{}",
        daemon.log()
    );
    daemon.stop();
}

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
    let daemon = Daemon::start(
        dir.path(),
        &format!("broker = \"mqtt://127.0.0.1:{}\"", broker.port),
        &[],
    );
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
    let topic = "glimpse/front/rules/a_person_is_at_the_door/state";
    states.expect("the rule's state cleared", SECS, |l| {
        l.trim_end() == topic || l == format!("{topic} (null)")
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

#[test]
fn a_taken_embedded_broker_port_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
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

#[test]
fn events_command_prints_history_as_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let daemon = Daemon::start(
        dir.path(),
        &format!("listen = \"127.0.0.1:{port}\""),
        &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "100")],
    );
    wait_port(port, SECS);
    std::thread::sleep(Duration::from_millis(600));
    daemon.stop();
    let run = |args: &[&str]| {
        let out = glimpse()
            .arg("events")
            .args(args)
            .arg("--config")
            .arg(dir.path().join("glimpse.toml"))
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
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

#[test]
fn a_reload_that_changes_mqtt_settings_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let mut daemon = Daemon::start(
        dir.path(),
        &format!("broker = \"mqtt://127.0.0.1:{}\"", broker.port),
        &[],
    );
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

#[test]
fn a_question_is_answered_by_the_model_from_memory_and_canvas() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let model = crate::util::repo().join("models/test-tiny");
    let mqtt = format!(
        "listen = \"127.0.0.1:{port}\"\n\n[model]\npath = {:?}\nthreads = 1",
        model.display().to_string()
    );
    let mut daemon = Daemon::start(dir.path(), &mqtt, &[]);
    wait_port(port, SECS);
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
    let out = glimpse()
        .args(["ask", "--camera", "front", "--json", "--config"])
        .arg(dir.path().join("glimpse.toml"))
        .arg("how many shapes are there ?")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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

/// Rows in `table` of the daemon's outbox database.
fn outbox_rows(dir: &Path, table: &str) -> i64 {
    let db =
        rusqlite::Connection::open(dir.join("state").join(glimpse::mqtt::OUTBOX_FILE)).unwrap();
    db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
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
        &format!(
            "broker = \"mqtt://127.0.0.1:{}\"\nprotocol = \"v5\"",
            broker.port
        ),
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
    publish(
        broker.port,
        &[
            "-V",
            "mqttv5",
            "-t",
            "glimpse/front/ask",
            "-m",
            r#"{"id":"q1","question":"anyone?"}"#,
        ],
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
    let events = history_ids(dir.path()).len() as i64;
    let dead = outbox_rows(dir.path(), "dead_letters");
    assert!(dead >= 3, "{dead} dead letters");
    assert_eq!(outbox_rows(dir.path(), "outbox") + dead, events);
    assert_eq!(
        log.matches("moved to the dead letters").count() as i64,
        dead,
        "{log}"
    );
    let out = glimpse()
        .args(["events", "--since", "1h", "--json", "--config"])
        .arg(dir.path().join("glimpse.toml"))
        .output()
        .unwrap();
    let listed: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
    let text = glimpse()
        .args(["events", "--since", "1h", "--config"])
        .arg(dir.path().join("glimpse.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.lines().next().unwrap().ends_with(
            "  [not delivered: refused by the broker: PUBACK reason not authorized (0x87)]"
        ),
        "{text}"
    );
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
    let version = if glimpse_protocol == "v5" {
        "mqttv5"
    } else {
        "mqttv311"
    };
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
    publish(
        client_port,
        &[
            "-V",
            version,
            "-r",
            "-t",
            "glimpse/front/ask",
            "-f",
            &big.display().to_string(),
        ],
    );
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
    expect_all(&mut sub, &history_ids(dir), SECS);
}

#[test]
fn issue15_bad_questions_block_nothing_and_drop_no_connection_mosquitto() {
    for protocol in ["v5", "v311"] {
        let dir = tempfile::tempdir().unwrap();
        let broker = Mosquitto::start(dir.path(), "");
        let daemon = Daemon::start(
            dir.path(),
            &format!(
                "broker = \"mqtt://127.0.0.1:{}\"\nprotocol = \"{protocol}\"",
                broker.port
            ),
            &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "20")],
        );
        bad_questions_then_events(broker.port, protocol, daemon, dir.path());
    }
}

#[test]
fn issue15_bad_questions_block_nothing_and_drop_no_connection_embedded() {
    for protocol in ["v5", "v311"] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let daemon = Daemon::start(
            dir.path(),
            &format!("listen = \"127.0.0.1:{port}\"\nprotocol = \"{protocol}\""),
            &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "20")],
        );
        wait_port(port, SECS);
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
    publish(
        broker.port,
        &[
            "-r",
            "-t",
            "glimpse/front/ask",
            "-f",
            &big.display().to_string(),
        ],
    );
    let daemon = Daemon::start(
        dir.path(),
        &format!(
            "broker = \"mqtt://127.0.0.1:{}\"\nmax_packet_bytes = 65536\nreconnect_min_ms = 100\nreconnect_max_ms = 3000",
            broker.port
        ),
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

/// Issue 15: `glimpse ask` speaks the config's protocol: an embedded
/// broker set to MQTT 5 takes no 3.1.1 client.
#[test]
fn issue15_ask_speaks_the_configured_mqtt5() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let daemon = Daemon::start(
        dir.path(),
        &format!("listen = \"127.0.0.1:{port}\"\nprotocol = \"v5\""),
        &[],
    );
    wait_port(port, SECS);
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

/// Issue 15: an embedded broker off loopback takes anyone; `glimpse check`
/// says so (the daemon logs the same at start).
#[test]
fn issue15_check_warns_about_an_embedded_broker_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "listen = \"0.0.0.0:1883\"");
    let out = crate::util::check(&config);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "warning: mqtt.listen = \"0.0.0.0:1883\": the embedded broker has no authentication"
        ),
        "{stderr}"
    );
    let config = write_config(dir.path(), "listen = \"127.0.0.1:1883\"");
    let out = crate::util::check(&config);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}

/// Issue 15: an answer over the packet limit (here through a long MQTT 5
/// response topic: the question fits the embedded broker's limit, its
/// answer would not) goes to the dead letters instead of making the broker
/// drop the connection again after every reconnect.
#[test]
fn issue15_an_answer_over_the_packet_limit_is_dead_lettered_not_resent() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut daemon = Daemon::start(
        dir.path(),
        &format!("listen = \"127.0.0.1:{port}\"\nprotocol = \"v5\"\nmax_packet_bytes = 65536"),
        &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "100")],
    );
    wait_port(port, SECS);
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
    let out = glimpse()
        .args(["events", "--since", "1h", "--config"])
        .arg(dir.path().join("glimpse.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
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

/// The next stats of camera `front` that `sub` reads.
fn next_stats(sub: &mut Sub, what: &str) -> serde_json::Value {
    json_of(&sub.next(what, SECS, |l| l.starts_with("glimpse/front/stats ")))
}

#[test]
fn issue16_pausing_a_camera_stops_its_analysis_survives_a_restart_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let mqtt = format!("broker = \"mqtt://127.0.0.1:{}\"", broker.port);
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
