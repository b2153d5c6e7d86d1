//! The MQTT wire protocol shared by the Trellis server and agent: topic builders, topic parsing and
//! the JSON payloads. Every topic starts with [`PREFIX`], which carries the protocol version, so a
//! future incompatible change gets a new prefix and old agents keep working on the old one.
//!
//! `docs/mqtt.md` documents each topic with its payload, QoS and retain flag; keep the two in step.

use serde::{Deserialize, Serialize};

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
    /// The topic is not one of the Trellis topics.
    #[error("not a Trellis topic: {0:?}")]
    UnknownTopic(String),
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

/// Topic builders. Each returns the full topic string.
pub mod topic {
    use super::PREFIX;

    /// Retained, QoS 1: the node's [`super::Announce`], published by the agent after every connect.
    pub fn announce(node_id: &str) -> String {
        format!("{PREFIX}/nodes/{node_id}/announce")
    }

    /// Retained, QoS 1: the node's [`super::Status`]; the agent's last-will sets it to `lost`.
    pub fn status(node_id: &str) -> String {
        format!("{PREFIX}/nodes/{node_id}/status")
    }

    /// Not retained, QoS 0: periodic [`super::Heartbeat`] with system stats.
    pub fn heartbeat(node_id: &str) -> String {
        format!("{PREFIX}/nodes/{node_id}/heartbeat")
    }

    /// QoS 1, not retained: a [`super::Command`] from the server to the node's agent.
    pub fn command(node_id: &str) -> String {
        format!("{PREFIX}/nodes/{node_id}/command")
    }

    /// QoS 1, not retained: the agent's [`super::CommandResult`] for a command.
    pub fn command_result(node_id: &str) -> String {
        format!("{PREFIX}/nodes/{node_id}/result")
    }

    /// QoS 1, not retained: an [`super::EnrollRequest`] from an agent holding a join token.
    pub fn enroll_request(node_id: &str) -> String {
        format!("{PREFIX}/enroll/{node_id}/request")
    }

    /// QoS 1, retained until the node first logs in: the [`super::EnrollResponse`] with the
    /// node's MQTT credentials. The nonce is the agent's secret from its request, so only the
    /// connection that asked can read the answer.
    pub fn enroll_response(node_id: &str, nonce: &str) -> String {
        format!("{PREFIX}/enroll/{node_id}/response/{nonce}")
    }

    /// The filters the server's bridge subscribes to: everything agents publish (not the
    /// server's own commands).
    pub fn server_filters() -> Vec<String> {
        ["announce", "status", "heartbeat", "result"]
            .iter()
            .map(|kind| format!("{PREFIX}/nodes/+/{kind}"))
            .chain(std::iter::once(format!("{PREFIX}/enroll/+/request")))
            .collect()
    }
}

/// A message on one of the node topics, decoded from its topic and payload.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeMessage {
    /// The node described itself.
    Announce(Announce),
    /// The node's liveness changed.
    Status(Status),
    /// The node sent its periodic stats.
    Heartbeat(Heartbeat),
    /// The node answered a command.
    Result(CommandResult),
    /// A retained message was cleared (empty payload) on this node's `kind` topic.
    Cleared(&'static str),
}

/// Splits a Trellis node topic into the node id and the message kind.
pub fn parse_node_topic(topic: &str) -> Result<(&str, &'static str), ProtoError> {
    let unknown = || ProtoError::UnknownTopic(topic.to_owned());
    let rest = topic
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_prefix("/nodes/"))
        .ok_or_else(unknown)?;
    let (node_id, kind) = rest.split_once('/').ok_or_else(unknown)?;
    validate_node_id(node_id).map_err(|_| unknown())?;
    let kind = match kind {
        "announce" => "announce",
        "status" => "status",
        "heartbeat" => "heartbeat",
        "result" => "result",
        _ => return Err(unknown()),
    };
    Ok((node_id, kind))
}

/// Decodes a message received on a node topic. An empty payload is a cleared retained message.
pub fn decode(topic: &str, payload: &[u8]) -> Result<(String, NodeMessage), ProtoError> {
    let (node_id, kind) = parse_node_topic(topic)?;
    let malformed = |e: serde_json::Error| ProtoError::Malformed {
        kind,
        topic: topic.to_owned(),
        reason: e.to_string(),
    };
    let msg = if payload.is_empty() {
        NodeMessage::Cleared(kind)
    } else {
        match kind {
            "announce" => {
                NodeMessage::Announce(serde_json::from_slice(payload).map_err(malformed)?)
            }
            "status" => NodeMessage::Status(serde_json::from_slice(payload).map_err(malformed)?),
            "result" => NodeMessage::Result(serde_json::from_slice(payload).map_err(malformed)?),
            _ => NodeMessage::Heartbeat(serde_json::from_slice(payload).map_err(malformed)?),
        }
    };
    if let NodeMessage::Announce(a) = &msg
        && a.node_id != node_id
    {
        return Err(ProtoError::Malformed {
            kind,
            topic: topic.to_owned(),
            reason: format!("node_id {:?} does not match the topic", a.node_id),
        });
    }
    Ok((node_id.to_owned(), msg))
}

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
}

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

