//! The node service: every read and write of the `node` table, and the events those writes emit.
//! Resolvers and the MQTT bridge both call it, so the rules live in one place.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use entity::node::{self, Entity as Node};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, sea_query::Expr,
};
use tokio::sync::broadcast;
use trellis_proto::{Announce, Heartbeat, NodeState};

use crate::error::{ApiError, ApiResult};

/// Longest display name and label key or value, in characters.
pub const MAX_NAME_LEN: usize = 64;
/// Most labels on one node.
pub const MAX_LABELS: usize = 32;

/// What happened to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum NodeEventKind {
    /// The node came online (connected, or heard from again after being lost).
    Online,
    /// A heartbeat arrived with fresh stats.
    Heartbeat,
    /// The node went away without a clean shutdown (last-will, or heartbeats overdue).
    Lost,
    /// The node shut down cleanly.
    Offline,
    /// The node announced itself with new facts, or a user renamed or labelled it.
    Updated,
    /// A user removed the node.
    Removed,
    /// The subscriber fell behind and missed events: reload the whole list.
    Resync,
    /// A new node asks to join and waits for approval (see `pendingNodes`).
    Pending,
}

/// An event for subscribers, with the node as it is after the change (`None` once removed).
#[derive(Debug, Clone)]
pub struct NodeEvent {
    /// What happened.
    pub kind: NodeEventKind,
    /// Which node.
    pub node_id: String,
    /// The node after the change.
    pub node: Option<node::Model>,
}

/// Capacity of the event channel; a subscriber further behind than this gets a `RESYNC`.
pub const EVENT_CAPACITY: usize = 1024;

/// The node service.
#[derive(Clone)]
pub struct Nodes {
    db: DatabaseConnection,
    events: broadcast::Sender<NodeEvent>,
}

