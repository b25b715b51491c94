//! The MQTT client: rumqttc behind one enum for MQTT 3.1.1 and 5, its
//! options (broker, TLS, credentials, Last Will), and the normalised
//! notifications the driver reacts to. Runs on tokio; each connection's
//! event loop is polled by a task of its own that forwards notifications
//! over a bounded channel (polling is never cancelled mid-packet).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5 as v5b;
use tokio::sync::mpsc;

use super::{BrokerAddress, MqttConfig, MqttError, Protocol};

/// What the driver needs to know from a connection.
#[derive(Debug)]
pub enum Note {
    /// The broker accepted the connection; MQTT 5 brokers may announce how
    /// many QoS 1 messages they take at once and their largest packet.
    ConnAck {
        receive_max: Option<u16>,
        max_packet: Option<u32>,
    },
    /// A QoS 1 publish left with this packet id (0: QoS 0).
    Sent(u16),
    /// rumqttc had to hold a publish because its packet id is still in
    /// flight; the driver avoids it and reconnects if it happens.
    Collision,
    /// The broker acknowledged this packet id; `refused` holds why when an
    /// MQTT 5 broker refused the message (reason code 0x80 or more).
    PubAck { pkid: u16, refused: Option<String> },
    /// A message on one of our subscriptions.
    Publish {
        topic: String,
        payload: Vec<u8>,
        response_topic: Option<String>,
        correlation: Option<Vec<u8>>,
    },
}

/// Why a connection ended.
#[derive(Debug)]
pub struct Lost {
    /// What rumqttc said.
    pub reason: String,
    /// The broker sent a packet over `mqtt.max_packet_bytes`: reconnecting
    /// at once would only receive it again (a retained message).
    pub oversized: bool,
}

impl Lost {
    /// A loss with nothing special about it.
    pub fn other(reason: impl Into<String>) -> Lost {
        Lost {
            reason: reason.into(),
            oversized: false,
        }
    }
}

/// Why a publish was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// rumqttc's request queue is full (or the connection is closing):
    /// the same message can go later.
    Busy,
    /// The message can never be sent as it is.
    Refused(String),
}

/// Bytes of an MQTT PUBLISH around its topic, payload and correlation
/// data, counted generously: fixed header (5), topic length (2), packet
/// id (2), properties (length 4, payload format 2, correlation data 3).
const PUBLISH_OVERHEAD: usize = 32;

/// Checks that a publish can be sent at all, which rumqttc would only tell
/// as an error indistinguishable from a full queue (a wildcard topic) or
/// by dropping the connection (a packet over the limit, so that the same
/// message would come first again after every reconnect).
pub fn check_publish(
    topic: &str,
    payload_len: usize,
    correlation_len: usize,
    max_packet: usize,
) -> Result<(), String> {
    if topic.is_empty() {
        return Err("empty topic".to_owned());
    }
    if topic.contains(['+', '#']) {
        return Err(format!(
            "topic {topic:?} contains an MQTT wildcard ('+' or '#')"
        ));
    }
    if topic.contains('\0') || topic.len() > usize::from(u16::MAX) {
        return Err(format!(
            "topic {topic:?} is not a valid MQTT topic (NUL or over 65535 bytes)"
        ));
    }
    let size = topic.len() + payload_len + correlation_len + PUBLISH_OVERHEAD;
    if size > max_packet {
        return Err(format!(
            "message of {size} bytes is over the largest packet, {max_packet} bytes (mqtt.max_packet_bytes or the broker's limit)"
        ));
    }
    Ok(())
}

/// A connection's client half.
pub enum Client {
    /// MQTT 3.1.1.
    V4(rumqttc::AsyncClient),
    /// MQTT 5.
    V5(rumqttc::v5::AsyncClient),
}

