//! Issue 43: nothing lost when the disk fills, and nothing a client sends
//! can stop delivery. The real binary, a real mosquitto, mosquitto's own
//! clients, and (as root) a real full filesystem: a small tmpfs as the
//! state directory, filled on purpose.
//!
//! Events come from the test-event hook (`GLIMPSE_DEBUG_EVENT_EVERY_MS`),
//! numbered per camera: "test event N".

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::broker::{
    client_version, retained_question, test_event_numbers, Mosquitto, Sub,
};
use crate::harness::daemon::{made_test_events, Daemon};
use crate::harness::{free_port, http_address, repo, wait_port};

const SECS: Duration = Duration::from_secs(15);

/// `dir/glimpse.toml` for `broker_port`: camera `front` (synthetic; or
/// the shapes model on the demo clip with `model`), `mqtt` lines added.
fn write_config(dir: &Path, state: &Path, broker_port: u16, mqtt: &str, model: bool) -> PathBuf {
    let camera = if model {
        format!(
            "[model]\npath = {:?}\nthreads = 1\n\n[cameras.front]\nfps = 2\nwidth = 128\nheight = 128\nsource = {{ kind = \"file\", path = {:?}, loop = true }}\n\n[cameras.front.memory]\nsnapshot_interval_s = 1\n",
            repo().join("models/shapes/model").display().to_string(),
            repo()
                .join("models/shapes/clips/demo.mkv")
                .display()
                .to_string()
        )
    } else {
        "[cameras.front]\nfps = 2\nwidth = 320\nheight = 240\nsource = { kind = \"synthetic\" }\n"
            .to_owned()
    };
    crate::harness::daemon::write_config(
        dir,
        state,
        "stats_interval_s = 1\nsnapshot_max_bytes = 400000",
        &format!("broker = \"mqtt://127.0.0.1:{broker_port}\"\nreconnect_min_ms = 100\nreconnect_max_ms = 1000\n{mqtt}"),
        &camera,
    )
}

/// A tmpfs of `size` at `at`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Files left by writes cut short, anywhere under `dir`.
fn temporary_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "part" || e == "tmp") {
                found.push(path);
            }
        }
    }
    found
}

