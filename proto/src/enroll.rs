//! Enrollment messages: an agent's request to join, the leader's answer, and the names an
//! enrolling agent logs in under.

use serde::{Deserialize, Serialize};

use crate::Announce;

/// An agent asking to join, sent with its join token as the MQTT password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// What the node says about itself (its `node_id` must match the topic).
    pub announce: Announce,
    /// A random secret (16-64 lowercase hex characters) naming the response topic; also the
    /// enrolling connection's MQTT client id.
    pub nonce: String,
    /// The join token, for a leader behind an external broker (which checked only that the
    /// connection holds some join token). Only the leader may read request topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_token: Option<String>,
}

impl EnrollRequest {
    /// Checks the request against the node id of the topic it came on: the announce must name
    /// that node, and the nonce must be 16-64 lowercase hex characters. The error says which.
    pub fn check(&self, topic_node: &str) -> Result<(), String> {
        if self.announce.node_id != topic_node {
            return Err(format!(
                "the request announces node {:?} on the topic of node {topic_node:?}",
                self.announce.node_id
            ));
        }
        if !valid_nonce(&self.nonce) {
            return Err("the nonce is not 16-64 lowercase hex characters".into());
        }
        Ok(())
    }
}

/// How an enrolling agent's MQTT username starts. `.` is not allowed in node ids, so a join
/// account never collides with a node's.
pub const JOIN_USERNAME_PREFIX: &str = "join.";

/// The MQTT username an agent enrolls under with `token`: `join.` and the first 16 hex digits of
/// the token's SHA-256, which the leader also knows from the hash it stores.
pub fn join_username(token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(token.as_bytes());
    format!("{JOIN_USERNAME_PREFIX}{}", crate::hex(&digest[..8]))
}

/// The join username for a token whose SHA-256 (lowercase hex) is `token_hash`.
pub fn join_username_for_hash(token_hash: &str) -> String {
    format!(
        "{JOIN_USERNAME_PREFIX}{}",
        token_hash.get(..16).unwrap_or(token_hash)
    )
}

/// Checks an enroll nonce: 16-64 lowercase hex characters.
pub fn valid_nonce(nonce: &str) -> bool {
    (16..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The leader's answer once an operator (or the auto-approve list) approved the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// MQTT username (the node id).
    pub username: String,
    /// MQTT password; the agent stores it and uses it from then on.
    pub password: String,
}
