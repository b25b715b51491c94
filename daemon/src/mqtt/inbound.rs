//! The inbound MQTT connection: questions, watch-rule changes, pause and
//! resume, and Home Assistant's birth message arrive on a connection of
//! their own (client id `<client id>-in`), so that nothing a client
//! publishes can stop event delivery (docs/architecture.md §7, "Two
//! connections"). It subscribes and never publishes; the driver's
//! connection publishes and subscribes to nothing.
//!
//! A message over `mqtt.max_packet_bytes` (a retained one on MQTT 3.1.1,
//! where the broker cannot be told the limit) makes rumqttc drop this
//! connection; it waits the longest backoff before the next try and says so
//! once, and the events go on meanwhile. On MQTT 5 the broker is told the
//! limit in CONNECT and never sends such a message.
//!
//! It also watches `<prefix>/instance`, where every glimpse names itself
//! (retained): a name that is not ours means another instance shares the
//! topic prefix and the Home Assistant entities, and is logged once per
//! name.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::client::{self, Identity, Note, Takeovers};
use super::MqttConfig;

/// A message on one of the inbound subscriptions.
#[derive(Debug)]
pub struct Inbound {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// MQTT 5 response topic.
    pub response_topic: Option<String>,
    /// MQTT 5 correlation data.
    pub correlation: Option<Vec<u8>>,
}

/// Aborts a connection's polling task when dropped (a cancelled task must
/// not leave its connection open).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The retained topic where each instance names itself.
pub fn instance_topic(prefix: &str) -> String {
    format!("{prefix}/instance")
}

/// The client id named in an `<prefix>/instance` payload.
pub fn instance_id(payload: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    value.get("client_id")?.as_str().map(str::to_owned)
}

/// Starts the inbound connection; it reconnects by itself until `cancel`.
/// Messages go to `out` (bounded: while the driver is busy, this
/// connection waits and the broker holds the messages).
pub fn spawn(
    config: MqttConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    client_id: String,
    out: mpsc::Sender<Inbound>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            () = run(&config, tls, &client_id, out) => {}
        }
    })
}

/// The topic filters the inbound connection subscribes to.
fn filters(config: &MqttConfig) -> Vec<String> {
    let prefix = &config.prefix;
    let mut filters = vec![
        format!("{prefix}/+/ask"),
        format!("{prefix}/+/rules/set"),
        format!("{prefix}/+/analysis/set"),
        instance_topic(prefix),
    ];
    if config.discovery {
        filters.push(format!("{}/status", config.discovery_prefix));
    }
    filters
}

