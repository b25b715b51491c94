//! The daemon under a notify socket, as systemd would run it: READY,
//! watchdog pings from the pipeline's heartbeat, RELOADING/READY around
//! SIGHUP, STOPPING on SIGTERM, and no pings once the pipeline stalls.

use std::time::Duration;

use crate::harness::daemon::synthetic_config;
use crate::harness::notify::{pings, start, NotifySocket};
use crate::harness::{glimpse, kill, repo, wait_exit};

#[test]
fn ready_watchdog_reload_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let socket = NotifySocket::bind(dir.path());
    let (config, _) = synthetic_config(dir.path(), "stall_timeout_ms = 5000");
    let mut child = start(&config, &socket, Duration::from_millis(400), &[]);
    let pid = child.id();

    let (ready, _) = socket.expect("READY=1", Duration::from_secs(10));
    assert!(
        ready.contains("STATUS=running 1 camera(s): front"),
        "{ready}"
    );
    assert!(
        dir.path().join("state").is_dir(),
        "the state directory is created"
    );

    // Pings every 200 ms (half the watchdog period).
    assert!(pings(&socket.collect(Duration::from_millis(1500))) >= 4);

    // A valid new config: a second camera is started, the first keeps running.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap()
            + "\n[cameras.back]\nwidth = 32\nheight = 32\nsource = { kind = \"synthetic\" }\n",
    )
    .unwrap();
    kill(pid, "HUP");
    let (reloading, _) = socket.expect("RELOADING=1", Duration::from_secs(5));
    assert!(
        reloading.contains("MONOTONIC_USEC="),
        "systemd >= 253 needs it: {reloading}"
    );
    let (ready, _) = socket.expect("READY=1", Duration::from_secs(5));
    assert!(ready.contains(r#"started ["back"]"#), "{ready}");

    // An invalid config is refused and the daemon keeps running on the old one.
    std::fs::write(
        &config,
        "[cameras.front]\nfps = -1\nsource = { kind = \"synthetic\" }\n",
    )
    .unwrap();
    kill(pid, "HUP");
    socket.expect("RELOADING=1", Duration::from_secs(5));
    let (ready, _) = socket.expect("READY=1", Duration::from_secs(5));
    assert!(ready.contains("reload refused"), "{ready}");
    assert!(
        pings(&socket.collect(Duration::from_millis(1000))) >= 2,
        "still alive and well"
    );
    assert!(child.try_wait().unwrap().is_none());

    kill(pid, "TERM");
    socket.expect("STOPPING=1", Duration::from_secs(5));
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

#[test]
fn a_stalled_pipeline_stops_the_watchdog_pings() {
    let dir = tempfile::tempdir().unwrap();
    let socket = NotifySocket::bind(dir.path());
    let (config, _) = synthetic_config(dir.path(), "stall_timeout_ms = 1500");
    let mut child = start(
        &config,
        &socket,
        Duration::from_millis(300),
        &[("GLIMPSE_DEBUG_STALL_AFTER_MS", "1000")],
    );

    socket.expect("READY=1", Duration::from_secs(10));
    let (_, before) = socket.expect(
        "STATUS=pipeline stalled: model worker 0",
        Duration::from_secs(10),
    );
    assert!(
        pings(&before) >= 3,
        "pings flowed while the pipeline was healthy: {before:?}"
    );
    // systemd would now kill the daemon after its WatchdogSec; no ping comes.
    let after = socket.collect(Duration::from_secs(2));
    assert_eq!(pings(&after), 0, "{after:?}");

    kill(child.id(), "TERM");
    socket.expect("STOPPING=1", Duration::from_secs(5));
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

#[test]
fn a_broken_camera_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let socket = NotifySocket::bind(dir.path());
    // A missing file is refused by the config check; one that is not a
    // video passes it and fails in capture.
    let clip = dir.path().join("clip.mp4");
    std::fs::write(&clip, "this is not a video\n".repeat(100)).unwrap();
    let (config, _) = synthetic_config(
        dir.path(),
        &format!(
            "stats_interval_s = 1\n[cameras.broken]\nsource = {{ kind = \"file\", path = {:?} }}",
            clip.display().to_string()
        ),
    );
    let mut child = start(&config, &socket, Duration::from_millis(400), &[]);
    socket.expect("READY=1", Duration::from_secs(10));
    let (status, _) = socket.expect("STATUS=broken: failed", Duration::from_secs(10));
    assert!(
        status.contains(&format!("broken: failed ({}: ", clip.display()))
            && status.contains("; front: "),
        "{status}"
    );
    assert!(
        pings(&socket.collect(Duration::from_millis(1200))) >= 2,
        "the daemon stays healthy"
    );
    assert!(child.try_wait().unwrap().is_none());
    kill(child.id(), "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

#[test]
fn the_model_is_loaded_before_ready_and_a_broken_one_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = NotifySocket::bind(dir.path());
    let model = repo().join("models/test-tiny");
    let (config, _) = synthetic_config(
        dir.path(),
        &format!(
            "[model]\npath = {:?}\nthreads = 1",
            model.display().to_string()
        ),
    );
    let mut child = start(&config, &socket, Duration::from_millis(400), &[]);
    let (ready, _) = socket.expect("READY=1", Duration::from_secs(20));
    assert!(
        ready.contains(&format!("model {}", model.display())),
        "{ready}"
    );
    kill(child.id(), "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());

    let (broken, _) = synthetic_config(dir.path(), "[model]\npath = \"/nonexistent/model\"");
    let out = glimpse()
        .args(["run", "--config"])
        .arg(&broken)
        .env("NOTIFY_SOCKET", &socket.path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(78),
        "systemd must not restart into a broken model"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        format!(
            "error: {}: model.path: /nonexistent/model: no such folder\n",
            broken.display()
        ),
        "refused with the config check's message, before anything starts"
    );
    assert!(socket
        .collect(Duration::from_millis(200))
        .iter()
        .all(|m| !m.contains("READY=1")));
}
