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
//! Then relative paths are resolved against the config file's folder (so a
//! config finds its model and clips whatever the working directory: systemd
//! starts services in `/`), the environment is consulted once (state
//! directory, secrets), and [`load`] checks that every file the config names
//! is there and readable. The result is a [`Config`] that the rest of the
//! daemon trusts. The same code runs for `glimpse check`, at start-up and on
//! reload (SIGHUP), so the three can never disagree. Stages own their config types
//! (`capture::CameraConfig`, `mqtt::MqttConfig`, ...); this module only
//! assembles them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod service;

pub use crate::settings::{read_secret, Environment, Problem, Problems, Secret};
pub use service::ServiceConfig;

use crate::capture::SourceConfig;
use crate::http::HttpConfig;
use crate::infer::{BackendKind, ModelConfig, ModelFolder};
use crate::mqtt::MqttConfig;
use crate::pipeline::CameraConfig;
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
    /// The status page, `/metrics`, `/api` and `/healthz`.
    #[serde(default)]
    pub http: HttpConfig,
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

/// Reads, validates and resolves the config file at `path`, then checks
/// the files it names ([`Config::check_files`]).
pub fn load(path: &Path, env: &Environment) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let config = parse(path, &text, env)?;
    let mut problems = Problems::default();
    config.check_files(&mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }
}

