//! Topics: the builders, parsing a topic into what it carries, and decoding a node message.

use crate::{Announce, CommandResult, Heartbeat, PREFIX, ProtoError, Status, validate_node_id};

/// Topic builders. Each returns the full topic string.
pub mod topic {
    use crate::PREFIX;

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

/// The node id in an enroll request topic, if it is one.
pub fn parse_enroll_request_topic(topic: &str) -> Option<&str> {
    let id = topic
        .strip_prefix(PREFIX)?
        .strip_prefix("/enroll/")?
        .strip_suffix("/request")?;
    validate_node_id(id).ok().map(|()| id)
}

#[cfg(test)]
mod tests {
    use crate::*;

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
