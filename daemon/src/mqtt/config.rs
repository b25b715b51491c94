//! `[mqtt]`: broker, topic prefix, identity and credentials.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{Environment, Problems};

/// `[mqtt]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `embedded` (a broker inside glimpse, on `listen`) or the URL of an
    /// external broker: `mqtt://host:1883`, `mqtts://host:8883`.
    /// Default: `embedded`.
    #[serde(default = "default_broker")]
    pub broker: String,
    /// Address the embedded broker listens on. Loopback by default so that
    /// nothing is exposed by accident. Default: `127.0.0.1:1883`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// First level of every topic; unique per instance in a fleet.
    /// Default: `glimpse`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// MQTT client id; unique per instance. Default: `glimpse-<prefix>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// User name for the broker. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the broker password (trailing newline ignored).
    /// `GLIMPSE_MQTT_PASSWORD`, when set, wins. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Seconds between keep-alive pings. Default: 30.
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
    /// The password, resolved from the environment or `password_file`.
    /// Never read from nor written to the config file.
    #[serde(skip)]
    pub password: Option<Secret>,
}

fn default_broker() -> String {
    "embedded".to_owned()
}
fn default_listen() -> String {
    "127.0.0.1:1883".to_owned()
}
fn default_prefix() -> String {
    "glimpse".to_owned()
}
fn default_keep_alive_s() -> u64 {
    30
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            broker: default_broker(),
            listen: default_listen(),
            prefix: default_prefix(),
            client_id: None,
            username: None,
            password_file: None,
            keep_alive_s: default_keep_alive_s(),
            password: None,
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

impl MqttConfig {
    /// Checks every value of the table at `key`.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        if self.broker != "embedded" {
            if let Err(reason) = check_broker_url(&self.broker) {
                problems.push(
                    format!("{key}.broker"),
                    format!("{reason}, got {:?} (use \"embedded\", mqtt://HOST:PORT or mqtts://HOST:PORT)", self.broker),
                );
            }
        }
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(
                format!("{key}.listen"),
                format!(
                    "must be an IP address and port such as 127.0.0.1:1883, got {:?}",
                    self.listen
                ),
            );
        }
        if let Err(reason) = check_topic_level(&self.prefix, true) {
            problems.push(
                format!("{key}.prefix"),
                format!("{reason}, got {:?}", self.prefix),
            );
        }
        if let Some(id) = &self.client_id {
            if id.is_empty() || id.len() > 64 {
                problems.push(
                    format!("{key}.client_id"),
                    format!("must be 1 to 64 characters, got {} characters", id.len()),
                );
            }
        }
        if !(5..=3600).contains(&self.keep_alive_s) {
            problems.push(
                format!("{key}.keep_alive_s"),
                format!("must be between 5 and 3600, got {}", self.keep_alive_s),
            );
        }
    }

    /// Reads the password from `GLIMPSE_MQTT_PASSWORD` or `password_file`.
    pub(crate) fn resolve_password(
        &mut self,
        env: &Environment,
        key: &str,
        problems: &mut Problems,
    ) {
        if let Some(password) = &env.mqtt_password {
            self.password = Some(Secret(password.clone()));
            return;
        }
        let Some(file) = &self.password_file else {
            return;
        };
        match crate::config::read_secret(file) {
            Ok(secret) => self.password = Some(secret),
            Err(reason) => problems.push(format!("{key}.password_file"), reason),
        }
    }

    /// The client id in use: the configured one or one derived from the prefix.
    pub fn client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("glimpse-{}", self.prefix.replace('/', "-")))
    }
}

