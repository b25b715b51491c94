//! The bundled shapes model (models/shapes/) in the daemon: the context the
//! training code builds equals the one the daemon builds (so training and
//! serving cannot drift apart), and a shape appearing in a clip becomes an
//! MQTT event that names its colour and kind, and the watch rule that
//! matches it turns on.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::broker::{json_of, publish, Mosquitto, Sub};
use crate::harness::daemon::Daemon;
use crate::harness::history::history;
use crate::harness::{free_port, glimpse, output_ok, repo};

#[test]
fn training_and_serving_build_the_same_context() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("prompts.jsonl");
    let root = repo();
    // Both references; the small memory forces evictions and pooling.
    eval_on_the_shapes_model(
        &root.join("models/shapes/clips/parity.json"),
        &[
            "--reference",
            "last_kept,previous",
            "--dump",
            dump.to_str().unwrap(),
        ],
    );
    let lines = std::fs::read_to_string(&dump).unwrap();
    let prompts = lines.lines().count();
    assert!(prompts >= 8, "{prompts} prompts dumped");
    // Each line also holds what the model answered and how it was scored
    // (for reading failures); exact-match tasks are right when equal.
    for line in lines.lines() {
        let p: serde_json::Value = serde_json::from_str(line).unwrap();
        let (task, answer, truth) = (
            p["task"].as_str().unwrap(),
            p["answer"].as_str().unwrap(),
            p["truth"].as_str().unwrap(),
        );
        assert!(p["confidence"].is_number(), "{line}");
        if task != "rule" && !task.starts_with("when_") {
            let equal = answer.trim().to_lowercase() == truth.trim().to_lowercase();
            assert_eq!(p["right"].as_bool(), Some(equal), "{line}");
        }
    }
    let parity = Command::new("python3")
        .arg(root.join("models/shapes/parity.py"))
        .arg(root.join("models/shapes/model"))
        .arg(root.join("models/shapes/clips"))
        .arg(&dump)
        .output()
        .expect("python3 runs (scripts/install-deps)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&parity.stdout),
        String::from_utf8_lossy(&parity.stderr)
    );
    assert!(parity.status.success(), "{report}");
    assert!(
        report.contains(&format!("parity: {prompts} prompts checked, 0 different")),
        "{report}"
    );
    // The failure reading (models/shapes/diagnose.py) reads the same dump:
    // every "when" answer lands in exactly one of its cells.
    let diagnose = Command::new("python3")
        .arg(root.join("models/shapes/diagnose.py"))
        .arg(&dump)
        .output()
        .expect("python3 runs");
    let report = String::from_utf8_lossy(&diagnose.stdout).into_owned();
    assert!(
        diagnose.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&diagnose.stderr)
    );
    assert!(
        report.contains(&format!("{prompts} answers read")),
        "{report}"
    );
    let whens = lines
        .lines()
        .filter(|l| l.contains(r#""task":"when_"#))
        .count();
    // Twice: once by the kind of answer, once by how far back the truth is.
    let count = |by_age: bool| -> usize {
        report
            .lines()
            .filter(|l| l.contains("  when_") && l.contains(" by age, ") == by_age)
            .map(|l| {
                l.split_whitespace()
                    .next()
                    .unwrap()
                    .parse::<usize>()
                    .unwrap()
            })
            .sum()
    };
    assert!(
        whens > 0 && count(false) == whens && count(true) == whens,
        "{whens} \"when\" answers dumped:\n{report}"
    );
}

/// The eval walks a clip's frames once; a ground-truth file whose questions
/// are not in frame order (as when questions are added to a clip later)
/// must give the same report as the ordered file.
#[test]
fn eval_takes_questions_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = repo();
    let clips = root.join("models/shapes/clips");
    let mut truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(clips.join("parity.json")).unwrap()).unwrap();
    truth["video"] = clips.join("parity.mkv").display().to_string().into();
    truth["questions"].as_array_mut().unwrap().reverse();
    let reversed = dir.path().join("reversed.json");
    std::fs::write(&reversed, truth.to_string()).unwrap();
    let report = |json: &Path| {
        let out = eval_on_the_shapes_model(json, &["--reference", "last_kept", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out).unwrap()
    };
    let ordered = report(&clips.join("parity.json"));
    assert_eq!(ordered["questions"], 8, "{ordered}");
    assert_eq!(report(&reversed), ordered);
}