impl Nodes {
    /// A service over `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Nodes { db, events }
    }

    /// A receiver of every node event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// The database connection.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    fn emit(&self, kind: NodeEventKind, node: &node::Model) {
        // No subscribers is fine: send only fails when nobody listens.
        let _ = self.events.send(NodeEvent {
            kind,
            node_id: node.id.clone(),
            node: Some(node.clone()),
        });
    }

    /// Sends an event that carries no node row (a pending node, for instance).
    pub fn notify(&self, kind: NodeEventKind, node_id: &str) {
        let _ = self.events.send(NodeEvent {
            kind,
            node_id: node_id.to_owned(),
            node: None,
        });
    }

    /// Every node, by display name.
    pub async fn list(&self) -> ApiResult<Vec<node::Model>> {
        let mut nodes = Node::find()
            .order_by_asc(node::Column::Id)
            .all(&self.db)
            .await?;
        nodes.sort_by_key(|n| {
            n.name
                .clone()
                .unwrap_or_else(|| n.hostname.clone())
                .to_lowercase()
        });
        Ok(nodes)
    }

    /// One node.
    pub async fn get(&self, id: &str) -> ApiResult<Option<node::Model>> {
        Ok(Node::find_by_id(id.to_owned()).one(&self.db).await?)
    }

    async fn require(&self, id: &str) -> ApiResult<node::Model> {
        self.get(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("node {id:?}")))
    }

    /// Records an announce: inserts a new node or refreshes the facts of a known one. The state is
    /// not touched: a retained announce of a dead node arrives too, and only the status topic says
    /// whether it is alive. `initial_state` is used for a new node (a status seen before it).
    pub async fn announce(
        &self,
        a: &Announce,
        initial_state: Option<NodeState>,
        now: DateTime<Utc>,
    ) -> ApiResult<node::Model> {
        let ips = serde_json::json!(a.ip_addresses);
        let hb = i64::try_from(a.heartbeat_interval_secs).unwrap_or(i64::MAX);
        // A bad endpoint is dropped (the rest of the announce still counts), with the reason logged.
        let docker = a.docker_endpoint.as_deref().and_then(|e| {
            e.parse::<trellis_proto::DockerEndpoint>()
                .map_err(|reason| {
                    tracing::warn!(node_id = a.node_id, reason, "ignored a bad Docker endpoint")
                })
                .ok()
                .map(|e| e.to_string())
        });
        let model = match self.get(&a.node_id).await? {
            Some(existing) => {
                let existing_endpoint = existing.docker_endpoint.clone();
                let mut m = existing.into_active_model();
                m.hostname = Set(a.hostname.clone());
                m.mac = Set(a.mac.clone());
                m.ip_addresses = Set(ips);
                m.arch = Set(a.arch.clone());
                m.os = Set(a.os.clone());
                m.model = Set(a.model.clone());
                m.agent_version = Set(a.agent_version.clone());
                m.hardware = Set(a.hardware.clone());
                m.heartbeat_interval_secs = Set(hb);
                // An admin's insecure mark was for one endpoint: a node naming another loses it.
                if existing_endpoint != docker {
                    m.docker_insecure = Set(false);
                }
                m.docker_endpoint = Set(docker);
                m.update(&self.db).await?
            }
            None => {
                let state = initial_state.unwrap_or(NodeState::Offline);
                node::ActiveModel {
                    id: Set(a.node_id.clone()),
                    name: Set(None),
                    labels: Set(serde_json::json!({})),
                    state: Set(state.as_str().to_owned()),
                    hostname: Set(a.hostname.clone()),
                    mac: Set(a.mac.clone()),
                    ip_addresses: Set(ips),
                    arch: Set(a.arch.clone()),
                    os: Set(a.os.clone()),
                    model: Set(a.model.clone()),
                    agent_version: Set(a.agent_version.clone()),
                    hardware: Set(a.hardware.clone()),
                    heartbeat_interval_secs: Set(hb),
                    cpu_percent: Set(None),
                    mem_used_bytes: Set(None),
                    mem_total_bytes: Set(None),
                    temperature_c: Set(None),
                    uptime_secs: Set(None),
                    first_seen: Set(now),
                    last_seen: Set(now),
                    docker_endpoint: Set(docker),
                    docker_insecure: Set(false),
                    job_kinds: Set(None),
                    clock_offset_ms: Set(None),
                    pump_calibrations: Set(None),
                    disk_path: Set(None),
                    disk_free_bytes: Set(None),
                    disk_total_bytes: Set(None),
                }
                .insert(&self.db)
                .await?
            }
        };
        let kind = if model.state == NodeState::Online.as_str() {
            NodeEventKind::Online
        } else {
            NodeEventKind::Updated
        };
        self.emit(kind, &model);
        Ok(model)
    }

    /// Applies a state change; returns `None` for an unknown node. Emits only on a real change.
    pub async fn set_state(
        &self,
        id: &str,
        state: NodeState,
        now: DateTime<Utc>,
    ) -> ApiResult<Option<node::Model>> {
        let Some(existing) = self.get(id).await? else {
            return Ok(None);
        };
        if existing.state == state.as_str() {
            return Ok(Some(existing));
        }
        let mut m = existing.into_active_model();
        m.state = Set(state.as_str().to_owned());
        if state == NodeState::Online {
            m.last_seen = Set(now);
        }
        let model = m.update(&self.db).await?;
        self.emit(event_for(state), &model);
        Ok(Some(model))
    }

    /// Records a heartbeat. A heartbeat proves the node alive, so a node marked lost or offline
    /// comes back online (Pioreactor's stuck "lost" after a reconnect). Unknown nodes are ignored:
    /// a removed node stays removed until its agent announces again.
    pub async fn heartbeat(
        &self,
        id: &str,
        hb: &Heartbeat,
        now: DateTime<Utc>,
    ) -> ApiResult<Option<node::Model>> {
        let Some(existing) = self.get(id).await? else {
            return Ok(None);
        };
        let came_back = existing.state != NodeState::Online.as_str();
        let mut m = existing.into_active_model();
        m.cpu_percent = Set(Some(f64::from(hb.cpu_percent)));
        m.mem_used_bytes = Set(Some(i64::try_from(hb.mem_used_bytes).unwrap_or(i64::MAX)));
        m.mem_total_bytes = Set(Some(i64::try_from(hb.mem_total_bytes).unwrap_or(i64::MAX)));
        m.temperature_c = Set(hb.temperature_c.map(f64::from));
        m.uptime_secs = Set(Some(i64::try_from(hb.uptime_secs).unwrap_or(i64::MAX)));
        m.last_seen = Set(now);
        if let Some(d) = &hb.disk {
            // The path is for people; a long one is cut (on a character boundary).
            let path: String = d.path.chars().take(256).collect();
            m.disk_path = Set(Some(path));
            m.disk_free_bytes = Set(Some(i64::try_from(d.free_bytes).unwrap_or(i64::MAX)));
            m.disk_total_bytes = Set(Some(i64::try_from(d.total_bytes).unwrap_or(i64::MAX)));
        }
        if let Some(sent) = hb.sent_at_ms {
            // Field-reported Pioreactor failure: units with wrong clocks. Measured at every
            // heartbeat, so a corrected clock clears the flag.
            m.clock_offset_ms = Set(Some(sent.saturating_sub(now.timestamp_millis())));
        }
        m.state = Set(NodeState::Online.as_str().to_owned());
        let model = m.update(&self.db).await?;
        self.emit(
            if came_back {
                NodeEventKind::Online
            } else {
                NodeEventKind::Heartbeat
            },
            &model,
        );
        Ok(Some(model))
    }

    /// Marks lost every online node whose heartbeats are overdue: nothing heard for
    /// [`allowed_silence`](crate::nodes::liveness::allowed_silence) of its interval. This catches
    /// what a last-will cannot (a broker restart that lost the will, a half-open connection, a
    /// hung node whose TCP connection the kernel keeps alive).
    /// Silence is counted from `heard_since` at the earliest: when the leader's own link to the
    /// broker came up.
    pub async fn sweep_overdue(
        &self,
        now: DateTime<Utc>,
        heard_since: DateTime<Utc>,
    ) -> ApiResult<Vec<node::Model>> {
        let online = Node::find()
            .filter(node::Column::State.eq(NodeState::Online.as_str()))
            .all(&self.db)
            .await?;
        let mut lost = Vec::new();
        for n in online {
            let allowed = crate::nodes::liveness::allowed_silence(n.heartbeat_interval_secs);
            if now - n.last_seen.max(heard_since) <= allowed {
                continue;
            }
            // Only if nothing was heard from it since this pass read it: an `offline` status or a
            // heartbeat routed meanwhile wins (compare and set on state and last_seen).
            let changed = Node::update_many()
                .col_expr(node::Column::State, Expr::value(NodeState::Lost.as_str()))
                .filter(node::Column::Id.eq(n.id.as_str()))
                .filter(node::Column::State.eq(NodeState::Online.as_str()))
                .filter(node::Column::LastSeen.eq(n.last_seen))
                .exec(&self.db)
                .await?
                .rows_affected;
            if changed == 1
                && let Some(m) = self.get(&n.id).await?
            {
                self.emit(event_for(NodeState::Lost), &m);
                lost.push(m);
            }
        }
        Ok(lost)
    }

    /// Sets or clears (`None` or blank) a node's display name.
    pub async fn rename(&self, id: &str, name: Option<String>) -> ApiResult<node::Model> {
        let name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        if let Some(n) = &name {
            check_text("name", n)?;
        }
        let mut m = self.require(id).await?.into_active_model();
        m.name = Set(name);
        let model = m.update(&self.db).await?;
        self.emit(NodeEventKind::Updated, &model);
        Ok(model)
    }

    /// Allows (or stops allowing) plain TCP to a node's Docker engine.
    pub async fn set_docker_insecure(&self, id: &str, insecure: bool) -> ApiResult<node::Model> {
        let mut m = self.require(id).await?.into_active_model();
        m.docker_insecure = Set(insecure);
        let model = m.update(&self.db).await?;
        self.emit(NodeEventKind::Updated, &model);
        Ok(model)
    }

    /// Replaces a node's labels.
    pub async fn set_labels(
        &self,
        id: &str,
        labels: Vec<(String, String)>,
    ) -> ApiResult<node::Model> {
        if labels.len() > MAX_LABELS {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_LABELS} labels per node"
            )));
        }
        let mut map = BTreeMap::new();
        for (k, v) in labels {
            let k = k.trim().to_owned();
            if k.is_empty() {
                return Err(ApiError::BadRequest("label key must not be empty".into()));
            }
            check_text("label key", &k)?;
            check_text("label value", &v)?;
            if map.insert(k.clone(), v).is_some() {
                return Err(ApiError::BadRequest(format!("label key {k:?} given twice")));
            }
        }
        let mut m = self.require(id).await?.into_active_model();
        m.labels = Set(serde_json::json!(map));
        let model = m.update(&self.db).await?;
        self.emit(NodeEventKind::Updated, &model);
        Ok(model)
    }

    /// Deletes a node's row; the caller clears its retained MQTT topics.
    pub async fn remove(&self, id: &str) -> ApiResult<()> {
        let res = Node::delete_by_id(id.to_owned()).exec(&self.db).await?;
        if res.rows_affected == 0 {
            return Err(ApiError::NotFound(format!("node {id:?}")));
        }
        let _ = self.events.send(NodeEvent {
            kind: NodeEventKind::Removed,
            node_id: id.to_owned(),
            node: None,
        });
        Ok(())
    }
}

fn event_for(state: NodeState) -> NodeEventKind {
    match state {
        NodeState::Online => NodeEventKind::Online,
        NodeState::Offline => NodeEventKind::Offline,
        NodeState::Lost => NodeEventKind::Lost,
    }
}

fn check_text(what: &str, s: &str) -> ApiResult<()> {
    if s.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::BadRequest(format!(
            "{what} is longer than {MAX_NAME_LEN} characters"
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "{what} contains a control character"
        )));
    }
    Ok(())
}