/// Builds the TLS settings from the config's files (blocking: reads them).
pub fn tls_config(config: &MqttConfig) -> Result<Option<Arc<rustls::ClientConfig>>, MqttError> {
    if !config.broker_address().is_some_and(|a| a.tls) {
        return Ok(None);
    }
    let tls_err = |file: &std::path::Path, reason: String| MqttError::Tls {
        file: file.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(file) => {
            let pem = std::fs::read(file).map_err(|e| tls_err(file, e.to_string()))?;
            let mut n = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| tls_err(file, e.to_string()))?;
                roots.add(cert).map_err(|e| tls_err(file, e.to_string()))?;
                n += 1;
            }
            if n == 0 {
                return Err(tls_err(file, "no PEM certificate in it".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // Skip what rustls cannot use; the system store is not ours.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(MqttError::Tls {
                    file: "system certificate store".into(),
                    reason: "no CA certificate found: set mqtt.ca_file".into(),
                });
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Tls {
            file: "-".into(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots);
    let tls = match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert_file), Some(key_file)) => {
            let pem = std::fs::read(cert_file).map_err(|e| tls_err(cert_file, e.to_string()))?;
            let certs = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_err(cert_file, e.to_string()))?;
            let pem = std::fs::read(key_file).map_err(|e| tls_err(key_file, e.to_string()))?;
            let key = rustls_pemfile::private_key(&mut pem.as_slice())
                .map_err(|e| tls_err(key_file, e.to_string()))?
                .ok_or_else(|| tls_err(key_file, "no PEM private key in it".into()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| tls_err(cert_file, e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(tls)))
}

/// A new connection: the client, its notifications (an `Err` ends them:
/// the connection is lost) and the task polling its event loop.
pub type Connection = (
    Client,
    mpsc::Receiver<Result<Note, Lost>>,
    tokio::task::JoinHandle<()>,
);

/// Who a connection is: its client id, and whether the broker publishes
/// `offline` on `<prefix>/status` for it when it dies (the Last Will: only
/// the connection that publishes the availability has one).
pub struct Identity<'a> {
    /// The MQTT client id.
    pub client_id: &'a str,
    /// Whether the connection carries the Last Will.
    pub last_will: bool,
}

/// Connects (lazily: the first poll does it) and starts the polling task.
/// `window` is the most QoS 1 messages the driver keeps in flight.
pub fn connect(
    config: &MqttConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    window: u16,
    identity: Identity<'_>,
) -> Result<Connection, MqttError> {
    let address = config
        .broker_address()
        .ok_or_else(|| MqttError::Broker(format!("invalid broker {:?}", config.broker)))?;
    let password = config.password.as_ref().map(|p| p.0.clone());
    let session = Session {
        address,
        client_id: identity.client_id.to_owned(),
        will_topic: identity
            .last_will
            .then(|| format!("{}/status", config.prefix)),
        keep_alive: Duration::from_secs(config.keep_alive_s),
        // pkids cycle through 1..=inflight: twice the window keeps the next
        // id free while acks come in order.
        inflight: window.saturating_mul(2).saturating_add(2),
        // Room for every in-flight message plus the retained state messages
        // sent on connect, so that the driver's try_publish rarely fails.
        capacity: usize::from(window) * 2 + 1024,
        credentials: config
            .username
            .clone()
            .map(|user| (user, password.unwrap_or_default())),
        tls,
        max_packet_bytes: config.max_packet_bytes,
    };
    Ok(match config.protocol {
        Protocol::V311 => connect_v311(session),
        Protocol::V5 => connect_v5(session),
    })
}

/// What a connection is opened with, whatever the protocol.
struct Session {
    address: BrokerAddress,
    client_id: String,
    /// Where the Last Will (`offline`, retained) goes, if this connection
    /// has one.
    will_topic: Option<String>,
    keep_alive: Duration,
    inflight: u16,
    capacity: usize,
    /// User name and password.
    credentials: Option<(String, String)>,
    tls: Option<Arc<rustls::ClientConfig>>,
    max_packet_bytes: u32,
}

