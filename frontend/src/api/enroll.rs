//! Enrolment: nodes waiting to join, approving or rejecting them, and join tokens.

use super::{DateTime, operation};

operation!(
    /// Nodes waiting for approval.
    Pending,
    "src/operations/enroll.graphql"
);
operation!(
    /// Let a waiting node join.
    ApproveNode,
    "src/operations/enroll.graphql"
);
operation!(
    /// Turn a waiting node away.
    RejectNode,
    "src/operations/enroll.graphql"
);
operation!(
    /// A join token for a new machine, valid 7 days.
    CreateJoinToken,
    "src/operations/enroll.graphql"
);

/// A node waiting for approval.
pub type PendingNode = pending::PendingPendingNodes;
