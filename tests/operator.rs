//! The daemon as an operator runs it (issue 15): reloads that change the
//! workers and the model while events keep coming, a stop that loses no
//! event, a fast camera beside a slow one on one worker, and a slow model
//! load on reload that never stops the watchdog pings. The real binary
//! throughout, its log read as an operator reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::broker::{event_ids, expect_all, test_event_number, Mosquitto, Sub};
use crate::harness::daemon::{made_test_events, Daemon};
use crate::harness::history::history;
use crate::harness::notify::{pings, start, NotifySocket};
use crate::harness::{copy_model, free_port, glimpse, kill, repo, wait_exit};

#[test]
fn issue15_reload_with_new_workers_then_a_new_model_keeps_the_events_coming() {
    let dir = tempfile::tempdir().unwrap();
    let root = repo();
    let second = dir.path().join("second-model");
    copy_model(&root.join("models/shapes/model"), &second);
    let config = dir.path().join("glimpse.toml");
    let write = |model: &Path, threads: usize| {
        std::fs::write(
            &config,
            format!(
                r#"
[service]
state_dir = {state:?}
[mqtt]
listen = "127.0.0.1:{port}"
[workers]
threads = {threads}
[model]
path = {model:?}
threads = 1
[cameras.demo]
fps = 2
width = 128
height = 128
rules = ["is there a red shape?"]
source = {{ kind = "file", path = {clip:?}, loop = true }}
[cameras.demo.trigger]
drop_ratio_below = 0.95
rearm_drop_ratio_above = 0.98
cooldown_s = 1
"#,
                state = dir.path().join("state").display().to_string(),
                port = free_port(),
                model = model.display().to_string(),
                clip = root
                    .join("models/shapes/clips/demo.mkv")
                    .display()
                    .to_string(),
            ),
        )
        .unwrap()
    };
    write(&root.join("models/shapes/model"), 1);
    let mut daemon = Daemon::spawn(&config, &[]);
    let pid = daemon.child.id();
    let mut at = daemon.expect(0, &["event:"], Duration::from_secs(60));

    // [workers] changes: the pool grows in place; the camera keeps its
    // frames flowing to it (before, it kept a handle to a stopped pool).
    write(&root.join("models/shapes/model"), 2);
    kill(pid, "HUP");
    at = daemon.expect(
        at,
        &["config reloaded", "model workers resized"],
        Duration::from_secs(20),
    );
    at = daemon.expect(at, &["event:"], Duration::from_secs(60));

    // [model] changes: the new model loads in the background, then every
    // camera switches to it, saving the old model's memory first.
    write(&second, 2);
    kill(pid, "HUP");
    let sent = at;
    at = daemon.expect(
        at,
        &["config reloaded", "model reloaded"],
        Duration::from_secs(30),
    );
    // The camera's next job switches as soon as the new model is in place,
    // which can be before the reload's status line (the reload goes on to
    // the MQTT settings): look from the signal on.
    let switched = daemon.expect(
        sent,
        &["the model changed", "demo"],
        Duration::from_secs(20),
    );
    daemon.expect(switched.max(at), &["event:"], Duration::from_secs(60));

    assert!(
        dir.path().join("state/memory/demo.mem.previous").is_file(),
        "the first model's memory is kept aside"
    );
    // Questions go to the new model, over the new model's memory.
    let out = glimpse()
        .args(["ask", "--camera", "demo", "--json", "--config"])
        .arg(&config)
        .arg("how many shapes are there ?")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["kind"], "answer", "{answer}");

    let log = daemon.stop();
    assert!(!log.contains("memory snapshot not used"), "{log}");
    // The snapshot written at stop belongs to the model that made it.
    let snapshot = std::fs::read(dir.path().join("state/memory/demo.mem")).unwrap();
    let second_path = second.display().to_string();
    assert!(
        snapshot
            .windows(second_path.len())
            .any(|w| w == second_path.as_bytes()),
        "the memory snapshot is under the new model's fingerprint"
    );
}

