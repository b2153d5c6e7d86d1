//! The one topic table: every Trellis topic with its pattern, direction, QoS, retain flag and
//! payload type. Everything else derives from it: the topic builders and parser here, the leader's
//! bridge subscriptions, the MQTT gate's ACL, the ACL written for a managed Mosquitto, and the
//! table in `docs/mqtt.md` (a test checks that page lists every entry as it is here).
//!
//! A new topic is one [`TOPICS`] entry and one [`TopicKind`] variant (the compiler then asks for
//! its payload in [`decode`] when it is leader-bound).

use crate::{
    Announce, Calibrations, CommandResult, EnrollRequest, Heartbeat, JobKinds, JobStatus, LogBatch,
    PREFIX, ProtoError, ReadingBatch, Status, valid_nonce, validate_job_name, validate_node_id,
};

/// Who publishes on a topic and who reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// An enrolled node's agent publishes; the leader reads.
    NodeToLeader,
    /// The leader publishes; the node's agent reads.
    LeaderToNode,
    /// An agent holding a join token publishes; the leader reads.
    JoinerToLeader,
    /// The leader publishes; only the enrolling connection (client id = nonce) reads.
    LeaderToJoiner,
}

impl Direction {
    /// Whether the leader is the reader.
    pub fn to_leader(self) -> bool {
        matches!(self, Direction::NodeToLeader | Direction::JoinerToLeader)
    }
}

/// MQTT quality of service (this crate does not depend on an MQTT client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// QoS 0: fire and forget.
    AtMostOnce,
    /// QoS 1: acknowledged, delivered at least once (MQTT-4.3.2).
    AtLeastOnce,
}

impl Qos {
    /// The QoS number.
    pub fn level(self) -> u8 {
        match self {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
        }
    }
}

/// Every kind of Trellis topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// The node describes itself.
    Announce,
    /// The node's liveness (also its last-will).
    Status,
    /// Periodic system stats.
    Heartbeat,
    /// A command from the leader.
    Command,
    /// The agent's answer to a command.
    Result,
    /// An agent asks to join.
    EnrollRequest,
    /// The leader's answer with the node's credentials.
    EnrollResponse,
    /// The job kinds a node offers, with their settings.
    Kinds,
    /// One job's status and settings.
    Job,
    /// A batch of readings from the node's jobs.
    Readings,
    /// A batch of log lines from the node's jobs.
    Logs,
    /// The node's pump calibrations.
    Calibrations,
    /// How far the leader has stored the node's readings and log lines.
    Stored,
}

/// One topic: what the table knows about it.
#[derive(Debug, Clone, Copy)]
pub struct TopicSpec {
    /// Which topic.
    pub kind: TopicKind,
    /// What its messages are called in logs and errors.
    pub name: &'static str,
    /// The topic below [`PREFIX`], with `{node}` for the node id, `{nonce}` for an enrolling
    /// connection's secret and `{job}` for a job's name.
    pub pattern: &'static str,
    /// Who publishes and who reads.
    pub direction: Direction,
    /// The QoS it is published with.
    pub qos: Qos,
    /// Whether it is published retained.
    pub retain: bool,
    /// The payload's type in this crate (JSON on the wire).
    pub payload: &'static str,
}

