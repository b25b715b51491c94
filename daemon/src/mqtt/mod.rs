//! MQTT: where glimpse publishes events and takes questions (DESIGN §7).
//!
//! So far this stage holds its configuration: the broker (the embedded one
//! or a URL), the topic prefix, the client id and the credentials, with the
//! password taken from the environment or a file and never from the config
//! file itself. The client, the embedded broker and the outbox build on it.

mod config;

pub use config::{MqttConfig, Secret};