/// The stored test events (`glimpse events --json`): their numbers by
/// camera, and every id.
fn stored_events(config: &Path) -> (BTreeMap<String, BTreeSet<u64>>, BTreeSet<String>) {
    let mut numbers: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for event in history(config) {
        ids.insert(event["id"].as_str().unwrap().to_owned());
        let n = test_event_number(&event).unwrap_or_else(|| panic!("a test event: {event}"));
        numbers
            .entry(event["camera"].as_str().unwrap().to_owned())
            .or_default()
            .insert(n);
    }
    (numbers, ids)
}

#[test]
fn issue15_events_made_just_before_sigterm_are_stored_and_delivered_after_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    // A persistent session: every event that reaches the broker reaches it.
    let mut sub = Sub::persistent(broker.port, "stop-test", "glimpse/+/event");
    let config = dir.path().join("glimpse.toml");
    // No time to flush at stop: whatever the stop catches in flight must
    // stay in the outbox and go out at the next start.
    std::fs::write(
        &config,
        format!(
            "[service]\nstate_dir = {:?}\n[mqtt]\nbroker = \"mqtt://127.0.0.1:{}\"\ndrain_timeout_ms = 0\n\
             [cameras.a]\nsource = {{ kind = \"synthetic\" }}\n[cameras.b]\nsource = {{ kind = \"synthetic\" }}\n",
            dir.path().join("state").display().to_string(),
            broker.port
        ),
    )
    .unwrap();
    // Events are made by jobs that take 10 ms each, every 5 ms for each of
    // two cameras: the worker is behind, so the stop finds jobs queued, and
    // their events are made while the pipeline drains.
    let mut daemon = Daemon::spawn(
        &config,
        &[
            ("GLIMPSE_DEBUG_EVENT_EVERY_MS", "5"),
            ("GLIMPSE_DEBUG_ANALYSIS_MS", "10"),
        ],
    );
    sub.expect("a first event", Duration::from_secs(10), |l| {
        l.contains("/event ")
    });
    daemon.expect(0, &["event: test event 50"], Duration::from_secs(20));
    let log = daemon.stop();
    let (numbers, produced) = stored_events(&config);
    assert_eq!(numbers.len(), 2, "{numbers:?}");
    for (camera, seen) in &numbers {
        let last = made_test_events(&log, camera);
        let missing: Vec<u64> = (0..=last).filter(|n| !seen.contains(n)).collect();
        assert!(
            missing.is_empty(),
            "camera {camera}: events {missing:?} made but never stored\n{log}"
        );
    }
    let drained = log
        .lines()
        .skip_while(|l| !l.contains("SIGTERM received"))
        .filter(|l| l.contains("event: test event"))
        .count();
    eprintln!("{drained} events made while the pipeline drained at stop");
    assert!(drained > 0, "the stop found work queued:\n{log}");

    // Started again without new events: the outbox alone is published.
    let daemon = Daemon::spawn(&config, &[]);
    let delivered = expect_all(&mut sub, &produced, Duration::from_secs(20));
    daemon.stop();
    assert!(
        delivered.keys().all(|id| produced.contains(id)),
        "nothing invented"
    );
    eprintln!(
        "{} events, the last made just before SIGTERM; all delivered, {} duplicates",
        produced.len(),
        delivered.values().map(|n| n - 1).sum::<usize>()
    );
}

