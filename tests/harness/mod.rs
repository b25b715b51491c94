//! The harness the end-to-end tests share: the binary and its processes
//! here, the daemon in [`daemon`], a broker and its clients in [`broker`],
//! the daemon's stored events in [`history`], a systemd notify socket in
//! [`notify`] and an HTTP client in [`http`]. A test file takes what it
//! needs from here rather than keeping a copy of its own.

pub mod broker;
pub mod daemon;
pub mod history;
pub mod http;
pub mod notify;

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

/// Runs `cmd`, which must succeed (the failure shows its stderr); its
/// output.
pub fn output_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
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

/// A loopback port taken by a listener for as long as it lives, for the
/// tests of a port in use.
pub fn taken_port() -> (std::net::TcpListener, u16) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = taken.local_addr().expect("local address").port();
    (taken, port)
}

/// Waits until something listens on loopback `port` (a broker or a
/// daemon's embedded one coming up); fails after `within`.
pub fn wait_port(port: u16, within: Duration) {
    wait_port_or(port, within, String::new)
}

/// [`wait_port`]; `context` (a daemon's log, say) goes into the failure
/// message.
pub fn wait_port_or(port: u16, within: Duration, context: impl Fn() -> String) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port} after {within:?}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// Whether the tests run as root (then some run a command as `nobody`).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `argv` as a command; under root, run as `nobody`, as the unit runs it
/// as the unprivileged `glimpse`.
pub fn unprivileged(argv: &[String]) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .args(argv);
        cmd
    } else {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd
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
