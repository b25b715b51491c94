//! `glimpse ask`: a one-shot client that sends a question to a running
//! daemon over MQTT and waits for its answer. It uses its own client id and
//! no Last Will, so it never disturbs the daemon's session or status.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS, TlsConfiguration, Transport};

use super::{client::tls_config, MqttConfig};

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
    let mut options = MqttOptions::new(format!("glimpse-ask-{id}"), address.host, address.port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true);
    if let Some(user) = &config.username {
        options.set_credentials(
            user.clone(),
            config
                .password
                .as_ref()
                .map(|p| p.0.clone())
                .unwrap_or_default(),
        );
    }
    if let Some(tls) = tls_config(config).map_err(|e| e.to_string())? {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    }
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let answers = format!("{}/{camera}/answer", config.prefix);
    let request = serde_json::json!({ "id": id, "question": question }).to_string();
    let wait = async {
        loop {
            match eventloop
                .poll()
                .await
                .map_err(|e| format!("MQTT broker at {}: {e}", config.broker))?
            {
                Event::Incoming(Incoming::ConnAck(_)) => {
                    client
                        .subscribe(&answers, QoS::AtLeastOnce)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                // Ask only once subscribed, so the answer cannot be missed.
                Event::Incoming(Incoming::SubAck(_)) => {
                    client
                        .publish(
                            format!("{}/{camera}/ask", config.prefix),
                            QoS::AtLeastOnce,
                            false,
                            request.clone(),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Event::Incoming(Incoming::Publish(p)) => {
                    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(&p.payload) else {
                        continue;
                    };
                    // Answers carry the question id in `reference`; error
                    // answers in `id`.
                    if answer["reference"] == id.as_str() || answer["id"] == id.as_str() {
                        let _ = client.disconnect().await;
                        return Ok(answer);
                    }
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(timeout, wait).await.map_err(|_| {
        format!(
            "no answer within {} s (is glimpse running, with camera {camera:?}?)",
            timeout.as_secs()
        )
    })?
}
