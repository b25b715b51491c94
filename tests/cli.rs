//! `glimpse check` and `glimpse --version` on good and broken configs.

use crate::harness::{check, copy_model, glimpse, is_root, output_ok, repo, unprivileged};

fn stderr_of(fixture: &str) -> (String, Option<i32>) {
    let path = repo().join("tests/configs").join(fixture);
    let out = check(&path);
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout for a broken config"
    );
    (String::from_utf8(out.stderr).unwrap(), out.status.code())
}

fn assert_refused(fixture: &str, expected: &str) {
    let (stderr, code) = stderr_of(fixture);
    let expected = format!(
        "error: {}: {expected}\n",
        repo().join("tests/configs").join(fixture).display()
    );
    assert_eq!(stderr, expected);
    assert_eq!(code, Some(78), "EX_CONFIG");
}

#[test]
fn syntax_error() {
    assert_refused(
        "syntax.toml",
        "TOML syntax error at line 3, column 30: unclosed inline table, expected `}`",
    );
}

#[test]
fn unknown_key() {
    assert_refused(
        "unknown-key.toml",
        "cameras.front.fsp: unknown field `fsp`, expected one of `enabled`, `fps`, `width`, `height`, `queue_capacity`, `frame_timeout_ms`, `reconnect_min_ms`, `reconnect_max_ms`, `source`, `dtd`, `trigger`, `memory`, `rules`, `snapshot`, `masks`, `zones` (line 2)",
    );
}

#[test]
fn wrong_type() {
    assert_refused(
        "wrong-type.toml",
        "cameras.front.fps: invalid type: string \"fast\", expected f64 (line 2)",
    );
}

