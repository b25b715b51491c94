//! The MQTT client: rumqttc behind one enum for MQTT 3.1.1 and 5, its
//! options (broker, TLS, credentials, Last Will), and the normalised
//! notifications the driver reacts to. Runs on tokio; each connection's
//! event loop is polled by a task of its own that forwards notifications
//! over a bounded channel (polling is never cancelled mid-packet).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5 as v5b;
use tokio::sync::mpsc;

use super::{MqttConfig, MqttError, Protocol};

/// What the driver needs to know from a connection.
#[derive(Debug)]
pub enum Note {
    /// The broker accepted the connection; MQTT 5 brokers may announce how
    /// many QoS 1 messages they take at once.
    ConnAck { receive_max: Option<u16> },
    /// A QoS 1 publish left with this packet id (0: QoS 0).
    Sent(u16),
    /// rumqttc had to hold a publish because its packet id is still in
    /// flight; the driver avoids it and reconnects if it happens.
    Collision,
    /// The broker acknowledged this packet id.
    PubAck(u16),
    /// A message on one of our subscriptions.
    Publish {
        topic: String,
        payload: Vec<u8>,
        response_topic: Option<String>,
        correlation: Option<Vec<u8>>,
    },
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
    mpsc::Receiver<Result<Note, String>>,
    tokio::task::JoinHandle<()>,
);

/// Connects (lazily: the first poll does it) and starts the polling task.
/// `window` is the most QoS 1 messages the driver keeps in flight.
pub fn connect(
    config: &MqttConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    window: u16,
) -> Result<Connection, MqttError> {
    let address = config
        .broker_address()
        .ok_or_else(|| MqttError::Broker(format!("invalid broker {:?}", config.broker)))?;
    let client_id = config.client_id();
    let status = format!("{}/status", config.prefix);
    let keep_alive = Duration::from_secs(config.keep_alive_s);
    // Room for every in-flight message plus the retained state messages
    // sent on connect, so that the driver's try_publish rarely fails.
    let capacity = usize::from(window) * 2 + 1024;
    let (notes_tx, notes) = mpsc::channel(256);
    let password = config.password.as_ref().map(|p| p.0.clone());
    match config.protocol {
        Protocol::V311 => {
            let mut options = rumqttc::MqttOptions::new(client_id, address.host, address.port);
            options
                .set_keep_alive(keep_alive)
                .set_clean_session(true)
                // pkids cycle through 1..=inflight: twice the window keeps
                // the next id free while acks come in order.
                .set_inflight(window.saturating_mul(2).saturating_add(2))
                .set_max_packet_size(1 << 20, 1 << 20)
                .set_last_will(rumqttc::LastWill::new(
                    &status,
                    "offline",
                    rumqttc::QoS::AtLeastOnce,
                    true,
                ));
            if let Some(user) = &config.username {
                options.set_credentials(user.clone(), password.unwrap_or_default());
            }
            if let Some(tls) = tls {
                options.set_transport(rumqttc::Transport::tls_with_config(
                    rumqttc::TlsConfiguration::Rustls(tls),
                ));
            }
            let (client, mut eventloop) = rumqttc::AsyncClient::new(options, capacity);
            eventloop.network_options.set_connection_timeout(5);
            let task = tokio::spawn(async move {
                loop {
                    let note = match eventloop.poll().await {
                        Ok(event) => match note_v4(event) {
                            Some(note) => Ok(note),
                            None => continue,
                        },
                        Err(e) => Err(e.to_string()),
                    };
                    let failed = note.is_err();
                    if notes_tx.send(note).await.is_err() || failed {
                        return;
                    }
                }
            });
            Ok((Client::V4(client), notes, task))
        }
        Protocol::V5 => {
            let mut options = rumqttc::v5::MqttOptions::new(client_id, address.host, address.port);
            options
                .set_keep_alive(keep_alive)
                .set_clean_start(true)
                .set_outgoing_inflight_upper_limit(window.saturating_mul(2).saturating_add(2))
                .set_max_packet_size(Some(1 << 20))
                .set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
                    &status,
                    "offline",
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    true,
                    None,
                ));
            if let Some(user) = &config.username {
                options.set_credentials(user.clone(), password.unwrap_or_default());
            }
            if let Some(tls) = tls {
                options.set_transport(rumqttc::Transport::tls_with_config(
                    rumqttc::TlsConfiguration::Rustls(tls),
                ));
            }
            let mut network = rumqttc::NetworkOptions::new();
            network.set_connection_timeout(5);
            options.set_network_options(network);
            let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, capacity);
            let task = tokio::spawn(async move {
                loop {
                    let note = match eventloop.poll().await {
                        Ok(event) => match note_v5(event) {
                            Some(note) => Ok(note),
                            None => continue,
                        },
                        Err(e) => Err(e.to_string()),
                    };
                    let failed = note.is_err();
                    if notes_tx.send(note).await.is_err() || failed {
                        return;
                    }
                }
            });
            Ok((Client::V5(client), notes, task))
        }
    }
}

fn note_v4(event: rumqttc::Event) -> Option<Note> {
    use rumqttc::{Event, Outgoing, Packet};
    match event {
        Event::Incoming(Packet::ConnAck(_)) => Some(Note::ConnAck { receive_max: None }),
        Event::Incoming(Packet::PubAck(ack)) => Some(Note::PubAck(ack.pkid)),
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
            receive_max: ack.properties.and_then(|p| p.receive_max),
        }),
        Event::Incoming(Packet::PubAck(ack)) => Some(Note::PubAck(ack.pkid)),
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

impl Client {
    /// Queues a publish without waiting; fails when the queue is full.
    pub fn publish(
        &self,
        topic: &str,
        qos1: bool,
        retain: bool,
        payload: Vec<u8>,
        correlation: Option<Vec<u8>>,
    ) -> Result<(), String> {
        match self {
            Client::V4(c) => {
                let qos = if qos1 {
                    rumqttc::QoS::AtLeastOnce
                } else {
                    rumqttc::QoS::AtMostOnce
                };
                c.try_publish(topic, qos, retain, payload)
                    .map_err(|e| e.to_string())
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
                    .map_err(|e| e.to_string())
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