/// How an enrolling agent's MQTT username starts. `.` is not allowed in node ids, so a join
/// account never collides with a node's.
pub const JOIN_USERNAME_PREFIX: &str = "join.";

/// The MQTT username an agent enrolls under with `token`: `join.` and the first 16 hex digits of
/// the token's SHA-256, which the leader also knows from the hash it stores.
pub fn join_username(token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{JOIN_USERNAME_PREFIX}{hex}")
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
            let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!("trellis-agent-{node_id}-{hex}")
        }
        None => format!("trellis-agent-{node_id}"),
    }
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

/// The node id in an enroll request topic, if it is one.
pub fn parse_enroll_request_topic(topic: &str) -> Option<&str> {
    let id = topic
        .strip_prefix(PREFIX)?
        .strip_prefix("/enroll/")?
        .strip_suffix("/request")?;
    validate_node_id(id).ok().map(|()| id)
}

/// Decodes a command received by an agent; the error names what is wrong.
pub fn decode_command(payload: &[u8]) -> Result<Command, String> {
    serde_json::from_slice(payload).map_err(|e| format!("malformed command: {e}"))
}

/// Encodes a message as its JSON payload.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail: no maps with non-string keys, no custom impls.
    serde_json::to_vec(msg).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce() -> Announce {
        Announce {
            node_id: "pi-01".into(),
            hostname: "pi".into(),
            mac: Some("aa:bb:cc:dd:ee:ff".into()),
            ip_addresses: vec!["10.0.0.2".into()],
            arch: "aarch64".into(),
            os: "Debian".into(),
            model: None,
            agent_version: "0.1.0".into(),
            hardware: "simulator".into(),
            heartbeat_interval_secs: 5,
            docker_endpoint: Some("tcp://10.0.0.2:2376".into()),
        }
    }

    #[test]
    fn round_trips_every_message() {
        let a = announce();
        let (id, msg) = decode(&topic::announce("pi-01"), &encode(&a)).expect("announce");
        assert_eq!((id.as_str(), msg), ("pi-01", NodeMessage::Announce(a)));
        let s = Status {
            state: NodeState::Lost,
        };
        let (_, msg) = decode(&topic::status("pi-01"), &encode(&s)).expect("status");
        assert_eq!(msg, NodeMessage::Status(s));
        let (_, msg) = decode(&topic::status("pi-01"), b"").expect("cleared");
        assert_eq!(msg, NodeMessage::Cleared("status"));
        let r = CommandResult {
            id: "c1".into(),
            ok: true,
            message: "pong".into(),
        };
        let (_, msg) = decode(&topic::command_result("pi-01"), &encode(&r)).expect("result");
        assert_eq!(msg, NodeMessage::Result(r));
        let c = Command {
            id: "c1".into(),
            action: Action::Ping,
        };
        assert_eq!(
            encode(&c),
            br#"{"id":"c1","action":{"type":"ping"}}"#.to_vec()
        );
        assert_eq!(decode_command(&encode(&c)), Ok(c));
        let err = decode_command(br#"{"id":"c2","action":{"type":"self_destruct"}}"#).unwrap_err();
        assert!(err.contains("unknown variant `self_destruct`"), "{err}");
    }

    #[test]
    fn rejects_bad_topics_and_payloads_with_a_reason() {
        assert_eq!(
            decode("trellis/v1/nodes/a+b/status", b"{}").unwrap_err(),
            ProtoError::UnknownTopic("trellis/v1/nodes/a+b/status".into())
        );
        assert!(matches!(
            decode("trellis/v1/nodes/x/other", b"{}"),
            Err(ProtoError::UnknownTopic(_))
        ));
        let err = decode(&topic::heartbeat("x"), b"{not json").unwrap_err();
        assert!(
            err.to_string().contains("malformed heartbeat payload"),
            "{err}"
        );
        let err = decode(&topic::announce("other"), &encode(&announce())).unwrap_err();
        assert!(
            err.to_string().contains("does not match the topic"),
            "{err}"
        );
    }

    #[test]
    fn node_ids_are_plain_topic_segments() {
        assert!(validate_node_id("pi-01_a").is_ok());
        for bad in ["", "a/b", "a+", "#", &"x".repeat(65)] {
            assert!(validate_node_id(bad).is_err(), "{bad}");
        }
    }
}

/// An MQTT broker address parsed from `mqtt://host:port` (port defaults to 1883) or, over TLS,
/// `mqtts://host:port` (port defaults to 8883).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether the broker speaks MQTT over TLS.
    pub tls: bool,
}