/// Validates and resolves config `text`, read from `path`: `path` names
/// the file in messages, and relative paths in the config resolve against
/// its folder. Reads secret files, but does not check the other files the
/// config names ([`load`] does).
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
        config.resolve_paths(&config_folder(path));
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
    /// What the pipeline runs, taken from the whole.
    pub fn pipeline(&self) -> crate::pipeline::PipelineConfig {
        crate::pipeline::PipelineConfig {
            model: self.model.clone(),
            workers: self.workers.clone(),
            cameras: self.cameras.clone(),
            state_dir: self.service.state_dir().map(|d| d.to_owned()),
            snapshot_max_count: self.service.snapshot_max_count,
            snapshot_max_bytes: self.service.snapshot_max_bytes,
            shutdown_timeout_ms: self.service.shutdown_timeout_ms,
        }
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
        self.http.validate("http", problems);
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

    /// Makes every relative path absolute by joining it to `base`, the
    /// config file's folder. Devices (`/dev/...`) are left as written.
    fn resolve_paths(&mut self, base: &Path) {
        let mut paths: Vec<&mut PathBuf> = Vec::new();
        paths.extend(self.service.state_dir.as_mut());
        if let Some(model) = &mut self.model {
            paths.push(&mut model.path);
            paths.extend(model.ort_library.as_mut());
        }
        let mqtt = &mut self.mqtt;
        for file in [
            &mut mqtt.password_file,
            &mut mqtt.ca_file,
            &mut mqtt.client_cert_file,
            &mut mqtt.client_key_file,
        ] {
            paths.extend(file.as_mut());
        }
        paths.extend(self.http.token_file.as_mut());
        for camera in self.cameras.values_mut() {
            match &mut camera.source {
                SourceConfig::File { path, .. } => paths.push(path),
                SourceConfig::Rtsp { password_file, .. } => paths.extend(password_file.as_mut()),
                _ => {}
            }
        }
        for path in paths {
            if path.is_relative() && !path.as_os_str().is_empty() {
                *path = join_relative(base, path);
            }
        }
    }

    /// Checks that the files the config names are there and readable by
    /// this process: the model folder (opened, its graphs' signatures,
    /// tokenizer, chat template and preprocessor checked as `run` loads
    /// them, without compiling anything), the clips of enabled file
    /// cameras, the MQTT TLS files, and the ONNX Runtime library when the
    /// `ort` backend is required. Secret files were read by [`parse`]
    /// already. Touches no device and no network, so that `check` can run
    /// anywhere (systemd's `ExecStartPre=`, before a reload).
    pub fn check_files(&self, problems: &mut Problems) {
        if let Some(model) = &self.model {
            if let Err(reason) = check_model_folder(model) {
                problems.push("model.path", reason);
            }
            let required = model.backend == BackendKind::Ort
                || (model.backend == BackendKind::Auto && model.require_gpu);
            if let (true, Some(library)) = (required, &model.ort_library) {
                if let Err(reason) = check_readable_file(library) {
                    problems.push("model.ort_library", reason);
                }
            }
        }
        for (name, file) in [
            ("ca_file", &self.mqtt.ca_file),
            ("client_cert_file", &self.mqtt.client_cert_file),
            ("client_key_file", &self.mqtt.client_key_file),
        ] {
            if let Some(Err(reason)) = file.as_deref().map(check_readable_file) {
                problems.push(format!("mqtt.{name}"), reason);
            }
        }
        for (name, camera) in self.cameras.iter().filter(|(_, c)| c.enabled) {
            if let SourceConfig::File { path, .. } = &camera.source {
                if let Err(reason) = check_readable_file(path) {
                    problems.push(format!("cameras.{name}.source.path"), reason);
                }
            }
        }
    }

    /// Fills in what comes from the environment: the state directory and
    /// secrets. Reads secret files, so it runs after `validate`.
    fn resolve(&mut self, env: &Environment, problems: &mut Problems) {
        self.service
            .resolve_state_dir(env, "service.state_dir", problems);
        self.mqtt.resolve_password(env, "mqtt", problems);
        self.http.resolve(env, "http", problems);
        for (name, camera) in &mut self.cameras {
            camera
                .source
                .resolve_password(name, env, &format!("cameras.{name}"), problems);
        }
    }

    /// The effective config as TOML, defaults filled in and secrets left out.
    pub fn to_toml(&self) -> String {
        // Every field is a plain TOML value, so serialising cannot fail.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// The folder relative paths of the config file `path` resolve against:
/// its own folder, made absolute (symbolic links resolved, so that `..`
/// means what it means to the kernel).
fn config_folder(path: &Path) -> PathBuf {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::canonicalize(folder)
        .or_else(|_| std::path::absolute(folder))
        .unwrap_or_else(|_| folder.to_owned())
}

/// `base` joined with the relative `path`, the leading `..` of `path`
/// taken off `base` (which has no symbolic links left) so that messages
/// show `/srv/glimpse/models/x`, not `/srv/glimpse/config/../models/x`.
fn join_relative(base: &Path, path: &Path) -> PathBuf {
    use std::path::Component;
    let mut joined = base.to_owned();
    let mut rest = path.components().peekable();
    while let Some(c) = rest.peek() {
        match c {
            Component::CurDir => {}
            // `/..` is `/`, as for the kernel.
            Component::ParentDir => {
                joined.pop();
            }
            _ => break,
        }
        rest.next();
    }
    joined.extend(rest);
    joined
}

/// The model folder as `run` loads it, short of compiling the graphs.
fn check_model_folder(model: &ModelConfig) -> Result<(), String> {
    match std::fs::metadata(&model.path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{}: no such folder", model.path.display()));
        }
        Err(e) => return Err(format!("{}: {e}", model.path.display())),
        Ok(_) => {}
    }
    let folder = ModelFolder::open(&model.path, &model.variant).map_err(|e| e.to_string())?;
    crate::vision::Preprocessor::from_folder(&folder).map_err(|e| e.to_string())?;
    crate::llm::TextCodec::from_folder(&folder).map_err(|e| e.to_string())?;
    Ok(())
}

/// Whether `file` is a file this process can open for reading; the error
/// is the reason, naming the file.
fn check_readable_file(file: &Path) -> Result<(), String> {
    match std::fs::metadata(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{}: no such file", file.display()))
        }
        Err(e) => Err(format!("{}: {e}", file.display())),
        Ok(m) if m.is_dir() => Err(format!("{}: is a folder, not a file", file.display())),
        Ok(_) => std::fs::File::open(file)
            .map(drop)
            .map_err(|e| format!("{}: cannot read: {e}", file.display())),
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
        assert_eq!(front.queue_capacity, 2);
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
    fn relative_paths_resolve_against_the_config_folder() {
        let text = r#"
[service]
state_dir = "state"
[model]
path = "../models/m"
ort_library = "/opt/ort/libonnxruntime.so"
[mqtt]
broker = "mqtts://broker:8883"
ca_file = "./tls/ca.pem"
password_file = "secret"
[cameras.door]
source = { kind = "file", path = "clips/door.mkv" }
[cameras.gate]
source = { kind = "rtsp", url = "rtsp://gate/s", password_file = "/etc/glimpse/gate" }
[cameras.usb]
source = { kind = "v4l2", device = "video0" }
"#;
        let env = Environment {
            mqtt_password: Some("pw".into()),
            camera_passwords: [("GLIMPSE_CAMERA_GATE_PASSWORD".into(), "pw".into())].into(),
            ..Environment::default()
        };
        // A folder that does not exist: made absolute as written.
        let config = parse(Path::new("/nonexistent/etc/glimpse.toml"), text, &env).unwrap();
        let path = |p: &Option<PathBuf>| p.as_deref().map(|p| p.to_str().unwrap().to_owned());
        assert_eq!(
            path(&config.service.state_dir).as_deref(),
            Some("/nonexistent/etc/state")
        );
        let model = config.model.as_ref().unwrap();
        assert_eq!(model.path, Path::new("/nonexistent/models/m"));
        assert_eq!(
            path(&model.ort_library).as_deref(),
            Some("/opt/ort/libonnxruntime.so")
        );
        assert_eq!(
            path(&config.mqtt.ca_file).as_deref(),
            Some("/nonexistent/etc/tls/ca.pem")
        );
        assert_eq!(
            path(&config.mqtt.password_file).as_deref(),
            Some("/nonexistent/etc/secret")
        );
        let source = |name: &str| config.cameras[name].source.clone();
        assert!(matches!(source("door"), SourceConfig::File { path, .. }
            if path == Path::new("/nonexistent/etc/clips/door.mkv")));
        assert!(
            matches!(source("gate"), SourceConfig::Rtsp { password_file: Some(f), .. }
            if f == Path::new("/etc/glimpse/gate"))
        );
        assert!(
            matches!(source("usb"), SourceConfig::V4l2 { device, .. } if device == Path::new("video0")),
            "devices are not files in the config's folder"
        );
    }

    #[test]
    fn leading_parent_folders_are_taken_off_the_base() {
        let base = Path::new("/srv/glimpse/etc");
        assert_eq!(
            join_relative(base, Path::new("../models/m")),
            Path::new("/srv/glimpse/models/m")
        );
        assert_eq!(
            join_relative(base, Path::new("./../../x")),
            Path::new("/srv/x")
        );
        assert_eq!(
            join_relative(base, Path::new("../../../../x")),
            Path::new("/x")
        );
        // After a named folder `..` is left to the kernel (it may be a link).
        assert_eq!(
            join_relative(base, Path::new("a/../b")),
            Path::new("/srv/glimpse/etc/a/../b")
        );
    }

    #[test]
    fn a_config_in_the_working_directory_resolves_against_it() {
        let config = check(&format!("[model]\npath = \"m\"\n{MINIMAL}")).unwrap();
        let cwd = std::fs::canonicalize(".").unwrap();
        assert_eq!(config.model.unwrap().path, cwd.join("m"));
    }

    #[test]
    fn values_that_switch_a_stage_off_are_refused_with_their_range() {
        let m = message(&format!(
            "[mqtt]\nhistory_capacity = 0\n{MINIMAL}[cameras.front.dtd]\ntau = -1\ntau_pix = 1\n[cameras.front.trigger]\ndrop_ratio_below = 0\nrearm_drop_ratio_above = 1\n"
        ));
        assert_eq!(
            m,
            "glimpse.toml: 5 problems:
  mqtt.history_capacity: must be between 1 and 10000000, got 0
  cameras.front.dtd.tau: must be > 0 and at most 1 (a cosine similarity; lower drops more, 1 keeps every token), got -1
  cameras.front.dtd.tau_pix: must be at least 0 and below 1 (0 disables the gate), got 1
  cameras.front.trigger.drop_ratio_below: must be > 0 (0 never fires) and < 1, got 0
  cameras.front.trigger.rearm_drop_ratio_above: must be at least 0 and < 1 (a frame never drops more than all its tokens, so the trigger would never re-arm), got 1"
        );
        let m = message(&format!(
            "{MINIMAL}[cameras.front.dtd]\ntau = 0\n[cameras.front.trigger]\ndrop_ratio_below = 0.9\nrearm_drop_ratio_above = 0.5\n"
        ));
        assert_eq!(
            m,
            "glimpse.toml: 2 problems:
  cameras.front.dtd.tau: must be > 0 and at most 1 (a cosine similarity; lower drops more, 1 keeps every token), got 0
  cameras.front.trigger.rearm_drop_ratio_above: must be at least drop_ratio_below (0.9) for the hysteresis to hold, got 0.5"
        );
        // NaN is no number in range either.
        let m = message(&format!("{MINIMAL}[cameras.front.dtd]\ntau = nan\n"));
        assert!(m.contains("cameras.front.dtd.tau: must be > 0"), "{m}");
    }

    #[test]
    fn timers_have_upper_bounds() {
        let m = message(&format!(
            "[service]\nstats_interval_s = 18446744073709551615\nshutdown_timeout_ms = 0\n{MINIMAL}[cameras.front.memory]\nsnapshot_interval_s = 604801\n"
        ));
        assert_eq!(
            m,
            "glimpse.toml: 3 problems:
  service.stats_interval_s: must be between 1 and 86400, got 18446744073709551615
  service.shutdown_timeout_ms: must be between 1 and 600000, got 0
  cameras.front.memory.snapshot_interval_s: must be between 0 and 604800 (a week), got 604801"
        );
    }

    #[test]
    fn line_column_is_one_based() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }
}