/// The disk fills while events flow with the broker up, then space comes
/// back: every event made is delivered exactly once, in memory meanwhile
/// (one WARN, one INFO), no temporary file is left, and the memory snapshot
/// is written again once there is room.
#[test]
fn issue43_a_full_disk_loses_no_event_and_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let Some(_tmpfs) = Tmpfs::mount(&state, "16m") else {
        assert!(
            std::env::var_os("GLIMPSE_REQUIRE_ROOT").is_none(),
            "GLIMPSE_REQUIRE_ROOT is set but a tmpfs cannot be mounted (not root?)"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let broker = Mosquitto::start(dir.path(), "");
    let mut sub = Sub::persistent(broker.port, "disk-full-test", "glimpse/front/event");
    std::thread::sleep(Duration::from_millis(300));
    let config = write_config(dir.path(), &state, broker.port, "", true);
    let mut daemon = Daemon::spawn(&config, &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "30")]);
    sub.expect("a first event", SECS, |l| l.contains("test event "));
    let memory = state.join("memory/front.mem");
    let deadline = Instant::now() + SECS;
    while !memory.exists() {
        assert!(
            Instant::now() < deadline,
            "no memory snapshot:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Fill the disk: a ballast file takes every free byte.
    let ballast = state.join("ballast");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", ballast.display()))
        .stderr(Stdio::null())
        .status();
    let full_at = daemon.expect(0, &["cannot write to the outbox"], SECS);
    // Events keep being made while nothing can be stored.
    std::thread::sleep(Duration::from_secs(3));
    daemon.assert_running();
    std::fs::remove_file(&ballast).unwrap();
    let freed = std::time::SystemTime::now();
    daemon.expect(full_at, &["the outbox can be written again"], SECS);
    // The memory snapshot is written again (every second here).
    let deadline = Instant::now() + SECS;
    while std::fs::metadata(&memory)
        .and_then(|m| m.modified())
        .map_or(true, |t| t < freed)
    {
        assert!(
            Instant::now() < deadline,
            "the memory snapshot was not written after space came back:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let log = daemon.stop();
    let made = made_test_events(&log, "front");
    let deadline = Instant::now() + SECS;
    let seen = loop {
        let seen = test_event_numbers(sub.drain(Duration::from_millis(300)));
        if seen.len() as u64 > made || Instant::now() > deadline {
            break seen;
        }
    };
    let missing: Vec<u64> = (0..=made).filter(|n| !seen.contains_key(n)).collect();
    let twice: Vec<u64> = seen
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    let (warns, infos) = (
        log.matches("cannot write to the outbox").count(),
        log.matches("the outbox can be written again").count(),
    );
    eprintln!(
        "disk full: {} events made, {} delivered, {} missing, {} twice; {warns} WARN, {infos} INFO; {}",
        made + 1,
        seen.len(),
        missing.len(),
        twice.len(),
        log.lines()
            .find(|l| l.contains("the outbox can be written again"))
            .unwrap_or("")
    );
    assert!(
        missing.is_empty(),
        "{} events never arrived, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    assert_eq!(
        (warns, infos),
        (1, 1),
        "one WARN and one INFO per spell:\n{log}"
    );
    assert!(!log.contains(" ERROR "), "{log}");
    assert!(
        !log.contains("an event could not be stored"),
        "an event was discarded:\n{log}"
    );
    let left = temporary_files(&state);
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// A 5 MB retained question (over `max_packet_bytes`) on mosquitto, with
/// MQTT 3.1.1 and 5: the events keep arriving while it sits there.
#[test]
fn issue43_an_oversized_retained_question_does_not_stop_the_events() {
    for protocol in ["v311", "v5"] {
        let dir = tempfile::tempdir().unwrap();
        let broker = Mosquitto::start(dir.path(), "");
        let big = dir.path().join("big.txt");
        std::fs::write(&big, "x".repeat(5 << 20)).unwrap();
        let version = client_version(protocol);
        retained_question(broker.port, version, &big);
        let mut sub = Sub::start(
            broker.port,
            &["-V", version, "-q", "1", "-t", "glimpse/front/event", "-v"],
        );
        std::thread::sleep(Duration::from_millis(300));
        let config = write_config(
            dir.path(),
            &dir.path().join("state"),
            broker.port,
            &format!("protocol = \"{protocol}\""),
            false,
        );
        let daemon = Daemon::spawn(&config, &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "100")]);
        std::thread::sleep(Duration::from_secs(6));
        let seen = test_event_numbers(sub.drain(Duration::from_millis(300)));
        let log = daemon.stop();
        eprintln!(
            "{protocol}: {} events in 6 s with a 5 MB retained question",
            seen.len()
        );
        assert!(
            seen.len() >= 20,
            "{protocol}: {} events in 6 s:\n{log}",
            seen.len()
        );
        if protocol == "v311" {
            assert_eq!(
                log.matches("over mqtt.max_packet_bytes").count(),
                1,
                "said once:\n{log}"
            );
        }
        assert!(!log.contains("lost the MQTT broker connection"), "{log}");
    }
}

/// 10 000 questions as fast as mosquitto_pub sends them: the error answers
/// and the log lines stay bounded by the budget, and the events go on.
#[test]
fn issue43_a_question_flood_costs_bounded_answers_and_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let mut sub = Sub::start(broker.port, &["-q", "1", "-t", "glimpse/front/#", "-v"]);
    std::thread::sleep(Duration::from_millis(300));
    let config = write_config(
        dir.path(),
        &dir.path().join("state"),
        broker.port,
        "questions_per_minute = 30",
        false,
    );
    let mut daemon = Daemon::spawn(&config, &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "100")]);
    daemon.expect(0, &["connected to the MQTT broker"], SECS);
    let started = Instant::now();
    let mut flood = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-q", "1", "-t", "glimpse/front/ask", "-l"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    // 1 000 a second: 100 every 100 ms, for 10 s.
    let mut stdin = flood.stdin.take().unwrap();
    for batch in 0..100u64 {
        let lines: String = (batch * 100..batch * 100 + 100)
            .map(|n| format!("{{\"id\":\"q{n}\",\"question\":\"x\"}}\n"))
            .collect();
        use std::io::Write;
        stdin.write_all(lines.as_bytes()).unwrap();
        let next = started + Duration::from_millis(100 * (batch + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    drop(stdin);
    assert!(flood.wait().unwrap().success());
    // HTTP askers take from the same budget, spent by the flood: of two
    // asked at once (at most one token refilled meanwhile), one is refused.
    let refused_over_http = (0..2)
        .map(|_| {
            request(
                &daemon.log(),
                "POST",
                "/api/cameras/front/ask",
                "what is there?",
            )
        })
        .filter(|(status, body)| *status == 503 && body.contains("too many questions for camera"))
        .count();
    assert!(refused_over_http >= 1, "HTTP questions are not budgeted");
    let flood_s = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(3));
    let lines = sub.drain(Duration::from_millis(300)).to_vec();
    let (_, metrics) = request(&daemon.log(), "GET", "/metrics", "");
    let silenced: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("glimpse_questions_silenced_total "))
        .unwrap_or_else(|| panic!("no silenced count in:\n{metrics}"))
        .trim()
        .parse()
        .unwrap();
    let log = daemon.stop();
    let elapsed = started.elapsed().as_secs_f64();
    let answers = lines
        .iter()
        .filter(|l| l.starts_with("glimpse/front/answer "))
        .count();
    let refused_lines = log.matches("question refused").count();
    let events_during = test_event_numbers(&lines).len();
    // The budget: 30 at once plus 0.5 a second; each admitted question
    // (answered with an error: no model) may end a spell, and each spell
    // starts with one error answer.
    let admitted = 30.0 + 0.5 * elapsed;
    let bound = (2.0 * admitted + 1.0).ceil() as usize;
    eprintln!(
        "flood: 10000 questions in {flood_s:.1} s; {answers} answers, {silenced} silenced, {refused_lines} 'question refused' log lines (bound {bound}), {events_during} events meanwhile"
    );
    assert!(
        silenced >= 9000.0,
        "the flood reached glimpse: {silenced} silenced"
    );
    assert!(answers <= bound, "{answers} answers, bound {bound}");
    assert!(
        refused_lines <= bound,
        "{refused_lines} log lines, bound {bound}"
    );
    assert!(answers >= 30, "the budget was answered: {answers}");
    assert!(
        events_during >= 20,
        "{events_during} events during the flood"
    );
}

