//! Node mutations: rename, label, remove.

use std::time::{Duration, Instant};

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use trellis_proto::Action;

use crate::{
    AppState,
    access::Role,
    error::ApiError,
    graphql::{
        guard::{RoleGuard, audited},
        types::Node,
    },
};

/// A label to set.
#[derive(InputObject)]
pub struct LabelInput {
    /// Key, 1–64 characters.
    pub key: String,
    /// Value, up to 64 characters.
    pub value: String,
}

/// How long `pingNode` waits for the node's answer.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// A node's answer to a ping.
#[derive(SimpleObject)]
pub struct PingResult {
    /// What the node said.
    pub message: String,
    /// Time from sending the command to receiving the answer, milliseconds.
    pub round_trip_ms: f64,
}

/// Node mutations.
#[derive(Default)]
pub struct NodeMutation;

#[Object]
impl NodeMutation {
    /// Gives a node a display name; null or blank goes back to the hostname.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn rename_node(
        &self,
        ctx: &Context<'_>,
        id: String,
        name: Option<String>,
    ) -> Result<Node> {
        crate::infra::supervise::panic_point("renameNode");
        let state = ctx.data::<AppState>()?;
        Ok(Node(
            audited(ctx, "renameNode", Some(&id), state.nodes.rename(&id, name)).await?,
        ))
    }

    /// Replaces a node's labels.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn set_node_labels(
        &self,
        ctx: &Context<'_>,
        id: String,
        labels: Vec<LabelInput>,
    ) -> Result<Node> {
        let state = ctx.data::<AppState>()?;
        let labels = labels.into_iter().map(|l| (l.key, l.value)).collect();
        Ok(Node(
            audited(
                ctx,
                "setNodeLabels",
                Some(&id),
                state.nodes.set_labels(&id, labels),
            )
            .await?,
        ))
    }

    /// Allows plain TCP, without TLS, to a node's Docker engine (`insecure: true`), or requires TLS
    /// again. Anyone who can reach that port controls the engine, so only an admin may, and the
    /// web app marks such nodes.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn set_node_docker_insecure(
        &self,
        ctx: &Context<'_>,
        id: String,
        insecure: bool,
    ) -> Result<Node> {
        let state = ctx.data::<AppState>()?;
        let action = if insecure {
            "markNodeDockerInsecure"
        } else {
            "requireNodeDockerTls"
        };
        Ok(Node(
            audited(
                ctx,
                action,
                Some(&id),
                state.nodes.set_docker_insecure(&id, insecure),
            )
            .await?,
        ))
    }

    /// Removes a node and clears its retained MQTT topics, so it does not come back as a ghost.
    /// A node whose agent still runs appears again when that agent next connects.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn remove_node(&self, ctx: &Context<'_>, id: String) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let work = async {
            // Credentials first, and any live connection cut, so nothing can slip in between;
            // a node approved but never seen has credentials and no row, and is removed too.
            let had_credential = state.enroll.revoke_credential(&id).await?;
            state.mqtt_connections.disconnect(&id);
            state.bridge.clear_enroll_response(&id);
            match state.nodes.remove(&id).await {
                Err(ApiError::NotFound(_)) if had_credential => {}
                other => other?,
            }
            let jobs = state.jobs.forget_node(&id).await?;
            state.bridge.clear_retained(&id, &jobs).await.map_err(|e| {
                ApiError::Internal(format!(
                    "node removed but its retained topics were not cleared: {e}"
                ))
            })
        };
        audited(ctx, "removeNode", Some(&id), work).await?;
        Ok(true)
    }

    /// Sends the node a command and waits for its answer: proves the node receives commands now.
    /// `UNAVAILABLE` when it is not online or does not answer within 5 s.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn ping_node(&self, ctx: &Context<'_>, id: String) -> Result<PingResult> {
        let state = ctx.data::<AppState>()?;
        let work = async {
            let node = state
                .nodes
                .get(&id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("node {id:?}")))?;
            if node.state != trellis_proto::NodeState::Online.as_str() {
                return Err(ApiError::Unavailable(format!(
                    "node {id:?} is {}",
                    node.state
                )));
            }
            let start = Instant::now();
            let result = state
                .bridge
                .command(&id, Action::Ping, PING_TIMEOUT)
                .await
                .map_err(|e| ApiError::Unavailable(format!("node {id:?}: {e}")))?;
            if !result.ok {
                return Err(ApiError::Unavailable(format!(
                    "node {id:?} refused: {}",
                    result.message
                )));
            }
            Ok(PingResult {
                message: result.message,
                round_trip_ms: start.elapsed().as_secs_f64() * 1000.0,
            })
        };
        audited(ctx, "pingNode", Some(&id), work).await
    }
}
