//! What every stage's config section may use, and nothing else: the
//! problems found while checking a config, the process environment it may
//! read, and secrets (from an environment variable, else a file). A leaf:
//! it imports no stage, so each stage can own its config type and its
//! validation without depending on the config as a whole (`config`
//! composes the sections; docs/architecture.md §1).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One value that failed validation: its dotted key and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `cameras.front.fps`.
    pub key: String,
    /// Why the value was refused, with the value itself.
    pub reason: String,
}

/// Every problem found in one config, in the order the keys were checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Records that `key` is wrong because of `reason`.
    pub fn push(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            reason: reason.into(),
        });
    }

    /// True when nothing was wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{}: {}", one.key, one.reason),
            many => {
                write!(f, "{} problems:", many.len())?;
                for p in many {
                    write!(f, "\n  {}: {}", p.key, p.reason)?;
                }
                Ok(())
            }
        }
    }
}

/// What the config may take from the process environment. Captured once so
/// that tests can pass their own and a reload sees a consistent view.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `STATE_DIRECTORY`, set by systemd's `StateDirectory=`.
    pub state_directory: Option<PathBuf>,
    /// `XDG_STATE_HOME`.
    pub xdg_state_home: Option<PathBuf>,
    /// `HOME`, for the `~/.local/state` fallback.
    pub home: Option<PathBuf>,
    /// `GLIMPSE_MQTT_PASSWORD`.
    pub mqtt_password: Option<String>,
    /// `GLIMPSE_CAMERA_<NAME>_PASSWORD` variables, by variable name.
    pub camera_passwords: BTreeMap<String, String>,
    /// `GLIMPSE_HTTP_LISTEN`: replaces `http.listen`.
    pub http_listen: Option<String>,
    /// `GLIMPSE_HTTP_TOKEN`: the HTTP bearer token.
    pub http_token: Option<String>,
}

impl Environment {
    /// Reads the variables this module cares about from the process.
    pub fn from_process() -> Self {
        let path = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Environment {
            // systemd may list several directories separated by ':'; the first is ours.
            state_directory: std::env::var("STATE_DIRECTORY")
                .ok()
                .and_then(|v| v.split(':').next().map(PathBuf::from))
                .filter(|p| !p.as_os_str().is_empty()),
            xdg_state_home: path("XDG_STATE_HOME"),
            home: path("HOME"),
            mqtt_password: std::env::var("GLIMPSE_MQTT_PASSWORD").ok(),
            camera_passwords: std::env::vars()
                .filter(|(k, _)| k.starts_with("GLIMPSE_CAMERA_") && k.ends_with("_PASSWORD"))
                .collect(),
            http_listen: std::env::var("GLIMPSE_HTTP_LISTEN")
                .ok()
                .filter(|v| !v.is_empty()),
            http_token: std::env::var("GLIMPSE_HTTP_TOKEN").ok(),
        }
    }
}

/// A secret string whose `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Reads a secret from `file`, ignoring a trailing newline. The error is
/// the reason, ready to be reported against the key that named the file.
pub fn read_secret(file: &Path) -> Result<Secret, String> {
    match std::fs::read_to_string(file) {
        Ok(text) => match text.trim_end_matches(['\r', '\n']) {
            "" => Err(format!("{} is empty", file.display())),
            secret => Ok(Secret(secret.to_owned())),
        },
        Err(e) => Err(format!("cannot read {}: {e}", file.display())),
    }
}

/// A secret from an environment variable's value when there is one, else
/// from `file` (see [`read_secret`]); a file that cannot be used is a
/// problem against `key`. `None` when neither gives one.
pub fn resolve_secret(
    from_env: Option<&String>,
    file: Option<&Path>,
    key: &str,
    problems: &mut Problems,
) -> Option<Secret> {
    if let Some(value) = from_env {
        return Some(Secret(value.clone()));
    }
    match read_secret(file?) {
        Ok(secret) => Some(secret),
        Err(reason) => {
            problems.push(key, reason);
            None
        }
    }
}
