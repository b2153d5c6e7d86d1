//! What a node says about itself: its announce, status and heartbeats, and its MQTT client id.

use serde::{Deserialize, Serialize};

/// What a node says about itself when it connects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announce {
    /// Stable id of the node; also the topic segment.
    pub node_id: String,
    /// The machine's hostname.
    pub hostname: String,
    /// MAC address of the primary network interface, `aa:bb:cc:dd:ee:ff`, if one was found.
    pub mac: Option<String>,
    /// Non-loopback IP addresses of the node.
    #[serde(default)]
    pub ip_addresses: Vec<String>,
    /// CPU architecture, as Rust names it (`x86_64`, `aarch64`, ...).
    pub arch: String,
    /// Operating system, from `/etc/os-release` when present.
    pub os: String,
    /// Board model (`Raspberry Pi 4 Model B Rev 1.4`), when the machine says.
    pub model: Option<String>,
    /// Version of the agent binary.
    pub agent_version: String,
    /// Name of the hardware backend the agent drives (`simulator`, `rppal`).
    #[serde(default)]
    pub hardware: String,
    /// Seconds between heartbeats, so the server knows when a silent node is overdue.
    pub heartbeat_interval_secs: u64,
    /// Where the node's Docker engine listens, as a [`DockerEndpoint`] string, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_endpoint: Option<String>,
}

/// Liveness of a node as the node (or its last-will) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Connected and reporting.
    Online,
    /// Shut down cleanly.
    Offline,
    /// Vanished without a clean shutdown (last-will, or heartbeats overdue).
    Lost,
}

impl NodeState {
    /// The lowercase name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Online => "online",
            NodeState::Offline => "offline",
            NodeState::Lost => "lost",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "online" => Some(NodeState::Online),
            "offline" => Some(NodeState::Offline),
            "lost" => Some(NodeState::Lost),
            _ => None,
        }
    }
}

/// Payload of the retained status topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The state the node is in.
    pub state: NodeState,
}

/// Periodic system stats from a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// CPU busy share since the previous heartbeat, 0–100.
    pub cpu_percent: f32,
    /// Memory in use (total minus available), bytes.
    pub mem_used_bytes: u64,
    /// Total memory, bytes.
    pub mem_total_bytes: u64,
    /// SoC temperature in °C, when the machine has a sensor.
    pub temperature_c: Option<f32>,
    /// Seconds since the machine booted.
    pub uptime_secs: u64,
    /// The node's clock when it sent this, milliseconds since the Unix epoch, so the leader can
    /// tell a node whose clock is wrong (absent from agents before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at_ms: Option<i64>,
    /// Space on the filesystem of the node's Docker data root, so the leader can refuse an image
    /// that would fill the disk (absent from agents before this field, or when unreadable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskSpace>,
}

/// Free and total space of one filesystem on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpace {
    /// The directory measured (the Docker data root, or its nearest existing parent).
    pub path: String,
    /// Bytes an unprivileged writer may still use.
    pub free_bytes: u64,
    /// The filesystem's size, bytes.
    pub total_bytes: u64,
}

/// The MQTT client id of a node's agent logged in with `password`:
/// `trellis-agent-{node}-{key}`, `{key}` being the first 16 hex digits of
/// SHA-256(`trellis-client-id:` + password). Only a holder of the node's password can know it, so
/// on a broker that cannot tie client ids to usernames (Mosquitto) no other client can take the
/// node's session over by reusing its id (MQTT-3.1.4-2); the gate accepts nothing else. Without a
/// password (an anonymous test broker) it is `trellis-agent-{node}`.
pub fn node_client_id(node_id: &str, password: Option<&str>) -> String {
    use sha2::Digest;
    match password {
        Some(p) => {
            let digest = sha2::Sha256::digest(format!("trellis-client-id:{p}").as_bytes());
            format!("trellis-agent-{node_id}-{}", crate::hex(&digest[..8]))
        }
        None => format!("trellis-agent-{node_id}"),
    }
}