fn connect_v311(session: Session) -> Connection {
    let address = session.address;
    let mut options = rumqttc::MqttOptions::new(session.client_id, address.host, address.port);
    let max_packet = session.max_packet_bytes as usize;
    options
        .set_keep_alive(session.keep_alive)
        .set_clean_session(true)
        .set_inflight(session.inflight)
        .set_max_packet_size(max_packet, max_packet);
    if let Some(topic) = &session.will_topic {
        options.set_last_will(rumqttc::LastWill::new(
            topic,
            "offline",
            rumqttc::QoS::AtLeastOnce,
            true,
        ));
    }
    if let Some((user, password)) = session.credentials {
        options.set_credentials(user, password);
    }
    if let Some(tls) = session.tls {
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
    }
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, session.capacity);
    eventloop.network_options.set_connection_timeout(5);
    let (notes_tx, notes) = mpsc::channel(256);
    let task = tokio::spawn(async move {
        loop {
            let note = match eventloop.poll().await {
                Ok(event) => match note_v4(event) {
                    Some(note) => Ok(note),
                    None => continue,
                },
                Err(e) => Err(Lost {
                    oversized: matches!(
                        e,
                        rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
                            rumqttc::Error::PayloadSizeLimitExceeded(_)
                        ))
                    ),
                    reason: e.to_string(),
                }),
            };
            let failed = note.is_err();
            if notes_tx.send(note).await.is_err() || failed {
                return;
            }
        }
    });
    (Client::V4(client), notes, task)
}

fn connect_v5(session: Session) -> Connection {
    let address = session.address;
    let mut options = rumqttc::v5::MqttOptions::new(session.client_id, address.host, address.port);
    options
        .set_keep_alive(session.keep_alive)
        .set_clean_start(true)
        .set_outgoing_inflight_upper_limit(session.inflight)
        // Also tells the broker: it must not send us more.
        .set_max_packet_size(Some(session.max_packet_bytes));
    if let Some(topic) = &session.will_topic {
        options.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
            topic,
            "offline",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            true,
            None,
        ));
    }
    if let Some((user, password)) = session.credentials {
        options.set_credentials(user, password);
    }
    if let Some(tls) = session.tls {
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
    }
    let mut network = rumqttc::NetworkOptions::new();
    network.set_connection_timeout(5);
    options.set_network_options(network);
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, session.capacity);
    let (notes_tx, notes) = mpsc::channel(256);
    let task = tokio::spawn(async move {
        loop {
            let note = match eventloop.poll().await {
                Ok(event) => match note_v5(event) {
                    Some(note) => Ok(note),
                    None => continue,
                },
                Err(e) => Err(Lost {
                    oversized: matches!(
                        e,
                        rumqttc::v5::ConnectionError::MqttState(
                            rumqttc::v5::StateError::Deserialization(
                                rumqttc::v5::mqttbytes::Error::PayloadSizeLimitExceeded { .. }
                            ) | rumqttc::v5::StateError::IncomingPacketTooLarge { .. }
                        )
                    ),
                    reason: e.to_string(),
                }),
            };
            let failed = note.is_err();
            if notes_tx.send(note).await.is_err() || failed {
                return;
            }
        }
    });
    (Client::V5(client), notes, task)
}

fn note_v4(event: rumqttc::Event) -> Option<Note> {
    use rumqttc::{Event, Outgoing, Packet};
    match event {
        Event::Incoming(Packet::ConnAck(_)) => Some(Note::ConnAck {
            receive_max: None,
            max_packet: None,
        }),
        // MQTT 3.1.1 has no way to refuse a publish: a broker that does
        // not take it (an ACL) acknowledges it all the same.
        Event::Incoming(Packet::PubAck(ack)) => Some(Note::PubAck {
            pkid: ack.pkid,
            refused: None,
        }),
        Event::Incoming(Packet::Publish(p)) => Some(Note::Publish {
            topic: p.topic,
            payload: p.payload.to_vec(),
            response_topic: None,
            correlation: None,
        }),
        Event::Outgoing(Outgoing::Publish(pkid)) => Some(Note::Sent(pkid)),
        Event::Outgoing(Outgoing::AwaitAck(_)) => Some(Note::Collision),
        _ => None,
    }
}

