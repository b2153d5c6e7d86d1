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
    /// Start a job of `kind` named `name` (the kind's name when absent) with these settings (the
    /// kind's defaults for the rest). Refused when the name is taken by a job that has not ended.
    StartJob {
        /// The job's name, unique on the node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Which kind.
        kind: String,
        /// Settings given at start.
        #[serde(default)]
        settings: crate::Settings,
        /// An id for this start, echoed in the job's status (`JobStatus::start`), so the leader
        /// tells this start's status from a stale one of an earlier job with the same name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<String>,
    },
    /// Stop a job: release its hardware, then say `stopped`.
    StopJob {
        /// The job.
        name: String,
    },
    /// Pause a job: release its hardware, keep its settings (`sleeping`).
    PauseJob {
        /// The job.
        name: String,
    },
    /// Resume a paused job.
    ResumeJob {
        /// The job.
        name: String,
    },
    /// Change settings of a running job, all or nothing.
    SetJobSettings {
        /// The job.
        name: String,
        /// The new values.
        settings: crate::Settings,
    },
    /// Store a pump's calibration on the node (replacing the pump's old one).
    SetPumpCalibration(crate::PumpCalibration),
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
