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
use crate::harness::daemon::Daemon;
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