/// Issue 18: the table scores descriptions by their events and puts each
/// task's baselines and interval over clips beside the model's accuracy.
/// The expected counts come from the ground truth, not from the model.
/// `--reliability` draws the calibration too.
#[test]
fn eval_table_shows_event_scores_baselines_and_intervals() {
    let root = repo();
    let json = root.join("models/shapes/clips/parity.json");
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let answers = |task: &str| -> Vec<String> {
        truth["questions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["task"] == task)
            .map(|q| q["answer"].as_str().unwrap().to_owned())
            .collect()
    };
    let describe = answers("describe");
    let true_events: usize = describe
        .iter()
        .filter(|a| *a != "nothing changed")
        .map(|a| a.split(" and ").count())
        .sum();
    let nothing = describe.iter().filter(|a| *a == "nothing changed").count();
    let dir = tempfile::tempdir().unwrap();
    let diagram = dir.path().join("reliability.png");
    let table = String::from_utf8(eval_on_the_shapes_model(
        &json,
        &[
            "--reference",
            "last_kept",
            "--reliability",
            diagram.to_str().unwrap(),
        ],
    ))
    .unwrap();
    // The diagram: a PNG with a panel per kind of answer the clip has
    // (descriptions and rule answers pooled, descriptions; it asks no rule).
    let png = std::fs::read(&diagram).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert!(
        (800..1200).contains(&width),
        "{width} px wide: not two panels"
    );
    for column in ["ev_F1", "95% CI", "majority answer", "fixed answer"] {
        assert!(table.contains(column), "no {column:?} in\n{table}");
    }
    let line = |start: &str| {
        table
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?} in\n{table}"))
            .to_owned()
    };
    let events = line("describe events:");
    assert!(
        events.contains(&format!(" {true_events} true,")),
        "{true_events} true events in the truth: {events}"
    );
    // Always "nothing changed" is right exactly where nothing changed.
    let fixed = 100.0 * nothing as f64 / describe.len() as f64;
    let row = line("describe ");
    assert!(
        row.ends_with(&format!("{fixed:.1}% nothing changed")),
        "{row}"
    );
    // One clip: the interval cannot be wider than a point.
    let when = line("when_appeared ");
    let model: &str = when.split_whitespace().nth(1).unwrap();
    let model = model.trim_end_matches('%');
    assert!(when.contains(&format!("[{model}, {model}]")), "{when}");
}

#[test]
fn a_shape_appearing_in_a_clip_is_named_in_an_mqtt_event() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let root = repo();
    let config = dir.path().join("glimpse.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[service]
state_dir = {state:?}
[mqtt]
listen = "127.0.0.1:{port}"
[model]
path = {model:?}
threads = 1
[cameras.door]
fps = 2
width = 128
height = 128
rules = ["is there a red shape?"]
source = {{ kind = "file", path = {clip:?}, loop = false }}
[cameras.door.trigger]
drop_ratio_below = 0.95
rearm_drop_ratio_above = 0.98
"#,
            state = dir.path().join("state").display().to_string(),
            model = root.join("models/shapes/model").display().to_string(),
            clip = root
                .join("models/shapes/clips/appear.mkv")
                .display()
                .to_string(),
        ),
    )
    .unwrap();
    let daemon = Daemon::spawn(&config, &[]);
    // Subscribe before the clip reaches the square (2.5 s in).
    let mut sub = Sub::start_when_up(
        port,
        &["-q", "1", "-t", "glimpse/door/event"],
        Duration::from_secs(10),
        || daemon.log(),
    );
    // The square's appearance fires the trigger: a description, and the
    // watch rule asked at the same firing, which matches: it turns on. (The test does not
    // check that a rule about another colour stays quiet: the demo model
    // answers rules 69% right, a false yes is its commonest mistake, and in
    // this clip it says yes to "is there a blue shape?"; see
    // models/shapes/README.md.)
    let kind_is = |kind: &'static str| {
        move |line: &str| serde_json::from_str::<serde_json::Value>(line).unwrap()["kind"] == kind
    };
    let within = Duration::from_secs(60);
    let described: serde_json::Value =
        serde_json::from_str(&sub.expect("a description", within, kind_is("description"))).unwrap();
    let alert: serde_json::Value =
        serde_json::from_str(&sub.expect("a rule_on", within, kind_is("rule_on"))).unwrap();
    assert!(
        described["text"]
            .as_str()
            .unwrap()
            .starts_with("the red square appeared"),
        "the event names the shape's colour and kind: {described}"
    );
    assert_eq!(alert["text"], "is there a red shape? yes", "{alert}");
    assert_eq!(alert["reference"], "is_there_a_red_shape", "{alert}");
    daemon.stop_within(Duration::from_secs(15));
}

