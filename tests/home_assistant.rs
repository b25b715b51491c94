//! A real Home Assistant Core against the real daemon on the demo config
//! (issue 16): what a Home Assistant user meets, driven through Home
//! Assistant's REST API by `tests/home_assistant/check.py` (discovery,
//! descriptions, rule states, the snapshot image, asking, adding and
//! removing rules, pausing, availability).
//!
//! Home Assistant is installed by `scripts/install-deps` into
//! `~/.cache/glimpse/home-assistant` (or `GLIMPSE_HA_VENV`). Without it the
//! test says so and passes, unless `GLIMPSE_REQUIRE_HA` is set, as CI
//! (`.ci/run`) does.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::repo;

fn home_assistant_python() -> PathBuf {
    let venv = std::env::var_os("GLIMPSE_HA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/glimpse/home-assistant")
        });
    venv.join("bin/python")
}

#[test]
fn issue16_a_real_home_assistant_shows_and_drives_glimpse() {
    let python = home_assistant_python();
    if !python.exists() {
        assert!(
            std::env::var_os("GLIMPSE_REQUIRE_HA").is_none(),
            "GLIMPSE_REQUIRE_HA is set but Home Assistant is not installed at {}: run scripts/install-deps",
            python.display()
        );
        eprintln!(
            "skipped: no Home Assistant at {} (scripts/install-deps installs it)",
            python.display()
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        // The daemon check.py starts inherits it: any free HTTP port, so
        // that it never fights another daemon of the suite over 8480.
        .env("GLIMPSE_HTTP_LISTEN", "127.0.0.1:0")
        .arg(repo().join("tests/home_assistant/check.py"))
        .arg(&python)
        .arg(env!("CARGO_BIN_EXE_glimpse"))
        .arg(repo())
        .arg(work.path())
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let logs = ["glimpse.log", "home-assistant.log"].map(|name| {
        let log = std::fs::read_to_string(work.path().join(name)).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        format!(
            "--- last lines of {name} ---\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    });
    assert!(
        out.status.success(),
        "{text}\n{}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs[0],
        logs[1]
    );
    println!("{text}");
}
