//! The HTTP endpoint (issue 17): `/metrics` scraped and parsed by the
//! Prometheus project's Python parser, `/healthz`, the JSON API and a
//! question through it, the status page in real headless Chromium; and the
//! endpoint's config: off opens no port, a taken port and a bad address
//! are clear errors naming `http.listen`.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::daemon::{synthetic_config, Daemon};
use crate::harness::http::{request, request_with};
use crate::harness::{check, free_port, glimpse, http_address, repo, taken_port};

fn get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    request(addr, "GET", path, "")
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// The shipped demo config, runnable from `dir`: the model and clip of the
/// repository, a free MQTT port, a state directory in `dir`; `extra` is
/// appended to it.
pub fn demo_config(dir: &Path, extra: &str) -> PathBuf {
    let root = repo();
    let text = std::fs::read_to_string(root.join("config/glimpse.toml"))
        .unwrap()
        .replace("\"../", &format!("\"{}/", root.display()))
        .replace(
            "listen = \"127.0.0.1:1883\"",
            &format!("listen = \"127.0.0.1:{}\"", free_port()),
        )
        .replace(
            "[service]\n",
            &format!(
                "[service]\nstate_dir = {:?}\n",
                dir.join("state").display().to_string()
            ),
        );
    let path = dir.join("glimpse.toml");
    std::fs::write(&path, text + extra).unwrap();
    path
}

/// The demo daemon and its HTTP address, once its camera is up.
fn start_demo(dir: &Path) -> (Daemon, SocketAddr) {
    start_demo_with(dir, "")
}

/// [`start_demo`] with `extra` tables in the config.
fn start_demo_with(dir: &Path, extra: &str) -> (Daemon, SocketAddr) {
    let mut daemon = Daemon::spawn(&demo_config(dir, extra), &[]);
    let at = daemon.expect(0, &["HTTP endpoint:"], Duration::from_secs(60));
    let addr = http_address(&daemon.log()).expect("the endpoint's address in the log");
    daemon.expect(at, &["camera \"demo\" is up"], Duration::from_secs(60));
    (daemon, addr)
}

