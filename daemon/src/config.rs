//! The configuration file: reading, validating and resolving it.
//!
//! A config goes through three steps, each with its own kind of error:
//!
//! 1. **TOML syntax** (`toml::Deserializer::parse`): a broken file is refused
//!    with the line and column of the mistake.
//! 2. **Shape** (serde, with `deny_unknown_fields` everywhere): unknown keys
//!    and wrong types are refused with the dotted key path, found by
//!    `serde_path_to_error`.
//! 3. **Values** (`validate()` of each stage's config): every out-of-range
//!    value is collected, so the user fixes them all in one go.
//!
//! Then the environment is consulted once (state directory, secrets), and
//! the result is a [`Config`] that the rest of the daemon trusts. The same
//! code runs for `glimpse check`, at start-up and on reload (SIGHUP), so the
//! three can never disagree. Stages own their config types
//! (`capture::CameraConfig`, `mqtt::MqttConfig`, ...); this module only
//! assembles them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::capture::CameraConfig;
use crate::infer::ModelConfig;
use crate::mqtt::MqttConfig;
use crate::service::ServiceConfig;
use crate::workers::WorkersConfig;

/// The whole daemon configuration, validated and resolved.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Logging, state directory, watchdog and shutdown.
    #[serde(default)]
    pub service: ServiceConfig,
    /// The model worker pool.
    #[serde(default)]
    pub workers: WorkersConfig,
    /// The video LLM; without it, frames are captured and sampled only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelConfig>,
    /// The MQTT broker and topics.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// One table per camera, keyed by its name (used in MQTT topics).
    #[serde(default)]
    pub cameras: BTreeMap<String, CameraConfig>,
}

/// Why a config was refused. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{}: cannot read the config file: {source} (pass --config PATH or set GLIMPSE_CONFIG)", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}: TOML syntax error at line {line}, column {column}: {message}", path.display())]
    Syntax {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the mistake.
        line: usize,
        /// 1-based column of the mistake.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A key is unknown or a value has the wrong type.
    #[error("{}: {key}: {message}{}", path.display(), at_line(*line))]
    Shape {
        /// The config file.
        path: PathBuf,
        /// Dotted key path, e.g. `cameras.front.fps`.
        key: String,
        /// 1-based line, when the parser knows it.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// One or more values are out of range or inconsistent.
    #[error("{}: {}", path.display(), problems)]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Every problem found.
        problems: Problems,
    },
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

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
        }
    }
}

/// Reads, validates and resolves the config file at `path`.
pub fn load(path: &Path, env: &Environment) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text, env)
}

/// Validates and resolves config `text`; `path` is only used in messages.
pub fn parse(path: &Path, text: &str, env: &Environment) -> Result<Config, ConfigError> {
    let document = toml::Deserializer::parse(text).map_err(|e| {
        let (line, column) = line_column(text, e.span().map(|s| s.start).unwrap_or(0));
        ConfigError::Syntax {
            path: path.to_owned(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })?;
    let mut config: Config = serde_path_to_error::deserialize(document).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.span().map(|s| line_column(text, s.start).0);
        ConfigError::Shape {
            path: path.to_owned(),
            message: with_hint(&key, inner.message().trim()),
            key,
            line,
        }
    })?;
    let mut problems = Problems::default();
    config.validate(&mut problems);
    if problems.is_empty() {
        config.resolve(env, &mut problems);
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }
}

impl Config {
    /// Checks every value; touches no file, device or network.
    pub fn validate(&self, problems: &mut Problems) {
        self.service.validate("service", problems);
        self.workers.validate("workers", problems);
        if let Some(model) = &self.model {
            model.validate("model", problems);
        }
        self.mqtt.validate("mqtt", problems);
        if self.cameras.is_empty() {
            problems.push(
                "cameras",
                "no camera is configured: add a [cameras.NAME] table",
            );
        }
        for (name, camera) in &self.cameras {
            camera.validate(name, &format!("cameras.{name}"), problems);
        }
    }

    /// Fills in what comes from the environment: the state directory and
    /// secrets. Reads secret files, so it runs after `validate`.
    fn resolve(&mut self, env: &Environment, problems: &mut Problems) {
        self.service
            .resolve_state_dir(env, "service.state_dir", problems);
        self.mqtt.resolve_password(env, "mqtt", problems);
        for (name, camera) in &mut self.cameras {
            camera.resolve_password(name, env, &format!("cameras.{name}"), problems);
        }
    }

