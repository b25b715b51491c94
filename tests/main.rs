//! End-to-end tests: the real `glimpse` binary with real config files, a
//! real notify socket, real MQTT brokers and systemd's own unit checker. One test binary, as
//! in ripgrep (`autotests = false`).

mod analysis;
mod architecture;
mod capture;
mod cli;
mod delivery;
mod home_assistant;
mod http;
mod hub;
mod install;
mod lifecycle;
mod model;
mod mqtt;
#[cfg(feature = "ort")]
mod onnxruntime;
mod operator;
mod ort_wheel;
mod prompt_layout;
mod shapes;
mod snapshots;
mod systemd;
#[cfg(feature = "tract-cuda")]
mod tract_cuda;
mod util;
