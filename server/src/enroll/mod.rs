//! Enrollment: join tokens, pending nodes and node credentials (`service`), and the join flow that
//! turns an agent's request into an approved node (`flow`).

pub mod flow;
pub mod service;

pub use service::{Enroll, JoinProof, JoinRequest};
