//! Trigger: decides when glimpse speaks up on its own (scene changes, watch
//! rules, [`SceneTrigger`]; watch rules as states, [`RuleBook`]) and makes the events (`crate::event`) it then publishes.
//! Runs on a model worker thread, once per analysed frame.

mod rules;
mod scene;

pub use rules::{Debounce, RuleBook};
pub use scene::{Decision, SceneTrigger, TriggerConfig};