/// The last `camera stats` log line's `key=value` of `camera`.
fn last_stat(log: &str, camera: &str, key: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("camera stats") && l.contains(&format!("camera={camera} ")))
        .unwrap_or_else(|| panic!("no stats line for {camera}:\n{log}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[test]
fn issue15_a_fast_camera_cannot_starve_a_slow_one_and_its_drops_are_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo().join("models/test-tiny");
    let config = dir.path().join("glimpse.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[service]
state_dir = {state:?}
stats_interval_s = 1
[mqtt]
listen = "127.0.0.1:{port}"
[model]
path = {model:?}
threads = 1
[workers]
threads = 1
[cameras.fast]
fps = 30
width = 64
height = 64
source = {{ kind = "synthetic", frame_rate = 30, shapes = 2 }}
[cameras.slow]
fps = 2
width = 64
height = 64
source = {{ kind = "synthetic", frame_rate = 2, shapes = 2 }}
"#,
            state = dir.path().join("state").display().to_string(),
            port = free_port(),
            model = model.display().to_string(),
        ),
    )
    .unwrap();
    // 40 ms a frame: one worker analyses 25 frames/s of the 32 offered.
    let mut daemon = Daemon::spawn(&config, &[("GLIMPSE_DEBUG_ANALYSIS_MS", "40")]);
    let mut at = daemon.expect(0, &["glimpse is running"], Duration::from_secs(20));
    for _ in 0..5 {
        at = daemon.expect(
            at,
            &["camera stats", "camera=slow "],
            Duration::from_secs(10),
        );
    }
    let log = daemon.stop();
    let stat = |camera, key| last_stat(&log, camera, key);
    let (fast_analysed, slow_analysed) = (stat("fast", "analysed"), stat("slow", "analysed"));
    let (fast_dropped, slow_dropped) = (stat("fast", "dropped"), stat("slow", "dropped"));
    eprintln!(
        "fast: {fast_analysed} analysed, {fast_dropped} dropped; slow: {slow_analysed} analysed, {slow_dropped} dropped"
    );
    assert!(
        fast_dropped > 0,
        "the worker is behind the fast camera:\n{log}"
    );
    assert_eq!(slow_dropped, 0, "the slow camera loses nothing:\n{log}");
    // About 5 s at 2 fps; every slow frame is analysed, minus the one or
    // two in flight when the stats were read.
    assert!(slow_analysed >= 8, "the slow camera is analysed:\n{log}");
    assert!(
        fast_analysed > 3 * slow_analysed,
        "the fast one gets the rest:\n{log}"
    );
}

/// The test model and a copy of it in `dir`: a reload from one to the
/// other changes the model.
fn two_models(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let tiny = repo().join("models/test-tiny");
    let copy = dir.join("tiny-copy");
    copy_model(&tiny, &copy);
    (tiny, copy)
}

