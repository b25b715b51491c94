//! `[mqtt]`: broker, protocol, TLS, topic prefix, identity and credentials,
//! the outbox and history bounds, questions and Home Assistant discovery.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::settings::Secret;
use crate::settings::{resolve_secret, Environment, Problems};

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
    /// MQTT client id; unique per instance (a broker keeps one connection
    /// per id and closes the older). The inbound connection adds `-in`.
    /// Home Assistant's device ids are made from it too. Default:
    /// `glimpse-<prefix>-<8 hex digits>` for the connections, unique per
    /// machine and state directory (a hash of `/etc/machine-id` and the
    /// state directory), so one config copied to a fleet does not fight
    /// over one id; and `glimpse-<prefix>` for Home Assistant, as before.
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
    /// MQTT protocol version: `v311` (3.1.1) or `v5`. With the embedded
    /// broker, it is also the only version the broker accepts: rumqttd 0.20
    /// fixes the version per listener, and forwarding an MQTT 5 message
    /// with properties to a 3.1.1 client panics inside it, so glimpse does
    /// not offer a second listener. Use an external broker (mosquitto) for
    /// clients of both versions. Default: `v311`.
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    /// PEM file with the CA certificate(s) that signed the broker's
    /// certificate (`mqtts://` only). Default: none, the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for brokers that require one
    /// (`mqtts://` only; needs `client_key_file`). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file` (PKCS#8, PKCS#1 or SEC1).
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    /// First wait before reconnecting to a lost broker, in milliseconds;
    /// doubled after each failure up to `reconnect_max_ms`. Default: 500.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// Longest wait between reconnection attempts, in milliseconds.
    /// Default: 30000.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// How long start-up waits for the broker before telling systemd it is
    /// ready anyway (events wait in the outbox), in milliseconds.
    /// Default: 5000.
    #[serde(default = "default_connect_wait_ms")]
    pub connect_wait_ms: u64,
    /// How long shutdown keeps publishing what is left in the outbox, in
    /// milliseconds; whatever is left is sent after the next start.
    /// Default: 2000.
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    /// Events and answers that may await the broker's acknowledgement at
    /// once (QoS 1 messages in flight). Default: 32.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: u16,
    /// Events and answers the outbox keeps while the broker is away; when
    /// full, the oldest is dropped, counted and logged. Default: 10000.
    #[serde(default = "default_outbox_capacity")]
    pub outbox_capacity: u64,
    /// Events kept in the history that `glimpse events` reads; the oldest
    /// is deleted beyond it. Default: 10000.
    #[serde(default = "default_history_capacity")]
    pub history_capacity: u64,
    /// Events and answers held in memory while the outbox cannot be
    /// written (a full disk), retried every second and stored in order when
    /// space comes back (the oldest snapshots and delivered history are
    /// removed to make room first). When full, the oldest description goes
    /// first, then the oldest message; counted. Default: 1000.
    #[serde(default = "default_unstored_capacity")]
    pub unstored_capacity: usize,
    /// Largest question accepted on `<prefix>/<camera>/ask`, in bytes;
    /// larger ones get an error answer. Default: 4096.
    #[serde(default = "default_max_question_bytes")]
    pub max_question_bytes: usize,
    /// Largest MQTT packet glimpse receives or sends, in bytes (65536 to
    /// 268435455). A larger incoming packet makes rumqttc drop the
    /// connection; with MQTT 5 the broker is told the limit and does not
    /// send such messages at all, and the embedded broker refuses them from
    /// every client. An outgoing message over it (or over the broker's own
    /// MQTT 5 limit) is not sent: it goes to the dead letters.
    /// Default: 4194304 (4 MiB): far above any event or answer (a few KiB)
    /// or a JPEG snapshot (~0.5 MiB at 1080p), and small enough for a small
    /// device to buffer one packet.
    #[serde(default = "default_max_packet_bytes")]
    pub max_packet_bytes: u32,
    /// Topic prefixes an MQTT 5 question's response topic must start with
    /// (whole levels: `replies` allows `replies` and `replies/…`). Any MQTT
    /// 5 client that may publish on the ask topics can otherwise make glimpse
    /// publish QoS 1 answers on any topic it names (glimpse's own inputs
    /// and `$` topics are always refused). Empty: any valid topic.
    /// Default: empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_topic_prefixes: Vec<String>,
    /// Questions accepted per camera per minute; more get an error answer.
    /// Default: 30.
    #[serde(default = "default_questions_per_minute")]
    pub questions_per_minute: u32,
    /// Accepted questions that may wait for the model; more get an error
    /// answer. Default: 16.
    #[serde(default = "default_question_queue_capacity")]
    pub question_queue_capacity: usize,
    /// Publish Home Assistant discovery (device-based). Default: true.
    #[serde(default = "default_discovery")]
    pub discovery: bool,
    /// Home Assistant's discovery prefix; its birth message is expected on
    /// `<discovery_prefix>/status`. Default: `homeassistant`.
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
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
fn default_protocol() -> Protocol {
    Protocol::V311
}
fn default_reconnect_min_ms() -> u64 {
    500
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}
fn default_connect_wait_ms() -> u64 {
    5_000
}
fn default_drain_timeout_ms() -> u64 {
    2_000
}
fn default_max_inflight() -> u16 {
    32
}
fn default_outbox_capacity() -> u64 {
    10_000
}
fn default_history_capacity() -> u64 {
    10_000
}
fn default_unstored_capacity() -> usize {
    1000
}
fn default_max_question_bytes() -> usize {
    4096
}
fn default_max_packet_bytes() -> u32 {
    4 << 20
}
fn default_questions_per_minute() -> u32 {
    30
}
fn default_question_queue_capacity() -> usize {
    16
}
fn default_discovery() -> bool {
    true
}
fn default_discovery_prefix() -> String {
    "homeassistant".to_owned()
}