async fn run(
    config: &MqttConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    client_id: &str,
    out: mpsc::Sender<Inbound>,
) {
    let own_id = format!("{client_id}-in");
    let instance = instance_topic(&config.prefix);
    let min = Duration::from_millis(config.reconnect_min_ms);
    let max = Duration::from_millis(config.reconnect_max_ms);
    let mut backoff = min;
    let mut failures = 0u32;
    let mut oversized_told = false;
    let mut takeovers = Takeovers::default();
    // Other instances on our prefix already reported.
    let mut others: BTreeSet<String> = BTreeSet::new();
    loop {
        let identity = Identity {
            client_id: &own_id,
            last_will: false,
        };
        let (client, mut notes, poller) = match client::connect(config, tls.clone(), 1, identity) {
            Ok((client, notes, poller)) => (client, notes, AbortOnDrop(poller)),
            Err(e) => {
                tracing::error!("MQTT inbound connection: {e}");
                return;
            }
        };
        let mut up_since: Option<Instant> = None;
        let lost = loop {
            match notes.recv().await {
                Some(Ok(Note::ConnAck { .. })) => {
                    up_since = Some(Instant::now());
                    for filter in filters(config) {
                        if let Err(e) = client.subscribe(&filter) {
                            tracing::warn!(filter, "cannot subscribe: {e}");
                        }
                    }
                    tracing::debug!(client_id = %own_id, "inbound MQTT connection up");
                }
                Some(Ok(Note::Publish {
                    topic,
                    payload,
                    response_topic,
                    correlation,
                })) => {
                    if topic == instance {
                        if let Some(other) = instance_id(&payload).filter(|id| id != client_id) {
                            if others.insert(other.clone()) {
                                tracing::warn!(
                                    prefix = %config.prefix,
                                    other,
                                    "another glimpse instance publishes under the same topic prefix: both write the same topics and the same Home Assistant entities; give each instance its own mqtt.prefix"
                                );
                            }
                        }
                        continue;
                    }
                    let message = Inbound {
                        topic,
                        payload,
                        response_topic,
                        correlation,
                    };
                    if out.send(message).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(lost)) => break lost,
                None => break client::Lost::other("connection task ended"),
            }
        };
        drop(poller);
        let lasted = up_since.map(|t| t.elapsed());
        if lasted.is_some() {
            backoff = min;
            failures = 0;
        }
        if lost.oversized {
            // The broker sends the same retained message at every
            // subscribe: wait the longest backoff every time.
            backoff = max;
            if !std::mem::replace(&mut oversized_told, true) {
                tracing::warn!(
                    broker = %config.broker,
                    retry_in_ms = max.as_millis() as u64,
                    "the MQTT broker sent a message over mqtt.max_packet_bytes ({} bytes) and rumqttc dropped the inbound connection: {}; probably a retained message on {}/+/ask or {}/+/rules/set: clear it (mosquitto_pub -r -n -t TOPIC) or raise mqtt.max_packet_bytes. Events are still published; questions wait, reconnecting every {} ms (MQTT 5 avoids this: the broker is told the limit)",
                    config.max_packet_bytes,
                    lost.reason,
                    config.prefix,
                    config.prefix,
                    max.as_millis()
                );
            } else {
                tracing::debug!(
                    "inbound connection: oversized packet again: {}",
                    lost.reason
                );
            }
        } else {
            oversized_told = false;
            if takeovers.note(lasted) {
                tracing::warn!(
                    client_id = %own_id,
                    "the MQTT broker keeps closing the inbound connection right after accepting it: another client is probably connected with the same client id; give each instance its own mqtt.client_id (or leave it unset: the default is unique per machine and state directory)"
                );
            } else if !takeovers.reported() {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::debug!(broker = %config.broker, "inbound MQTT connection lost: {}", lost.reason);
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max);
    }
}

/// Whether another glimpse instance is live under `config.prefix`: a short
/// connection at start reads the retained `<prefix>/status` and
/// `<prefix>/instance`. `Some(id)` when the availability is `online` and
/// the instance named there is not `client_id` (after a crash, our own
/// earlier run is named, or the Last Will says `offline`). `None` when
/// there is none, or when it cannot tell (no broker yet).
pub async fn other_instance(
    config: &MqttConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    client_id: &str,
) -> Option<String> {
    let probe_id = format!("{client_id}-probe");
    let identity = Identity {
        client_id: &probe_id,
        last_will: false,
    };
    let (client, mut notes, poller) = client::connect(config, tls, 1, identity).ok()?;
    let _poller = AbortOnDrop(poller);
    let status_topic = format!("{}/status", config.prefix);
    let instance = instance_topic(&config.prefix);
    let (mut status, mut named) = (None::<Vec<u8>>, None::<String>);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    // Retained messages come right after the subscription is granted;
    // give them a moment once the connection is up.
    let mut settle: Option<tokio::time::Instant> = None;
    loop {
        let until = settle.map_or(deadline, |s| s.min(deadline));
        let note = tokio::select! {
            () = tokio::time::sleep_until(until) => break,
            note = notes.recv() => note,
        };
        match note {
            Some(Ok(Note::ConnAck { .. })) => {
                for filter in [&status_topic, &instance] {
                    let _ = client.subscribe(filter);
                }
                settle = Some(tokio::time::Instant::now() + Duration::from_millis(500));
            }
            Some(Ok(Note::Publish { topic, payload, .. })) => {
                if topic == status_topic {
                    status = Some(payload);
                } else if topic == instance {
                    named = instance_id(&payload);
                }
            }
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    client.disconnect();
    // Let the poller send the DISCONNECT before it is aborted.
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while let Some(Ok(_)) = notes.recv().await {}
    })
    .await;
    let other = named.filter(|id| id != client_id)?;
    (status.as_deref() == Some(b"online".as_slice())).then_some(other)
}
