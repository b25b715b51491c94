//! MQTT: where glimpse publishes events and takes questions (docs/architecture.md §7).
//!
//! Input: [`Event`](crate::event::Event)s from the pipeline through
//! [`MqttHandle::publish_event`] (durable: written to the SQLite outbox in
//! the state directory first), activity and statistics; from the broker,
//! questions (`<prefix>/<camera>/ask`) and watch-rule changes
//! (`<prefix>/<camera>/rules/set`). Output: the topics of docs/architecture.md §7, Home
//! Assistant discovery, and [`Question`]s on a bounded channel for the
//! responder.
//!
//! Threads: one driver task on tokio owns the connection (rumqttc, MQTT
//! 3.1.1 or 5, optionally TLS); each connection's event loop is polled by
//! its own task; SQLite calls run on tokio's blocking threads; the embedded
//! broker (rumqttd) runs on threads of its own.

mod ask;
mod asker;
mod broker;
mod client;
mod config;
mod discovery;
mod driver;
mod inbound;
mod outbox;
mod unstored;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use ask::{parse_question, Question, Refusal, RulesChange};
pub use asker::ask;
pub use config::{BrokerAddress, MqttConfig, Protocol, Secret};
pub use discovery::payload as discovery_payload;
pub use driver::{error_answer, Activity, Mqtt, MqttHandle, MqttStats, RuleStates};
pub use outbox::{now_ms, read_dead_letters, read_history, DeadLetter, FILE_NAME as OUTBOX_FILE};
pub use unstored::MakeRoom;

/// Why the MQTT stage could not start or do its work.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The embedded broker's port is taken.
    #[error("mqtt.listen {listen}: the address is already in use, probably by another MQTT broker; point glimpse at that broker with mqtt.broker = \"mqtt://HOST:PORT\", or move the embedded broker with mqtt.listen")]
    PortTaken {
        /// The configured address.
        listen: SocketAddr,
    },
    /// The embedded broker could not start.
    #[error("embedded broker: {0}")]
    Broker(String),
    /// The outbox database failed.
    #[error("outbox {path}: {reason}")]
    Outbox {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// A TLS file could not be used.
    #[error("mqtt TLS: {file}: {reason}")]
    Tls {
        /// The file (or store) at fault.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// The stage stopped or failed internally.
    #[error("mqtt: {0}")]
    Closed(String),
}
