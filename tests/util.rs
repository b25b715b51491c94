//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    cmd
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