/// MQTT protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Protocol {
    /// MQTT 3.1.1.
    #[serde(rename = "v311")]
    V311,
    /// MQTT 5.
    #[serde(rename = "v5")]
    V5,
}

/// Smallest `mqtt.max_packet_bytes`.
const MIN_PACKET_BYTES: u64 = 1 << 16;
/// Largest `mqtt.max_packet_bytes`: the most an MQTT packet can hold.
const MAX_PACKET_BYTES: u64 = 268_435_455;

/// Where the broker is, parsed from `mqtt.broker`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether to speak TLS.
    pub tls: bool,
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
            protocol: default_protocol(),
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            reconnect_min_ms: default_reconnect_min_ms(),
            reconnect_max_ms: default_reconnect_max_ms(),
            connect_wait_ms: default_connect_wait_ms(),
            drain_timeout_ms: default_drain_timeout_ms(),
            max_inflight: default_max_inflight(),
            outbox_capacity: default_outbox_capacity(),
            history_capacity: default_history_capacity(),
            unstored_capacity: default_unstored_capacity(),
            max_question_bytes: default_max_question_bytes(),
            max_packet_bytes: default_max_packet_bytes(),
            response_topic_prefixes: Vec::new(),
            questions_per_minute: default_questions_per_minute(),
            question_queue_capacity: default_question_queue_capacity(),
            discovery: default_discovery(),
            discovery_prefix: default_discovery_prefix(),
            password: None,
        }
    }
}

