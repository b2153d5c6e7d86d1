//! SeaORM entities for the Trellis database. The schema itself is owned by the `migration` crate.

pub mod api_token;
pub mod audit_event;
pub mod enrollment;
pub mod experiment;
pub mod experiment_name;
pub mod experiment_node;
pub mod experiment_note;
pub mod job;
pub mod job_log;
pub mod job_preset;
pub mod join_token;
pub mod node;
pub mod node_credential;
pub mod profile;
pub mod profile_run;
pub mod profile_step;
pub mod reading;
pub mod reading_minute;
pub mod reading_series;
pub mod retention_rule;
pub mod session;
pub mod telemetry_stream;
pub mod user;
