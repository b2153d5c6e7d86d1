//! SeaORM entities for the Trellis database. The schema itself is owned by the `migration` crate.

pub mod api_token;
pub mod audit_event;
pub mod enrollment;
pub mod job;
pub mod join_token;
pub mod node;
pub mod node_credential;
pub mod session;
pub mod user;