/// `glimpse eval JSON` on the bundled model, dropping at τ 0.5 only (no
/// full-token baseline) with a small memory (evictions and pooling), plus
/// `args`; its stdout, once it succeeded.
fn eval_on_the_shapes_model(json: &Path, args: &[&str]) -> Vec<u8> {
    let out = output_ok(
        glimpse()
            .arg("eval")
            .arg(json)
            .arg("--model")
            .arg(repo().join("models/shapes/model"))
            .args(["--no-full", "--tau", "0.5", "--memory", "2,2,4"])
            .args(args),
    );
    out.stdout
}

/// Issue 16: a watch rule is a state. On the demo clip (the red square
/// appears at 3 s and leaves at 28 s) the red rule turns `on` at its first
/// check after 3 s and `off` once the model stops seeing red, each
/// transition published once, and the retained state says the same.
///
/// The clip is read as fast as the model goes (`realtime = false`, a queue
/// that holds the whole clip: no frame is dropped, so the run is the same
/// every time and takes seconds, not a minute), with the rules checked
/// every 2 s of stream time.
///
/// `off` comes at the model's first no after its last yes. The demo model
/// shipped at step 28 200 says no from 28 s, on the frame the square leaves
/// (earlier models said yes until about 55 s, while other shapes were
/// there), so the test does not bound how late `off` may come; it prints
/// the answers it got and checks the state machine against them.
#[test]
fn issue_16_the_red_rule_turns_on_and_off_once_on_the_demo_clip() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let root = repo();
    let config = rule_checked_clip(
        dir.path(),
        &root.join("models/shapes/clips/demo.mkv"),
        &format!("broker = \"mqtt://127.0.0.1:{}\"", broker.port),
    );
    let port = broker.port;
    let mut sub = Sub::start(
        port,
        &["-q", "1", "-v", "-t", "glimpse/door/event", "-t", "probe"],
    );
    // Subscribed once a message published now comes back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sub
        .drain(Duration::from_millis(200))
        .iter()
        .any(|l| l == "probe ready")
    {
        assert!(Instant::now() < deadline, "mosquitto_sub did not subscribe");
        publish(port, &["-t", "probe", "-m", "ready"]);
    }
    let mut daemon = Daemon::spawn(&config, &[]);
    let rule = "is there a red shape?";
    // Until the last frames (59.5 s) are checked, then a little longer for
    // the events to arrive (a generous bound: the whole suite runs at once).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        daemon.assert_running();
        let got = rule_answers(&daemon.log());
        if got.iter().any(|(at, _)| *at >= 58.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the clip was not analysed to its end within 120 s; answers {got:?}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    sub.drain(Duration::from_secs(1));
    let got = rule_answers(&daemon.log());
    let events: Vec<serde_json::Value> = sub
        .seen
        .iter()
        .filter(|l| l.starts_with("glimpse/door/event "))
        .map(|l| json_of(l))
        .collect();
    let of = |kind: &str| -> Vec<f64> {
        events
            .iter()
            .filter(|e| e["kind"] == kind)
            .map(|e| e["end_s"].as_f64().unwrap())
            .collect()
    };
    let (on, off) = (of("rule_on"), of("rule_off"));
    let report = format!("answers {got:?}; rule_on at {on:?}, rule_off at {off:?}");
    eprintln!("{report}");
    assert!(of("alert").is_empty(), "no alert kind any more; {report}");
    // On at the first check after 3 s, once.
    let first_after = got.iter().find(|(at, _)| *at >= 3.0).unwrap().0;
    assert_eq!(on, vec![first_after], "{report}");
    assert!(first_after < 4.0, "{report}");
    // Off once, after the square left, at the first no after the last yes
    // (no debounce by default: a lone no among the yes answers would have
    // made more transitions than these).
    let last_yes = got.iter().rfind(|(_, yes)| *yes).unwrap().0;
    let expected_off = got
        .iter()
        .find(|(at, yes)| *at > last_yes && !yes)
        .map(|(at, _)| *at);
    assert_eq!(
        off,
        expected_off.into_iter().collect::<Vec<_>>(),
        "{report}"
    );
    // Frame 56 (28.0 s) is the first without the square: off there is on time.
    assert!(off.iter().all(|at| *at >= 28.0), "{report}");
    for e in events.iter().filter(|e| e["kind"] != "description") {
        assert_eq!(e["reference"], "is_there_a_red_shape", "{e}");
        assert!(e["text"].as_str().unwrap().starts_with(rule), "{e}");
    }
    eprintln!(
        "the red square left at 28.0 s; rule_off at {off:?} s (checks every 2 s of stream time)"
    );
    // Issue 18: every spoken event says how sure the model was, and
    // `glimpse eval --events` judges the run against the clip's truth: the
    // red square is on screen from 3 s to 28 s, so the rule's on (< 4 s)
    // and its off (> 28 s) are both true, whatever the descriptions say.
    for e in &events {
        let c = e["confidence"].as_f64().unwrap_or(-1.0);
        assert!(c > 0.0 && c <= 1.0, "confidence in (0, 1]: {e}");
    }
    let lines: String = events.iter().map(|e| format!("{e}\n")).collect();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines).unwrap();
    let out = output_ok(
        glimpse()
            .args(["eval", "--json", "--events"])
            .arg(&file)
            .arg("--truth")
            .arg(root.join("models/shapes/clips/demo.json")),
    );
    let scored: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let judged = scored["judged"].as_array().unwrap();
    assert_eq!(judged.len(), events.len(), "{scored}");
    for j in judged.iter().filter(|j| j["kind"] != "description") {
        assert_eq!(j["right"], true, "the rule's transitions are true: {j}");
    }
    let descriptions = of("description").len() as u64;
    assert_eq!(
        scored["summary"]["description"][1], descriptions,
        "{scored}"
    );
    // The retained state and list say the same as the last transition.
    let mut retained = Sub::start(
        port,
        &[
            "-v",
            "-C",
            "2",
            "-t",
            "glimpse/door/rules",
            "-t",
            "glimpse/door/rules/is_there_a_red_shape/state",
        ],
    );
    let state = json_of(
        &retained.expect("the retained state", Duration::from_secs(5), |l| {
            l.starts_with("glimpse/door/rules/is_there_a_red_shape/state ")
        }),
    );
    let list = json_of(
        &retained.expect("the retained list", Duration::from_secs(5), |l| {
            l.starts_with("glimpse/door/rules ")
        }),
    );
    let (want, since) = match off.last() {
        Some(at) => ("off", *at),
        None => ("on", on[0]),
    };
    assert_eq!(state["state"], want, "{state}; {report}");
    assert_eq!(state["since_s"], since, "{state}; {report}");
    assert_eq!(state["rule"], rule, "{state}");
    assert_eq!(state["source"], "config", "{state}");
    assert_eq!(list["rules"][0]["id"], "is_there_a_red_shape", "{list}");
    assert_eq!(list["rules"][0]["state"], want, "{list}");
    daemon.stop();
}

