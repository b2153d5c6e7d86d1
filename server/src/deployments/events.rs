//! One watcher per node engine that has instances: Docker's container events for this cluster's
//! containers on that node (a container died, was stopped, removed or changed health) wake the
//! worker of its deployment at once, instead of at its next recheck, so a container removed or
//! stopped by hand comes back within a second and every exit is recorded. It owns nothing but
//! its stream; when the stream ends or the engine cannot be reached it tries again with capped
//! backoff, and after it reconnects (the engine answered a list) it wakes every worker of the node (what happened meanwhile
//! is found by their relist). Workers converge without it, at their recheck.

use std::{collections::HashMap, time::Duration};

use bollard::query_parameters::EventsOptionsBuilder;
use entity::node;
use futures::StreamExt;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Input, Shared, engine, worker::Backoff};

/// Watches node `node_id`'s engine until `cancel`.
pub(super) async fn watch(
    shared: Shared,
    node_id: String,
    inbox: mpsc::Sender<Input>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_secs(30));
    loop {
        let started = tokio::time::Instant::now();
        tokio::select! {
            () = cancel.cancelled() => return,
            gone = follow(&shared, &node_id, &inbox) => if gone { return },
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff.reset();
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff.next_wait()) => {}
        }
    }
}

/// Removes this cluster's containers on the node whose deployment, or whose instance on this
/// node, no longer exists (a deployment removed while the node's engine was out of reach).
/// Containers of other clusters, and foreign ones, are never listed here. Whether the engine
/// answered.
async fn sweep(shared: &Shared, engine: &engine::Engine) -> bool {
    let Ok(listed) = engine.list_owned(&shared.cluster, None).await else {
        return false;
    };
    for c in listed {
        let known = entity::deployment_instance::Entity::find()
            .filter(entity::deployment_instance::Column::DeploymentId.eq(&c.deployment))
            .filter(entity::deployment_instance::Column::NodeId.eq(&engine.node_id))
            .one(&shared.svc.db)
            .await;
        if let Ok(None) = known {
            tracing::info!(
                node = engine.node_id,
                container = c.name,
                "removing a container whose deployment is gone"
            );
            let _ = engine.stop(&c.observed.id, 10).await;
            let _ = engine.remove(&c.observed.id).await;
        }
    }
    true
}

/// Follows the engine's events until the stream ends; `true` when the node is gone for good.
async fn follow(shared: &Shared, node_id: &str, inbox: &mpsc::Sender<Input>) -> bool {
    let node = match node::Entity::find_by_id(node_id).one(&shared.svc.db).await {
        Ok(Some(n)) => n,
        Ok(None) => return true,
        Err(_) => return false,
    };
    if node.docker_endpoint.is_none() {
        return false;
    }
    let Ok(engine) = shared
        .clients
        .get(&shared.access, &node, shared.timeout)
        .await
    else {
        return false;
    };
    let filters = HashMap::from([
        ("type", vec!["container".to_owned()]),
        (
            "label",
            vec![
                format!("{}={}", engine::CLUSTER, shared.cluster),
                format!("{}={node_id}", engine::NODE),
            ],
        ),
    ]);
    let opts = EventsOptionsBuilder::default().filters(&filters).build();
    let mut events = engine.docker().events(Some(opts));
    if !sweep(shared, &engine).await {
        // Not reached: no relist for the workers (they back off on their own).
        return false;
    }
    // Reached: whatever happened while nobody listened is found by the node's workers' relist.
    let _ = inbox.try_send(Input::Node(node_id.to_owned()));
    while let Some(item) = events.next().await {
        let Ok(e) = item else { break };
        let deployment = e
            .actor
            .and_then(|a| a.attributes)
            .and_then(|mut a| a.remove(engine::DEPLOYMENT));
        if let Some(deployment_id) = deployment {
            let _ = inbox.try_send(Input::Container {
                deployment_id,
                node_id: node_id.to_owned(),
            });
        }
    }
    false
}
