//! Trigger: decides when glimpse speaks up on its own (scene changes, watch
//! rules) and defines the [`Event`] it then publishes.

mod event;

pub use event::{Event, EventKind, Evidence};
