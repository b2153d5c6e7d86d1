//! SeaORM entities for the Trellis database. The schema itself is owned by the `migration` crate.

pub mod api_token;
pub mod audit_event;
pub mod enrollment;
pub mod job;
pub mod job_log;
pub mod job_preset;
pub mod join_token;
pub mod node;
pub mod node_credential;
pub mod reading;
pub mod session;
pub mod telemetry_stream;
pub mod user;
