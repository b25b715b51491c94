//! The embedded broker (rumqttd), so that a fresh install works alone.
//!
//! rumqttd runs its router and its listener on threads of its own (each
//! with a small tokio runtime); it cannot be stopped, so it lives as long
//! as the process. Before starting it we bind `mqtt.listen` ourselves: a
//! port that is taken is a clear start-up error that tells the user to
//! point glimpse at the broker already there.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::{MqttError, Protocol};

/// Starts the broker on `listen`, speaking `protocol` and refusing packets
/// over `max_packet` bytes, and waits until it accepts connections.
/// Blocking (binds, spawns threads, polls the port).
///
/// One protocol only: rumqttd fixes the version per listener, and rumqttd
/// 0.20 panics (`unreachable!` in its v4 `write`) when it forwards an MQTT 5
/// message that carries properties (a response topic, a payload format)
/// to a 3.1.1 client, so a second listener for the other version would
/// break as soon as the two kinds of client meet.
pub fn start(listen: SocketAddr, protocol: Protocol, max_packet: u32) -> Result<(), MqttError> {
    match TcpListener::bind(listen) {
        Ok(probe) => drop(probe),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(MqttError::PortTaken { listen })
        }
        Err(e) => {
            return Err(MqttError::Broker(format!(
                "cannot listen on {listen} (mqtt.listen): {e}"
            )))
        }
    }
    let max_payload_size = max_incoming(max_packet);
    let server = rumqttd::ServerSettings {
        name: format!("glimpse-{listen}"),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let servers = Some(HashMap::from([("glimpse".to_owned(), server)]));
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 200,
            // rumqttd keeps, per subscribed filter, a log of what was
            // published on it: the active segment plus `max_segment_count`
            // full ones, each closed once over `max_segment_size` (a larger
            // message still fits: it overflows its segment). It keeps them
            // whether or not they were delivered, so under a heavy load
            // each filter costs its whole log: at 4 MiB × 5 that was 20 MiB
            // per filter (issue 43: under 4 busy cameras RSS grew ~3 MiB a
            // minute, to 97 MiB at 12 minutes; now ~70 MiB, flat over an
            // hour). 1 MiB × 3 bounds it at ~3 MiB, still some thousand
            // events (or tens of snapshots) a subscriber may lag.
            max_segment_size: 1 << 20,
            max_segment_count: 2,
            ..rumqttd::RouterConfig::default()
        },
        v4: (protocol == Protocol::V311)
            .then(|| servers.clone())
            .flatten(),
        v5: (protocol == Protocol::V5).then_some(servers).flatten(),
        ..rumqttd::Config::default()
    };
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".to_owned())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!("the embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(|e| MqttError::Broker(format!("cannot start the broker thread: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect_timeout(&listen_target(listen), Duration::from_millis(200)) {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                return Err(MqttError::Broker(format!(
                    "the embedded broker does not accept connections on {listen}: {e}"
                )))
            }
        }
    }
    tracing::info!(%listen, ?protocol, "embedded MQTT broker listening");
    Ok(())
}

/// Headroom for what a broker may add when it forwards a message (packet
/// id, properties), in bytes.
const HEADROOM: usize = 1024;

/// The largest packet the embedded broker takes from any client, glimpse
/// included: `max_packet` less some headroom, so that whatever it takes in,
/// glimpse's client (limited to `max_packet`) can receive. rumqttd compares
/// a packet's remaining length, as rumqttc does.
pub fn max_incoming(max_packet: u32) -> usize {
    (max_packet as usize).saturating_sub(HEADROOM)
}

/// Where to reach a listener bound to `listen` (a wildcard means loopback).
fn listen_target(listen: SocketAddr) -> SocketAddr {
    let mut target = listen;
    if listen.ip().is_unspecified() {
        target.set_ip(if listen.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    target
}
