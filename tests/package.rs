//! The amd64 Debian package (issue 41), installed for real: `dpkg -i` puts
//! everything where the unit and the config say and creates the user; the
//! unit's command line, run from `/` as that user, describes the demo clip
//! over MQTT; `dpkg -r` keeps the config (a conffile) and `dpkg -P` leaves
//! nothing. Needs root (CI runs as root: `GLIMPSE_REQUIRE_ROOT=1`); it
//! installs into this machine's `/usr`, `/etc` and `/var/lib`, and removes
//! it all again.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::broker::Sub;
use crate::harness::daemon::{demo_pass_camera, Daemon};
use crate::harness::{free_port, is_root, output_ok, repo};

/// Removes the package whatever happens, so a failed run leaves no
/// installed glimpse behind.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "glimpse"]).output();
    }
}

fn dpkg(args: &[&str]) -> String {
    String::from_utf8(output_ok(Command::new("dpkg").args(args)).stdout).unwrap()
}

#[test]
fn issue41_the_deb_installs_runs_from_root_as_its_user_and_purges_clean() {
    if !is_root() || Command::new("dpkg-deb").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("GLIMPSE_REQUIRE_ROOT").is_none(),
            "GLIMPSE_REQUIRE_ROOT is set: this test must run (as root, with dpkg)"
        );
        eprintln!("skipped: installing a package needs root and dpkg");
        return;
    }
    let status = Command::new("dpkg")
        .args(["-s", "glimpse"])
        .output()
        .unwrap();
    assert!(
        !status.status.success(),
        "a glimpse package is installed on this machine already: the test would replace it"
    );
    let dir = tempfile::tempdir().unwrap();
    output_ok(
        Command::new(repo().join("scripts/package"))
            .args(["--fast", "--bin", env!("CARGO_BIN_EXE_glimpse"), "--out"])
            .arg(dir.path()),
    );
    let deb = dir.path().join("glimpse_0.1.0_amd64.deb");
    let _installed = Installed;
    let out = dpkg(&["-i", deb.to_str().unwrap()]);
    assert!(out.contains("glimpse: installed"), "{out}");

    let files = dpkg(&["-L", "glimpse"]);
    for file in [
        "/usr/bin/glimpse",
        "/usr/lib/systemd/system/glimpse.service",
        "/usr/lib/sysusers.d/glimpse.conf",
        "/usr/lib/tmpfiles.d/glimpse.conf",
        "/usr/share/glimpse/models/shapes/model/config.json",
        "/usr/share/glimpse/clips/demo.mkv",
        "/usr/share/glimpse/jetson.conf",
        "/etc/glimpse/glimpse.toml",
    ] {
        assert!(
            files.lines().any(|l| l == file),
            "{file} not in the package:\n{files}"
        );
        assert!(Path::new(file).exists(), "{file} not installed");
    }
    let conffiles = String::from_utf8(
        output_ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "glimpse"])).stdout,
    )
    .unwrap();
    assert!(
        conffiles.contains("/etc/glimpse/glimpse.toml"),
        "{conffiles}"
    );
    output_ok(Command::new("id").arg("glimpse"));

    // The unit's command line, as systemd runs it: from /, as glimpse, with
    // a clean environment and its state directory. The embedded broker on
    // a free port (an edit of the conffile, kept by dpkg -r below).
    let port = free_port();
    let config = Path::new("/etc/glimpse/glimpse.toml");
    let text = std::fs::read_to_string(config)
        .unwrap()
        .replace("127.0.0.1:1883", &format!("127.0.0.1:{port}"));
    std::fs::write(config, text).unwrap();
    std::fs::create_dir_all("/var/lib/glimpse").unwrap();
    output_ok(Command::new("chown").args(["glimpse:glimpse", "/var/lib/glimpse"]));
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/glimpse.service").unwrap();
    let exec: Vec<&str> = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap()
        .split_whitespace()
        .collect();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=glimpse", "--regid=glimpse", "--init-groups", "--"])
        .args(&exec)
        .current_dir("/")
        .env_clear()
        .env("STATE_DIRECTORY", "/var/lib/glimpse")
        .env("GLIMPSE_HTTP_LISTEN", "127.0.0.1:0");
    let mut daemon = Daemon::spawn_command(cmd, &dir.path().join("daemon.log"));
    daemon.expect(0, &["glimpse is running"], Duration::from_secs(60));
    let mut sub = Sub::start(port, &["-v", "-t", "glimpse/demo/event"]);
    // The demo clip's red square appears at 3 s: described, and the
    // default rule turns on.
    let event = sub.expect("an event of the demo clip", Duration::from_secs(60), |l| {
        l.starts_with("glimpse/demo/event ") && l.contains("red")
    });
    eprintln!("{event}");
    daemon.stop();

    // Removed: the files go, the (edited) config stays.
    dpkg(&["-r", "glimpse"]);
    assert!(!Path::new("/usr/bin/glimpse").exists());
    assert!(!Path::new("/usr/share/glimpse").exists());
    assert!(config.exists(), "dpkg -r keeps the conffile");
    // Purged: the config and the state go too.
    dpkg(&["-P", "glimpse"]);
    assert!(!Path::new("/etc/glimpse").exists());
    assert!(!Path::new("/var/lib/glimpse").exists());
}

