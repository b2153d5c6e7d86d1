//! Nodes: the list every page shares, its live feed, and the actions on one node. The `Nodes`
//! query generates the shared [`NodeState`] and [`DockerTransport`] enums.

use super::{DateTime, operation, same_shape};

operation!(
    /// Every node.
    Nodes,
    "src/operations/nodes.graphql"
);
operation!(
    /// Node change events. `Serialize`: its node is turned into a [`Node`].
    NodeEvents,
    "src/operations/nodes.graphql",
    extern_enums("NodeState", "DockerTransport"),
    derives "Clone, PartialEq, Serialize"
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

pub use node_events::NodeEventKind;
pub use nodes::{DockerTransport, NodeState};

/// The node fields every page shows.
pub type Node = nodes::NodeFields;
/// One event of the node feed.
pub type NodeEvent = node_events::NodeEventsNodeEvents;

/// The node an event carries, as the one [`Node`] type the pages hold.
pub fn event_node(event: &NodeEvent) -> Option<Node> {
    event.node.as_ref().and_then(same_shape)
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
