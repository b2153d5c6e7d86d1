//! Join tokens and the approval of new nodes. Every mutation is audited.

use async_graphql::{Context, Object, Result, SimpleObject};

use crate::{
    AppState,
    access::{Principal, Role},
    graphql::{
        guard::{RoleGuard, audited},
        types::JoinToken,
    },
};

/// A new join token. `token` is shown this once and never again.
#[derive(SimpleObject)]
pub struct CreatedJoinToken {
    /// Pass it to the agent: `trellis-agent --join-token <token>`.
    pub token: String,
    /// The stored token's details.
    pub join_token: JoinToken,
    /// The TCP port agents reach the leader's MQTT broker on (the host is the leader's address).
    pub broker_port: i32,
    /// Whether agents reach the broker over TLS (`mqtts://`).
    pub broker_tls: bool,
    /// Whether agents must trust the leader's own CA (`--broker-ca ca.pem`, from
    /// `trellis tls-cert`): the embedded broker with the leader's certificate.
    pub broker_uses_leader_ca: bool,
}

/// Enrollment mutations.
#[derive(Default)]
pub struct EnrollMutation;

#[Object]
impl EnrollMutation {
    /// Creates a join token for new agents, optionally expiring (1-365 days).
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn create_join_token(
        &self,
        ctx: &Context<'_>,
        name: String,
        expires_in_days: Option<i32>,
    ) -> Result<CreatedJoinToken> {
        let state = ctx.data::<AppState>()?;
        let actor = ctx
            .data_opt::<Principal>()
            .map(Principal::actor)
            .unwrap_or_default();
        let work = async {
            let expires_at =
                crate::access::expiry(expires_in_days, crate::enroll::MAX_JOIN_TOKEN_DAYS)?;
            state
                .enroll
                .create_join_token(&name, &actor, expires_at)
                .await
        };
        let (model, token) = audited(ctx, "createJoinToken", Some(&name), work).await?;
        Ok(CreatedJoinToken {
            token,
            join_token: JoinToken(model),
            broker_port: i32::from(state.config.broker.client_addr().port),
            broker_tls: match &state.config.broker {
                crate::BrokerMode::Embedded(_) => state.config.tls.is_some(),
                crate::BrokerMode::External(b) => b.tls,
            },
            broker_uses_leader_ca: matches!(state.config.broker, crate::BrokerMode::Embedded(_))
                && state.config.tls.is_some(),
        })
    }

    /// Revokes a join token. Nodes that already joined keep their own credentials.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn revoke_join_token(&self, ctx: &Context<'_>, id: String) -> Result<JoinToken> {
        let state = ctx.data::<AppState>()?;
        Ok(JoinToken(
            audited(ctx, "revokeJoinToken", Some(&id), async {
                let token = state.enroll.revoke_join_token(&id).await?;
                // Agents still connected with it are cut off now, not at their next connect.
                state
                    .mqtt_connections
                    .disconnect(&format!("join:{}", token.token_hash));
                Ok(token)
            })
            .await?,
        ))
    }

    /// Approves a pending node: it gets its own MQTT credentials and comes online.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn approve_node(&self, ctx: &Context<'_>, id: String) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        audited(ctx, "approveNode", Some(&id), state.approve_node(&id)).await?;
        Ok(true)
    }

    /// Refuses a pending node.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn reject_node(&self, ctx: &Context<'_>, id: String) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        audited(ctx, "rejectNode", Some(&id), state.enroll.reject(&id)).await?;
        Ok(true)
    }

    /// Issues (or replaces) MQTT credentials for a node id without enrollment: for agents on a
    /// broker whose accounts the leader manages (`--mosquitto-dir`), started with
    /// `--username <nodeId> --password <password>`. The password is shown this once.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn issue_node_credentials(
        &self,
        ctx: &Context<'_>,
        node_id: String,
    ) -> Result<NodeCredentials> {
        let state = ctx.data::<AppState>()?;
        let work = async {
            trellis_proto::validate_node_id(&node_id)
                .map_err(|e| crate::error::ApiError::BadRequest(e.to_string()))?;
            state.enroll.issue_credential(&node_id).await
        };
        let password = audited(ctx, "issueNodeCredentials", Some(&node_id), work).await?;
        Ok(NodeCredentials {
            username: node_id,
            password,
        })
    }
}

/// MQTT credentials for one node.
#[derive(SimpleObject)]
pub struct NodeCredentials {
    /// Username (the node id).
    pub username: String,
    /// Password, shown once.
    pub password: String,
}