/// The table.
pub const TOPICS: &[TopicSpec] = &[
    TopicSpec {
        kind: TopicKind::Announce,
        name: "announce",
        pattern: "nodes/{node}/announce",
        direction: Direction::NodeToLeader,
        qos: Qos::AtLeastOnce,
        retain: true,
        payload: "Announce",
    },
    TopicSpec {
        kind: TopicKind::Status,
        name: "status",
        pattern: "nodes/{node}/status",
        direction: Direction::NodeToLeader,
        qos: Qos::AtLeastOnce,
        retain: true,
        payload: "Status",
    },
    TopicSpec {
        kind: TopicKind::Heartbeat,
        name: "heartbeat",
        pattern: "nodes/{node}/heartbeat",
        direction: Direction::NodeToLeader,
        qos: Qos::AtMostOnce,
        retain: false,
        payload: "Heartbeat",
    },
    TopicSpec {
        kind: TopicKind::Command,
        name: "command",
        pattern: "nodes/{node}/command",
        direction: Direction::LeaderToNode,
        qos: Qos::AtLeastOnce,
        retain: false,
        payload: "Command",
    },
    TopicSpec {
        kind: TopicKind::Result,
        name: "result",
        pattern: "nodes/{node}/result",
        direction: Direction::NodeToLeader,
        qos: Qos::AtLeastOnce,
        retain: false,
        payload: "CommandResult",
    },
    TopicSpec {
        kind: TopicKind::EnrollRequest,
        name: "enroll request",
        pattern: "enroll/{node}/request",
        direction: Direction::JoinerToLeader,
        qos: Qos::AtLeastOnce,
        retain: false,
        payload: "EnrollRequest",
    },
    TopicSpec {
        kind: TopicKind::EnrollResponse,
        name: "enroll response",
        pattern: "enroll/{node}/response/{nonce}",
        direction: Direction::LeaderToJoiner,
        qos: Qos::AtLeastOnce,
        retain: true,
        payload: "EnrollResponse",
    },
    TopicSpec {
        kind: TopicKind::Kinds,
        name: "job kinds",
        pattern: "nodes/{node}/kinds",
        direction: Direction::NodeToLeader,
        qos: Qos::AtLeastOnce,
        retain: true,
        payload: "JobKinds",
    },
    TopicSpec {
        kind: TopicKind::Job,
        name: "job status",
        pattern: "nodes/{node}/jobs/{job}",
        direction: Direction::NodeToLeader,
        qos: Qos::AtLeastOnce,
        retain: true,
        payload: "JobStatus",
    },
    TopicSpec {
        kind: TopicKind::Readings,
        name: "readings",
        pattern: "nodes/{node}/readings",
        direction: Direction::NodeToLeader,
        qos: Qos::AtLeastOnce,
        retain: false,
        payload: "ReadingBatch",
    },
    TopicSpec {
        kind: TopicKind::Logs,
        name: "job logs",
        pattern: "nodes/{node}/logs",
        direction: Direction::NodeToLeader,
        qos: Qos::AtLeastOnce,
        retain: false,
        payload: "LogBatch",
    },
    TopicSpec {
        kind: TopicKind::Calibrations,
        name: "calibrations",
        pattern: "nodes/{node}/calibrations",
        direction: Direction::NodeToLeader,
        qos: Qos::AtLeastOnce,
        retain: true,
        payload: "Calibrations",
    },
    TopicSpec {
        kind: TopicKind::Stored,
        name: "stored",
        pattern: "nodes/{node}/stored",
        direction: Direction::LeaderToNode,
        qos: Qos::AtLeastOnce,
        retain: true,
        payload: "Stored",
    },
];

impl TopicKind {
    /// The table's entry for this kind.
    pub fn spec(self) -> &'static TopicSpec {
        // Every kind has exactly one entry: `the_table_covers_every_kind_once` checks it.
        TOPICS.iter().find(|t| t.kind == self).unwrap_or(&TOPICS[0])
    }

    /// The full topic for `node`; `arg` fills the second placeholder of the kinds that have one
    /// (the nonce of an enroll response, the name of a job), `+` when absent.
    pub fn topic(self, node: &str, arg: Option<&str>) -> String {
        let arg = arg.unwrap_or("+");
        let pattern = self
            .spec()
            .pattern
            .replace("{node}", node)
            .replace("{nonce}", arg)
            .replace("{job}", arg);
        format!("{PREFIX}/{pattern}")
    }

    /// The subscription filter for every node's topic of this kind: each placeholder a `+`.
    pub fn filter(self) -> String {
        self.topic("+", None)
    }

    /// The filter with `{node}` and `{nonce}` replaced by the given texts (for broker ACLs,
    /// which name them `%u` and `%c`) and `{job}` by `+` (any job).
    pub fn with_placeholders(self, node: &str, nonce: &str) -> String {
        let pattern = self
            .spec()
            .pattern
            .replace("{node}", node)
            .replace("{nonce}", nonce)
            .replace("{job}", "+");
        format!("{PREFIX}/{pattern}")
    }
}

