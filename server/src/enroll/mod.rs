//! Enrollment: join tokens, pending nodes and node credentials (`service`), and the join flow that
//! turns an agent's request into an approved node (`flow`).

pub mod flow;
pub mod service;

pub use service::{Enroll, JoinProof, JoinRequest};

/// Longest join token lifetime accepted, days: a join token lets machines ask to join, so it
/// should not outlive the rollout it was made for.
pub const MAX_JOIN_TOKEN_DAYS: i32 = 365;

/// Join requests waiting for the enroll flow, from the gate or the bridge. A burst beyond this
/// is dropped with a warning (the agents ask again), so a flood cannot grow memory.
pub const JOIN_QUEUE: usize = 64;
