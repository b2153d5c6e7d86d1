//! The audit log: every mutation, login attempt and node command, with who, what, when and the
//! outcome. Stored in the database, queryable, and streamed live to subscribers.

use chrono::Utc;
use entity::audit_event::{self, Entity as AuditEvent};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use tokio::sync::broadcast;

use crate::error::{ApiError, ApiResult};

/// Most events one query returns.
pub const MAX_PAGE: u64 = 500;

/// The audit service.
#[derive(Clone)]
pub struct Audit {
    db: DatabaseConnection,
    events: broadcast::Sender<audit_event::Model>,
}

impl Audit {
    /// A service over `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        let (events, _) = broadcast::channel(256);
        Audit { db, events }
    }

    /// A receiver of every event recorded from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<audit_event::Model> {
        self.events.subscribe()
    }

    /// Records one event. A failure to record is logged, never hidden from the operator's log,
    /// and does not undo what was done.
    pub async fn record(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        outcome: &str,
        detail: Option<String>,
    ) {
        let row = audit_event::ActiveModel {
            id: Default::default(),
            at: Set(Utc::now()),
            actor: Set(actor.to_owned()),
            action: Set(action.to_owned()),
            // Targets come from callers (a login name, say): keep the log bounded.
            target: Set(target.map(|t| t.chars().take(128).collect())),
            outcome: Set(outcome.to_owned()),
            detail: Set(detail),
        };
        match row.insert(&self.db).await {
            Ok(saved) => {
                tracing::info!(actor, action, target, outcome, "audit");
                let _ = self.events.send(saved);
            }
            Err(e) => {
                tracing::error!(error = %e, actor, action, target, outcome, "could not write the audit log")
            }
        }
    }

    /// The newest events, newest first; `before` pages back from an id.
    pub async fn list(
        &self,
        limit: u64,
        before: Option<i64>,
    ) -> ApiResult<Vec<audit_event::Model>> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        let mut q = AuditEvent::find()
            .order_by_desc(audit_event::Column::Id)
            .limit(limit);
        if let Some(id) = before {
            q = q.filter(audit_event::Column::Id.lt(id));
        }
        Ok(q.all(&self.db).await?)
    }

    /// What was done to an experiment (its name as target) and to its nodes and their jobs
    /// (`node` or `node/job` as target) while each node was in it, newest first.
    pub async fn for_experiment(
        &self,
        name: &str,
        spans: &[(String, i64, Option<i64>)],
        before: Option<i64>,
        limit: u64,
    ) -> ApiResult<Vec<audit_event::Model>> {
        use sea_orm::Condition;
        if limit == 0 || limit > MAX_PAGE {
            return Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        let at = |ms: i64| chrono::DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
        let mut any = Condition::any().add(audit_event::Column::Target.eq(name));
        for (node, from, until) in spans {
            let mut c = Condition::all()
                .add(
                    Condition::any()
                        .add(audit_event::Column::Target.eq(node.as_str()))
                        .add(audit_event::Column::Target.starts_with(format!("{node}/"))),
                )
                .add(audit_event::Column::At.gte(at(*from)));
            if let Some(u) = until {
                c = c.add(audit_event::Column::At.lt(at(*u)));
            }
            any = any.add(c);
        }
        let mut q = AuditEvent::find().filter(any);
        if let Some(id) = before {
            q = q.filter(audit_event::Column::Id.lt(id));
        }
        Ok(q.order_by_desc(audit_event::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }
}
