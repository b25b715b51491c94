//! Trigger: decides when glimpse speaks up on its own (scene changes, watch
//! rules, [`SceneTrigger`]) and defines the [`Event`] it then publishes.
//! Runs on a model worker thread, once per analysed frame.

mod event;
mod scene;

pub use event::{Event, EventKind, Evidence};
pub use scene::{Activity, Decision, SceneTrigger, TriggerConfig};
