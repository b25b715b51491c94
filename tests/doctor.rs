//! `glimpse doctor` (issue 41) with real missing pieces: a GStreamer
//! element that is not installed, a state directory that cannot be made,
//! no ONNX Runtime library where the config asks for it, and a taken HTTP
//! port; and the demo config, which has everything.

use std::net::TcpListener;

use crate::harness::{free_port, glimpse, repo};

/// `glimpse doctor --config CONFIG`: its exit code and its report.
fn doctor(config: &std::path::Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = glimpse();
    cmd.args(["doctor", "--config"]).arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{report}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), report)
}

#[test]
fn issue41_doctor_passes_the_demo_config() {
    let home = tempfile::tempdir().unwrap();
    let (code, report) = doctor(
        &repo().join("config/glimpse.toml"),
        &[
            ("HOME", home.path().to_str().unwrap()),
            ("GLIMPSE_HTTP_LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_eq!(code, 0, "{report}");
    for line in [
        "ok    model ",
        "ok    gstreamer    camera demo: every element of its pipeline is there (filesrc, decodebin",
        "ok    state ",
        "0 failed",
    ] {
        assert!(report.contains(line), "no {line:?} in\n{report}");
    }
}

#[test]
fn issue41_doctor_names_every_missing_piece_and_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the state directory's parent should be.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = dir.path().join("glimpse.toml");
    std::fs::write(
        &config,
        format!(
            "[service]\nstate_dir = {:?}\n[mqtt]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"{}\"\n\
             [model]\npath = {:?}\nbackend = \"ort\"\n\
             [cameras.door]\nsource = {{ kind = \"pipeline\", pipeline = \"nosuchsrc ! videoconvert ! appsink name=sink\" }}\n",
            blocker.join("state").display().to_string(),
            free_port(),
            taken.local_addr().unwrap(),
            repo().join("models/shapes/model").display().to_string(),
        ),
    )
    .unwrap();
    let missing_library = dir.path().join("libonnxruntime.so");
    // The harness points every daemon at a free port: not this one.
    let listen = taken.local_addr().unwrap().to_string();
    let (code, report) = doctor(
        &config,
        &[
            ("ORT_DYLIB_PATH", missing_library.to_str().unwrap()),
            ("GLIMPSE_HTTP_LISTEN", &listen),
        ],
    );
    assert_eq!(code, 69, "{report}");
    for line in [
        "FAIL  onnxruntime ",
        "FAIL  gstreamer    camera door: missing element(s) nosuchsrc",
        "fix: install the GStreamer plugin that has it",
        "FAIL  state ",
        "Not a directory",
        &format!("FAIL  http         {}: ", taken.local_addr().unwrap()),
        "4 failed",
    ] {
        assert!(report.contains(line), "no {line:?} in\n{report}");
    }
    assert!(
        report.contains(&missing_library.display().to_string()),
        "the library's path is named:\n{report}"
    );
}

/// A float16 variant on tract: converted to float32 at load where the CPU
/// has no float16 arithmetic (an ok line saying so), a warning when the
/// config keeps it as float16 there (`tract_float16 = "native"`).
#[test]
fn issue41_doctor_says_what_tract_does_with_a_float16_variant() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("glimpse.toml");
    let report = |keys: &str| {
        std::fs::write(
            &config,
            format!(
                "[service]\nstate_dir = {:?}\n[mqtt]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
                 [model]\npath = {:?}\nvariant = \"_fp16\"\nbackend = \"tract\"\n{keys}\n\
                 [cameras.door]\nsource = {{ kind = \"synthetic\" }}\n",
                dir.path().join("state").display().to_string(),
                free_port(),
                repo().join("models/test-hub").display().to_string(),
            ),
        )
        .unwrap();
        doctor(&config, &[]).1
    };
    if glimpse::infer::TractFloat16::Auto.widens() {
        let auto = report("");
        assert!(
            auto.contains("ok    model        variant \"_fp16\" on tract: its vision encoder converted to float32 at load (this CPU has no float16 arithmetic"),
            "{auto}"
        );
        let native = report("tract_float16 = \"native\"");
        assert!(
            native.contains("warn  model        variant \"_fp16\" on tract as float16: this CPU has no float16 arithmetic, so tract emulates it"),
            "{native}"
        );
    } else {
        let auto = report("");
        assert!(
            auto.contains("run as float16 (this CPU has float16 arithmetic)"),
            "{auto}"
        );
    }
}