/// Parses metrics texts with Python's prometheus_client; one map of
/// families per text.
fn parse_metrics(dir: &Path, texts: &[&str]) -> Vec<Value> {
    let mut files = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let file = dir.join(format!("scrape{i}.txt"));
        std::fs::write(&file, text).unwrap();
        files.push(file);
    }
    let out = Command::new("python3")
        .arg(repo().join("tests/fixtures/check_metrics.py"))
        .args(&files)
        .output()
        .expect("run python3 (scripts/install-deps installs prometheus-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

/// The value of `sample` with label `key` = `value` in a parsed family map.
fn sample(families: &Value, family: &str, sample: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families[family]["samples"]
        .as_array()?
        .iter()
        .find_map(|s| {
            let matches = s[0] == sample && labels.iter().all(|(k, v)| s[1][*k] == *v);
            matches.then(|| s[2].as_f64()).flatten()
        })
}

fn scrape(addr: SocketAddr) -> String {
    let (status, head, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    String::from_utf8(body).unwrap()
}

/// Issue 17, "done when": the demo daemon's `/metrics`, scraped twice a few
/// seconds apart, parses with the Prometheus parser, every family has HELP
/// and TYPE, and the counters grow; `/healthz` is 200; a question through
/// the API gets the model's answer, counted in the next scrape; the live
/// frame is a real picture.
#[test]
fn metrics_health_api_and_ask_on_the_demo_config() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = start_demo(dir.path());

    let (status, _, body) = get(addr, "/healthz");
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));

    let first = scrape(addr);
    std::thread::sleep(Duration::from_secs(3));
    let second = scrape(addr);
    eprintln!("bytes per scrape: {} then {}", first.len(), second.len());
    let parsed = parse_metrics(dir.path(), &[&first, &second]);
    let demo = [("camera", "demo")];
    for (family, name) in [
        ("glimpse_frames_sampled", "glimpse_frames_sampled_total"),
        ("glimpse_frames_analysed", "glimpse_frames_analysed_total"),
        ("glimpse_tokens", "glimpse_tokens_total"),
        ("glimpse_retention_ratio", "glimpse_retention_ratio_count"),
    ] {
        let before =
            sample(&parsed[0], family, name, &demo).unwrap_or_else(|| panic!("{name} in {first}"));
        let after = sample(&parsed[1], family, name, &demo).unwrap();
        assert!(after > before, "{name} did not grow: {before} then {after}");
    }
    let families = parsed[1].as_object().unwrap();
    for (family, kind) in [
        ("glimpse_frames_dropped", "counter"),
        ("glimpse_encoder_calls", "counter"),
        ("glimpse_frames_skipped", "counter"),
        ("glimpse_tokens_kept", "counter"),
        ("glimpse_retention_ratio", "histogram"),
        ("glimpse_model_call_duration_seconds", "histogram"),
        ("glimpse_events", "counter"),
        ("glimpse_questions", "counter"),
        ("glimpse_outbox_pending", "gauge"),
        ("glimpse_mqtt_connected", "gauge"),
        ("glimpse_memory_entries", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
    ] {
        assert_eq!(families[family]["type"], kind, "{family}: {second}");
    }
    assert_eq!(
        sample(
            &parsed[1],
            "glimpse_mqtt_connected",
            "glimpse_mqtt_connected",
            &[]
        ),
        Some(1.0)
    );
    let encoder = [("backend", "tract"), ("call", "encoder")];
    let ort = [("backend", "ort"), ("call", "encoder")];
    let calls = sample(
        &parsed[1],
        "glimpse_model_call_duration_seconds",
        "glimpse_model_call_duration_seconds_count",
        &encoder,
    )
    .or_else(|| {
        sample(
            &parsed[1],
            "glimpse_model_call_duration_seconds",
            "glimpse_model_call_duration_seconds_count",
            &ort,
        )
    });
    assert!(
        calls.is_some_and(|n| n >= 1.0),
        "encoder calls timed: {second}"
    );

    // The camera as the page sees it.
    let (status, _, body) = get(addr, "/api/cameras");
    assert_eq!(status, 200);
    let cameras = json(&body);
    let demo_cam = &cameras["cameras"][0];
    assert_eq!(demo_cam["camera"], "demo");
    assert_eq!(demo_cam["state"], "up");
    assert_eq!(demo_cam["rules"][0]["rule"], "is there a red shape?");
    assert!(
        demo_cam["retention_recent"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{demo_cam}"
    );

    // The live frame: the demo clip's 128×128 picture, not one colour.
    let (status, head, body) = get(addr, "/api/cameras/demo/frame.jpg");
    assert_eq!(status, 200, "{head}");
    let mut decoder = zune_jpeg::JpegDecoder::new(&body);
    let pixels = decoder.decode().expect("a JPEG");
    assert_eq!(decoder.dimensions(), Some((128, 128)));
    assert!(pixels.chunks(3).any(|p| p != &pixels[..3]), "one colour");

    // A question through the API: the model's answer, as MQTT gives it.
    let (status, head, body) = request(
        addr,
        "POST",
        "/api/cameras/demo/ask",
        r#"{"id": "q-17", "question": "what colour is the square?"}"#,
    );
    assert_eq!(status, 200, "{head}\n{}", String::from_utf8_lossy(&body));
    let answer = json(&body);
    assert_eq!(answer["kind"], "answer", "{answer}");
    assert_eq!(answer["reference"], "q-17");
    assert_eq!(answer["camera"], "demo");
    assert!(
        answer["text"].as_str().is_some_and(|t| !t.is_empty()),
        "{answer}"
    );
    let (status, _, _) = request(addr, "POST", "/api/cameras/nowhere/ask", "hello?");
    assert_eq!(status, 404);
    let (status, _, body) = request(addr, "POST", "/api/cameras/demo/ask", "   ");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let third = parse_metrics(dir.path(), &[&scrape(addr)]);
    assert_eq!(
        sample(
            &third[0],
            "glimpse_questions",
            "glimpse_questions_total",
            &[("camera", "demo"), ("outcome", "answered")]
        ),
        Some(1.0)
    );
    // The answer is an event of the history too.
    let (_, _, body) = get(addr, "/api/events?camera=demo");
    let events = json(&body);
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reference"] == "q-17"),
        "{events}"
    );

    let log = daemon.stop();
    assert!(log.contains("glimpse stopped"), "{log}");
}

/// Issue 17, "done when": the status page rendered by real headless
/// Chromium shows the camera (its card, state, frame, rule), and its
/// screenshot is not blank.
#[test]
fn the_status_page_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    // A zone, drawn over the frame (issue 42).
    let (daemon, addr) = start_demo_with(
        dir.path(),
        "\n[cameras.demo.zones.door]\npoints = [[0.5, 0.0], [1.0, 0.0], [1.0, 0.5], [0.5, 0.5]]\n",
    );
    // A few frames and the first event (3 s into the clip) to show.
    std::thread::sleep(Duration::from_secs(5));
    let url = format!("http://{addr}/");
    let chromium = |args: &[&str]| {
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("chromium").display()
            ))
            // The page's script fetches the API before the DOM is taken.
            .arg("--virtual-time-budget=5000")
            .args(args)
            .arg(&url)
            .stdin(Stdio::null())
            .output()
            .expect("run chromium (scripts/install-deps installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let dom = String::from_utf8(chromium(&["--dump-dom"])).unwrap();
    assert_eq!(dom.matches("class=\"camera\"").count(), 1, "{dom}");
    assert!(dom.contains("data-camera=\"demo\""), "{dom}");
    assert!(dom.contains("class=\"badge up\""), "{dom}");
    assert!(dom.contains("<img class=\"frame\""), "{dom}");
    assert!(dom.contains("is there a red shape?"), "{dom}");
    assert!(dom.contains("<polyline"), "the retention sparkline: {dom}");
    assert!(
        dom.contains("<polygon class=\"zone\""),
        "the zone over the frame: {dom}"
    );
    assert!(dom.contains(">door</text>"), "the zone's name: {dom}");
    assert!(dom.contains("On a change it asks"), "{dom}");

    let shot = dir.path().join("page.png");
    chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1200,900",
    ]);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1200, 900));
    let pixels = &buf[..info.buffer_size()];
    let step = info.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> = pixels.chunks(step).collect();
    assert!(
        colours.len() > 50,
        "a nearly blank page: {} colours",
        colours.len()
    );
    if let Some(keep) = std::env::var_os("GLIMPSE_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    daemon.stop();
}