/// Issue 16: after a restart with a restored memory, a file source's
/// stream time starts at 0 again while the memory ends later; the evidence
/// of an event must still be in time order (memory time = where the
/// restored memory ended + the new stream time).
#[test]
fn issue_16_evidence_stays_in_time_order_after_a_restart_with_a_restored_memory() {
    let dir = tempfile::tempdir().unwrap();
    let root = repo();
    let config = dir.path().join("glimpse.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[service]
state_dir = {state:?}
[mqtt]
listen = "127.0.0.1:{port}"
discovery = false
[model]
path = {model:?}
threads = 1
[cameras.door]
fps = 2
width = 128
height = 128
queue_capacity = 64
source = {{ kind = "file", path = {clip:?}, loop = false, realtime = false }}
[cameras.door.trigger]
drop_ratio_below = 0.95
rearm_drop_ratio_above = 0.98
"#,
            port = free_port(),
            state = dir.path().join("state").display().to_string(),
            model = root.join("models/shapes/model").display().to_string(),
            clip = root
                .join("models/shapes/clips/appear.mkv")
                .display()
                .to_string(),
        ),
    )
    .unwrap();
    let mut logs = Vec::new();
    for _ in 0..2 {
        let mut daemon = Daemon::spawn(&config, &[]);
        daemon.expect(0, &["event:", "kind=Description"], Duration::from_secs(30));
        // The memory snapshot is written at the stop.
        logs.push(daemon.stop());
    }
    assert!(
        logs[1].contains("memory restored from its snapshot"),
        "the second run restored the first's memory:\n{}",
        logs[1]
    );
    let events = history_descriptions(&config);
    assert_eq!(events.len(), 2, "one description per run: {events:?}");
    let first_end = events[0]["end_s"].as_f64().unwrap();
    let second = &events[1];
    let times: Vec<f64> = second["evidence"]["frame_times_s"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "evidence in time order: {times:?}"
    );
    // The second run's frames come after the first run's memory, and so
    // does the window its description read (the demo model reads "what
    // changed ?" from the last two seconds only: docs/architecture.md §5).
    assert!(
        second["end_s"].as_f64().unwrap() > first_end,
        "{first_end} then {second}"
    );
    assert!(
        times.iter().all(|t| *t >= first_end),
        "the window is after the restored memory's end: {first_end}, {times:?}"
    );
}