#[test]
fn issue15_a_slow_model_load_on_reload_keeps_the_watchdog_pings_going() {
    let dir = tempfile::tempdir().unwrap();
    let socket = NotifySocket::bind(dir.path());
    let (tiny, copy) = two_models(dir.path());
    let config = dir.path().join("glimpse.toml");
    let write = |model: &Path| {
        std::fs::write(
            &config,
            format!(
                "[service]\nstate_dir = {:?}\nstall_timeout_ms = 1000\n[mqtt]\nlisten = \"127.0.0.1:{}\"\n\
                 [model]\npath = {:?}\n[cameras.front]\nfps = 5\nwidth = 64\nheight = 64\n\
                 source = {{ kind = \"synthetic\", frame_rate = 10, shapes = 1 }}\n",
                dir.path().join("state").display().to_string(),
                free_port(),
                model.display().to_string()
            ),
        )
        .unwrap()
    };
    write(&tiny);
    // Each load takes 3.5 s more than it does: 3.5 × the stall timeout.
    let mut child = start(
        &config,
        &socket,
        Duration::from_millis(600),
        &[("GLIMPSE_DEBUG_MODEL_LOAD_MS", "3500")],
    );
    socket.expect("READY=1", Duration::from_secs(20));

    write(&copy);
    kill(child.id(), "HUP");
    let started = Instant::now();
    socket.expect("RELOADING=1", Duration::from_secs(5));
    let (ready, during) = socket.expect("READY=1", Duration::from_secs(20));
    let load = started.elapsed();
    assert!(
        load >= Duration::from_millis(3500),
        "the load took {load:?}"
    );
    assert!(ready.contains("model reloaded"), "{ready}");
    // A ping every 300 ms all through the 3.5 s load, and no stall.
    assert!(
        pings(&during) >= 8,
        "{} pings in {load:?}: {during:?}",
        pings(&during)
    );
    assert!(!during.iter().any(|m| m.contains("stalled")), "{during:?}");

    // A model that cannot load is refused (by the config check, before any
    // load); the running one goes on, and so do the pings.
    let broken = dir.path().join("broken-model");
    std::fs::create_dir_all(&broken).unwrap();
    write(&broken);
    kill(child.id(), "HUP");
    socket.expect("RELOADING=1", Duration::from_secs(5));
    let (ready, _) = socket.expect("READY=1", Duration::from_secs(20));
    assert!(ready.contains("reload refused"), "{ready}");
    assert!(
        pings(&socket.collect(Duration::from_millis(1000))) >= 2,
        "still running the previous model"
    );

    kill(child.id(), "TERM");
    socket.expect("STOPPING=1", Duration::from_secs(5));
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

/// A SIGHUP that comes while a new model loads is acted on as soon as the
/// load is applied, with no further signal: the camera the second edit
/// added starts.
#[test]
fn issue40_a_sighup_during_a_model_load_is_acted_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = NotifySocket::bind(dir.path());
    let (tiny, copy) = two_models(dir.path());
    let config = dir.path().join("glimpse.toml");
    let port = free_port();
    let write = |model: &Path, cameras: &[&str]| {
        let mut text = format!(
            "[service]\nstate_dir = {:?}\n[mqtt]\nlisten = \"127.0.0.1:{port}\"\n[model]\npath = {:?}\n",
            dir.path().join("state").display().to_string(),
            model.display().to_string()
        );
        for camera in cameras {
            text += &format!(
                "[cameras.{camera}]\nfps = 2\nwidth = 64\nheight = 64\n\
                 source = {{ kind = \"synthetic\", frame_rate = 4, shapes = 1 }}\n"
            );
        }
        std::fs::write(&config, text).unwrap()
    };
    write(&tiny, &["front"]);
    let mut child = start(
        &config,
        &socket,
        Duration::from_secs(10),
        &[("GLIMPSE_DEBUG_MODEL_LOAD_MS", "3000")],
    );
    socket.expect("READY=1", Duration::from_secs(20));
    // A new model: it loads for 3 s in the background.
    write(&copy, &["front"]);
    kill(child.id(), "HUP");
    socket.expect("RELOADING=1", Duration::from_secs(5));
    // Meanwhile, a second camera, and one more SIGHUP.
    std::thread::sleep(Duration::from_millis(500));
    write(&copy, &["front", "back"]);
    kill(child.id(), "HUP");
    let (ready, _) = socket.expect("READY=1", Duration::from_secs(20));
    assert!(ready.contains("model reloaded"), "{ready}");
    // No more signals: the second reload follows on its own.
    socket.expect("RELOADING=1", Duration::from_secs(5));
    let (ready, _) = socket.expect("READY=1", Duration::from_secs(20));
    assert!(ready.contains("started [\"back\"]"), "{ready}");
    kill(child.id(), "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(15)).success());
}

// Measurements for issue 15's note. Not run by the test command (they take
// minutes and print figures rather than check them):
//   cargo test --release --features v4l2,fault-injection --test e2e -- \
//     --ignored --nocapture operator::measure

/// Events made, stored and delivered over many SIGTERM/restart cycles while
/// events flow (`GLIMPSE_SOAK_CYCLES`, default 100).
#[test]
#[ignore = "measurement: minutes; run with --ignored --nocapture"]
fn measure_events_lost_over_sigterm_restart_cycles() {
    let cycles: usize = std::env::var("GLIMPSE_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "max_queued_messages 0");
    let mut sub = Sub::persistent(broker.port, "soak", "glimpse/+/event");
    let config = dir.path().join("glimpse.toml");
    std::fs::write(
        &config,
        format!(
            "[service]\nstate_dir = {:?}\n[mqtt]\nbroker = \"mqtt://127.0.0.1:{}\"\n\
             drain_timeout_ms = 200\nhistory_capacity = 1000000\n\
             [cameras.a]\nsource = {{ kind = \"synthetic\" }}\n",
            dir.path().join("state").display().to_string(),
            broker.port
        ),
    )
    .unwrap();
    let mut made = 0u64;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..cycles {
        let mut daemon = Daemon::spawn(
            &config,
            &[
                ("GLIMPSE_DEBUG_EVENT_EVERY_MS", "5"),
                ("GLIMPSE_DEBUG_ANALYSIS_MS", "8"),
            ],
        );
        daemon.expect(0, &["glimpse is running"], Duration::from_secs(20));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(200 + rng % 700));
        let log = daemon.stop();
        let last = made_test_events(&log, "a");
        made += last + 1;
    }
    let (_, stored) = stored_events(&config);
    let daemon = Daemon::spawn(&config, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let delivered = loop {
        let ids = event_ids(sub.drain(Duration::from_millis(500)));
        if ids.len() >= stored.len() || Instant::now() > deadline {
            break ids;
        }
    };
    daemon.stop();
    let duplicates: usize = delivered.values().map(|n| n - 1).sum();
    let missing = stored
        .iter()
        .filter(|id| !delivered.contains_key(*id))
        .count();
    eprintln!(
        "{cycles} SIGTERM/restart cycles: {made} events made, {} stored ({} lost before the outbox), \
         {} delivered to a persistent subscriber ({missing} stored but not delivered), {duplicates} duplicates",
        stored.len(),
        made as i64 - stored.len() as i64,
        delivered.len()
    );
}

/// SIGHUP with a changed model to READY, and to the first analysed frame
/// and the first event on the new model, over a few reloads.
#[test]
#[ignore = "measurement: a minute; run with --ignored --nocapture"]
fn measure_reload_to_first_event_with_a_new_model() {
    let dir = tempfile::tempdir().unwrap();
    let root = repo();
    let models = [root.join("models/shapes/model"), dir.path().join("second")];
    copy_model(&models[0], &models[1]);
    let config = dir.path().join("glimpse.toml");
    let write = |model: &Path| {
        std::fs::write(
            &config,
            format!(
                "[service]\nstate_dir = {:?}\n[mqtt]\nlisten = \"127.0.0.1:{}\"\n[model]\npath = {:?}\n\
                 [cameras.demo]\nfps = 2\nwidth = 128\nheight = 128\n\
                 source = {{ kind = \"file\", path = {:?}, loop = true }}\n\
                 [cameras.demo.trigger]\ndrop_ratio_below = 0.95\nrearm_drop_ratio_above = 0.98\ncooldown_s = 1\n",
                dir.path().join("state").display().to_string(),
                free_port(),
                model.display().to_string(),
                root.join("models/shapes/clips/demo.mkv").display().to_string()
            ),
        )
        .unwrap()
    };
    write(&models[0]);
    let mut daemon = Daemon::spawn(&config, &[]);
    let mut at = daemon.expect(0, &["event:"], Duration::from_secs(60));
    for round in 1..=4 {
        write(&models[round % 2]);
        let hup = Instant::now();
        kill(daemon.child.id(), "HUP");
        at = daemon.expect(
            at,
            &["config reloaded", "model reloaded"],
            Duration::from_secs(30),
        );
        let ready = hup.elapsed();
        at = daemon.expect(at, &["the model changed"], Duration::from_secs(30));
        let first_frame = hup.elapsed();
        at = daemon.expect(at, &["event:"], Duration::from_secs(60));
        eprintln!(
            "reload {round}: SIGHUP to READY {:.0} ms, to the first frame on the new model {:.0} ms, to its first event {:.1} s",
            ready.as_secs_f64() * 1e3,
            first_frame.as_secs_f64() * 1e3,
            hup.elapsed().as_secs_f64()
        );
    }
    daemon.stop();
}

/// Analysed fps per camera with 1, 2 and 4 cameras at 2 fps on the demo
/// model and clip, one worker.
#[test]
#[ignore = "measurement: two minutes; run with --ignored --nocapture"]
fn measure_analysed_fps_per_camera() {
    let root = repo();
    for cameras in [1, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("glimpse.toml");
        let mut text = format!(
            "[service]\nstate_dir = {:?}\nstats_interval_s = 20\n[mqtt]\nlisten = \"127.0.0.1:{}\"\n[model]\npath = {:?}\n",
            dir.path().join("state").display().to_string(),
            free_port(),
            root.join("models/shapes/model").display().to_string()
        );
        for i in 0..cameras {
            text += &format!(
                "[cameras.cam{i}]\nfps = 2\nwidth = 128\nheight = 128\nrules = [\"is there a red shape?\"]\n\
                 source = {{ kind = \"file\", path = {:?}, loop = true }}\n\
                 [cameras.cam{i}.trigger]\ndrop_ratio_below = 0.95\nrearm_drop_ratio_above = 0.98\n",
                root.join("models/shapes/clips/demo.mkv").display().to_string()
            );
        }
        std::fs::write(&config, text).unwrap();
        let mut daemon = Daemon::spawn(&config, &[]);
        let mut at = daemon.expect(0, &["glimpse is running"], Duration::from_secs(30));
        // The first interval includes start-up; the second is measured.
        for _ in 0..2 {
            at = daemon.expect(
                at,
                &["camera stats", "camera=cam0 "],
                Duration::from_secs(40),
            );
        }
        std::thread::sleep(Duration::from_millis(500));
        let log = daemon.stop();
        let line = |camera: usize| {
            log.lines()
                .rev()
                .find(|l| l.contains("camera stats") && l.contains(&format!("camera=cam{camera} ")))
                .unwrap()
                .to_owned()
        };
        let field = |l: &str, key: &str| -> f64 {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        let figures: Vec<String> = (0..cameras)
            .map(|c| {
                let l = line(c);
                let (fps, analysed) = (field(&l, "fps"), field(&l, "analysed_fps"));
                format!(
                    "cam{c} {analysed:.2}/{fps:.2} fps ({:.0}%), {} dropped",
                    100.0 * analysed / fps,
                    field(&l, "dropped")
                )
            })
            .collect();
        eprintln!("{cameras} camera(s): {}", figures.join("; "));
    }
}

#[test]
fn issue19_a_stop_that_abandons_a_model_call_ends_at_once_and_says_nothing_after() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("glimpse.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[service]
state_dir = {state:?}
shutdown_timeout_ms = 300
[mqtt]
listen = "127.0.0.1:{port}"
[model]
path = {model:?}
threads = 1
[workers]
threads = 1
[cameras.cam]
fps = 2
width = 64
height = 64
source = {{ kind = "synthetic", frame_rate = 2, shapes = 2 }}
"#,
            state = dir.path().join("state").display().to_string(),
            port = free_port(),
            model = repo().join("models/test-tiny").display().to_string(),
        ),
    )
    .unwrap();
    // Every frame's analysis takes a minute: the stop must abandon it.
    let mut daemon = Daemon::spawn(&config, &[("GLIMPSE_DEBUG_ANALYSIS_MS", "60000")]);
    daemon.expect(0, &["glimpse is running"], Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let log = daemon.stop();
    let took = started.elapsed();
    assert!(log.contains("abandoning them"), "{log}");
    // Within the timeout and the MQTT drain, not after the model call.
    assert!(took < Duration::from_secs(10), "took {took:?}:\n{log}");
    let last = log.lines().rfind(|l| !l.trim().is_empty()).unwrap();
    assert!(
        last.contains("glimpse stopped"),
        "nothing after glimpse stopped:\n{log}"
    );
}
