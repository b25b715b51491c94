//! `[service]`: logging, state directory, watchdog and shutdown settings.
//! Here, with the config as a whole, rather than in `service`: the service
//! runs on the whole config, and the config must not reach up into it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

use crate::settings::{Environment, Problems};

/// `[service]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`) or a tracing
    /// filter such as `glimpse=debug,info`. `RUST_LOG`, when set, wins.
    /// Default: `info`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Where the outbox, memory snapshots and engine caches live; a
    /// relative path is relative to the config file's folder. Default:
    /// `$STATE_DIRECTORY` (systemd), else `$XDG_STATE_HOME/glimpse`, else
    /// `~/.local/state/glimpse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Seconds between per-camera statistics lines in the log and in
    /// systemd's status. Default: 60.
    #[serde(default = "default_stats_interval_s")]
    pub stats_interval_s: u64,
    /// A stage that makes no progress for this long is stalled: the
    /// watchdog pings stop and systemd restarts the daemon. Must exceed the
    /// slowest model call. Default: 30000 ms.
    #[serde(default = "default_stall_timeout_ms")]
    pub stall_timeout_ms: u64,
    /// How long shutdown may wait for stages to finish before giving up on
    /// them. Keep it below systemd's `TimeoutStopSec`. Default: 5000 ms.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// Most event snapshots kept in `<state_dir>/snapshots/`, all cameras
    /// together; the oldest are removed first. Read at start. Default: 1000.
    #[serde(default = "default_snapshot_max_count")]
    pub snapshot_max_count: u64,
    /// Most bytes of event snapshots kept in `<state_dir>/snapshots/`; the
    /// oldest are removed first. Read at start. Default: 67108864 (64 MiB).
    #[serde(default = "default_snapshot_max_bytes")]
    pub snapshot_max_bytes: u64,
}

fn default_log_level() -> String {
    "info".to_owned()
}
fn default_stats_interval_s() -> u64 {
    60
}
fn default_stall_timeout_ms() -> u64 {
    30_000
}
fn default_shutdown_timeout_ms() -> u64 {
    5_000
}
fn default_snapshot_max_count() -> u64 {
    1_000
}
fn default_snapshot_max_bytes() -> u64 {
    64 << 20
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            log_level: default_log_level(),
            state_dir: None,
            stats_interval_s: default_stats_interval_s(),
            stall_timeout_ms: default_stall_timeout_ms(),
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            snapshot_max_count: default_snapshot_max_count(),
            snapshot_max_bytes: default_snapshot_max_bytes(),
        }
    }
}

impl ServiceConfig {
    /// Checks every value of the table at `key`.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        if let Err(e) = EnvFilter::try_new(&self.log_level) {
            problems.push(
                format!("{key}.log_level"),
                format!("not a log level or filter ({e}), got {:?}", self.log_level),
            );
        }
        // Upper bounds: far beyond any use, and short of overflowing timers.
        for (field, value, min, max) in [
            ("stats_interval_s", self.stats_interval_s, 1, 86_400),
            ("stall_timeout_ms", self.stall_timeout_ms, 100, 3_600_000),
            ("shutdown_timeout_ms", self.shutdown_timeout_ms, 1, 600_000),
            ("snapshot_max_count", self.snapshot_max_count, 1, 10_000_000),
            ("snapshot_max_bytes", self.snapshot_max_bytes, 4096, 1 << 40),
        ] {
            if !(min..=max).contains(&value) {
                problems.push(
                    format!("{key}.{field}"),
                    format!("must be between {min} and {max}, got {value}"),
                );
            }
        }
        if let Some(dir) = &self.state_dir {
            if dir.as_os_str().is_empty() {
                problems.push(
                    format!("{key}.state_dir"),
                    "must not be empty (leave the key out for the default)",
                );
            }
        }
    }

    /// Picks the state directory: the config, else systemd's, else XDG's.
    pub(crate) fn resolve_state_dir(
        &mut self,
        env: &Environment,
        key: &str,
        problems: &mut Problems,
    ) {
        if self.state_dir.is_some() {
            return;
        }
        let xdg = env
            .xdg_state_home
            .clone()
            .or_else(|| env.home.as_ref().map(|h| h.join(".local/state")));
        self.state_dir = env
            .state_directory
            .clone()
            .or_else(|| xdg.map(|d| d.join("glimpse")));
        if self.state_dir.is_none() {
            problems.push(
                key,
                "cannot choose a state directory: none of STATE_DIRECTORY, XDG_STATE_HOME and HOME is set; set service.state_dir",
            );
        }
    }

    /// The resolved state directory. Only `None` before `config::parse` ran.
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(env: &Environment) -> Option<PathBuf> {
        let mut config = ServiceConfig::default();
        let mut problems = Problems::default();
        config.resolve_state_dir(env, "service.state_dir", &mut problems);
        config.state_dir
    }

    #[test]
    fn state_dir_prefers_config_then_systemd_then_xdg_then_home() {
        let mut env = Environment {
            home: Some("/home/ana".into()),
            ..Environment::default()
        };
        assert_eq!(
            resolved(&env),
            Some("/home/ana/.local/state/glimpse".into())
        );
        env.xdg_state_home = Some("/xdg".into());
        assert_eq!(resolved(&env), Some("/xdg/glimpse".into()));
        env.state_directory = Some("/var/lib/glimpse".into());
        assert_eq!(resolved(&env), Some("/var/lib/glimpse".into()));

        let mut config = ServiceConfig {
            state_dir: Some("/srv/g".into()),
            ..ServiceConfig::default()
        };
        config.resolve_state_dir(&env, "k", &mut Problems::default());
        assert_eq!(config.state_dir, Some("/srv/g".into()));
    }

    #[test]
    fn no_state_dir_candidate_is_a_problem() {
        let mut config = ServiceConfig::default();
        let mut problems = Problems::default();
        config.resolve_state_dir(&Environment::default(), "service.state_dir", &mut problems);
        assert_eq!(problems.0.len(), 1);
        assert_eq!(problems.0[0].key, "service.state_dir");
    }

    #[test]
    fn bad_log_level_is_named() {
        let config = ServiceConfig {
            log_level: "glimpse=loud".into(),
            ..ServiceConfig::default()
        };
        let mut problems = Problems::default();
        config.validate("service", &mut problems);
        assert_eq!(problems.0[0].key, "service.log_level");
    }
}