/// Accepts `mqtt://host[:port]` and `mqtts://host[:port]`.
fn check_broker_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("must be \"embedded\" or a URL".to_owned());
    };
    if !matches!(scheme, "mqtt" | "mqtts" | "tcp" | "ssl") {
        return Err(format!("unsupported scheme {scheme:?}"));
    }
    let host_port = rest.trim_end_matches('/');
    if host_port.is_empty() || host_port.contains('/') || host_port.contains('@') {
        return Err("must be SCHEME://HOST[:PORT] with no path or credentials".to_owned());
    }
    // An IPv6 literal is bracketed, so the port is whatever follows ']'.
    let port = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((_, "")) => None,
            Some((_, rest)) => Some(rest.strip_prefix(':').unwrap_or(rest)),
            None => return Err("unclosed '[' in the host".to_owned()),
        },
        None => host_port.split_once(':').map(|(_, port)| port),
    };
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("port {port:?} is not a number between 1 and 65535"));
        }
    }
    Ok(())
}

/// A topic prefix may have several levels but no wildcards or empty level.
pub(crate) fn check_topic_level(text: &str, allow_slash: bool) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if text.contains(['+', '#', '\0']) {
        return Err("must not contain '+', '#' or NUL (MQTT wildcards)".to_owned());
    }
    if text.contains('/') && (!allow_slash || text.split('/').any(str::is_empty)) {
        return Err(if allow_slash {
            "must not start or end with '/' or contain '//'".to_owned()
        } else {
            "must not contain '/'".to_owned()
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(config: &MqttConfig) -> Vec<String> {
        let mut problems = Problems::default();
        config.validate("mqtt", &mut problems);
        problems
            .0
            .into_iter()
            .map(|p| format!("{}: {}", p.key, p.reason))
            .collect()
    }

    #[test]
    fn broker_urls() {
        for ok in [
            "mqtt://localhost",
            "mqtt://10.0.0.2:1883",
            "mqtts://broker.lan:8883",
            "mqtt://[::1]:1883",
        ] {
            assert_eq!(check_broker_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "localhost:1883",
            "http://x",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:port",
            "mqtt://u:p@h",
        ] {
            assert!(check_broker_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefix_rejects_wildcards_and_empty_levels() {
        for bad in ["", "a/+", "#", "/a", "a/", "a//b"] {
            let config = MqttConfig {
                prefix: bad.into(),
                ..MqttConfig::default()
            };
            assert_eq!(problems_of(&config).len(), 1, "{bad:?}");
        }
        let config = MqttConfig {
            prefix: "site1/glimpse".into(),
            ..MqttConfig::default()
        };
        assert!(problems_of(&config).is_empty());
    }

    #[test]
    fn password_from_env_wins_over_file() {
        let mut config = MqttConfig {
            password_file: Some("/nonexistent".into()),
            ..MqttConfig::default()
        };
        let env = Environment {
            mqtt_password: Some("s3cret".into()),
            ..Environment::default()
        };
        let mut problems = Problems::default();
        config.resolve_password(&env, "mqtt", &mut problems);
        assert!(problems.is_empty());
        assert_eq!(config.password, Some(Secret("s3cret".into())));
        assert_eq!(format!("{:?}", config.password), "Some(Secret(<redacted>))");
    }

    #[test]
    fn password_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "hunter2\n").unwrap();
        let mut config = MqttConfig {
            password_file: Some(file),
            ..MqttConfig::default()
        };
        let mut problems = Problems::default();
        config.resolve_password(&Environment::default(), "mqtt", &mut problems);
        assert!(problems.is_empty(), "{problems}");
        assert_eq!(config.password, Some(Secret("hunter2".into())));
    }

    #[test]
    fn unreadable_password_file_names_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be read as a file, even by root.
        let mut config = MqttConfig {
            password_file: Some(dir.path().to_owned()),
            ..MqttConfig::default()
        };
        let mut problems = Problems::default();
        config.resolve_password(&Environment::default(), "mqtt", &mut problems);
        assert_eq!(problems.0.len(), 1);
        assert_eq!(problems.0[0].key, "mqtt.password_file");
        assert!(problems.0[0]
            .reason
            .starts_with(&format!("cannot read {}", dir.path().display())));
    }
}