fn note_v5(event: rumqttc::v5::Event) -> Option<Note> {
    use rumqttc::v5::Event;
    use rumqttc::Outgoing;
    use v5b::Packet;
    match event {
        Event::Incoming(Packet::ConnAck(ack)) => Some(Note::ConnAck {
            receive_max: ack.properties.as_ref().and_then(|p| p.receive_max),
            max_packet: ack.properties.as_ref().and_then(|p| p.max_packet_size),
        }),
        Event::Incoming(Packet::PubAck(ack)) => Some(Note::PubAck {
            pkid: ack.pkid,
            refused: puback_refusal(&ack),
        }),
        Event::Incoming(Packet::Publish(p)) => {
            let (response_topic, correlation) = match p.properties {
                Some(props) => (
                    props.response_topic,
                    props.correlation_data.map(|c| c.to_vec()),
                ),
                None => (None, None),
            };
            Some(Note::Publish {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload.to_vec(),
                response_topic,
                correlation,
            })
        }
        Event::Outgoing(Outgoing::Publish(pkid)) => Some(Note::Sent(pkid)),
        Event::Outgoing(Outgoing::AwaitAck(_)) => Some(Note::Collision),
        _ => None,
    }
}

/// Why an MQTT 5 broker refused a publish, or `None` when it took it
/// (0x00 Success, 0x10 No matching subscribers).
fn puback_refusal(ack: &v5b::PubAck) -> Option<String> {
    use v5b::PubAckReason as R;
    let (code, what) = match ack.reason {
        R::Success | R::NoMatchingSubscribers => return None,
        R::UnspecifiedError => (0x80, "unspecified error"),
        R::ImplementationSpecificError => (0x83, "implementation specific error"),
        R::NotAuthorized => (0x87, "not authorized"),
        R::TopicNameInvalid => (0x90, "topic name invalid"),
        R::PacketIdentifierInUse => (0x91, "packet identifier in use"),
        R::QuotaExceeded => (0x97, "quota exceeded"),
        R::PayloadFormatInvalid => (0x99, "payload format invalid"),
    };
    let detail = ack
        .properties
        .as_ref()
        .and_then(|p| p.reason_string.as_deref())
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    Some(format!(
        "refused by the broker: PUBACK reason {what} (0x{code:02x}){detail}"
    ))
}

impl Client {
    /// Queues a publish without waiting; `Busy` when the queue is full,
    /// `Refused` for a topic that can never be published (rumqttc reports
    /// both as the same error, so the topic is checked first).
    pub fn publish(
        &self,
        topic: &str,
        qos1: bool,
        retain: bool,
        payload: Vec<u8>,
        correlation: Option<Vec<u8>>,
    ) -> Result<(), PublishError> {
        check_publish(topic, 0, 0, usize::MAX).map_err(PublishError::Refused)?;
        match self {
            Client::V4(c) => {
                let qos = if qos1 {
                    rumqttc::QoS::AtLeastOnce
                } else {
                    rumqttc::QoS::AtMostOnce
                };
                c.try_publish(topic, qos, retain, payload)
                    .map_err(|_| PublishError::Busy)
            }
            Client::V5(c) => {
                let qos = if qos1 {
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce
                } else {
                    rumqttc::v5::mqttbytes::QoS::AtMostOnce
                };
                let properties = v5b::PublishProperties {
                    correlation_data: correlation.map(Into::into),
                    payload_format_indicator: Some(1),
                    ..Default::default()
                };
                c.try_publish_with_properties(topic, qos, retain, payload, properties)
                    .map_err(|_| PublishError::Busy)
            }
        }
    }

    /// Subscribes to `filter` with QoS 1.
    pub fn subscribe(&self, filter: &str) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .try_subscribe(filter, rumqttc::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
        }
    }

    /// Sends DISCONNECT (the Last Will is then not published).
    pub fn disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.try_disconnect().map_err(|e| e.to_string()),
            Client::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