/// The events of one run of `binary` (through `runner`, e.g. qemu) over the
/// demo clip's first pass, read as fast as the model goes (`realtime =
/// false`, a queue that holds the whole pass: no frame is dropped, so two
/// runs see the same frames); returns the descriptions and rule
/// transitions as `(stream time, kind, text)`, and the run's log.
fn demo_events(
    dir: &Path,
    runner: &[&str],
    binary: &Path,
    model: &Path,
) -> (Vec<(f64, String, String)>, String) {
    let state = dir.join("state");
    let config = crate::harness::daemon::write_config(
        dir,
        &state,
        "stats_interval_s = 1",
        &format!("listen = \"127.0.0.1:{}\"\ndiscovery = false", free_port()),
        &format!(
            "[model]\npath = {:?}\nbackend = \"tract\"\nthreads = 1\n{}",
            model.display().to_string(),
            demo_pass_camera("rules = [\"is there a red shape?\"]"),
        ),
    );
    let mut cmd = Command::new(runner.first().copied().unwrap_or(binary.to_str().unwrap()));
    if !runner.is_empty() {
        cmd.args(&runner[1..]).arg(binary);
    }
    cmd.args(["run", "--config"])
        .arg(&config)
        // GStreamer scans its arm64 plugins in this process: it cannot
        // start its arm64 plugin scanner without binfmt_misc.
        .env("GST_REGISTRY_FORK", "no")
        .env("GST_REGISTRY", dir.join("gst-registry.bin"));
    let mut daemon = Daemon::spawn_command(cmd, &dir.join("daemon.log"));
    // Until the whole pass (120 frames) is analysed.
    let deadline = std::time::Instant::now() + Duration::from_secs(900);
    while !daemon.log().contains("analysed=120 ") {
        daemon.assert_running();
        assert!(
            std::time::Instant::now() < deadline,
            "the clip was not analysed:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = daemon.log();
    daemon.stop();
    let events = crate::harness::history::history(&config)
        .into_iter()
        .filter(|e| e["kind"] != "dead_letter")
        .map(|e| {
            (
                e["end_s"].as_f64().unwrap_or(-1.0),
                e["kind"].as_str().unwrap_or_default().to_owned(),
                e["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    (events, log)
}

/// The arm64 package (issue 41): built by `scripts/build-arm64` (CI builds
/// it: `GLIMPSE_REQUIRE_ARM64=1`), wrapped by `scripts/package --arch
/// arm64`, needing no glibc newer than JetPack 6's 2.35; its binary, run
/// under `qemu-aarch64` on the packaged demo model and the demo clip, gives
/// the amd64 binary's descriptions and rule transitions at the same stream
/// times.
#[test]
fn issue41_the_arm64_package_runs_under_qemu_and_says_what_amd64_says() {
    let arm64 = repo().join("target/aarch64-unknown-linux-gnu/release/glimpse");
    let qemu = Command::new("qemu-aarch64")
        .arg("--version")
        .output()
        .is_ok();
    if !arm64.exists() || !qemu {
        assert!(
            std::env::var_os("GLIMPSE_REQUIRE_ARM64").is_none(),
            "GLIMPSE_REQUIRE_ARM64 is set: build {} (scripts/build-arm64) and install qemu-user",
            arm64.display()
        );
        eprintln!("skipped: no arm64 build (scripts/build-arm64) or no qemu-aarch64");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    output_ok(
        Command::new(repo().join("scripts/package"))
            .args(["--fast", "--arch", "arm64", "--bin"])
            .arg(&arm64)
            .arg("--out")
            .arg(dir.path()),
    );
    let deb = dir.path().join("glimpse_0.1.0_arm64.deb");
    let control = String::from_utf8(
        output_ok(Command::new("dpkg-deb").args(["-f", deb.to_str().unwrap()])).stdout,
    )
    .unwrap();
    assert!(control.contains("Architecture: arm64"), "{control}");
    // The newest glibc symbol it needs: JetPack 6 (Ubuntu 22.04) has 2.35.
    let newest = control
        .lines()
        .find_map(|l| l.strip_prefix("Depends: libc6 (>= "))
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no libc6 dependency:\n{control}"))
        .to_owned();
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    assert!(version(&newest) <= version("2.35"), "needs glibc {newest}");
    let root = dir.path().join("root");
    output_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    assert!(root
        .join("usr/lib/systemd/system/glimpse.service.d/jetson.conf")
        .exists());
    // An ELF file for AArch64: e_machine (bytes 18-19) is EM_AARCH64, 183.
    let head = std::fs::read(root.join("usr/bin/glimpse")).unwrap();
    assert_eq!(
        (&head[..4], u16::from_le_bytes([head[18], head[19]])),
        (&b"\x7fELF"[..], 183)
    );

    let amd64_dir = dir.path().join("amd64");
    let arm64_dir = dir.path().join("arm64");
    std::fs::create_dir_all(&amd64_dir).unwrap();
    std::fs::create_dir_all(&arm64_dir).unwrap();
    let started = std::time::Instant::now();
    let (amd64, _) = demo_events(
        &amd64_dir,
        &[],
        Path::new(env!("CARGO_BIN_EXE_glimpse")),
        &repo().join("models/shapes/model"),
    );
    let native = started.elapsed();
    let started = std::time::Instant::now();
    let (emulated, log) = demo_events(
        &arm64_dir,
        &["qemu-aarch64"],
        &root.join("usr/bin/glimpse"),
        &root.join("usr/share/glimpse/models/shapes/model"),
    );
    let under_qemu = started.elapsed();
    eprintln!(
        "demo clip's first pass (120 frames): amd64 {:.1} s, arm64 under qemu {:.1} s\namd64 events: {amd64:#?}",
        native.as_secs_f64(),
        under_qemu.as_secs_f64()
    );
    if let Some(line) = log.lines().rev().find(|l| l.contains("camera stats")) {
        eprintln!("arm64: {line}");
    }
    assert!(
        amd64.iter().any(|(_, kind, _)| kind == "description"),
        "amd64 described nothing: {amd64:?}"
    );
    assert_eq!(emulated, amd64, "arm64 under qemu against amd64");
}