impl MqttConfig {
    /// Checks every value of the table at `key`.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        self.validate_connection(key, problems);
        self.validate_tls(key, problems);
        self.validate_limits(key, problems);
        self.validate_topics(key, problems);
    }

    /// The broker, the listen address, the prefix and the session.
    fn validate_connection(&self, key: &str, problems: &mut Problems) {
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

    /// The TLS files: only with a TLS broker, the client's pair together.
    fn validate_tls(&self, key: &str, problems: &mut Problems) {
        let tls = self.broker_address().is_some_and(|a| a.tls);
        for (name, file) in [
            ("ca_file", &self.ca_file),
            ("client_cert_file", &self.client_cert_file),
            ("client_key_file", &self.client_key_file),
        ] {
            if file.is_some() && !tls {
                problems.push(
                    format!("{key}.{name}"),
                    "only applies to a TLS broker: set mqtt.broker to mqtts://HOST:PORT",
                );
            }
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            problems.push(
                format!("{key}.client_key_file"),
                "client_cert_file and client_key_file go together: set both or neither",
            );
        }
    }

    /// Backoff, queues, sizes and rates.
    fn validate_limits(&self, key: &str, problems: &mut Problems) {
        if self.reconnect_min_ms == 0 || self.reconnect_min_ms > self.reconnect_max_ms {
            problems.push(
                format!("{key}.reconnect_min_ms"),
                format!(
                    "must be > 0 and at most reconnect_max_ms ({}), got {}",
                    self.reconnect_max_ms, self.reconnect_min_ms
                ),
            );
        }
        for (name, value, min, max) in [
            ("connect_wait_ms", self.connect_wait_ms, 0, 600_000),
            ("drain_timeout_ms", self.drain_timeout_ms, 0, 600_000),
            ("max_inflight", u64::from(self.max_inflight), 1, 1000),
            ("outbox_capacity", self.outbox_capacity, 1, 10_000_000),
            ("history_capacity", self.history_capacity, 1, 10_000_000),
            (
                "unstored_capacity",
                self.unstored_capacity as u64,
                1,
                1_000_000,
            ),
            (
                "max_question_bytes",
                self.max_question_bytes as u64,
                16,
                1 << 20,
            ),
            (
                "max_packet_bytes",
                u64::from(self.max_packet_bytes),
                MIN_PACKET_BYTES,
                MAX_PACKET_BYTES,
            ),
            (
                "questions_per_minute",
                u64::from(self.questions_per_minute),
                1,
                6000,
            ),
            (
                "question_queue_capacity",
                self.question_queue_capacity as u64,
                1,
                10_000,
            ),
        ] {
            if !(min..=max).contains(&value) {
                problems.push(
                    format!("{key}.{name}"),
                    format!("must be between {min} and {max}, got {value}"),
                );
            }
        }
        if self.max_question_bytes as u64 > u64::from(self.max_packet_bytes) {
            problems.push(
                format!("{key}.max_question_bytes"),
                format!(
                    "must not exceed mqtt.max_packet_bytes ({}), got {}",
                    self.max_packet_bytes, self.max_question_bytes
                ),
            );
        }
    }

    /// Where answers may go, and Home Assistant's discovery prefix.
    fn validate_topics(&self, key: &str, problems: &mut Problems) {
        for (i, prefix) in self.response_topic_prefixes.iter().enumerate() {
            let reason = match check_topic_level(prefix, true) {
                Err(reason) => reason,
                Ok(()) if prefix.starts_with('$') => {
                    "must not start with '$' (broker topics)".to_owned()
                }
                Ok(()) => continue,
            };
            problems.push(
                format!("{key}.response_topic_prefixes[{i}]"),
                format!("{reason}, got {prefix:?}"),
            );
        }
        if let Err(reason) = check_topic_level(&self.discovery_prefix, true) {
            problems.push(
                format!("{key}.discovery_prefix"),
                format!("{reason}, got {:?}", self.discovery_prefix),
            );
        }
    }

    /// The broker to connect to: the embedded one on `listen`, or the URL.
    /// `None` only for a config that `validate` refuses.
    pub fn broker_address(&self) -> Option<BrokerAddress> {
        if self.is_embedded() {
            let addr: SocketAddr = self.listen.parse().ok()?;
            // A wildcard listen address is reached through loopback.
            let host = if addr.ip().is_unspecified() {
                if addr.is_ipv4() { "127.0.0.1" } else { "::1" }.to_owned()
            } else {
                addr.ip().to_string()
            };
            return Some(BrokerAddress {
                host,
                port: addr.port(),
                tls: false,
            });
        }
        check_broker_url(&self.broker).ok()?;
        let (scheme, rest) = self.broker.split_once("://")?;
        let tls = matches!(scheme, "mqtts" | "ssl");
        let host_port = rest.trim_end_matches('/');
        let (host, port) = match host_port.strip_prefix('[') {
            Some(v6) => {
                let (host, rest) = v6.split_once(']')?;
                (host, rest.strip_prefix(':'))
            }
            None => match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            },
        };
        let port = match port {
            Some(p) => p.parse().ok()?,
            None if tls => 8883,
            None => 1883,
        };
        Some(BrokerAddress {
            host: host.to_owned(),
            port,
            tls,
        })
    }

    /// What is allowed but probably unwanted, one sentence each: an
    /// embedded broker reachable from the network takes anyone.
    pub fn warnings(&self) -> Vec<String> {
        if !self.is_embedded() {
            return Vec::new();
        }
        let mut warnings = Vec::new();
        if let Ok(addr) = self.listen.parse::<SocketAddr>() {
            if !addr.ip().is_loopback() {
                warnings.push(format!(
                    "mqtt.listen = \"{addr}\": the embedded broker has no authentication, so anyone who can reach {addr} can read every event and publish questions and watch rules; keep it on 127.0.0.1, firewall the port, or run an external broker with users and ACLs (mosquitto) and set mqtt.broker"
                ));
            }
        }
        warnings
    }

    /// Whether glimpse runs its own broker.
    pub fn is_embedded(&self) -> bool {
        self.broker == "embedded"
    }

    /// Reads the password from `GLIMPSE_MQTT_PASSWORD` or `password_file`.
    pub(crate) fn resolve_password(
        &mut self,
        env: &Environment,
        key: &str,
        problems: &mut Problems,
    ) {
        self.password = resolve_secret(
            env.mqtt_password.as_ref(),
            self.password_file.as_deref(),
            &format!("{key}.password_file"),
            problems,
        );
    }

    /// The id Home Assistant's device ids are made from: the configured
    /// client id, or `glimpse-<prefix>` (stable, whatever the machine; the
    /// connections' own default id is unique per machine, see `client_id`).
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
    fn broker_addresses_and_tls_keys() {
        let mut config = MqttConfig::default();
        assert_eq!(
            config.broker_address(),
            Some(BrokerAddress {
                host: "127.0.0.1".into(),
                port: 1883,
                tls: false
            })
        );
        config.broker = "mqtts://[::1]".into();
        assert_eq!(config.broker_address().unwrap().port, 8883);
        assert_eq!(config.broker_address().unwrap().host, "::1");
        config.broker = "mqtt://h".into();
        config.ca_file = Some("/ca.pem".into());
        config.client_cert_file = Some("/c.pem".into());
        let problems = problems_of(&config);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("mqtt.ca_file: only applies to a TLS broker"));
        assert!(problems[2]
            .starts_with("mqtt.client_key_file: client_cert_file and client_key_file go together"));
    }

    #[test]
    fn packet_size_and_response_prefixes() {
        let config = MqttConfig {
            max_packet_bytes: 1000,
            max_question_bytes: 4096,
            response_topic_prefixes: vec!["ok/fine".into(), "a/+".into(), "$SYS".into()],
            ..MqttConfig::default()
        };
        assert_eq!(
            problems_of(&config),
            [
                "mqtt.max_packet_bytes: must be between 65536 and 268435455, got 1000",
                "mqtt.max_question_bytes: must not exceed mqtt.max_packet_bytes (1000), got 4096",
                "mqtt.response_topic_prefixes[1]: must not contain '+', '#' or NUL (MQTT wildcards), got \"a/+\"",
                "mqtt.response_topic_prefixes[2]: must not start with '$' (broker topics), got \"$SYS\"",
            ]
        );
    }

    #[test]
    fn an_embedded_broker_off_loopback_is_warned_about() {
        let mut config = MqttConfig::default();
        assert!(config.warnings().is_empty());
        config.listen = "0.0.0.0:1883".into();
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with(
            "mqtt.listen = \"0.0.0.0:1883\": the embedded broker has no authentication, so anyone"
        ));
        config.broker = "mqtt://h".into();
        assert!(config.warnings().is_empty(), "not ours to warn about");
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
