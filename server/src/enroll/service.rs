//! Node enrollment and MQTT credentials.
//!
//! A new agent connects with a join token as its MQTT password (username `enroll:<node id>`) and
//! asks to join; the node waits as pending until an operator approves it, or at once when its MAC
//! address is on the configured auto-approve list. Approval issues the node its own MQTT password
//! (256 random bits; only its SHA-256 is kept), sent to the agent on its enroll response topic.
//! Removing a node deletes its credential, so it can no longer connect.

use chrono::{DateTime, Utc};
use entity::{enrollment, join_token, node_credential};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder,
};
use trellis_proto::Announce;

use crate::{
    access::{new_token, token_hash, usable},
    error::{ApiError, ApiResult},
};

/// What proves an enroll request may be made: the id of the join token the MQTT gate checked, or
/// the join token itself, sent in the request through an external broker.
#[derive(Debug, Clone)]
pub enum JoinProof {
    /// The gate checked this join token.
    TokenId(String),
    /// The plaintext join token, still to be checked.
    Token(String),
}

/// An enroll request on its way to the leader: what the node says, the proof, the nonce.
pub type JoinRequest = (Announce, JoinProof, String);

/// The enrollment service.
#[derive(Clone)]
pub struct Enroll {
    db: DatabaseConnection,
    auto_approve_macs: Vec<String>,
    /// A Trellis-managed Mosquitto and the server's own account on it (username, `$7$` hash).
    mosquitto: Option<(crate::mqtt::mosquitto::Mosquitto, (String, String))>,
    /// Held from reading the accounts to writing them, so two changes at once never interleave
    /// their files or leave an older view written last.
    mosquitto_sync: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Enroll {
    /// A service over `db`; nodes whose MAC is in `auto_approve_macs` are approved on request.
    pub fn new(db: DatabaseConnection, auto_approve_macs: Vec<String>) -> Self {
        let auto_approve_macs = auto_approve_macs
            .into_iter()
            .map(|m| m.to_lowercase())
            .collect();
        Enroll {
            db,
            auto_approve_macs,
            mosquitto: None,
            mosquitto_sync: std::sync::Arc::default(),
        }
    }

    /// Keeps a Mosquitto password file in step with the node credentials, with the server's
    /// account (`username`, plaintext `password`) in it too. Writes it at once.
    pub async fn manage_mosquitto(
        &mut self,
        mosquitto: crate::mqtt::mosquitto::Mosquitto,
        username: &str,
        password: &str,
    ) -> ApiResult<()> {
        let server = (
            username.to_owned(),
            crate::mqtt::mosquitto::hash_password(password),
        );
        self.mosquitto = Some((mosquitto, server));
        self.sync_mosquitto().await
    }

    /// Rewrites the managed Mosquitto's accounts from the database.
    async fn sync_mosquitto(&self) -> ApiResult<()> {
        let Some((mosquitto, server)) = &self.mosquitto else {
            return Ok(());
        };
        let _one_at_a_time = self.mosquitto_sync.lock().await;
        let mut accounts = vec![server.clone()];
        for c in node_credential::Entity::find().all(&self.db).await? {
            accounts.push((c.node_id, c.mosquitto_hash));
        }
        // Usable join tokens are accounts too, allowed only to ask to join (see mosquitto.rs).
        let mut joins = Vec::new();
        for t in join_token::Entity::find().all(&self.db).await? {
            if let Some(hash) = t
                .mosquitto_hash
                .filter(|_| usable(t.revoked_at, t.expires_at))
            {
                joins.push((trellis_proto::join_username_for_hash(&t.token_hash), hash));
            }
        }
        // Writing and syncing two files and signalling Mosquitto block: keep them off the async
        // workers that serve every other request.
        let mosquitto = mosquitto.clone();
        tokio::task::spawn_blocking(move || mosquitto.write(&accounts, &joins))
            .await
            .map_err(|e| ApiError::Internal(format!("cannot write the Mosquitto accounts: {e}")))?
            .map_err(|e| ApiError::Internal(format!("cannot write the Mosquitto accounts: {e}")))
    }

    /// Creates a join token; returns it and the plaintext (shown once).
    pub async fn create_join_token(
        &self,
        name: &str,
        created_by: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> ApiResult<(join_token::Model, String)> {
        let name = crate::access::token_name("join token", name)?;
        let token = new_token("trellis_j_");
        let model = join_token::ActiveModel {
            id: Set(uuid::Uuid::new_v4().simple().to_string()),
            name: Set(name.to_owned()),
            token_hash: Set(token_hash(&token)),
            mosquitto_hash: Set(Some(crate::mqtt::mosquitto::hash_password(&token))),
            created_by: Set(created_by.to_owned()),
            created_at: Set(Utc::now()),
            expires_at: Set(expires_at),
            revoked_at: Set(None),
        }
        .insert(&self.db)
        .await?;
        self.sync_mosquitto().await?;
        Ok((model, token))
    }

    /// Every join token, newest first.
    pub async fn join_tokens(&self) -> ApiResult<Vec<join_token::Model>> {
        Ok(join_token::Entity::find()
            .order_by_desc(join_token::Column::CreatedAt)
            .all(&self.db)
            .await?)
    }

    /// Revokes a join token. Nodes already approved keep their own credentials.
    pub async fn revoke_join_token(&self, id: &str) -> ApiResult<join_token::Model> {
        let t = join_token::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("join token {id:?}")))?;
        if t.revoked_at.is_some() {
            return Ok(t);
        }
        let mut m = t.into_active_model();
        m.revoked_at = Set(Some(Utc::now()));
        let t = m.update(&self.db).await?;
        self.sync_mosquitto().await?;
        Ok(t)
    }

