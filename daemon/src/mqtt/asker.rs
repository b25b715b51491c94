//! `glimpse ask`: a one-shot client that sends a question to a running
//! daemon over MQTT and waits for its answer. It speaks the config's
//! `mqtt.protocol` (an embedded broker takes only that version on
//! `mqtt.listen`), uses its own client id and no Last Will, so it never
//! disturbs the daemon's session or status.

use std::time::Duration;

use rumqttc::{TlsConfiguration, Transport};

use super::{client::tls_config, MqttConfig, Protocol};

/// Asks `question` about `camera`; returns the answer's JSON payload.
pub async fn ask(
    config: &MqttConfig,
    camera: &str,
    question: &str,
    timeout: Duration,
) -> Result<serde_json::Value, String> {
    let address = config
        .broker_address()
        .ok_or_else(|| format!("mqtt.broker {:?} is not an address", config.broker))?;
    let id = ulid::Ulid::new().to_string();
    let request = Request {
        client_id: format!("glimpse-ask-{id}"),
        answers: format!("{}/{camera}/answer", config.prefix),
        ask: format!("{}/{camera}/ask", config.prefix),
        payload: serde_json::json!({ "id": id, "question": question }).to_string(),
        id,
        credentials: config.username.clone().map(|user| {
            let password = config.password.as_ref().map(|p| p.0.clone());
            (user, password.unwrap_or_default())
        }),
        transport: tls_config(config)
            .map_err(|e| e.to_string())?
            .map(|tls| Transport::tls_with_config(TlsConfiguration::Rustls(tls))),
        max_packet: config.max_packet_bytes,
    };
    let wait = async {
        match config.protocol {
            Protocol::V311 => ask_v311(request, address.host, address.port).await,
            Protocol::V5 => ask_v5(request, address.host, address.port).await,
        }
        .map_err(|e| format!("MQTT broker at {}: {e}", config.broker))
    };
    tokio::time::timeout(timeout, wait).await.map_err(|_| {
        format!(
            "no answer within {} s (is glimpse running, with camera {camera:?}?)",
            timeout.as_secs()
        )
    })?
}

/// What either protocol's client needs.
struct Request {
    id: String,
    client_id: String,
    answers: String,
    ask: String,
    payload: String,
    credentials: Option<(String, String)>,
    transport: Option<Transport>,
    max_packet: u32,
}

impl Request {
    /// The answer to our question, if `payload` is one. Answers carry the
    /// question id in `reference`; error answers in `id`.
    fn answer(&self, payload: &[u8]) -> Option<serde_json::Value> {
        let answer = serde_json::from_slice::<serde_json::Value>(payload).ok()?;
        (answer["reference"] == self.id.as_str() || answer["id"] == self.id.as_str())
            .then_some(answer)
    }
}

async fn ask_v311(request: Request, host: String, port: u16) -> Result<serde_json::Value, String> {
    use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
    let mut options = MqttOptions::new(&request.client_id, host, port);
    let max = request.max_packet as usize;
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(max, max);
    if let Some((user, password)) = &request.credentials {
        options.set_credentials(user, password);
    }
    if let Some(transport) = request.transport.clone() {
        options.set_transport(transport);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    loop {
        match eventloop.poll().await.map_err(|e| e.to_string())? {
            Event::Incoming(Incoming::ConnAck(_)) => client
                .subscribe(&request.answers, QoS::AtLeastOnce)
                .await
                .map_err(|e| e.to_string())?,
            // Ask only once subscribed, so the answer cannot be missed.
            Event::Incoming(Incoming::SubAck(_)) => client
                .publish(
                    &request.ask,
                    QoS::AtLeastOnce,
                    false,
                    request.payload.clone(),
                )
                .await
                .map_err(|e| e.to_string())?,
            Event::Incoming(Incoming::Publish(p)) => {
                if let Some(answer) = request.answer(&p.payload) {
                    let _ = client.disconnect().await;
                    return Ok(answer);
                }
            }
            _ => {}
        }
    }
}

async fn ask_v5(request: Request, host: String, port: u16) -> Result<serde_json::Value, String> {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let mut options = MqttOptions::new(&request.client_id, host, port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_start(true)
        .set_max_packet_size(Some(request.max_packet));
    if let Some((user, password)) = &request.credentials {
        options.set_credentials(user, password);
    }
    if let Some(transport) = request.transport.clone() {
        options.set_transport(transport);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    loop {
        match eventloop.poll().await.map_err(|e| e.to_string())? {
            Event::Incoming(Packet::ConnAck(_)) => client
                .subscribe(&request.answers, QoS::AtLeastOnce)
                .await
                .map_err(|e| e.to_string())?,
            Event::Incoming(Packet::SubAck(_)) => client
                .publish(
                    &request.ask,
                    QoS::AtLeastOnce,
                    false,
                    request.payload.clone(),
                )
                .await
                .map_err(|e| e.to_string())?,
            Event::Incoming(Packet::Publish(p)) => {
                if let Some(answer) = request.answer(&p.payload) {
                    let _ = client.disconnect().await;
                    return Ok(answer);
                }
            }
            _ => {}
        }
    }
}