/// `METHOD path` with `body` to the daemon's HTTP endpoint (its address
/// from `log`): the status and the body.
fn request(log: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let address = http_address(log).expect("the HTTP endpoint's address in the log");
    let (status, _, body) = crate::harness::http::request(address, method, path, body);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Two instances of one config on one mosquitto (only the state
/// directory differs, as on two devices): no reconnect loop; with the same
/// prefix the second says so; with distinct prefixes both deliver.
#[test]
fn issue43_two_instances_of_one_config_share_a_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
    }
    let env = [("GLIMPSE_DEBUG_EVENT_EVERY_MS", "200")];
    let mut first = Daemon::spawn(
        &write_config(&a, &a.join("state"), broker.port, "", false),
        &env,
    );
    first.expect(0, &["connected to the MQTT broker"], SECS);
    let mut second = Daemon::spawn(
        &write_config(&b, &b.join("state"), broker.port, "", false),
        &env,
    );
    second.expect(
        0,
        &["another glimpse instance is online under the same topic prefix"],
        SECS,
    );
    first.expect(
        0,
        &["another glimpse instance publishes under the same topic prefix"],
        SECS,
    );
    std::thread::sleep(Duration::from_secs(4));
    let (log_a, log_b) = (first.stop(), second.stop());
    for log in [&log_a, &log_b] {
        assert_eq!(
            log.matches("connected to the MQTT broker").count(),
            1,
            "a reconnect loop:\n{log}"
        );
        assert!(!log.contains("lost the MQTT broker connection"), "{log}");
    }
    // Distinct prefixes: both deliver everything, nobody warns.
    let mut sub = Sub::start(broker.port, &["-q", "1", "-t", "+/front/event", "-v"]);
    std::thread::sleep(Duration::from_millis(300));
    let mut daemons = Vec::new();
    for (d, prefix) in [(&a, "kitchen"), (&b, "garage")] {
        let config = write_config(
            d,
            &d.join("state2"),
            broker.port,
            &format!("prefix = \"{prefix}\""),
            false,
        );
        daemons.push(Daemon::spawn(&config, &env));
    }
    std::thread::sleep(Duration::from_secs(4));
    let logs: Vec<String> = daemons.into_iter().map(Daemon::stop).collect();
    let lines = sub.drain(Duration::from_secs(1)).to_vec();
    for (log, prefix) in logs.iter().zip(["kitchen", "garage"]) {
        assert!(!log.contains("another glimpse instance"), "{log}");
        let made = made_test_events(log, "front");
        let mine: Vec<String> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("{prefix}/")))
            .cloned()
            .collect();
        let seen = test_event_numbers(&mine);
        let missing: Vec<u64> = (0..=made).filter(|n| !seen.contains_key(n)).collect();
        assert!(missing.is_empty(), "{prefix}: missing {missing:?}");
    }
}

