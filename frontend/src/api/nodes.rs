//! Nodes: the list every page shares, its live feed, the actions on one node, and its dosing
//! pumps' calibrations. The `Nodes` query generates the shared [`NodeState`] and
//! [`DockerTransport`] enums.

use serde::Deserialize;

use super::{DateTime, operation};

operation!(
    /// Every node.
    Nodes,
    "src/operations/nodes.graphql"
);
operation!(
    /// Node change events, decoded as [`NodeEventData`].
    NodeEvents,
    "src/operations/nodes.graphql",
    extern_enums("NodeState", "DockerTransport")
);
operation!(
    /// Rename a node (an empty name goes back to the agent's).
    RenameNode,
    "src/operations/nodes.graphql"
);
operation!(
    /// Remove a node.
    RemoveNode,
    "src/operations/nodes.graphql"
);
operation!(
    /// Ping a node through its agent.
    PingNode,
    "src/operations/nodes.graphql"
);
operation!(
    /// Ask a node's Docker engine what it is.
    DockerEngine,
    "src/operations/nodes.graphql",
    extern_enums("DockerTransport")
);
operation!(
    /// Allow plain TCP to a node's Docker engine, or require TLS again (admins).
    SetNodeDockerInsecure,
    "src/operations/nodes.graphql"
);

operation!(
    /// A node's pump calibrations, and the telemetry its agent had to drop.
    NodePumps,
    "src/operations/nodes.graphql"
);
operation!(
    /// Store a pump's calibration on a node (its agent checks and keeps it).
    SetPumpCalibration,
    "src/operations/nodes.graphql"
);

pub use node_events::NodeEventKind;
pub use nodes::{DockerTransport, NodeState};

/// The node fields every page shows.
pub type Node = nodes::NodeFields;
/// What the node feed sends, decoded straight into the one [`Node`] type the pages hold: the
/// subscription asks for the same `NodeFields` fragment as the list, so its JSON has the list's
/// shape (no second copy of the fragment's decoder in the wasm, and no conversion).
#[derive(Deserialize)]
pub struct NodeEventData {
    /// The event.
    #[serde(rename = "nodeEvents")]
    pub node_events: NodeEvent,
}

/// One event of the node feed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeEvent {
    /// What happened.
    pub kind: NodeEventKind,
    /// The node it happened to.
    pub node_id: String,
    /// The node as it is now (none when it was removed).
    pub node: Option<Node>,
}

impl DockerTransport {
    /// The transport's schema name ("UNIX", "TLS", "PLAIN"), as the node page prints it.
    pub fn name(&self) -> &str {
        match self {
            DockerTransport::UNIX => "UNIX",
            DockerTransport::TLS => "TLS",
            DockerTransport::PLAIN => "PLAIN",
            DockerTransport::Other(other) => other,
        }
    }
}
