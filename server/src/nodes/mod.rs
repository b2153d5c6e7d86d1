//! Nodes: the inventory (`service`), how the leader tells a node is alive (`liveness`), and how it
//! reaches a node's Docker engine (`docker`).

pub mod docker;
pub mod liveness;
pub mod service;

pub use service::{EVENT_CAPACITY, MAX_LABELS, MAX_NAME_LEN, NodeEvent, NodeEventKind, Nodes};
