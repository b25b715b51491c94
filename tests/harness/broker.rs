//! MQTT from outside the daemon: a real mosquitto on a free loopback port,
//! and mosquitto's own clients (mosquitto_sub, mosquitto_pub), so that what
//! the tests read is what any client would read; and the parsing of what
//! they read.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{free_port, kill, wait_exit, wait_port, wait_port_or};

/// A mosquitto broker on a loopback port, stopped on drop.
pub struct Mosquitto {
    child: Option<Child>,
    conf: PathBuf,
    pub port: u16,
}

impl Mosquitto {
    /// Writes `dir/mosquitto.conf` (listener, anonymous, persistence in
    /// `dir`, plus `extra`) and starts the broker; its log goes to
    /// `dir/mosquitto.log`.
    pub fn start(dir: &Path, extra: &str) -> Mosquitto {
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

    /// The `[mqtt]` lines that point the daemon at this broker, then
    /// `extra`.
    pub fn mqtt(&self, extra: &str) -> String {
        format!("broker = \"mqtt://127.0.0.1:{}\"\n{extra}", self.port)
    }

    /// Starts the stopped broker again, on the same port and with the
    /// sessions it saved.
    pub fn restart(&mut self) {
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
    pub fn stop(&mut self) {
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

/// mosquitto_sub, its output lines collected by a thread.
pub struct Sub {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far, in order.
    pub seen: Vec<String>,
}

impl Sub {
    /// `args` after the host and port, e.g. `["-t", "glimpse/#", "-v"]`.
    pub fn start(port: u16, args: &[&str]) -> Sub {
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

    /// A subscriber to `topic` (`-v`) with a persistent session, QoS 1 and
    /// client id `id`: the broker keeps what comes while it is down or the
    /// subscriber is away, so every loss a test sees is the publisher's.
    pub fn persistent(port: u16, id: &str, topic: &str) -> Sub {
        Sub::start(port, &["-q", "1", "-c", "-i", id, "-t", topic, "-v"])
    }

    /// [`Sub::start`] once something listens on `port` (a daemon's
    /// embedded broker coming up), within `within`; `context` (the
    /// daemon's log, say) goes into the failure message.
    pub fn start_when_up(
        port: u16,
        args: &[&str],
        within: Duration,
        context: impl Fn() -> String,
    ) -> Sub {
        wait_port_or(port, within, context);
        Sub::start(port, args)
    }

    /// Waits for a line for which `want` holds; returns it.
    pub fn expect(&mut self, what: &str, within: Duration, want: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|l| want(l)) {
            return line.clone();
        }
        self.next(what, within, want)
    }

    /// Waits for a line, arriving after this call, for which `want`
    /// holds; returns it.
    pub fn next(&mut self, what: &str, within: Duration, want: impl Fn(&str) -> bool) -> String {
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
    pub fn drain(&mut self, wait: Duration) -> &[String] {
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

/// mosquitto_pub with `args` after the host and port; it must succeed.
pub fn publish(port: u16, args: &[&str]) {
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .status()
        .expect("mosquitto_pub is installed");
    assert!(status.success(), "mosquitto_pub {args:?}");
}

/// Publishes `payload` to `topic` with protocol `version` (`-V`).
pub fn send(port: u16, version: &str, topic: &str, payload: &str) {
    publish(port, &["-V", version, "-t", topic, "-m", payload]);
}

/// Publishes the contents of `file` as a retained question to camera
/// `front`, with protocol `version`: it comes again at every subscribe.
pub fn retained_question(port: u16, version: &str, file: &Path) {
    let file = file.display().to_string();
    let args = ["-V", version, "-r", "-t", "glimpse/front/ask", "-f", &file];
    publish(port, &args);
}

/// mosquitto's `-V` name of a config's `mqtt.protocol` ("v5", "v311").
pub fn client_version(protocol: &str) -> &'static str {
    if protocol == "v5" {
        "mqttv5"
    } else {
        "mqttv311"
    }
}

/// The JSON payload of a mosquitto_sub line, after its topic (`-v`) if it
/// has one.
pub fn json_of(line: &str) -> serde_json::Value {
    let payload = line.split_once(' ').map_or(line, |(_, p)| p);
    serde_json::from_str(payload).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// Whether a mosquitto_sub `-v` line is an event (`<prefix>/<camera>/event`).
pub fn is_event(line: &str) -> bool {
    line.split_once(' ')
        .is_some_and(|(topic, _)| topic.ends_with("/event"))
}

/// The ids of the events among mosquitto_sub `-v` lines, with how often
/// each arrived (QoS 1 may deliver one twice).
pub fn event_ids(lines: &[String]) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for line in lines.iter().filter(|l| is_event(l)) {
        *ids.entry(json_of(line)["id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    ids
}

/// The numbers of the test events ("test event N", from the test-event
/// hook) among mosquitto_sub `-v` lines, with how often each arrived.
pub fn test_event_numbers(lines: &[String]) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for line in lines.iter().filter(|l| is_event(l)) {
        if let Some(n) = test_event_number(&json_of(line)) {
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    seen
}

/// N of an event "test event N" made by the test-event hook.
pub fn test_event_number(event: &serde_json::Value) -> Option<u64> {
    event["text"]
        .as_str()
        .and_then(|t| t.strip_prefix("test event "))
        .and_then(|n| n.parse().ok())
}

/// Waits until the subscriber has seen every event id in `want`; returns
/// every id it saw, with its count.
pub fn expect_all(
    sub: &mut Sub,
    want: &BTreeSet<String>,
    within: Duration,
) -> BTreeMap<String, usize> {
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

/// Whether a mosquitto_sub `-v` line clears retained `topic`: an empty
/// payload, which mosquitto_sub shows as nothing or as "(null)".
pub fn cleared(line: &str, topic: &str) -> bool {
    line.trim_end() == topic || line == format!("{topic} (null)")
}