#[test]
fn out_of_range() {
    assert_refused(
        "out-of-range.toml",
        "cameras.front.fps: must be > 0, got -1",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    assert_refused(
        "several-problems.toml",
        "4 problems:
  workers.threads: must be between 1 and 64, got 0
  mqtt.broker: must be \"embedded\" or a URL, got \"localhost:1883\" (use \"embedded\", mqtt://HOST:PORT or mqtts://HOST:PORT)
  cameras.front door: camera names appear in MQTT topics: use 1 to 64 letters, digits, '_' or '-', got \"front door\"
  cameras.front door.width: must be an even number between 16 and 4096, got 8",
    );
}

#[test]
fn unreadable_secret_file() {
    assert_refused(
        "unreadable-secret.toml",
        "mqtt.password_file: cannot read /nonexistent/glimpse-mqtt-password: No such file or directory (os error 2)",
    );
}

#[test]
fn missing_config_file() {
    let out = check(std::path::Path::new("/nonexistent/glimpse.toml"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "error: /nonexistent/glimpse.toml: cannot read the config file: No such file or directory (os error 2) (pass --config PATH or set GLIMPSE_CONFIG)\n"
    );
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn password_from_environment_satisfies_the_secret() {
    let path = repo().join("tests/configs/unreadable-secret.toml");
    let out = output_ok(
        glimpse()
            .env("GLIMPSE_MQTT_PASSWORD", "s3cret")
            .env("HOME", "/root")
            .args(["check", "--config"])
            .arg(&path),
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        !stdout.contains("s3cret"),
        "the effective config never shows the password"
    );
}

/// Every config we ship must pass `check`, and its printed effective config
/// must itself be a valid config.
#[test]
fn shipped_configs_pass_check() {
    let mut configs: Vec<_> = ["config", "config/examples"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(repo().join(dir)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    configs.sort();
    assert!(!configs.is_empty());
    let dir = tempfile::tempdir().unwrap();
    for path in configs {
        // The RTSP example names a password file that only a real install has.
        let out = output_ok(
            glimpse()
                .env("HOME", dir.path())
                .env("GLIMPSE_CAMERA_FRONT_DOOR_PASSWORD", "example")
                .args(["check", "--config"])
                .arg(&path),
        );
        let effective = dir.path().join("effective.toml");
        std::fs::write(&effective, &out.stdout).unwrap();
        let again = glimpse()
            .env("GLIMPSE_CAMERA_FRONT_DOOR_PASSWORD", "example")
            .args(["check", "--quiet", "--config"])
            .arg(&effective)
            .output()
            .unwrap();
        assert!(
            again.status.success(),
            "effective config of {}: {}",
            path.display(),
            String::from_utf8_lossy(&again.stderr)
        );
        assert!(
            again.stdout.is_empty() && again.stderr.is_empty(),
            "--quiet prints nothing"
        );
    }
}

#[test]
fn version_names_the_crate_version() {
    let out = glimpse().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("glimpse {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn model_inspect_describes_a_folder_or_says_why_not() {
    let out = glimpse()
        .args(["model", "inspect"])
        .arg(repo().join("models/test-tiny"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "vision         64x64 px, 8 px patches, scale factor 1 -> 8x8 token grid (64 tokens per frame)",
        "language       hidden 64, 2 layers, 4 heads, 2 KV heads of 16, vocabulary 94",
        "  in  past_key_values.0.key float[1, 2, past_sequence_length, 16]",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    let out = glimpse()
        .args(["model", "inspect", "/nonexistent/model"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "error: /nonexistent/model: not a directory (expected an onnx-community model folder)\n"
    );
}

/// Makes a 4 s 30 fps clip of a videotestsrc pattern.
fn clip(dir: &std::path::Path, name: &str, pattern: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let status = std::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .args(format!("videotestsrc num-buffers=120 {pattern} ! video/x-raw,width=160,height=120,framerate=30/1 ! jpegenc ! avimux ! filesink").split(' '))
        .arg(format!("location={}", path.display()))
        .status()
        .unwrap();
    assert!(status.success());
    path
}

#[test]
fn tune_reports_every_setting_and_draws_them() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo().join("models/test-tiny");
    let run = |clip: &std::path::Path| {
        let png = dir.path().join("tune.png");
        let out = output_ok(
            glimpse()
                .args([
                    "tune",
                    "--json",
                    "--tau",
                    "0.3,0.7",
                    "--reference",
                    "last_kept,previous",
                    "--model",
                ])
                .arg(&model)
                .arg("--png")
                .arg(&png)
                .arg(clip),
        );
        let png_bytes = std::fs::read(&png).unwrap();
        assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // (smpte has a patch of snow: not a still.)
    let still = run(&clip(dir.path(), "still.avi", "pattern=pinwheel"));
    assert_eq!(still["frames"], 8, "4 s at 2 fps");
    assert_eq!(
        still["settings"].as_array().unwrap().len(),
        4,
        "2 taus x 2 references"
    );
    for s in still["settings"].as_array().unwrap() {
        assert_eq!(
            s["encoded_share"], 0.125,
            "only the first frame reaches the encoder"
        );
        assert_eq!(s["triggers_s"], serde_json::json!([]));
        let retention: Vec<f64> = s["retention"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(retention[0], 1.0);
        assert!(retention[1..].iter().all(|r| *r == 0.0));
    }
    let moving = run(&clip(dir.path(), "ball.avi", "pattern=ball motion=sweep"));
    for s in moving["settings"].as_array().unwrap() {
        assert!(s["encoded_share"].as_f64().unwrap() > 0.5, "{s}");
    }
    // A higher tau never keeps less.
    let mean = |i: usize| moving["settings"][i]["retention_mean"].as_f64().unwrap();
    assert!(mean(2) >= mean(0) && mean(3) >= mean(1));

    let out = glimpse()
        .args(["tune", "/nonexistent.mp4", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.mp4: no such file"));
}

/// Issue 17: `glimpse tune`'s picture on the bundled demo clip and model is
/// a titled chart with axis labels and a legend over a labelled contact
/// sheet, and `--html` embeds the same PNG. Pixel regions follow the layout
/// in `daemon/src/tune/plot.rs` (1080 px wide; title, chart and legend in
/// the top 458 rows, the legend right of x = 700).
#[test]
fn tune_draws_a_chart_a_person_can_read() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let (png, html) = (dir.path().join("tune.png"), dir.path().join("tune.html"));
    output_ok(
        glimpse()
            .args([
                "tune",
                "--tau",
                "0.3,0.7",
                "--reference",
                "last_kept,previous",
            ])
            .arg("--model")
            .arg(repo().join("models/shapes/model"))
            .arg("--png")
            .arg(&png)
            .arg("--html")
            .arg(&html)
            .arg(repo().join("models/shapes/clips/demo.mkv")),
    );
    let bytes = std::fs::read(&png).unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes))
        .read_info()
        .unwrap();
    let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut rgb).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let (w, h) = (info.width as usize, info.height as usize);
    // 60 s at 2 fps: 120 frames thinned to 15 tiles, two rows under the chart.
    assert_eq!(w, 1080);
    assert!(h > 458 + 2 * 112, "{h} rows: no room for the contact sheet");
    let px = |x: usize, y: usize| &rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
    let colours: std::collections::HashSet<&[u8]> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| px(x, y))
        .collect();
    assert!(
        colours.len() > 100,
        "{} colours: a blank picture",
        colours.len()
    );
    // Text is dark grey to black; nothing else in these regions is.
    let ink = |xs: std::ops::Range<usize>, ys: std::ops::Range<usize>| {
        ys.flat_map(|y| xs.clone().map(move |x| (x, y)))
            .filter(|&(x, y)| px(x, y).iter().all(|c| *c < 90))
            .count()
    };
    assert!(ink(0..w, 0..58) > 300, "the title");
    assert!(ink(0..30, 100..400) > 100, "the y axis' label");
    assert!(ink(300..500, 425..458) > 100, "the x axis' label");
    let legend = ink(700..w, 58..458);
    assert!(legend > 800, "{legend} ink pixels: the legend's text");
    // Each setting's swatch is in the legend, in its curve's colour.
    for colour in [[214, 39, 40], [31, 119, 180], [44, 160, 44], [255, 127, 14]] {
        let swatch = (58..458)
            .flat_map(|y| (700..740).map(move |x| (x, y)))
            .filter(|&(x, y)| px(x, y) == colour)
            .count();
        assert!(swatch > 20, "no legend swatch in {colour:?}");
    }
    // Under the first row of tiles (the sheet's heading takes 30 rows).
    let captions = 458 + 30 + 112;
    assert!(
        ink(0..w, captions..captions + 20) > 500,
        "the tiles' captions"
    );

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<title>glimpse tune: "), "{page:.200}");
    let data = page
        .split("data:image/png;base64,")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("an embedded PNG");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
        bytes,
        "the page shows the same picture"
    );
    assert_eq!(page.matches("<tr><td>").count(), 4, "one row per setting");
}

/// Issue 15: the shipped config names its model and clip relative to its
/// own folder, so it works whatever the working directory (systemd starts
/// services in `/`), and `check` shows them resolved.
#[test]
fn the_shipped_config_finds_its_files_from_any_working_directory() {
    let home = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(repo()).unwrap();
    for (cwd, config) in [
        (
            std::path::PathBuf::from("/"),
            root.join("config/glimpse.toml"),
        ),
        (root.clone(), "config/glimpse.toml".into()),
        (root.join("config"), "glimpse.toml".into()),
    ] {
        let out = output_ok(
            glimpse()
                .current_dir(&cwd)
                .env("HOME", home.path())
                .args(["check", "--config"])
                .arg(&config),
        );
        let effective: toml::Table = String::from_utf8(out.stdout).unwrap().parse().unwrap();
        assert_eq!(
            effective["model"]["path"]
                .as_str()
                .map(std::path::PathBuf::from),
            Some(root.join("models/shapes/model")),
            "from {}",
            cwd.display()
        );
        assert_eq!(
            effective["cameras"]["demo"]["source"]["path"]
                .as_str()
                .map(std::path::PathBuf::from),
            Some(root.join("models/shapes/clips/demo.mkv"))
        );
    }
}

/// A copy of the tiny test model in `dir`/`name`.
fn copy_test_model(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let to = dir.join(name);
    copy_model(&repo().join("models/test-tiny"), &to);
    to
}

/// Issue 15: `check` (and `run`, before it starts anything) verifies the
/// files the config names, every problem with its key; a model folder whose
/// tokenizer or chat template does not load is a config error (78), so
/// systemd does not restart into it.
#[test]
fn check_and_run_verify_the_files_the_config_names() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_test_model(dir.path(), "model");
    std::fs::write(model.join("tokenizer.json"), "{ not a tokenizer").unwrap();
    std::fs::create_dir(dir.path().join("clips")).unwrap();
    let config = dir.path().join("glimpse.toml");
    std::fs::write(
        &config,
        r#"
[service]
state_dir = "state"
[mqtt]
broker = "mqtts://broker.invalid:8883"
ca_file = "tls/ca.pem"
[model]
path = "model"
[cameras.door]
source = { kind = "file", path = "clips/door.mkv" }
[cameras.yard]
source = { kind = "file", path = "clips" }
[cameras.spare]
enabled = false
source = { kind = "file", path = "clips/spare.mkv" }
"#,
    )
    .unwrap();
    let d = dir.path().display();
    let expected = format!(
        "error: {d}/glimpse.toml: 4 problems:
  model.path: tokenizer: {d}/model/tokenizer.json: "
    );
    let out = check(&config);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(out.stdout.is_empty());
    assert!(stderr.starts_with(&expected), "{stderr}");
    let rest = format!(
        "
  mqtt.ca_file: {d}/tls/ca.pem: no such file
  cameras.door.source.path: {d}/clips/door.mkv: no such file
  cameras.yard.source.path: {d}/clips: is a folder, not a file
"
    );
    assert!(
        stderr.ends_with(&rest),
        "a disabled camera's clip is not needed: {stderr}"
    );

    // `run` refuses the same config with the same message, from anywhere.
    let run = glimpse()
        .current_dir("/")
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(78));
    assert_eq!(String::from_utf8(run.stderr).unwrap(), stderr);

    // A chat template that does not compile, alone.
    let model = copy_test_model(dir.path(), "model2");
    let tokenizer_config = model.join("tokenizer_config.json");
    let mut settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tokenizer_config).unwrap()).unwrap();
    settings["chat_template"] = "{% for message in messages %}{{ message".into();
    std::fs::write(&tokenizer_config, settings.to_string()).unwrap();
    std::fs::write(
        &config,
        "[service]\nstate_dir = \"state\"\n[model]\npath = \"model2\"\n[cameras.door]\nsource = { kind = \"synthetic\" }\n",
    )
    .unwrap();
    let run = glimpse()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8(run.stderr).unwrap();
    assert_eq!(run.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: {d}/glimpse.toml: model.path: chat template: {d}/model2/tokenizer_config.json: chat_template: "
        )),
        "{stderr}"
    );
}