/// The harness's synthetic camera (quick to start) with `http` as the
/// `[http]` table.
fn http_config(dir: &Path, http: &str) -> (PathBuf, u16) {
    synthetic_config(dir, &format!("[http]\n{http}"))
}

/// The TCP ports process `pid` listens on, from /proc.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_owned)
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // st 0A is LISTEN; f[9] is the socket's inode.
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports.sort_unstable();
    ports
}

/// Issue 17, "done when": with `[http] enabled = false` no port is opened
/// (the process listens on the embedded broker's port only).
#[test]
fn http_disabled_opens_no_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (config, mqtt) = http_config(
        dir.path(),
        &format!("enabled = false\nlisten = \"127.0.0.1:{port}\""),
    );
    let mut daemon = Daemon::spawn(&config, &[]);
    daemon.expect(0, &["glimpse is running"], Duration::from_secs(30));
    let ports = listening_ports(daemon.child.id());
    assert_eq!(ports, vec![mqtt], "listening: {ports:?}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let log = daemon.stop();
    assert!(!log.contains("HTTP endpoint"), "{log}");

    // And on, on the port the config names, with a token.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (config, mqtt) = http_config(dir.path(), &format!("listen = \"127.0.0.1:{port}\""));
    let mut cmd = glimpse();
    cmd.env_remove("GLIMPSE_HTTP_LISTEN")
        .env("GLIMPSE_HTTP_TOKEN", "t0ken")
        .args(["run", "--config"])
        .arg(&config);
    let mut daemon = Daemon::spawn_command(cmd, &config.with_extension("log"));
    daemon.expect(0, &["HTTP endpoint"], Duration::from_secs(30));
    assert_eq!(listening_ports(daemon.child.id()), {
        let mut both = vec![mqtt, port];
        both.sort_unstable();
        both
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (status, _, _) = get(addr, "/healthz");
    assert_eq!(status, 200, "health checks need no token");
    let (status, head, _) = get(addr, "/metrics");
    assert_eq!(status, 401, "{head}");
    assert!(head.contains("www-authenticate: Bearer"), "{head}");
    let (status, _, _) = request_with(
        addr,
        "GET",
        "/metrics",
        "Authorization: Bearer nope\r\n",
        "",
    );
    assert_eq!(status, 401);
    let (status, _, _) = request_with(
        addr,
        "GET",
        "/metrics",
        "Authorization: Bearer t0ken\r\n",
        "",
    );
    assert_eq!(status, 200);
    let (status, _, _) = get(addr, "/api/cameras?token=t0ken");
    assert_eq!(status, 200);
    daemon.stop();
}

/// A port already taken is a clear start-up error naming `http.listen`.
#[test]
fn a_taken_http_port_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_taken, port) = taken_port();
    let (config, _) = http_config(dir.path(), &format!("listen = \"127.0.0.1:{port}\""));
    let out = glimpse()
        .env_remove("GLIMPSE_HTTP_LISTEN")
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(70));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error: cannot start the HTTP endpoint: http.listen 127.0.0.1:{port}: the address is already in use"
        )),
        "{stderr}"
    );
}

/// A bad `listen` is a config error with the key named (exit 78); so is
/// an address off loopback without a token.
#[test]
fn a_bad_http_listen_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = http_config(dir.path(), "listen = \"localhost:8480\"");
    let out = check(&config);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("http.listen: must be IP:PORT, such as 127.0.0.1:8480 or 0.0.0.0:8480, got \"localhost:8480\""),
        "{stderr}"
    );
    let (config, _) = http_config(dir.path(), "listen = \"0.0.0.0:8480\"");
    let out = glimpse()
        .env_remove("GLIMPSE_HTTP_LISTEN")
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("http.listen: 0.0.0.0:8480 is reachable from other machines"),
        "{stderr}"
    );
}