/// A description that is no news is not published: counted and logged.
/// The shapes model's no-news answer is "nothing changed" (its folder's
/// `glimpse.no_news`); a camera may add its own (`trigger.no_news`). The
/// demo model (step 44 774) names a real change at every trigger of dev
/// clip 1, so the test makes one of them no news for this camera: "the
/// blue circle moved", which it says at 5.5 s (the circle starts moving
/// at 5 s).
#[test]
fn a_description_that_is_no_news_is_not_published() {
    let dir = tempfile::tempdir().unwrap();
    let config = rule_checked_clip(
        dir.path(),
        &repo().join("models/shapes/clips/eval/dev/eval-01.mkv"),
        &format!("listen = \"127.0.0.1:{}\"", free_port()),
    );
    // The last table of the config is the camera's trigger.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("no_news = [\"nothing changed\", \"the blue circle moved\"]\n");
    std::fs::write(&config, text).unwrap();
    let mut daemon = Daemon::spawn(&config, &[]);
    // The rule is checked every 2 s of stream time: one at 28 s or later
    // means the 30 s clip has been analysed.
    let deadline = Instant::now() + Duration::from_secs(120);
    let checked_to = |log: &str| rule_answers(log).iter().fold(0.0, |m, a| a.0.max(m));
    while checked_to(&daemon.log()) < 28.0 {
        daemon.assert_running();
        assert!(
            Instant::now() < deadline,
            "the clip was not analysed within 120 s:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = daemon.stop();
    let unsaid = log
        .lines()
        .filter(|l| l.contains("not published: the description says nothing changed"))
        .count();
    assert!(unsaid >= 1, "the model said the no-news answer:\n{log}");
    let descriptions = history_descriptions(&config);
    assert!(
        !descriptions.is_empty(),
        "the clip's other changes are described:\n{log}"
    );
    for e in &descriptions {
        let text = e["text"].as_str().unwrap();
        assert!(!glimpse::llm::says_nothing_changed(text), "published: {e}");
        assert_ne!(text, "the blue circle moved", "published: {e}");
    }
}

/// Writes the config of a `door` camera reading `clip` through the shapes
/// model as fast as it can (no frame dropped), with the red rule checked
/// every 2 s of stream time and the analysis logged at debug; `mqtt` is
/// the `[mqtt]` table's broker line. Returns the config's path.
fn rule_checked_clip(dir: &Path, clip: &Path, mqtt: &str) -> std::path::PathBuf {
    let config = dir.join("glimpse.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[service]
state_dir = {state:?}
log_level = "info,glimpse::pipeline=debug"
[mqtt]
{mqtt}
discovery = false
[http]
enabled = false
[model]
path = {model:?}
threads = 1
[cameras.door]
fps = 2
width = 128
height = 128
queue_capacity = 256
rules = ["is there a red shape?"]
source = {{ kind = "file", path = {clip:?}, loop = false, realtime = false }}
[cameras.door.dtd]
tau = 0.7
[cameras.door.trigger]
drop_ratio_below = 0.95
rearm_drop_ratio_above = 0.98
rule_interval_s = 2.0
rule_recheck_s = 2.0
"#,
            state = dir.join("state").display().to_string(),
            model = repo().join("models/shapes/model").display().to_string(),
            clip = clip.display().to_string(),
        ),
    )
    .unwrap();
    config
}

/// The watch-rule answers in a log with the analysis at debug: (stream
/// time, yes).
fn rule_answers(log: &str) -> Vec<(f64, bool)> {
    log.lines()
        .filter(|l| l.contains("watch rule checked"))
        .filter_map(|l| {
            let at = l.split("at_s=").nth(1)?.split(' ').next()?.parse().ok()?;
            Some((at, l.contains("yes=true")))
        })
        .collect()
}

/// The descriptions in the event history of the daemon run with `config`
/// (`glimpse events --json`).
fn history_descriptions(config: &Path) -> Vec<serde_json::Value> {
    history(config)
        .into_iter()
        .filter(|e| e["kind"] == "description")
        .collect()
}