    /// The join token behind a plaintext, if it is usable now.
    pub async fn valid_join_token(&self, token: &str) -> ApiResult<Option<join_token::Model>> {
        let t = join_token::Entity::find()
            .filter(join_token::Column::TokenHash.eq(token_hash(token)))
            .one(&self.db)
            .await?;
        Ok(t.filter(|t| usable(t.revoked_at, t.expires_at)))
    }

    /// Whether `password` is node `node_id`'s MQTT password.
    pub async fn check_node_password(&self, node_id: &str, password: &str) -> ApiResult<bool> {
        let c = node_credential::Entity::find_by_id(node_id.to_owned())
            .one(&self.db)
            .await?;
        Ok(c.is_some_and(|c| c.password_hash == token_hash(password)))
    }

    /// Records (or refreshes) a pending node. Returns whether it is on the auto-approve list.
    ///
    /// Refused: a node id that already has credentials (a join token must not let anyone replace
    /// a working node's password), and a node id another agent already asked for with another
    /// nonce (first come, first served; reject the pending one to free the id).
    pub async fn request(
        &self,
        announce: &Announce,
        join_token_id: &str,
        nonce: &str,
    ) -> ApiResult<bool> {
        let node_id = announce.node_id.clone();
        // The topic's node id was checked by the parser; this is the service's own rule, so no
        // path around it can record a pending node under an id that is not one.
        trellis_proto::validate_node_id(&node_id)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if node_credential::Entity::find_by_id(node_id.clone())
            .one(&self.db)
            .await?
            .is_some()
        {
            return Err(ApiError::Forbidden(format!(
                "node id {node_id:?} is already enrolled; remove that node first"
            )));
        }
        let existing = enrollment::Entity::find_by_id(node_id.clone())
            .one(&self.db)
            .await?;
        if existing.as_ref().is_some_and(|e| e.nonce != nonce) {
            return Err(ApiError::Forbidden(format!(
                "node id {node_id:?} is already waiting under another request; reject it to free the id"
            )));
        }
        let facts = serde_json::to_value(announce).map_err(|e| {
            ApiError::Internal(format!("cannot store the facts of {node_id:?}: {e}"))
        })?;
        let row = enrollment::ActiveModel {
            node_id: Set(node_id),
            facts: Set(facts),
            join_token_id: Set(join_token_id.to_owned()),
            nonce: Set(nonce.to_owned()),
            requested_at: Set(Utc::now()),
        };
        match existing {
            Some(_) => row.update(&self.db).await?,
            None => row.insert(&self.db).await?,
        };
        let mac = announce.mac.as_deref().unwrap_or_default().to_lowercase();
        Ok(!mac.is_empty() && self.auto_approve_macs.contains(&mac))
    }

    /// Nodes waiting for approval, oldest first.
    pub async fn pending(&self) -> ApiResult<Vec<enrollment::Model>> {
        Ok(enrollment::Entity::find()
            .order_by_asc(enrollment::Column::RequestedAt)
            .all(&self.db)
            .await?)
    }

    /// The pending request of `node_id`, if its join token is still valid.
    pub async fn pending_request(&self, node_id: &str) -> ApiResult<enrollment::Model> {
        let row = enrollment::Entity::find_by_id(node_id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("pending node {node_id:?}")))?;
        let token = join_token::Entity::find_by_id(row.join_token_id.clone())
            .one(&self.db)
            .await?;
        if !token.is_some_and(|t| usable(t.revoked_at, t.expires_at)) {
            return Err(ApiError::Forbidden(format!(
                "node {node_id:?} asked with a join token that has since been revoked or has expired"
            )));
        }
        Ok(row)
    }

    /// Forgets a pending request (after approval or rejection).
    pub async fn forget_request(&self, node_id: &str) -> ApiResult<()> {
        enrollment::Entity::delete_by_id(node_id.to_owned())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Refuses a pending node.
    pub async fn reject(&self, node_id: &str) -> ApiResult<()> {
        let res = enrollment::Entity::delete_by_id(node_id.to_owned())
            .exec(&self.db)
            .await?;
        if res.rows_affected == 0 {
            return Err(ApiError::NotFound(format!("pending node {node_id:?}")));
        }
        Ok(())
    }

    /// Issues (or replaces) a node's MQTT password and returns it.
    pub async fn issue_credential(&self, node_id: &str) -> ApiResult<String> {
        trellis_proto::validate_node_id(node_id)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let password = new_token("trellis_n_");
        let row = node_credential::ActiveModel {
            node_id: Set(node_id.to_owned()),
            password_hash: Set(token_hash(&password)),
            mosquitto_hash: Set(crate::mqtt::mosquitto::hash_password(&password)),
            created_at: Set(Utc::now()),
        };
        match node_credential::Entity::find_by_id(node_id.to_owned())
            .one(&self.db)
            .await?
        {
            Some(_) => row.update(&self.db).await?,
            None => row.insert(&self.db).await?,
        };
        self.sync_mosquitto().await?;
        Ok(password)
    }

    /// Deletes a node's credential (the node is removed).
    /// Returns whether there was one.
    pub async fn revoke_credential(&self, node_id: &str) -> ApiResult<bool> {
        let res = node_credential::Entity::delete_by_id(node_id.to_owned())
            .exec(&self.db)
            .await?;
        self.sync_mosquitto().await?;
        Ok(res.rows_affected > 0)
    }
}