    /// The effective config as TOML, defaults filled in and secrets left out.
    pub fn to_toml(&self) -> String {
        // Every field is a plain TOML value, so serialising cannot fail.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Reads a secret from `file`, ignoring a trailing newline. The error is
/// the reason, ready to be reported against the key that named the file.
pub(crate) fn read_secret(file: &Path) -> Result<crate::mqtt::Secret, String> {
    match std::fs::read_to_string(file) {
        Ok(text) => match text.trim_end_matches(['\r', '\n']) {
            "" => Err(format!("{} is empty", file.display())),
            secret => Ok(crate::mqtt::Secret(secret.to_owned())),
        },
        Err(e) => Err(format!("cannot read {}: {e}", file.display())),
    }
}

/// Keys whose mistakes are common enough to deserve advice.
fn with_hint(key: &str, message: &str) -> String {
    if key == "mqtt.password" || (key == "mqtt" && message.contains("`password`")) {
        return format!(
            "{message}; secrets stay out of the config file: set GLIMPSE_MQTT_PASSWORD or mqtt.password_file"
        );
    }
    message.to_owned()
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[cameras.front]
source = { kind = "synthetic" }
"#;

    fn check(text: &str) -> Result<Config, ConfigError> {
        let env = Environment {
            state_directory: Some("/var/lib/glimpse".into()),
            ..Environment::default()
        };
        parse(Path::new("glimpse.toml"), text, &env)
    }

    fn message(text: &str) -> String {
        check(text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let config = check(MINIMAL).unwrap();
        let front = &config.cameras["front"];
        assert_eq!(front.fps, 2.0);
        assert_eq!(front.queue_capacity, 4);
        assert_eq!(config.workers.threads, 1);
        assert_eq!(config.mqtt.prefix, "glimpse");
        assert_eq!(
            config.service.state_dir.as_deref(),
            Some(Path::new("/var/lib/glimpse"))
        );
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let m = message("[service]\nlog_level = \"info\"\nstats_interval_s = = 3\n");
        assert!(
            m.starts_with("glimpse.toml: TOML syntax error at line 3, column 20"),
            "{m}"
        );
    }

    #[test]
    fn unknown_key_names_its_path() {
        let m = message(&format!("{MINIMAL}fpss = 3\n"));
        assert!(
            m.starts_with("glimpse.toml: cameras.front.fpss: unknown field `fpss`"),
            "{m}"
        );
        assert!(m.ends_with("(line 4)"), "{m}");
    }

    #[test]
    fn wrong_type_names_its_path() {
        let m = message(&format!("{MINIMAL}fps = \"two\"\n"));
        assert!(
            m.starts_with("glimpse.toml: cameras.front.fps: invalid type: string \"two\""),
            "{m}"
        );
    }

    #[test]
    fn out_of_range_values_are_all_reported() {
        let m = message(&format!("{MINIMAL}fps = -1\n[workers]\nthreads = 0\n"));
        assert_eq!(
            m,
            "glimpse.toml: 2 problems:\n  workers.threads: must be between 1 and 64, got 0\n  cameras.front.fps: must be > 0, got -1"
        );
    }

    #[test]
    fn single_problem_reads_as_one_line() {
        let m = message(&format!("{MINIMAL}fps = -1\n"));
        assert_eq!(m, "glimpse.toml: cameras.front.fps: must be > 0, got -1");
    }

    #[test]
    fn missing_file_says_how_to_point_elsewhere() {
        let err = load(
            Path::new("/nonexistent/glimpse.toml"),
            &Environment::default(),
        )
        .unwrap_err();
        let m = err.to_string();
        assert!(
            m.starts_with("/nonexistent/glimpse.toml: cannot read the config file:"),
            "{m}"
        );
        assert!(m.contains("--config"), "{m}");
    }

    #[test]
    fn password_in_file_is_refused_with_advice() {
        let m = message(&format!("[mqtt]\npassword = \"hunter2\"\n{MINIMAL}"));
        assert!(m.contains("unknown field `password`"), "{m}");
        assert!(m.contains("GLIMPSE_MQTT_PASSWORD"), "{m}");
    }

    #[test]
    fn no_camera_is_an_error() {
        let m = message("[service]\nlog_level = \"debug\"\n");
        assert_eq!(
            m,
            "glimpse.toml: cameras: no camera is configured: add a [cameras.NAME] table"
        );
    }

    #[test]
    fn effective_config_round_trips() {
        let config = check(MINIMAL).unwrap();
        let again = check(&config.to_toml()).unwrap();
        assert_eq!(config, again);
    }

    #[test]
    fn line_column_is_one_based() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }
}
