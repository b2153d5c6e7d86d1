//! Commands from the leader to a node's agent, and their results.

use serde::{Deserialize, Serialize};

/// A command from the server to one node. Each carries a unique id, so an agent that receives it
/// twice (QoS 1 is at-least-once: MQTT-4.4.0-1) runs it once and answers with the same result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Unique id, echoed in the result.
    pub id: String,
    /// What to do.
    pub action: Action,
}

/// What a command asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Answer at once: proves the node receives commands and measures the round trip.
    Ping,
}

/// An agent's answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The command's id.
    pub id: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// What happened, for people.
    pub message: String,
}

/// Decodes a command received by an agent; the error names what is wrong.
pub fn decode_command(payload: &[u8]) -> Result<Command, String> {
    serde_json::from_slice(payload).map_err(|e| format!("malformed command: {e}"))
}
