//! Prune: removes from a node's engine the images Trellis put there that no deployment needs any
//! more, keeping each deployment's current images and its last good one (for a rollback), and
//! the dangling layers Trellis's builds left (images labelled `io.trellis.app` with no tag).
//! An image some container still uses, a stopped one included, stays: Docker refuses to remove
//! it and so does this. Foreign images (no revision ever named them) are never touched.

use std::collections::{BTreeSet, HashMap, HashSet};

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, PruneImagesOptionsBuilder,
    RemoveImageOptionsBuilder,
};

use crate::deployments::engine::{Engine, EngineError, classify};

/// How long after a rollout succeeds its nodes are pruned: the replaced containers are gone
/// by then (an image a container still uses stays until the next prune).
pub const AFTER_ROLLOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The prune loop: every `every`, each node some deployment runs on is pruned as `pruneImages`
/// would; and the nodes of a deployment whose rollout just succeeded are pruned
/// [`AFTER_ROLLOUT`] later, so the image a rollout replaced goes at once (the rollback image
/// stays). What was freed is logged. It owns its timer and the ids of the rollouts it has
/// pruned after; fed by the deployments' event stream (a bounded broadcast: missed events are
/// left to the timer). Stopped and started again, it prunes at its next tick.
pub async fn run_loop(
    images: super::Images,
    deployments: crate::deployments::Deployments,
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use crate::deployments::DeploymentEventKind;
    let mut events = deployments.subscribe();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Not at start: the first tick of an interval is at once.
    tick.tick().await;
    // The rollouts already pruned after (a rollout's events keep coming after it ends).
    let mut done: std::collections::VecDeque<String> = Default::default();
    loop {
        let nodes = tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => deployments.nodes_with_instances().await,
            e = events.recv() => match e {
                Ok(e) if e.kind == DeploymentEventKind::Rollout => {
                    match succeeded_now(&deployments, &e.deployment_id, &done).await {
                        Some(rollout) => {
                            if done.len() >= 64 {
                                done.pop_front();
                            }
                            done.push_back(rollout);
                            tokio::select! {
                                () = shutdown.cancelled() => return,
                                () = tokio::time::sleep(AFTER_ROLLOUT) => {}
                            }
                            deployments.instances(&e.deployment_id).await.map(|l| {
                                l.into_iter().map(|i| i.node_id).collect()
                            })
                        }
                        None => continue,
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        };
        let (nodes, (named, keep)) = match (nodes, deployments.image_needs().await) {
            (Ok(n), Ok(needs)) => (n, needs),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(
                    error = e.log_message(),
                    "the prune loop cannot read what is needed"
                );
                continue;
            }
        };
        for node in nodes {
            match images.prune(&node, &named, &keep).await {
                Ok(r) if !r.removed.is_empty() => tracing::info!(
                    node,
                    removed = r.removed.join(", "),
                    freed_bytes = r.freed_bytes,
                    "images no deployment needs removed"
                ),
                Ok(_) => {}
                Err(e) => tracing::debug!(node, error = e.log_message(), "prune skipped"),
            }
        }
    }
}

/// The id of deployment `id`'s latest rollout when it has succeeded and is not in `done`.
async fn succeeded_now(
    deployments: &crate::deployments::Deployments,
    id: &str,
    done: &std::collections::VecDeque<String>,
) -> Option<String> {
    let last = deployments.rollouts(id, 1).await.ok()?.into_iter().next()?;
    (last.state == "succeeded" && !done.contains(&last.id)).then_some(last.id)
}

/// The label Trellis's builds put on the images they make (see `images::build`).
pub const APP_LABEL: &str = "io.trellis.app";

/// What a prune did on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The images (tags, or ids when untagged) removed.
    pub removed: Vec<String>,
    /// The images kept because a deployment needs them, or for a rollback.
    pub kept: Vec<String>,
    /// The images left because a container still uses them.
    pub in_use: Vec<String>,
    /// Bytes the engine freed.
    pub freed_bytes: u64,
}

/// One image on the node as the prune sees it.
#[derive(Debug, Clone)]
pub struct Present {
    /// Its id.
    pub id: String,
    /// Its tags (`repo:tag`).
    pub tags: Vec<String>,
    /// Its size, bytes.
    pub size: u64,
}

/// What to remove: for each image whose tags some revision `named` and none of whose tags is
/// to `keep`, with no container using it, its tags. Pure, for tests.
pub fn choose(
    present: &[Present],
    named: &BTreeSet<String>,
    keep: &BTreeSet<String>,
    used: &HashSet<String>,
    report: &mut Report,
) -> Vec<Present> {
    let mut out = Vec::new();
    for image in present {
        let ours: Vec<&String> = image
            .tags
            .iter()
            .filter(|t| named.contains(*t) || named.contains(&normalise(t)))
            .collect();
        if ours.is_empty() && !named.contains(&image.id) {
            continue;
        }
        let label = image
            .tags
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone());
        if image
            .tags
            .iter()
            .any(|t| keep.contains(t) || keep.contains(&normalise(t)))
            || keep.contains(&image.id)
        {
            report.kept.push(label);
        } else if used.contains(&image.id) {
            report.in_use.push(label);
        } else {
            out.push(image.clone());
        }
    }
    out
}

