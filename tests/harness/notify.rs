//! A systemd notify socket, for the daemon run as systemd runs it (READY,
//! RELOADING, STOPPING, STATUS and watchdog pings).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::glimpse;

/// A notify socket as systemd offers it, collecting every datagram.
pub struct NotifySocket {
    pub path: PathBuf,
    messages: mpsc::Receiver<(Instant, String)>,
}

impl NotifySocket {
    /// Binds `dir/notify.sock`; a thread collects what arrives.
    pub fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if tx.send((Instant::now(), text)).is_err() {
                    return;
                }
            }
        });
        NotifySocket { path, messages }
    }

    /// Waits for a datagram containing `needle`; returns it and every
    /// datagram seen before it.
    pub fn expect(&self, needle: &str, within: Duration) -> (String, Vec<String>) {
        let deadline = Instant::now() + within;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok((_, text)) if text.contains(needle) => return (text, before),
                Ok((_, text)) => before.push(text),
                Err(_) => panic!("no {needle:?} within {within:?}; saw {before:?}"),
            }
        }
    }

    /// Every datagram that arrives during `window`.
    pub fn collect(&self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        let mut seen = Vec::new();
        while let Ok((_, text)) = self
            .messages
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            seen.push(text);
        }
        seen
    }
}

/// How many of `messages` are watchdog pings.
pub fn pings(messages: &[String]) -> usize {
    messages
        .iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count()
}

/// `glimpse run --config CONFIG` with `env` under `socket`, as systemd
/// starts a `Type=notify` unit with `WatchdogSec=` `watchdog`; its output
/// is dropped (the socket says what the tests read).
pub fn start(
    config: &Path,
    socket: &NotifySocket,
    watchdog: Duration,
    env: &[(&str, &str)],
) -> Child {
    let mut cmd = glimpse();
    cmd.args(["run", "--config"])
        .arg(config)
        .env("NOTIFY_SOCKET", &socket.path)
        .env("WATCHDOG_USEC", watchdog.as_micros().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}