/// The client id glimpse uses when `mqtt.client_id` is not set:
/// `glimpse-<prefix>-<8 hex digits>`, the digits a hash of this machine's
/// id (`/etc/machine-id`, else the host name) and the state directory. So
/// one config copied to a fleet of devices, or run twice on one machine
/// with two state directories, never gives two connections the same id
/// (a broker closes the older of two: they would take turns forever),
/// and the same instance keeps its id across restarts.
pub fn default_client_id(prefix: &str, state_dir: &std::path::Path) -> String {
    let machine = [
        "/etc/machine-id",
        "/var/lib/dbus/machine-id",
        "/proc/sys/kernel/hostname",
    ]
    .iter()
    .find_map(|f| {
        std::fs::read_to_string(f)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    })
    .unwrap_or_default();
    let dir = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_owned());
    // FNV-1a: stable across Rust releases, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in machine
        .bytes()
        .chain([0])
        .chain(dir.to_string_lossy().bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("glimpse-{prefix}-{:08x}", (hash >> 32) as u32 ^ hash as u32)
}

/// Tells a connection that the broker closes right after accepting it, again
/// and again (another client took the same client id: a broker keeps one
/// connection per id and closes the older), from a broker that cannot be
/// reached.
#[derive(Debug, Default)]
pub struct Takeovers {
    /// Short-lived connections in a row.
    streak: u32,
    told: bool,
}

/// A connection closed within this long of being accepted counts as taken
/// over.
const TAKEOVER_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Short-lived connections in a row before they are reported as a taken id.
const TAKEOVER_STREAK: u32 = 3;

impl Takeovers {
    /// Notes how a connection ended: `lasted` is how long it was up (`None`:
    /// never accepted). Returns true once per streak, when it should be
    /// reported as a client id in use twice.
    pub fn note(&mut self, lasted: Option<std::time::Duration>) -> bool {
        match lasted {
            Some(up) if up < TAKEOVER_WITHIN => self.streak += 1,
            // Refused or unreachable: not a takeover; neither is a long
            // session that ended.
            _ => {
                self.streak = 0;
                self.told = false;
            }
        }
        if self.streak >= TAKEOVER_STREAK && !self.told {
            self.told = true;
            return true;
        }
        false
    }

    /// Whether the current streak was reported (later losses of it are
    /// logged at debug).
    pub fn reported(&self) -> bool {
        self.told
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_closed_right_after_acceptance_are_a_taken_id() {
        let mut t = Takeovers::default();
        let short = Some(std::time::Duration::from_millis(300));
        assert!(!t.note(short) && !t.note(short));
        assert!(t.note(short), "the third in a row is reported");
        assert!(!t.note(short), "once per streak");
        assert!(!t.note(None), "an unreachable broker ends the streak");
        assert!(!t.note(short) && !t.note(short) && t.note(short));
        let mut t = Takeovers::default();
        for _ in 0..5 {
            assert!(!t.note(Some(std::time::Duration::from_secs(60))));
        }
    }

    #[test]
    fn default_client_ids_differ_by_state_directory_and_stay_put() {
        let a = default_client_id("glimpse", std::path::Path::new("/var/lib/glimpse"));
        let b = default_client_id("glimpse", std::path::Path::new("/var/lib/glimpse-2"));
        assert_ne!(a, b);
        assert_eq!(
            a,
            default_client_id("glimpse", std::path::Path::new("/var/lib/glimpse"))
        );
        assert!(a.starts_with("glimpse-glimpse-") && a.len() == "glimpse-glimpse-".len() + 8);
    }

    #[test]
    fn publishes_that_can_never_go_are_told_apart() {
        assert_eq!(check_publish("glimpse/front/event", 100, 0, 1000), Ok(()));
        for (topic, payload, why) in [
            ("", 1, "empty topic"),
            ("me/+/x", 1, "wildcard"),
            ("me/#", 1, "wildcard"),
            ("a\0b", 1, "NUL"),
            ("t", 1000, "over the largest packet, 1000 bytes"),
        ] {
            let error = check_publish(topic, payload, 0, 1000).unwrap_err();
            assert!(error.contains(why), "{topic:?}: {error}");
        }
        // Correlation data counts too.
        assert!(check_publish("t", 900, 100, 1000).is_err());
    }
}