/// A topic taken apart by the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedTopic<'a> {
    /// Which topic.
    pub kind: TopicKind,
    /// Its node id (a valid one).
    pub node: &'a str,
    /// Its nonce, for the kinds that carry one (a valid one).
    pub nonce: Option<&'a str>,
    /// Its job name, for the kinds that carry one (a valid one).
    pub job: Option<&'a str>,
}

/// Takes a topic apart, or `None` when it is not a Trellis topic (or its node id or nonce is not
/// valid: wildcards never parse).
pub fn parse_topic(topic: &str) -> Option<ParsedTopic<'_>> {
    let rest = topic.strip_prefix(PREFIX)?.strip_prefix('/')?;
    TOPICS.iter().find_map(|spec| {
        let mut parsed = ParsedTopic {
            kind: spec.kind,
            node: "",
            nonce: None,
            job: None,
        };
        let mut segments = rest.split('/');
        for part in spec.pattern.split('/') {
            let seg = segments.next()?;
            // A placeholder takes only a valid value, never its own text: `{node}` as a segment
            // is not a node id.
            match part {
                "{node}" => {
                    validate_node_id(seg).ok()?;
                    parsed.node = seg;
                }
                "{nonce}" => {
                    valid_nonce(seg).then_some(())?;
                    parsed.nonce = Some(seg);
                }
                "{job}" => {
                    validate_job_name(seg).ok()?;
                    parsed.job = Some(seg);
                }
                literal if literal == seg => {}
                _ => return None,
            }
        }
        segments.next().is_none().then_some(parsed)
    })
}

/// Topic builders. Each returns the full topic string; see [`TOPICS`] for QoS and retain flags.
pub mod topic {
    use super::TopicKind;

    /// The node's [`crate::Announce`].
    pub fn announce(node_id: &str) -> String {
        TopicKind::Announce.topic(node_id, None)
    }

    /// The node's [`crate::Status`]; the agent's last-will sets it to `lost`.
    pub fn status(node_id: &str) -> String {
        TopicKind::Status.topic(node_id, None)
    }

    /// Periodic [`crate::Heartbeat`] with system stats.
    pub fn heartbeat(node_id: &str) -> String {
        TopicKind::Heartbeat.topic(node_id, None)
    }

    /// A [`crate::Command`] from the leader to the node's agent.
    pub fn command(node_id: &str) -> String {
        TopicKind::Command.topic(node_id, None)
    }

    /// The agent's [`crate::CommandResult`] for a command.
    pub fn command_result(node_id: &str) -> String {
        TopicKind::Result.topic(node_id, None)
    }

    /// An [`crate::EnrollRequest`] from an agent holding a join token.
    pub fn enroll_request(node_id: &str) -> String {
        TopicKind::EnrollRequest.topic(node_id, None)
    }

    /// The [`crate::EnrollResponse`] with the node's MQTT credentials. The nonce is the agent's
    /// secret from its request, so only the connection that asked can read the answer.
    pub fn enroll_response(node_id: &str, nonce: &str) -> String {
        TopicKind::EnrollResponse.topic(node_id, Some(nonce))
    }

    /// The filters the leader's bridge subscribes to: every topic agents publish for the leader.
    pub fn leader_filters() -> Vec<(String, super::Qos)> {
        super::TOPICS
            .iter()
            .filter(|t| t.direction.to_leader())
            .map(|t| (t.kind.filter(), super::Qos::AtLeastOnce))
            .collect()
    }
}

/// A message on one of the leader-bound topics, decoded from its topic and payload.
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
    /// An agent asks to join (its node id and nonce already checked against the request).
    EnrollRequest(EnrollRequest),
    /// The node says which job kinds it offers.
    Kinds(JobKinds),
    /// A job's status changed (its name matches the topic's).
    Job(JobStatus),
    /// Readings from the node's jobs (checked).
    Readings(ReadingBatch),
    /// Log lines from the node's jobs (checked).
    Logs(LogBatch),
    /// The node's pump calibrations.
    Calibrations(Calibrations),
    /// A retained message was cleared (empty payload) on this node's topic of this kind.
    Cleared(TopicKind),
    /// A job's retained status was cleared: the job is gone from the node.
    JobCleared(String),
}

