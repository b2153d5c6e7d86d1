//! The join flow: an agent's request becomes a pending node (or an approved one, when its MAC is
//! on the auto-approve list), and approval sends the node its credentials through the bridge.

use crate::{AppState, enroll, error, nodes};

impl AppState {
    /// Approves a pending node: issues its credentials and sends them to its agent.
    /// The request stays pending until the broker has taken the credentials, so a failure can be
    /// retried; the join token must still be valid.
    pub async fn approve_node(&self, node_id: &str) -> error::ApiResult<()> {
        let request = self.enroll.pending_request(node_id).await?;
        let password = self.enroll.issue_credential(node_id).await?;
        if let Err(e) = self
            .bridge
            .send_enroll_response(node_id, &request.nonce, &password)
            .await
        {
            let _ = self.enroll.revoke_credential(node_id).await?;
            return Err(error::ApiError::Unavailable(format!(
                "the credentials could not be sent, try again: {e}"
            )));
        }
        self.enroll.forget_request(node_id).await
    }

    /// Records an agent's request to join, and approves it at once when its MAC is listed.
    pub(crate) async fn enroll_request(
        &self,
        announce: trellis_proto::Announce,
        proof: enroll::JoinProof,
        nonce: String,
    ) {
        let node_id = announce.node_id.clone();
        let actor = format!("node:{node_id}");
        let join_token_id = match proof {
            enroll::JoinProof::TokenId(id) => id,
            enroll::JoinProof::Token(token) => match self.enroll.valid_join_token(&token).await {
                Ok(Some(t)) => t.id,
                Ok(None) => {
                    tracing::warn!(
                        node_id,
                        "enroll request with a wrong, revoked or expired join token refused"
                    );
                    self.audit
                        .record(
                            &actor,
                            "requestToJoin",
                            Some(&node_id),
                            "UNAUTHENTICATED",
                            Some("wrong, revoked or expired join token".into()),
                        )
                        .await;
                    return;
                }
                Err(e) => {
                    tracing::error!(
                        node_id,
                        error = e.log_message(),
                        "could not check a join token"
                    );
                    return;
                }
            },
        };
        match self.enroll.request(&announce, &join_token_id, &nonce).await {
            Ok(auto) => {
                self.audit
                    .record(
                        &actor,
                        "requestToJoin",
                        Some(&node_id),
                        "ok",
                        announce.mac.clone(),
                    )
                    .await;
                self.nodes.notify(nodes::NodeEventKind::Pending, &node_id);
                if auto {
                    let outcome = match self.approve_node(&node_id).await {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => e.code().to_owned(),
                    };
                    self.audit
                        .record(
                            "system",
                            "approveNode",
                            Some(&node_id),
                            &outcome,
                            Some("MAC on the auto-approve list".into()),
                        )
                        .await;
                }
            }
            Err(e @ error::ApiError::Forbidden(_)) => {
                tracing::warn!(node_id, reason = e.log_message(), "enroll request refused");
                self.audit
                    .record(
                        &actor,
                        "requestToJoin",
                        Some(&node_id),
                        e.code(),
                        Some(e.public_message()),
                    )
                    .await;
            }
            Err(e) => tracing::error!(
                node_id,
                error = e.log_message(),
                "could not record an enroll request"
            ),
        }
    }
}
