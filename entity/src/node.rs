//! A node of the cluster: one machine running the agent, keyed by its node id.

use sea_orm::entity::prelude::*;

/// One row per node that has announced itself and was not removed since.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "node")]
pub struct Model {
    /// Node id from the agent; also its MQTT topic segment.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Display name set by a user; `None` shows the hostname.
    pub name: Option<String>,
    /// Labels set by users, a JSON object of string to string.
    pub labels: Json,
    /// `online`, `offline` or `lost`.
    pub state: String,
    /// Hostname reported by the agent.
    pub hostname: String,
    /// MAC address of the primary interface.
    pub mac: Option<String>,
    /// IP addresses, a JSON array of strings.
    pub ip_addresses: Json,
    /// CPU architecture.
    pub arch: String,
    /// Operating system.
    pub os: String,
    /// Board model.
    pub model: Option<String>,
    /// Agent version.
    pub agent_version: String,
    /// Hardware backend name.
    pub hardware: String,
    /// Seconds between heartbeats promised by the agent.
    pub heartbeat_interval_secs: i64,
    /// CPU busy percent at the last heartbeat.
    pub cpu_percent: Option<f64>,
    /// Memory in use at the last heartbeat, bytes.
    pub mem_used_bytes: Option<i64>,
    /// Total memory, bytes.
    pub mem_total_bytes: Option<i64>,
    /// SoC temperature, °C.
    pub temperature_c: Option<f64>,
    /// Uptime at the last heartbeat, seconds.
    pub uptime_secs: Option<i64>,
    /// When the node first announced itself (server clock).
    pub first_seen: DateTimeUtc,
    /// When the server last heard from the node (server clock, so node clock skew does not matter).
    pub last_seen: DateTimeUtc,
    /// Where the node's Docker engine listens, as the agent announced it (`tcp://...`, `unix://...`).
    pub docker_endpoint: Option<String>,
    /// An admin allowed plain TCP (no TLS) to this node's Docker engine.
    pub docker_insecure: bool,
    /// The job kinds the node's agent offers, with their settings (`trellis_proto::JobKinds`).
    pub job_kinds: Option<Json>,
    /// How far the node's clock is ahead of the leader's (negative: behind), milliseconds, from
    /// its last heartbeat (the message's transit time included, a few ms on a LAN).
    pub clock_offset_ms: Option<i64>,
    /// The node's pump calibrations as its agent last published them (`trellis_proto::Calibrations`).
    pub pump_calibrations: Option<Json>,
    /// The directory whose filesystem the agent measured for free space (its Docker data root).
    pub disk_path: Option<String>,
    /// Free bytes there at the last heartbeat that said.
    pub disk_free_bytes: Option<i64>,
    /// Size of that filesystem, bytes.
    pub disk_total_bytes: Option<i64>,
}

/// Nodes have no relations yet.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
