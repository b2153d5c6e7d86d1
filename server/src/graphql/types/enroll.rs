//! GraphQL types of enrollment: pending nodes and join tokens.

use async_graphql::Object;

use chrono::{DateTime, Utc};

/// A node that asked to join and waits for approval.
pub struct PendingNode(pub entity::enrollment::Model);

impl PendingNode {
    fn facts(&self) -> async_graphql::Result<trellis_proto::Announce> {
        Ok(super::node::stored(
            &self.0.facts,
            "facts",
            &self.0.node_id,
        )?)
    }
}

#[Object]
impl PendingNode {
    /// The node id it asks for.
    async fn node_id(&self) -> &str {
        &self.0.node_id
    }
    /// Its hostname.
    async fn hostname(&self) -> async_graphql::Result<Option<String>> {
        Ok(Some(self.facts()?.hostname))
    }
    /// Its MAC address.
    async fn mac(&self) -> async_graphql::Result<Option<String>> {
        Ok(self.facts()?.mac)
    }
    /// Its IP addresses.
    async fn ip_addresses(&self) -> async_graphql::Result<Vec<String>> {
        Ok(self.facts()?.ip_addresses)
    }
    /// CPU architecture.
    async fn arch(&self) -> async_graphql::Result<Option<String>> {
        Ok(Some(self.facts()?.arch))
    }
    /// Board model.
    async fn model(&self) -> async_graphql::Result<Option<String>> {
        Ok(self.facts()?.model)
    }
    /// When it (last) asked.
    async fn requested_at(&self) -> DateTime<Utc> {
        self.0.requested_at
    }
}

/// A join token (never the secret itself).
pub struct JoinToken(pub entity::join_token::Model);

#[Object]
impl JoinToken {
    /// Id.
    async fn id(&self) -> &str {
        &self.0.id
    }
    /// What it is for.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Who created it.
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    /// When.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it expires, if ever.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    /// When it was revoked.
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
    /// Whether it works now.
    async fn active(&self) -> bool {
        crate::access::usable(self.0.revoked_at, self.0.expires_at)
    }
}
