//! The MQTT wire protocol shared by the Trellis server and agent: topic builders, topic parsing and
//! the JSON payloads. Every topic starts with [`PREFIX`], which carries the protocol version, so a
//! future incompatible change gets a new prefix and old agents keep working on the old one.
//!
//! `docs/mqtt.md` documents each topic with its payload, QoS and retain flag; keep the two in step.

use serde::Serialize;

mod addr;
mod command;
mod enroll;
mod job;
mod node;
mod telemetry;
pub mod topics;

pub use addr::*;
pub use command::*;
pub use enroll::*;
pub use job::*;
pub use node::*;
pub use telemetry::*;
pub use topics::*;

/// Root of every Trellis topic; the `v1` is the protocol version.
pub const PREFIX: &str = "trellis/v1";

/// Longest node id accepted, in bytes. Node ids are topic segments, so they are kept short and plain.
pub const MAX_NODE_ID_LEN: usize = 64;

/// Why a node id or topic was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    /// The node id is empty, too long or holds a character outside `[A-Za-z0-9_-]`.
    #[error(
        "invalid node id {0:?}: use 1 to {MAX_NODE_ID_LEN} characters from A-Z, a-z, 0-9, '-' and '_'"
    )]
    InvalidNodeId(String),
    /// The job name is empty, too long or holds a character outside `[A-Za-z0-9_-]`.
    #[error(
        "invalid job name {0:?}: use 1 to {MAX_JOB_NAME_LEN} characters from A-Z, a-z, 0-9, '-' and '_'"
    )]
    InvalidJobName(String),
    /// The topic is not one of the Trellis topics.
    #[error("not a Trellis topic: {0:?}")]
    UnknownTopic(String),
    /// A message could not be encoded (it is not sent: an empty payload would clear state).
    #[error("cannot encode a message: {0}")]
    Encode(String),
    /// The payload could not be decoded as the message that the topic carries.
    #[error("malformed {kind} payload on {topic}: {reason}")]
    Malformed {
        /// The kind of message the topic carries.
        kind: &'static str,
        /// The topic the payload arrived on.
        topic: String,
        /// What the decoder said.
        reason: String,
    },
}

/// Checks that `id` can be used as a node id (and so as a topic segment).
pub fn validate_node_id(id: &str) -> Result<(), ProtoError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_NODE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ProtoError::InvalidNodeId(id.to_owned()))
    }
}

/// Encodes a message as its JSON payload. Never empty: on a retained topic an empty payload
/// means "cleared", so a failure is an error for the caller, not an empty message.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtoError> {
    match serde_json::to_vec(msg) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        Ok(_) => Err(ProtoError::Encode("the payload encoded to nothing".into())),
        Err(e) => Err(ProtoError::Encode(e.to_string())),
    }
}

/// Lowercase hex of `bytes`: the one hex encoder of the workspace (token hashes, client ids).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}
