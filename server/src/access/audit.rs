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

    /// What was done to an experiment (as target, a name it had at the time: `names`, each from
    /// when until when; by an experiment or profile action) and to its nodes and their jobs (`node` or `node/job` as target, by a node or job action)
    /// while each node was in it: newest first before `before`, or oldest first after `after`.
    /// Logins, users and tokens never match, whatever their target says.
    pub async fn for_experiment(
        &self,
        names: &[(String, i64, Option<i64>)],
        spans: &[(String, i64, Option<i64>)],
        page: (Option<i64>, Option<i64>),
        limit: u64,
    ) -> ApiResult<Vec<audit_event::Model>> {
        use sea_orm::{
            Condition,
            sea_query::{Expr, ExprTrait},
        };
        const EXPERIMENT_ACTIONS: &[&str] = &[
            "createExperiment",
            "renameExperiment",
            "describeExperiment",
            "annotateExperiment",
            "endExperiment",
            "addExperimentNodes",
            "removeExperimentNodes",
            "startProfile",
            "pauseProfileRun",
            "resumeProfileRun",
            "stopProfileRun",
        ];
        const NODE_ACTIONS: &[&str] = &[
            "startJob",
            "startJobs",
            "stopJob",
            "pauseJob",
            "resumeJob",
            "setJobSettings",
            "setPumpCalibration",
            "renameNode",
            "setNodeLabels",
            "pingNode",
            "removeNode",
            "profile:start",
            "profile:stop",
            "profile:pause",
            "profile:resume",
            "profile:update",
        ];
        if limit == 0 || limit > MAX_PAGE {
            return Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        let at = |ms: i64| chrono::DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
        if names.is_empty() && spans.is_empty() {
            return Ok(Vec::new());
        }
        let mut any = Condition::any();
        for (name, from, until) in names {
            let mut c = Condition::all()
                .add(audit_event::Column::Target.eq(name.as_str()))
                .add(audit_event::Column::Action.is_in(EXPERIMENT_ACTIONS.iter().copied()))
                .add(audit_event::Column::At.gte(at(*from)));
            if let Some(u) = until {
                c = c.add(audit_event::Column::At.lt(at(*u)));
            }
            any = any.add(c);
        }
        for (node, from, until) in spans {
            // `node/...` matched exactly (no LIKE: `_` and `%` are legal in ids).
            let prefix = format!("{node}/");
            let mut c = Condition::all()
                .add(
                    Condition::any()
                        .add(audit_event::Column::Target.eq(node.as_str()))
                        .add(
                            Expr::expr(
                                sea_orm::sea_query::Func::cust("substr")
                                    .arg(Expr::col(audit_event::Column::Target))
                                    .arg(1i32)
                                    .arg(i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX)),
                            )
                            .eq(prefix.clone()),
                        ),
                )
                .add(audit_event::Column::Action.is_in(NODE_ACTIONS.iter().copied()))
                .add(audit_event::Column::At.gte(at(*from)));
            if let Some(u) = until {
                c = c.add(audit_event::Column::At.lt(at(*u)));
            }
            any = any.add(c);
        }
        let mut q = AuditEvent::find().filter(any);
        q = match page {
            (_, Some(after)) => q
                .filter(audit_event::Column::Id.gt(after))
                .order_by_asc(audit_event::Column::Id),
            (Some(before), None) => q
                .filter(audit_event::Column::Id.lt(before))
                .order_by_desc(audit_event::Column::Id),
            (None, None) => q.order_by_desc(audit_event::Column::Id),
        };
        Ok(q.limit(limit).all(&self.db).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn events_on(db: DatabaseConnection) {
        let a = Audit::new(db);
        for (actor, action, target) in [
            ("user:a", "startJob", "pi/od_reading"),
            ("user:a", "createExperiment", "E"),
            // Not the experiment's: a login whose name looks like a target, an id that a LIKE
            // pattern would match (`_`), another node.
            ("anonymous", "login", "pi/od_reading"),
            ("anonymous", "login", "E"),
            ("user:a", "startJob", "pi_x/od_reading"),
            ("user:a", "startJob", "other/od_reading"),
        ] {
            a.record(actor, action, Some(target), "ok", None).await;
        }
        let spans = [("pi".to_owned(), 0, None)];
        let names = [("E".to_owned(), 0, None)];
        let got: Vec<(String, String)> = a
            .for_experiment(&names, &spans, (None, Some(0)), 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.action, e.target.unwrap_or_default()))
            .collect();
        assert_eq!(
            got,
            [
                ("startJob".to_owned(), "pi/od_reading".to_owned()),
                ("createExperiment".to_owned(), "E".to_owned())
            ]
        );
        // Newest first by default.
        let newest = a
            .for_experiment(&names, &spans, (None, None), 1)
            .await
            .unwrap();
        assert_eq!(newest[0].action, "createExperiment");
    }

    #[tokio::test]
    async fn an_experiments_events_are_its_own_and_its_nodes_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        events_on(crate::infra::db::connect(&url).await.unwrap()).await;
    }

    #[tokio::test]
    async fn an_experiments_events_are_its_own_and_its_nodes_on_postgres() {
        crate::telemetry::ingest::tests::with_postgres("audit", events_on).await;
    }
}