/// `busybox` and `busybox:latest` are one image to Docker: a tag without its implied `:latest`.
fn normalise(tag: &str) -> String {
    tag.strip_suffix(":latest").unwrap_or(tag).to_owned()
}

/// Prunes `engine` given the images the deployments `named` and those to `keep`.
pub async fn prune(
    engine: &Engine,
    named: &BTreeSet<String>,
    keep: &BTreeSet<String>,
) -> Result<Report, EngineError> {
    let docker = engine.docker();
    let node = engine.node_id.as_str();
    let images = docker
        .list_images(Some(ListImagesOptionsBuilder::default().all(false).build()))
        .await
        .map_err(|e| classify(node, "list images", &e))?;
    let present: Vec<Present> = images
        .into_iter()
        .map(|i| Present {
            id: i.id,
            tags: i
                .repo_tags
                .into_iter()
                .filter(|t| t != "<none>:<none>")
                .collect(),
            size: u64::try_from(i.size).unwrap_or(0),
        })
        .collect();
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default().all(true).build(),
        ))
        .await
        .map_err(|e| classify(node, "list containers", &e))?;
    let used: HashSet<String> = containers.into_iter().filter_map(|c| c.image_id).collect();
    let mut report = Report::default();
    for image in choose(&present, named, keep, &used, &mut report) {
        let opts = RemoveImageOptionsBuilder::default().force(false).build();
        // Only the tags a revision named go (a tag of someone else's stays, and with it the
        // image); the image goes with its last tag. Removing by id would need force.
        let names: Vec<String> = if image.tags.is_empty() {
            vec![image.id.clone()]
        } else {
            image
                .tags
                .iter()
                .filter(|t| named.contains(*t) || named.contains(&normalise(t)))
                .cloned()
                .collect()
        };
        let mut gone = false;
        for name in &names {
            match docker.remove_image(name, Some(opts.clone()), None).await {
                Ok(items) => {
                    gone |= items.iter().any(|i| i.deleted.is_some());
                    report.removed.push(name.clone());
                }
                Err(e) => match classify(node, "remove an image", &e) {
                    // Gone already, or taken into use since the list: left as it is.
                    EngineError::NotFound => {}
                    EngineError::Conflict => report.in_use.push(name.clone()),
                    other => return Err(other),
                },
            }
        }
        if gone {
            report.freed_bytes += image.size;
        }
    }
    let filters = HashMap::from([
        ("dangling", vec!["true".to_owned()]),
        ("label", vec![APP_LABEL.to_owned()]),
    ]);
    let pruned = docker
        .prune_images(Some(
            PruneImagesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| classify(node, "prune dangling images", &e))?;
    for d in pruned.images_deleted.unwrap_or_default() {
        if let Some(id) = d.deleted {
            report.removed.push(id);
        }
    }
    report.freed_bytes += u64::try_from(pruned.space_reclaimed.unwrap_or(0)).unwrap_or(0);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(id: &str, tags: &[&str]) -> Present {
        Present {
            id: id.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            size: 100,
        }
    }

    #[test]
    fn only_images_no_deployment_needs_go_and_the_rollback_image_stays() {
        let present = vec![
            img("sha256:1", &["app:1"]),
            img("sha256:2", &["app:2"]),
            img("sha256:3", &["app:3"]),
            img("sha256:4", &["postgres:16"]),
            img("sha256:5", &["app:0"]),
            img("sha256:6", &["busybox:latest"]),
        ];
        let named: BTreeSet<String> = ["app:0", "app:1", "app:2", "app:3", "busybox"]
            .map(String::from)
            .into();
        // app:3 runs, app:2 is the rollback image.
        let keep: BTreeSet<String> = ["app:3", "app:2"].map(String::from).into();
        // A stopped container still holds app:0.
        let used: HashSet<String> = ["sha256:5".to_owned()].into();
        let mut report = Report::default();
        let gone = choose(&present, &named, &keep, &used, &mut report);
        let gone: Vec<&str> = gone.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            gone,
            ["sha256:1", "sha256:6"],
            "app:1 and busybox (named without :latest)"
        );
        assert_eq!(report.kept, ["app:2", "app:3"]);
        assert_eq!(report.in_use, ["app:0"]);
        // postgres:16 was never named by a revision: not Trellis's.
    }
}
