//! Trigger: decides when glimpse speaks up on its own (scene changes, watch
//! rules, [`SceneTrigger`]; watch rules as states, [`RuleBook`]) and defines the [`Event`] it then publishes.
//! Runs on a model worker thread, once per analysed frame.

mod event;
mod rules;
mod scene;

pub use event::{Event, EventKind, Evidence};
pub use rules::{rule_id, Debounce, RuleBook, RuleSource, RuleState, RuleStatus};
pub use scene::{Activity, Decision, SceneTrigger, TriggerConfig};
