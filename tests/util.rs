//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The binary under test, built by cargo for this test run.
pub fn glimpse() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_glimpse"));
    // Keep the tests independent of the developer's environment.
    for (var, _) in std::env::vars().filter(|(k, _)| k.starts_with("GLIMPSE_")) {
        cmd.env_remove(var);
    }
    for var in [
        "GLIMPSE_CONFIG",
        "GLIMPSE_MQTT_PASSWORD",
        "RUST_LOG",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "JOURNAL_STREAM",
        "STATE_DIRECTORY",
        "ORT_DYLIB_PATH",
    ] {
        cmd.env_remove(var);
    }
    // The tests run many daemons at once, most on copies of the demo
    // config: each gets a free HTTP port (port 0) unless a test says
    // otherwise; an HTTP test reads the port from the log ([`http_address`]).
    cmd.env("GLIMPSE_HTTP_LISTEN", "127.0.0.1:0");
    cmd
}

/// The address the daemon's HTTP endpoint listens on, from its log.
pub fn http_address(log: &str) -> Option<std::net::SocketAddr> {
    let line = log.lines().find(|l| l.contains("HTTP endpoint:"))?;
    let at = line.find("address=")? + "address=".len();
    line[at..].split_whitespace().next()?.parse().ok()
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("daemon/ has a parent")
        .to_owned()
}

/// Runs `glimpse check --config PATH`.
pub fn check(path: &Path) -> Output {
    glimpse()
        .args(["check", "--config"])
        .arg(path)
        .output()
        .expect("run glimpse check")
}

/// Sends `signal` (e.g. "HUP") to process `pid` with kill(1).
pub fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Waits for `child` to exit; kills it and fails after `within`.
pub fn wait_exit(
    child: &mut std::process::Child,
    within: std::time::Duration,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {within:?}", child.id());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The CPU `libonnxruntime.so` of the `onnxruntime` pip wheel.
pub fn ort_library() -> PathBuf {
    crate::ort_wheel::wheel_library().unwrap_or_else(|e| panic!("{e}"))
}

/// Copies a model folder (its files and `onnx/`), as an operator installs
/// a second model.
pub fn copy_model(from: &Path, to: &Path) {
    for sub in ["", "onnx"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for entry in std::fs::read_dir(from.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, to.join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
}

/// The daemon with its log in a file, killed on drop.
pub struct Daemon {
    /// The process.
    pub child: std::process::Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `glimpse run --config CONFIG` with `env`; its log goes to
    /// CONFIG with the extension `.log`.
    pub fn spawn(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let log = config.with_extension("log");
        let mut cmd = glimpse();
        cmd.args(["run", "--config"])
            .arg(config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log, from byte `from` on, has a line containing
    /// every one of `needles`; returns the log's length after that line.
    pub fn expect(&mut self, from: usize, needles: &[&str], within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            let mut at = from.min(log.len());
            for line in log[at..].split_inclusive('\n') {
                at += line.len();
                if line.ends_with('\n') && needles.iter().all(|n| line.contains(n)) {
                    return at;
                }
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "glimpse exited while waiting for {needles:?}:\n{log}"
            );
            assert!(
                Instant::now() < deadline,
                "no log line with {needles:?} within {within:?}:\n{}",
                &log[from.min(log.len())..]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails the test if the daemon has exited.
    pub fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "glimpse exited:\n{}",
            self.log()
        );
    }

    /// SIGTERM; the daemon must exit 0. Returns its log.
    pub fn stop(mut self) -> String {
        kill(self.child.id(), "TERM");
        let status = wait_exit(&mut self.child, Duration::from_secs(20));
        assert!(status.success(), "{status}\n{}", self.log());
        self.log()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
