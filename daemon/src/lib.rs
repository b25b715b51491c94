//! glimpse: an edge video-analytics daemon.
//!
//! Cameras are captured, sampled and encoded; only the visual tokens that
//! changed reach a compact video LLM; a bounded pyramid memory keeps the
//! past; events and answers go out over MQTT. See `docs/architecture.md`
//! for the map. One module per stage, named for what it does;
//! only [`pipeline`] wires them together, and [`service`] runs the whole
//! under systemd.
#![deny(missing_docs)]

pub mod capture;
pub mod chart;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod dtd;
pub mod eval;
pub mod event;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod frame;
pub mod health;
pub mod histogram;
pub mod http;
pub mod imageops;
pub mod infer;
pub mod llm;
pub mod memory;
pub mod mqtt;
pub mod pipeline;
pub mod queue;
pub mod region;
pub mod service;
pub mod settings;
#[cfg(feature = "fault-injection")]
pub mod slow;
pub mod snapshot;
pub mod tokens;
pub mod trigger;
pub mod tune;
pub mod vision;
pub mod workers;
pub mod zones;