impl std::str::FromStr for BrokerAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (rest, tls) = if let Some(r) = s.strip_prefix("mqtts://") {
            (r, true)
        } else if let Some(r) = s
            .strip_prefix("mqtt://")
            .or_else(|| s.strip_prefix("tcp://"))
        {
            (r, false)
        } else {
            return Err(format!(
                "broker URL {s:?} must start with mqtt:// (or mqtts:// for TLS)"
            ));
        };
        let default_port = if tls { 8883 } else { 1883 };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("broker URL {s:?} has an invalid port {p:?}"))?;
                (h, port)
            }
            _ => (rest, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(format!("broker URL {s:?} has no usable host"));
        }
        Ok(BrokerAddr {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

/// Where a node's Docker engine listens.
///
/// `tcp://host:port` (port 2376, Docker's TLS port, when left out) is reached with TLS and a
/// client certificate unless an admin marked the node insecure; `unix:///path` names a socket on
/// the node itself, which only the leader's own node can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerEndpoint {
    /// A Unix socket on the node: `unix:///var/run/docker.sock`.
    Unix(String),
    /// A TCP address: `tcp://10.0.0.5:2376`.
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
    },
}

impl std::str::FromStr for DockerEndpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > 255 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{s:?} is not a Docker endpoint: too long, or holds spaces"
            ));
        }
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(format!(
                    "{s:?}: a unix endpoint needs an absolute socket path, like unix:///var/run/docker.sock"
                ));
            }
            return Ok(DockerEndpoint::Unix(path.to_owned()));
        }
        let rest = s.strip_prefix("tcp://").ok_or_else(|| {
            format!("{s:?} is not a Docker endpoint like tcp://10.0.0.5:2376 or unix:///var/run/docker.sock")
        })?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed '[' in the address"))?;
            (host, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b));
        if !host_ok {
            return Err(format!(
                "{s:?}: the host {host:?} is not a name or IP address"
            ));
        }
        let port =
            match port {
                None => 2376,
                Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                    format!("{s:?}: the port {p:?} is not a number from 1 to 65535")
                })?,
            };
        Ok(DockerEndpoint::Tcp {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for DockerEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DockerEndpoint::Unix(path) => write!(f, "unix://{path}"),
            DockerEndpoint::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            DockerEndpoint::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

impl std::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod broker_addr_tests {
    use super::{BrokerAddr, DockerEndpoint};

    #[test]
    fn parses_docker_endpoints_and_names_what_is_wrong() {
        let ok = |s: &str| s.parse::<DockerEndpoint>().unwrap().to_string();
        assert_eq!(ok("tcp://10.0.0.5:2376"), "tcp://10.0.0.5:2376");
        assert_eq!(ok("tcp://pi-4.lab"), "tcp://pi-4.lab:2376");
        assert_eq!(ok("tcp://[fd00::5]:2375/"), "tcp://[fd00::5]:2375");
        assert_eq!(
            ok("unix:///var/run/docker.sock"),
            "unix:///var/run/docker.sock"
        );
        for (bad, says) in [
            ("http://10.0.0.5:2376", "not a Docker endpoint"),
            ("tcp://10.0.0.5:0", "port"),
            ("tcp://10.0.0.5:99999", "port"),
            ("tcp://:2376", "host"),
            ("tcp://a b:1", "spaces"),
            ("tcp://host/../x:1", "host"),
            ("unix://relative.sock", "absolute"),
        ] {
            let e = bad.parse::<DockerEndpoint>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn parses_broker_urls_and_names_what_is_wrong() {
        let a: BrokerAddr = "mqtt://10.0.0.1:1884".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("10.0.0.1", 1884));
        let a: BrokerAddr = "mqtt://leader.local".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("leader.local", 1883));
        let a: BrokerAddr = "mqtt://[::1]:1999".parse().unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.to_string().as_str()),
            ("::1", 1999, "mqtt://[::1]:1999")
        );
        let a: BrokerAddr = "mqtts://leader.local".parse().unwrap();
        assert_eq!(
            (a.port, a.tls, a.to_string().as_str()),
            (8883, true, "mqtts://leader.local:8883")
        );
        let a: BrokerAddr = "mqtts://10.0.0.1:1883".parse().unwrap();
        assert_eq!((a.port, a.tls), (1883, true));
        assert!(!"mqtt://x".parse::<BrokerAddr>().unwrap().tls);
        assert!(
            "http://x:1"
                .parse::<BrokerAddr>()
                .unwrap_err()
                .contains("must start with mqtt://")
        );
        assert!(
            "mqtt://x:99999"
                .parse::<BrokerAddr>()
                .unwrap_err()
                .contains("invalid port")
        );
        assert!(
            "mqtt://:1883"
                .parse::<BrokerAddr>()
                .unwrap_err()
                .contains("no usable host")
        );
    }
}
