//! Telemetry: what jobs report besides their status. `service` reads readings and job logs and
//! keeps each node's pump calibrations; `ingest` is the loop that stores the numbered batches
//! agents send, each item once; `retention` deletes what its rules say is too old.

pub mod ingest;
pub mod retention;
pub mod service;

pub use ingest::{Ingester, MAX_LOG_LINES_PER_JOB};
pub use retention::Retention;
pub use service::{Backlog, LogEvent, Telemetry};