/// Decodes a message the leader received. An empty payload is a cleared retained message.
/// Refused: topics that are not leader-bound Trellis topics, payloads that do not decode as the
/// topic's type, and payloads naming another node than their topic.
pub fn decode(topic: &str, payload: &[u8]) -> Result<(String, NodeMessage), ProtoError> {
    let parsed = parse_topic(topic)
        .filter(|p| p.kind.spec().direction.to_leader())
        .ok_or_else(|| ProtoError::UnknownTopic(topic.to_owned()))?;
    let kind = parsed.kind.spec().name;
    let malformed = |reason: String| ProtoError::Malformed {
        kind,
        topic: topic.to_owned(),
        reason,
    };
    let json = |e: serde_json::Error| malformed(e.to_string());
    let msg = if payload.is_empty() {
        match parsed.job {
            Some(job) => NodeMessage::JobCleared(job.to_owned()),
            None => NodeMessage::Cleared(parsed.kind),
        }
    } else {
        match parsed.kind {
            TopicKind::Announce => {
                NodeMessage::Announce(serde_json::from_slice(payload).map_err(json)?)
            }
            TopicKind::Status => {
                NodeMessage::Status(serde_json::from_slice(payload).map_err(json)?)
            }
            TopicKind::Heartbeat => {
                NodeMessage::Heartbeat(serde_json::from_slice(payload).map_err(json)?)
            }
            TopicKind::Result => {
                NodeMessage::Result(serde_json::from_slice(payload).map_err(json)?)
            }
            TopicKind::EnrollRequest => {
                let r: EnrollRequest = serde_json::from_slice(payload).map_err(json)?;
                r.check(parsed.node).map_err(malformed)?;
                NodeMessage::EnrollRequest(r)
            }
            TopicKind::Kinds => NodeMessage::Kinds(serde_json::from_slice(payload).map_err(json)?),
            TopicKind::Job => {
                let s: JobStatus = serde_json::from_slice(payload).map_err(json)?;
                if Some(s.name.as_str()) != parsed.job {
                    return Err(malformed(format!(
                        "job name {:?} does not match the topic",
                        s.name
                    )));
                }
                NodeMessage::Job(s)
            }
            TopicKind::Readings => {
                let b: ReadingBatch = serde_json::from_slice(payload).map_err(json)?;
                b.check().map_err(malformed)?;
                NodeMessage::Readings(b)
            }
            TopicKind::Logs => {
                let b: LogBatch = serde_json::from_slice(payload).map_err(json)?;
                b.check().map_err(malformed)?;
                NodeMessage::Logs(b)
            }
            TopicKind::Calibrations => {
                let c: Calibrations = serde_json::from_slice(payload).map_err(json)?;
                for p in &c.pumps {
                    p.check().map_err(malformed)?;
                }
                NodeMessage::Calibrations(c)
            }
            // Leader-bound only (filtered above).
            TopicKind::Command | TopicKind::EnrollResponse | TopicKind::Stored => {
                return Err(ProtoError::UnknownTopic(topic.to_owned()));
            }
        }
    };
    if let NodeMessage::Announce(a) = &msg
        && a.node_id != parsed.node
    {
        return Err(malformed(format!(
            "node_id {:?} does not match the topic",
            a.node_id
        )));
    }
    Ok((parsed.node.to_owned(), msg))
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
        let (id, msg) = decode(&topic::announce("pi-01"), &encode(&a).unwrap()).expect("announce");
        assert_eq!((id.as_str(), msg), ("pi-01", NodeMessage::Announce(a)));
        let s = Status {
            state: NodeState::Lost,
        };
        let (_, msg) = decode(&topic::status("pi-01"), &encode(&s).unwrap()).expect("status");
        assert_eq!(msg, NodeMessage::Status(s));
        let (_, msg) = decode(&topic::status("pi-01"), b"").expect("cleared");
        assert_eq!(msg, NodeMessage::Cleared(TopicKind::Status));
        let r = CommandResult {
            id: "c1".into(),
            ok: true,
            message: "pong".into(),
        };
        let (_, msg) =
            decode(&topic::command_result("pi-01"), &encode(&r).unwrap()).expect("result");
        assert_eq!(msg, NodeMessage::Result(r));
        let c = Command {
            id: "c1".into(),
            action: Action::Ping,
        };
        assert_eq!(
            encode(&c).unwrap(),
            br#"{"id":"c1","action":{"type":"ping"}}"#.to_vec()
        );
        assert_eq!(decode_command(&encode(&c).unwrap()), Ok(c));
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
        let err = decode(&topic::announce("other"), &encode(&announce()).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("does not match the topic"),
            "{err}"
        );
    }

    #[test]
    fn the_table_covers_every_kind_once_and_parses_what_it_builds() {
        use TopicKind::*;
        for kind in [
            Announce,
            Status,
            Heartbeat,
            Command,
            Result,
            EnrollRequest,
            EnrollResponse,
            Kinds,
            Job,
        ] {
            assert_eq!(
                TOPICS.iter().filter(|t| t.kind == kind).count(),
                1,
                "{kind:?}"
            );
            let nonce = "0123456789abcdef";
            let t = kind.topic("pi-01", Some(nonce));
            let p = parse_topic(&t).expect(&t);
            assert_eq!((p.kind, p.node), (kind, "pi-01"), "{t}");
            assert_eq!(
                p.nonce.is_some(),
                kind.spec().pattern.contains("{nonce}"),
                "{t}"
            );
            assert_eq!(
                p.job.is_some(),
                kind.spec().pattern.contains("{job}"),
                "{t}"
            );
            assert!(
                parse_topic(&kind.filter()).is_none(),
                "wildcards never parse"
            );
        }
        for bad in [
            "trellis/v1/nodes/pi-01/status/extra",
            "trellis/v1/nodes/pi-01",
            "trellis/v2/nodes/pi-01/status",
            "trellis/v1/enroll/pi-01/response/NOTHEX0123456789",
            "trellis/v1/enroll/{node}/request",
            "trellis/v1/nodes/{node}/status",
            "trellis/v1/enroll/pi-01/response/{nonce}",
        ] {
            assert!(parse_topic(bad).is_none(), "{bad}");
        }
        let filters: Vec<String> = topic::leader_filters()
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            filters,
            [
                "trellis/v1/nodes/+/announce",
                "trellis/v1/nodes/+/status",
                "trellis/v1/nodes/+/heartbeat",
                "trellis/v1/nodes/+/result",
                "trellis/v1/enroll/+/request",
                "trellis/v1/nodes/+/kinds",
                "trellis/v1/nodes/+/jobs/+",
                "trellis/v1/nodes/+/readings",
                "trellis/v1/nodes/+/logs",
                "trellis/v1/nodes/+/calibrations",
            ]
        );
    }

    #[test]
    fn docs_mqtt_md_lists_every_topic_as_the_table_says() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/mqtt.md"))
            .expect("docs/mqtt.md");
        for t in TOPICS {
            let name = format!("| `{PREFIX}/{}` |", t.pattern);
            let row = doc
                .lines()
                .find(|l| l.starts_with(&name))
                .unwrap_or_else(|| panic!("docs/mqtt.md has no table row for {name}"));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            // | topic | direction | QoS | retained | payload |
            assert_eq!(
                cells[3],
                t.qos.level().to_string(),
                "QoS of {name} in docs/mqtt.md"
            );
            assert_eq!(
                cells[4].starts_with("yes"),
                t.retain,
                "retained flag of {name} in docs/mqtt.md"
            );
            assert_eq!(
                cells[5],
                format!("`{}`", t.payload),
                "payload of {name} in docs/mqtt.md"
            );
        }
    }

    #[test]
    fn node_ids_are_plain_topic_segments() {
        assert!(validate_node_id("pi-01_a").is_ok());
        for bad in ["", "a/b", "a+", "#", &"x".repeat(65)] {
            assert!(validate_node_id(bad).is_err(), "{bad}");
        }
    }
}
