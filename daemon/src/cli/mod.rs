//! The commands beside `run` that read what the service keeps, one module
//! each (docs/architecture.md §1: the top layer). `main.rs` parses the
//! command line and dispatches here.

pub mod events;