/// A file the service's user cannot read is named by `check`. Under root
/// `check` runs as nobody, as the unit runs as its own user.
#[test]
fn check_names_a_file_it_cannot_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A copy of the binary that nobody may run, wherever the checkout is.
    let binary = dir.path().join("glimpse");
    std::fs::copy(env!("CARGO_BIN_EXE_glimpse"), &binary).unwrap();
    let clip = dir.path().join("door.mkv");
    std::fs::copy(repo().join("models/shapes/clips/appear.mkv"), &clip).unwrap();
    let config = dir.path().join("glimpse.toml");
    std::fs::write(
        &config,
        "[service]\nstate_dir = \"state\"\n[cameras.door]\nsource = { kind = \"file\", path = \"door.mkv\" }\n",
    )
    .unwrap();
    let check = || {
        let argv: Vec<String> = [binary.to_str().unwrap(), "check", "--quiet", "--config"]
            .into_iter()
            .map(str::to_owned)
            .chain([config.display().to_string()])
            .collect();
        unprivileged(&argv).env_clear().output().unwrap()
    };
    let readable = check();
    assert!(
        readable.status.success(),
        "{}",
        String::from_utf8_lossy(&readable.stderr)
    );
    let mode = if is_root() { 0o600 } else { 0o000 };
    std::fs::set_permissions(&clip, std::fs::Permissions::from_mode(mode)).unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "error: {}: cameras.door.source.path: {}: cannot read: Permission denied (os error 13)\n",
            config.display(),
            clip.display()
        )
    );
}
