//! End-to-end tests: the real `glimpse` binary with real config files, a
//! real notify socket, real MQTT brokers and systemd's own unit checker. One test binary, as
//! in ripgrep (`autotests = false`). What the tests share (the daemon, a
//! mosquitto and its clients, the stored history, a notify socket, an HTTP
//! client) is in `harness/`.

mod analysis;
mod architecture;
mod capture;
mod cli;
mod delivery;
mod docs;
mod doctor;
mod harness;
mod home_assistant;
mod http;
mod hub;
mod install;
mod lifecycle;
mod model;
mod mqtt_discovery;
mod mqtt_outages;
mod mqtt_questions;
mod mqtt_round_trip;
mod mqtt_tls;
#[cfg(feature = "ort")]
mod onnxruntime;
mod operator;
mod ort_wheel;
mod package;
mod prompt_layout;
mod regions;
mod shapes;
mod snapshots;
mod systemd;
#[cfg(feature = "tract-cuda")]
mod tract_cuda;
