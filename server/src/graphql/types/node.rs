//! GraphQL types of the nodes domain: nodes, their labels, Docker access and events.

use async_graphql::{Enum, Object, SimpleObject};

use chrono::{DateTime, Utc};
use entity::node;

use crate::nodes::{NodeEvent as ServiceEvent, NodeEventKind};

/// Clock offset beyond which a node's clock is flagged as skewed, milliseconds.
pub const MAX_CLOCK_SKEW_MS: u64 = 2_000;

/// Liveness of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum NodeState {
    /// Connected and reporting.
    Online,
    /// Shut down cleanly.
    Offline,
    /// Gone without a clean shutdown: its last-will fired, or its heartbeats are overdue.
    Lost,
}

impl NodeState {
    fn from_db(s: &str) -> Self {
        match trellis_proto::NodeState::parse(s) {
            Some(trellis_proto::NodeState::Online) => NodeState::Online,
            Some(trellis_proto::NodeState::Offline) => NodeState::Offline,
            // An unknown stored value is shown as lost rather than failing the whole query.
            _ => NodeState::Lost,
        }
    }
}

/// A user-set key/value label on a node.
#[derive(Debug, Clone, SimpleObject)]
pub struct Label {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// A machine in the cluster running the Trellis agent.
pub struct Node(pub node::Model);

#[Object]
impl Node {
    /// Stable id (from the MAC address unless configured); also its MQTT topic segment.
    async fn id(&self) -> &str {
        &self.0.id
    }
    /// Display name: the name a user gave it, else the hostname.
    async fn name(&self) -> &str {
        self.0.name.as_deref().unwrap_or(&self.0.hostname)
    }
    /// Whether a user renamed it (so `name` is not the hostname).
    async fn renamed(&self) -> bool {
        self.0.name.is_some()
    }
    /// Liveness.
    async fn state(&self) -> NodeState {
        NodeState::from_db(&self.0.state)
    }
    /// Hostname reported by the agent.
    async fn hostname(&self) -> &str {
        &self.0.hostname
    }
    /// MAC of the primary interface.
    async fn mac(&self) -> Option<&str> {
        self.0.mac.as_deref()
    }
    /// IP addresses.
    async fn ip_addresses(&self) -> async_graphql::Result<Vec<String>> {
        Ok(stored(&self.0.ip_addresses, "ip_addresses", &self.0.id)?)
    }
    /// CPU architecture.
    async fn arch(&self) -> &str {
        &self.0.arch
    }
    /// Operating system.
    async fn os(&self) -> &str {
        &self.0.os
    }
    /// Board model.
    async fn model(&self) -> Option<&str> {
        self.0.model.as_deref()
    }
    /// Agent version.
    async fn agent_version(&self) -> &str {
        &self.0.agent_version
    }
    /// Hardware backend (`simulator`, `rppal`).
    async fn hardware(&self) -> &str {
        &self.0.hardware
    }
    /// Labels, sorted by key.
    async fn labels(&self) -> async_graphql::Result<Vec<Label>> {
        let map: std::collections::BTreeMap<String, String> =
            stored(&self.0.labels, "labels", &self.0.id)?;
        Ok(map
            .into_iter()
            .map(|(key, value)| Label { key, value })
            .collect())
    }
    /// Seconds between heartbeats.
    async fn heartbeat_interval_secs(&self) -> i64 {
        self.0.heartbeat_interval_secs
    }
    /// CPU busy percent at the last heartbeat.
    async fn cpu_percent(&self) -> Option<f64> {
        self.0.cpu_percent
    }
    /// Memory in use at the last heartbeat, bytes.
    async fn mem_used_bytes(&self) -> Option<i64> {
        self.0.mem_used_bytes
    }
    /// Total memory, bytes.
    async fn mem_total_bytes(&self) -> Option<i64> {
        self.0.mem_total_bytes
    }
    /// Where the agent measured free disk: the node's Docker data root (or its nearest
    /// existing parent).
    async fn disk_path(&self) -> Option<&str> {
        self.0.disk_path.as_deref()
    }
    /// Free bytes there at the last heartbeat; images that would not fit are refused.
    async fn disk_free_bytes(&self) -> Option<i64> {
        self.0.disk_free_bytes
    }
    /// Size of that filesystem, bytes.
    async fn disk_total_bytes(&self) -> Option<i64> {
        self.0.disk_total_bytes
    }
    /// SoC temperature, °C.
    async fn temperature_c(&self) -> Option<f64> {
        self.0.temperature_c
    }
    /// Uptime at the last heartbeat, seconds.
    async fn uptime_secs(&self) -> Option<i64> {
        self.0.uptime_secs
    }
    /// When the node first announced itself (leader's clock).
    async fn first_seen(&self) -> DateTime<Utc> {
        self.0.first_seen
    }
    /// When the leader last heard from it (leader's clock, so node clock skew does not matter).
    async fn last_seen(&self) -> DateTime<Utc> {
        self.0.last_seen
    }
    /// How far the node's clock is ahead of the leader's (negative: behind), milliseconds, from
    /// its last heartbeat; null until one carried the node's time.
    async fn clock_offset_ms(&self) -> Option<i64> {
        self.0.clock_offset_ms
    }
    /// Whether the node's clock is off by more than [`MAX_CLOCK_SKEW_MS`] (2 s): its timestamps
    /// (readings, logs) cannot be trusted until it is fixed (NTP).
    async fn clock_skewed(&self) -> bool {
        self.0
            .clock_offset_ms
            .is_some_and(|o| o.unsigned_abs() > MAX_CLOCK_SKEW_MS)
    }
    /// The node's dosing pumps and their calibrations, as its agent last published them.
    async fn pump_calibrations(&self) -> async_graphql::Result<Vec<super::PumpCalibration>> {
        Ok(crate::telemetry::Telemetry::calibrations(&self.0)?
            .pumps
            .into_iter()
            .map(super::PumpCalibration::from)
            .collect())
    }
    /// Readings the node's agent had to drop (its outage buffer of 100 000 was full), over all
    /// its runs: a loss reported, never silent.
    async fn readings_dropped(
        &self,
        ctx: &async_graphql::Context<'_>,
    ) -> async_graphql::Result<i64> {
        let state = ctx.data::<crate::AppState>()?;
        Ok(state.telemetry.dropped(&self.0.id).await?.0)
    }
    /// Job log lines the node's agent had to drop (its outage buffer of 10 000 was full).
    async fn log_lines_dropped(
        &self,
        ctx: &async_graphql::Context<'_>,
    ) -> async_graphql::Result<i64> {
        let state = ctx.data::<crate::AppState>()?;
        Ok(state.telemetry.dropped(&self.0.id).await?.1)
    }
    /// The running experiment the node is in now; null when none.
    async fn experiment(
        &self,
        ctx: &async_graphql::Context<'_>,
    ) -> async_graphql::Result<Option<super::Experiment>> {
        let state = ctx.data::<crate::AppState>()?;
        Ok(state
            .experiments
            .of_node(&self.0.id)
            .await?
            .map(super::Experiment))
    }
    /// The node's Docker engine as the leader sees it; null when the node announced none.
    async fn docker(&self, ctx: &async_graphql::Context<'_>) -> Option<NodeDocker> {
        let endpoint = self.0.docker_endpoint.clone()?;
        let plan = ctx
            .data::<crate::AppState>()
            .ok()
            .map(|s| s.docker.plan(&self.0));
        let (transport, refused) = match plan {
            Some(Ok((_, t))) => (Some(t), None),
            Some(Err(e)) => (None, Some(e.public_message())),
            None => (None, None),
        };
        let reach = ctx
            .data::<crate::AppState>()
            .ok()
            .and_then(|s| s.engines.get(&self.0.id))
            .map(|e| super::EngineReach {
                reachable: e.reachable,
                reason: e.reason,
                since: super::time(e.since_ms),
                attempts: i32::try_from(e.attempts).unwrap_or(i32::MAX),
            });
        Some(NodeDocker {
            endpoint,
            insecure: self.0.docker_insecure,
            transport,
            refused,
            reach,
        })
    }
}

/// Where a node's Docker engine listens and how the leader reaches it.
#[derive(Debug, Clone, SimpleObject)]
pub struct NodeDocker {
    /// The endpoint the agent announced (`tcp://10.0.0.5:2376`, or `unix://...` on the leader).
    pub endpoint: String,
    /// An admin allowed plain TCP, without TLS, to this engine. The web app shows this mark.
    pub insecure: bool,
    /// How the leader reaches it; null when it refuses to (see `refused`).
    pub transport: Option<crate::nodes::docker::DockerTransport>,
    /// Why the leader will not use this endpoint, if it will not.
    pub refused: Option<String>,
    /// Whether the deployment workers reached it at their last call, and why not; null until
    /// a deployment has run there.
    pub reach: Option<super::EngineReach>,
}

/// Something that happened to a node.
pub struct NodeEvent(pub ServiceEvent);

#[Object]
impl NodeEvent {
    /// What happened. `RESYNC` means events were missed: reload the node list.
    async fn kind(&self) -> NodeEventKind {
        self.0.kind
    }
    /// The node's id (empty for `RESYNC`).
    async fn node_id(&self) -> &str {
        &self.0.node_id
    }
    /// The node after the change; null when removed or for `RESYNC`.
    async fn node(&self) -> Option<Node> {
        self.0.node.clone().map(Node)
    }
}

/// A JSON column read back into its type. A stored value that does not decode is an internal
/// error (logged with the row), never a silent empty value.
pub(crate) fn stored<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    column: &str,
    row: &str,
) -> Result<T, crate::error::ApiError> {
    serde_json::from_value(value.clone()).map_err(|e| {
        crate::error::ApiError::Internal(format!("stored {column} of {row:?} does not decode: {e}"))
    })
}
