//! Rollouts: a new revision reaches the nodes batch by batch. A batch passes when every node in
//! it runs the new revision and is ready (Docker's health check `healthy`, or running without a
//! restart for `minReadySecs`); it fails on a failed pull or create, a crash, an unhealthy
//! container or `healthTimeoutSecs`. A failed rollout goes back to the last good revision (the
//! old containers were kept, stopped, so going back is a start, not a pull) or pauses.
//!
//! All of a rollout's state is in its row (batches, current batch, when the batch opened), so a
//! leader killed at any point resumes at the same batch. The driver only reads and writes rows;
//! it never waits on Docker, so a slow node or a crash loop holds back no other rollout. A node
//! unreachable when its batch is judged is not waited for: its worker brings it to the new
//! revision when the node returns.

use entity::{
    deployment, deployment_instance as instance, deployment_revision as revision, rollout,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TransactionTrait,
};

use super::{
    service::{DeploymentEventKind, Deployments, end_active_rollouts, now_ms},
    spec::FailureAction,
};
use crate::{access::audit::Audit, error::ApiResult};

/// Gives the batch's nodes the new revision (their workers make the containers).
pub(super) async fn open_batch(
    db: &impl ConnectionTrait,
    deployment_id: &str,
    nodes: &[String],
    to: i32,
) -> ApiResult<()> {
    instance::Entity::update_many()
        .col_expr(instance::Column::DesiredRevision, Some(to).into())
        .filter(instance::Column::DeploymentId.eq(deployment_id))
        .filter(instance::Column::NodeId.is_in(nodes.iter().map(String::as_str)))
        .filter(instance::Column::DesiredRevision.is_not_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Revision `to` rolled out: it is the live one, and every node still on another gets it (nodes
/// that joined meanwhile were given the old one).
pub(super) async fn succeeded(
    db: &impl ConnectionTrait,
    d: &deployment::Model,
    to: i32,
) -> ApiResult<()> {
    deployment::Entity::update_many()
        .col_expr(deployment::Column::LiveRevision, Some(to).into())
        .col_expr(deployment::Column::UpdatedMs, now_ms().into())
        .filter(deployment::Column::Id.eq(&d.id))
        .exec(db)
        .await?;
    revision::Entity::update_many()
        .col_expr(revision::Column::Outcome, Some("rolled_out").into())
        .filter(revision::Column::DeploymentId.eq(&d.id))
        .filter(revision::Column::Revision.eq(to))
        .exec(db)
        .await?;
    instance::Entity::update_many()
        .col_expr(instance::Column::DesiredRevision, Some(to).into())
        .filter(instance::Column::DeploymentId.eq(&d.id))
        .filter(instance::Column::DesiredRevision.is_not_null())
        .exec(db)
        .await?;
    Ok(())
}

/// A node's exits of the new revision's container since the batch opened.
#[derive(Debug, Default)]
struct Exits {
    count: usize,
    /// The newest one: its code and last lines.
    last: String,
    last_ms: i64,
}

impl Exits {
    fn add(&mut self, row: &entity::deployment_restart::Model) {
        self.count += 1;
        if self.count == 1 || row.at_ms >= self.last_ms {
            self.last_ms = row.at_ms;
            let code = row
                .exit_code
                .map_or_else(|| "exited".to_owned(), |c| format!("exited with code {c}"));
            let oom = if row.oom_killed {
                ", killed for want of memory"
            } else {
                ""
            };
            let tail = row.log_tail.trim();
            self.last = match tail.is_empty() {
                true => format!("{code}{oom}"),
                false => format!("{code}{oom}; last lines: {tail}"),
            };
        }
    }
}

/// How a batch stands.
#[derive(Debug, PartialEq)]
enum Verdict {
    Passed,
    Waiting,
    Failed(String),
}

#[allow(clippy::too_many_arguments)]
fn judge(
    batch: &[String],
    instances: &[instance::Model],
    exits: &std::collections::HashMap<&str, Exits>,
    to: i32,
    opened_ms: i64,
    now: i64,
    min_ready_secs: i32,
    timeout_secs: i32,
) -> Verdict {
    let mut waiting = Vec::new();
    for node in batch {
        let Some(i) = instances.iter().find(|i| &i.node_id == node) else {
            continue; // the node was removed
        };
        if i.desired_revision != Some(to) || i.excluded {
            continue;
        }
        let why = i.reason.as_deref().unwrap_or("no reason given");
        let on_new = i.observed_revision == Some(to);
        // What the container of the old revision did is not this batch's business; a failed
        // attempt is, once it was made after the batch opened.
        let fresh = i.updated_ms >= opened_ms;
        match i.state.as_str() {
            // Not waited for (seen since the batch opened): its worker converges when the node
            // is back.
            "UNREACHABLE" | "NO_ENGINE" if fresh => continue,
            "FAILED" | "CONFLICT" if fresh => {
                return Verdict::Failed(format!("node {node}: {} ({why})", i.state.to_lowercase()));
            }
            "CRASH_LOOP" | "UNHEALTHY" | "EXITED" if on_new => {
                return Verdict::Failed(format!("node {node}: {} ({why})", i.state.to_lowercase()));
            }
            _ => {}
        }
        let exits_now = exits.get(node.as_str());
        if on_new && (exits_now.is_some() || i.state == "RESTARTING") {
            // The exit can be counted before the node's worker has seen it: its row says why.
            let why = match (&i.reason, exits_now) {
                (None, Some(e)) => e.last.as_str(),
                _ => why,
            };
            return Verdict::Failed(format!(
                "node {node}: the container exited {} time(s) since the batch began ({why})",
                exits_now.map_or(1, |e| e.count)
            ));
        }
        let ready = on_new
            && match i.health.as_deref() {
                Some(h) => h == "healthy" && i.state == "HEALTHY",
                None => {
                    i.state == "RUNNING"
                        && i.running_since_ms
                            .is_some_and(|s| now - s >= i64::from(min_ready_secs) * 1000)
                }
            };
        if !ready {
            waiting.push(node.as_str());
        }
    }
    if waiting.is_empty() {
        Verdict::Passed
    } else if now - opened_ms > i64::from(timeout_secs) * 1000 {
        Verdict::Failed(format!(
            "node {}: not ready after {timeout_secs} s",
            waiting.join(", node ")
        ))
    } else {
        Verdict::Waiting
    }
}

/// Moves every running rollout on as far as it can; returns whether any is still running.
pub(super) async fn drive(svc: &Deployments, audit: &Audit) -> ApiResult<bool> {
    let running = rollout::Entity::find()
        .filter(rollout::Column::State.eq("running"))
        .all(&svc.db)
        .await?;
    let any = !running.is_empty();
    for r in running {
        if let Err(e) = step(svc, audit, r).await {
            tracing::warn!(error = e.log_message(), "a rollout could not move on");
        }
    }
    Ok(any)
}

async fn step(svc: &Deployments, audit: &Audit, r: rollout::Model) -> ApiResult<()> {
    let Some(d) = deployment::Entity::find_by_id(&r.deployment_id)
        .one(&svc.db)
        .await?
    else {
        return Ok(());
    };
    let batches: Vec<Vec<String>> = serde_json::from_str(&r.batches).unwrap_or_default();
    let spec = svc.spec(&d.id, r.to_revision).await?;
    let now = now_ms();
    let verdict = match batches.get(usize::try_from(r.current_batch).unwrap_or(usize::MAX)) {
        None => Verdict::Passed,
        Some(batch) => {
            let instances = svc.instances(&d.id).await?;
            let opened = r.batch_started_ms.unwrap_or(now);
            // Exits of the new revision's containers since the batch opened (not Docker's
            // lifetime count: a kept container brought back may have old restarts).
            let rows = entity::deployment_restart::Entity::find()
                .filter(entity::deployment_restart::Column::DeploymentId.eq(&d.id))
                .filter(entity::deployment_restart::Column::Revision.eq(r.to_revision))
                .filter(entity::deployment_restart::Column::AtMs.gte(opened))
                .all(&svc.db)
                .await?;
            let mut exits: std::collections::HashMap<&str, Exits> =
                std::collections::HashMap::new();
            for row in &rows {
                exits.entry(row.node_id.as_str()).or_default().add(row);
            }
            judge(
                batch,
                &instances,
                &exits,
                r.to_revision,
                r.batch_started_ms.unwrap_or(now),
                now,
                spec.update.min_ready_secs,
                spec.update.health_timeout_secs,
            )
        }
    };
    match verdict {
        Verdict::Waiting => Ok(()),
        Verdict::Passed => {
            let next = r.current_batch + 1;
            let txn = svc.db.begin().await?;
            lock_deployment(&txn, &d.id).await?;
            let batch = batches.get(usize::try_from(next).unwrap_or(usize::MAX));
            let moved = match batch {
                Some(_) => {
                    claim(&txn, &r, |q| {
                        q.col_expr(rollout::Column::CurrentBatch, next.into())
                            .col_expr(rollout::Column::BatchStartedMs, Some(now).into())
                    })
                    .await?
                }
                None => {
                    claim(&txn, &r, |q| {
                        q.col_expr(rollout::Column::State, "succeeded".into())
                            .col_expr(rollout::Column::EndedMs, Some(now).into())
                    })
                    .await?
                }
            };
            if !moved {
                return Ok(());
            }
            match batch {
                Some(batch) => open_batch(&txn, &d.id, batch, r.to_revision).await?,
                None => succeeded(&txn, &d, r.to_revision).await?,
            }
            txn.commit().await?;
            if batch.is_none() && r.kind != "auto_rollback" {
                audit
                    .record(
                        "system",
                        "rolloutSucceeded",
                        Some(&d.name),
                        "ok",
                        Some(format!("revision {}", r.to_revision)),
                    )
                    .await;
            }
            svc.emit(DeploymentEventKind::Rollout, &d.id, None);
            svc.wake(super::Input::Deployment(d.id.clone()));
            Ok(())
        }
        Verdict::Failed(reason) => {
            fail(svc, audit, &d, r, &reason, spec.update.failure_action).await
        }
    }
}

/// Takes the deployment's row first, as mutations do (the same lock order everywhere: on
/// Postgres an edit and a verdict at once would otherwise deadlock).
async fn lock_deployment(txn: &impl ConnectionTrait, id: &str) -> ApiResult<()> {
    use sea_orm::sea_query::Expr;
    deployment::Entity::update_many()
        .col_expr(
            deployment::Column::UpdatedMs,
            Expr::col(deployment::Column::UpdatedMs),
        )
        .filter(deployment::Column::Id.eq(id))
        .exec(txn)
        .await?;
    Ok(())
}

/// Moves the rollout on as it was read (running, at its batch) and says whether it did: a write
/// first, so a rollout superseded or moved meanwhile is left alone.
async fn claim(
    txn: &impl ConnectionTrait,
    r: &rollout::Model,
    change: impl FnOnce(sea_orm::UpdateMany<rollout::Entity>) -> sea_orm::UpdateMany<rollout::Entity>,
) -> ApiResult<bool> {
    let q = rollout::Entity::update_many()
        .filter(rollout::Column::Id.eq(&r.id))
        .filter(rollout::Column::State.eq("running"))
        .filter(rollout::Column::CurrentBatch.eq(r.current_batch));
    Ok(change(q).exec(txn).await?.rows_affected == 1)
}

async fn fail(
    svc: &Deployments,
    audit: &Audit,
    d: &deployment::Model,
    r: rollout::Model,
    reason: &str,
    action: FailureAction,
) -> ApiResult<()> {
    let to = r.to_revision;
    let back_to = d.live_revision.filter(|live| *live != to);
    let rolling_back =
        action == FailureAction::Rollback && back_to.is_some() && r.kind != "auto_rollback";
    let state = if rolling_back {
        "rolled_back"
    } else if action == FailureAction::Pause {
        "paused"
    } else {
        "failed"
    };
    let txn = svc.db.begin().await?;
    lock_deployment(&txn, &d.id).await?;
    let ended = (state != "paused").then(now_ms);
    let claimed = claim(&txn, &r, |q| {
        q.col_expr(rollout::Column::State, state.into())
            .col_expr(rollout::Column::Reason, Some(reason.to_owned()).into())
            .col_expr(rollout::Column::EndedMs, ended.into())
    })
    .await?;
    if !claimed {
        return Ok(());
    }
    revision::Entity::update_many()
        .col_expr(revision::Column::Outcome, Some("failed").into())
        .col_expr(
            revision::Column::OutcomeReason,
            Some(reason.to_owned()).into(),
        )
        .filter(revision::Column::DeploymentId.eq(&d.id))
        .filter(revision::Column::Revision.eq(to))
        .exec(&txn)
        .await?;
    if let (true, Some(live)) = (rolling_back, back_to) {
        end_active_rollouts(&txn, &d.id, "superseded", None).await?;
        deployment::Entity::update_many()
            .col_expr(deployment::Column::TargetRevision, live.into())
            .filter(deployment::Column::Id.eq(&d.id))
            .exec(&txn)
            .await?;
        // Every node given the failed revision goes back at once (its old container was kept).
        let nodes: Vec<String> = instance::Entity::find()
            .filter(instance::Column::DeploymentId.eq(&d.id))
            .filter(instance::Column::DesiredRevision.eq(to))
            .all(&txn)
            .await?
            .into_iter()
            .map(|i| i.node_id)
            .collect();
        let now = now_ms();
        rollout::ActiveModel {
            id: Set(uuid::Uuid::new_v4().simple().to_string()),
            deployment_id: Set(d.id.clone()),
            kind: Set("auto_rollback".into()),
            from_revision: Set(Some(to)),
            to_revision: Set(live),
            state: Set("running".into()),
            batches: Set(serde_json::to_string(&vec![nodes.clone()]).unwrap_or_default()),
            current_batch: Set(0),
            batch_started_ms: Set(Some(now)),
            reason: Set(Some(format!("revision {to} failed: {reason}"))),
            started_by: Set("system".into()),
            started_ms: Set(now),
            ended_ms: Set(None),
        }
        .insert(&txn)
        .await?;
        instance::Entity::update_many()
            .col_expr(instance::Column::DesiredRevision, Some(live).into())
            .filter(instance::Column::DeploymentId.eq(&d.id))
            .filter(instance::Column::NodeId.is_in(nodes))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    let action_name = match state {
        "rolled_back" => "autoRollback",
        "paused" => "rolloutPaused",
        _ => "rolloutFailed",
    };
    audit
        .record(
            "system",
            action_name,
            Some(&d.name),
            "ok",
            Some(format!("revision {to}: {reason}")),
        )
        .await;
    svc.emit(DeploymentEventKind::Rollout, &d.id, None);
    svc.wake(super::Input::Deployment(d.id.clone()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(node: &str, state: &str, observed: i32) -> instance::Model {
        instance::Model {
            id: 1,
            deployment_id: "d".into(),
            node_id: node.into(),
            desired_revision: Some(2),
            excluded: false,
            stopped: false,
            restart_requested_ms: None,
            container_id: None,
            container_name: None,
            observed_revision: Some(observed),
            state: state.into(),
            reason: Some("exited with code 3; last lines: boom".into()),
            health: None,
            exit_code: None,
            oom_killed: false,
            restart_count: 0,
            running_since_ms: Some(0),
            failures: 0,
            next_retry_ms: None,
            updated_ms: 0,
        }
    }

    #[test]
    fn a_batch_passes_waits_or_fails() {
        let batch = vec!["a".to_owned(), "b".to_owned()];
        let none = std::collections::HashMap::new();
        let j = |is: &[instance::Model], now| judge(&batch, is, &none, 2, 0, now, 5, 60);
        let ok = [inst("a", "RUNNING", 2), inst("b", "RUNNING", 2)];
        assert_eq!(j(&ok, 4_000), Verdict::Waiting, "not running 5 s yet");
        assert_eq!(j(&ok, 5_000), Verdict::Passed);
        let old = [inst("a", "RUNNING", 2), inst("b", "RUNNING", 1)];
        assert_eq!(j(&old, 10_000), Verdict::Waiting, "b still runs revision 1");
        assert!(
            matches!(j(&old, 61_000), Verdict::Failed(r) if r == "node b: not ready after 60 s")
        );
        let crashed = [inst("a", "RUNNING", 2), inst("b", "CRASH_LOOP", 2)];
        assert!(
            matches!(j(&crashed, 1_000), Verdict::Failed(r) if r.contains("node b: crash_loop") && r.contains("boom"))
        );
        // An exit counted before b's worker saw it: the restart row says why.
        let mut exit = Exits::default();
        exit.add(&entity::deployment_restart::Model {
            id: 1,
            deployment_id: "d".into(),
            node_id: "b".into(),
            revision: 2,
            container_id: "c".into(),
            at_ms: 5_500,
            exit_code: Some(3),
            oom_killed: false,
            log_tail: "boom\n".into(),
        });
        let exited = std::collections::HashMap::from([("b", exit)]);
        let v = judge(&batch, &ok, &exited, 2, 0, 6_000, 5, 60);
        assert!(
            matches!(&v, Verdict::Failed(r) if r == "node b: the container exited 1 time(s) since the batch began (exited with code 3; last lines: boom)"),
            "an exit in the gate: {v:?}"
        );
        let mut old_restarts = inst("b", "RUNNING", 2);
        old_restarts.restart_count = 7;
        assert_eq!(
            j(&[ok[0].clone(), old_restarts], 6_000),
            Verdict::Passed,
            "restarts from before the batch do not count"
        );
        let gone = [inst("a", "RUNNING", 2), inst("b", "UNREACHABLE", 1)];
        assert_eq!(
            j(&gone, 6_000),
            Verdict::Passed,
            "an unreachable node is not waited for"
        );
        let mut healthy = inst("a", "HEALTHY", 2);
        healthy.health = Some("healthy".into());
        let mut starting = inst("b", "STARTING", 2);
        starting.health = Some("starting".into());
        assert_eq!(j(&[healthy.clone(), starting], 60_000), Verdict::Waiting);
        let mut b = healthy.clone();
        b.node_id = "b".into();
        assert_eq!(
            j(&[healthy, b], 1_000),
            Verdict::Passed,
            "healthy needs no wait"
        );
    }
}
