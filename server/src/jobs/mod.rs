//! Jobs: hardware jobs on the nodes (`service`): their table, the kinds each node offers, the
//! actions sent to agents as commands, and the events subscribers see; and the built-in presets
//! (`presets`). The agent side (runtime,
//! kinds, drivers) is `agent/src/jobs`.

pub mod presets;
pub mod service;

pub use service::{Caller, JobEvent, JobEventKind, Jobs, Start};
