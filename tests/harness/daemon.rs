//! The daemon under test: started with its log in a file, waited on
//! through that log, stopped as systemd stops it; and the config files the
//! tests start it with.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, glimpse, kill, wait_exit, wait_port_or};

/// The daemon with its log in a file, killed on drop.
pub struct Daemon {
    /// The process.
    pub child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `glimpse run --config CONFIG` with `env`; its log goes to
    /// CONFIG with the extension `.log`.
    pub fn spawn(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = glimpse();
        cmd.args(["run", "--config"]).arg(config);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon::spawn_command(cmd, &config.with_extension("log"))
    }

    /// Starts `cmd`, a daemon the test set up itself (another environment,
    /// another user), with its log (stderr) in `log`.
    pub fn spawn_command(mut cmd: Command, log: &Path) -> Daemon {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child,
            log: log.to_owned(),
        }
    }

    /// [`Daemon::spawn`] on the config of [`mqtt_config`]: camera `front`
    /// and `mqtt` in the `[mqtt]` table; the log is `dir/glimpse.log`.
    pub fn start(dir: &Path, mqtt: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(&mqtt_config(dir, mqtt), env)
    }

    /// [`Daemon::start`] with the embedded broker on a free port, `extra`
    /// after its `listen` line; returns once the broker listens (within
    /// 10 s), with its port.
    pub fn start_embedded(dir: &Path, extra: &str, env: &[(&str, &str)]) -> (Daemon, u16) {
        let port = free_port();
        let daemon = Daemon::start(dir, &format!("listen = \"127.0.0.1:{port}\"\n{extra}"), env);
        wait_port_or(port, Duration::from_secs(10), || daemon.log());
        (daemon, port)
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log, from byte `from` on, has a line containing
    /// every one of `needles`; returns the log's length after that line.
    pub fn expect(&mut self, from: usize, needles: &[&str], within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            let mut at = from.min(log.len());
            for line in log[at..].split_inclusive('\n') {
                at += line.len();
                if line.ends_with('\n') && needles.iter().all(|n| line.contains(n)) {
                    return at;
                }
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "glimpse exited while waiting for {needles:?}:\n{log}"
            );
            assert!(
                Instant::now() < deadline,
                "no log line with {needles:?} within {within:?}:\n{}",
                &log[from.min(log.len())..]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails the test if the daemon has exited.
    pub fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "glimpse exited:\n{}",
            self.log()
        );
    }

    /// SIGTERM; the daemon must exit 0 within 20 s. Returns its log.
    pub fn stop(self) -> String {
        self.stop_within(Duration::from_secs(20))
    }

    /// SIGTERM; the daemon must exit 0 within `within`. Returns its log.
    pub fn stop_within(mut self, within: Duration) -> String {
        kill(self.child.id(), "TERM");
        let status = wait_exit(&mut self.child, within);
        assert!(status.success(), "{status}\n{}", self.log());
        self.log()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `dir/glimpse.toml`: `[service]` with `state_dir = state` and the
/// lines `service`, `[mqtt]` with the lines `mqtt`, then `rest` (cameras,
/// a model, other tables) as it is. Every config writer below is this one
/// with its camera, so that they differ only where the tests need them to.
pub fn write_config(dir: &Path, state: &Path, service: &str, mqtt: &str, rest: &str) -> PathBuf {
    let config = dir.join("glimpse.toml");
    std::fs::write(
        &config,
        format!(
            "[service]\nstate_dir = {:?}\n{service}\n\n[mqtt]\n{mqtt}\n\n{rest}",
            state.display().to_string()
        ),
    )
    .unwrap();
    config
}

/// Writes `dir/glimpse.toml` for the MQTT tests: one small synthetic
/// camera, `front`, stats every second, and `mqtt` in the `[mqtt]` table
/// (with a quick reconnection unless it sets one: broker restarts must not
/// wait out the default backoff).
pub fn mqtt_config(dir: &Path, mqtt: &str) -> PathBuf {
    let backoff = if mqtt.contains("reconnect_") {
        ""
    } else {
        "reconnect_min_ms = 100\nreconnect_max_ms = 500\n"
    };
    write_config(
        dir,
        &dir.join("state"),
        "stats_interval_s = 1",
        &format!("{backoff}{mqtt}"),
        "[cameras.front]\nfps = 2\nwidth = 32\nheight = 32\nsource = { kind = \"synthetic\" }\n",
    )
}

/// Writes `dir/glimpse.toml`: camera `front` on the synthetic source (64×64
/// at 5 fps, no model: quick to start), the embedded broker on a free port,
/// and `extra` after the `[service]` lines (more of them, or whole tables).
/// Returns the config's path and the broker's port.
pub fn synthetic_config(dir: &Path, extra: &str) -> (PathBuf, u16) {
    let port = free_port();
    let config = write_config(
        dir,
        &dir.join("state"),
        extra,
        &format!("listen = \"127.0.0.1:{port}\""),
        "[cameras.front]\nfps = 5\nwidth = 64\nheight = 64\nsource = { kind = \"synthetic\", frame_rate = 10 }\n",
    );
    (config, port)
}

/// The number of the last test event the daemon made for `camera`, from
/// the line the test-event hook (`GLIMPSE_DEBUG_EVENT_EVERY_MS`) logs at
/// the stop: "made test events 0 to N of camera CAMERA".
pub fn made_test_events(log: &str, camera: &str) -> u64 {
    log.lines()
        .find_map(|l| {
            let rest = l.split("fault injection: made test events 0 to ").nth(1)?;
            let mut words = rest.split_whitespace();
            let n = words.next()?.parse().ok()?;
            words.take(3).eq(["of", "camera", camera]).then_some(n)
        })
        .unwrap_or_else(|| panic!("no count of the test events of camera {camera}:\n{log}"))
}

/// The `[cameras.demo]` table of the demo clip's first pass read as fast
/// as the model goes: 2 fps at 128 × 128 (the demo model's input), no
/// loop, not real time, and a queue that holds the whole pass (120
/// frames), so no frame is dropped and a run sees the same frames every
/// time. `keys` go into the table (rules, ...).
pub fn demo_pass_camera(keys: &str) -> String {
    format!(
        "[cameras.demo]\nfps = 2\nwidth = 128\nheight = 128\nqueue_capacity = 256\n{keys}\n\
         source = {{ kind = \"file\", path = {:?}, loop = false, realtime = false }}\n",
        super::repo()
            .join("models/shapes/clips/demo.mkv")
            .display()
            .to_string()
    )
}