/// Two instances given the same `mqtt.client_id` on purpose: the broker
/// closes each when the other connects. That is reported as a taken
/// client id, not as an unreachable broker.
#[test]
fn issue43_a_client_id_in_use_twice_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mut daemons: Vec<Daemon> = [&a, &b]
        .iter()
        .map(|d| {
            std::fs::create_dir_all(d).unwrap();
            let config = write_config(
                d,
                &d.join("state"),
                broker.port,
                "client_id = \"same\"",
                false,
            );
            Daemon::spawn(&config, &[])
        })
        .collect();
    let said = "another client is probably connected with the same client id";
    let deadline = Instant::now() + Duration::from_secs(30);
    while !daemons.iter().any(|d| d.log().contains(said)) {
        assert!(
            Instant::now() < deadline,
            "not reported:\n{}\n{}",
            daemons[0].log(),
            daemons[1].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for daemon in &mut daemons {
        daemon.assert_running();
        assert!(
            !daemon.log().contains("MQTT broker unreachable"),
            "{}",
            daemon.log()
        );
    }
}

/// RSS of process `pid` in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Memory under a heavy event load (issue 43): 4 cameras (640×480, each
/// event with its snapshot) making 2 events a second each on the embedded
/// broker, read by a subscriber to everything (as Home Assistant is). RSS
/// sampled every minute for `GLIMPSE_SOAK_MINUTES` (default 60); after the
/// first 10 minutes (or a sixth of a shorter run) it must stay within ±10%
/// of its mean. A measurement: run it with `--ignored --nocapture`.
#[test]
#[ignore = "measurement: an hour by default (GLIMPSE_SOAK_MINUTES); run with --ignored --nocapture"]
fn measure_rss_levels_off_under_a_heavy_event_load() {
    let minutes: u64 = std::env::var("GLIMPSE_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cameras: String = ["a", "b", "c", "d"]
        .iter()
        .map(|c| format!("[cameras.{c}]\nfps = 2\nwidth = 640\nheight = 480\nsource = {{ kind = \"synthetic\" }}\n\n"))
        .collect();
    let config = crate::harness::daemon::write_config(
        dir.path(),
        &dir.path().join("state"),
        "",
        &format!("listen = \"127.0.0.1:{port}\""),
        &cameras,
    );
    let daemon = Daemon::spawn(&config, &[("GLIMPSE_DEBUG_EVENT_EVERY_MS", "500")]);
    wait_port(port, SECS);
    let mut sub = Sub::start(port, &["-q", "1", "-t", "glimpse/#", "-v"]);
    let pid = daemon.child.id();
    let mut samples: Vec<(u64, u64)> = Vec::new();
    for minute in 0..=minutes {
        if minute > 0 {
            // Read what arrived, so the subscriber never falls behind.
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                sub.drain(Duration::from_secs(1));
                sub.seen.clear();
            }
        }
        let rss = rss_kib(pid);
        eprintln!("soak: minute {minute}: RSS {:.1} MiB", rss as f64 / 1024.0);
        samples.push((minute, rss));
    }
    let log = daemon.stop();
    let made: u64 = ["a", "b", "c", "d"]
        .iter()
        .map(|camera| made_test_events(&log, camera) + 1)
        .sum();
    let warm = (minutes / 6).clamp(1, 10);
    let after: Vec<f64> = samples
        .iter()
        .filter(|(m, _)| *m >= warm)
        .map(|(_, r)| *r as f64)
        .collect();
    let mean = after.iter().sum::<f64>() / after.len() as f64;
    let (min, max) = after
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    eprintln!(
        "soak: {made} events in {minutes} min; RSS after minute {warm}: mean {:.1} MiB, {:+.1}% to {:+.1}%",
        mean / 1024.0,
        (min / mean - 1.0) * 100.0,
        (max / mean - 1.0) * 100.0
    );
    assert!(
        min >= mean * 0.9 && max <= mean * 1.1,
        "RSS did not level off: {samples:?}"
    );
}
