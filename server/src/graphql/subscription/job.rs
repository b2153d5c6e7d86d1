//! Job subscriptions, fed by the jobs service's broadcast channel; a client that falls behind gets
//! one `RESYNC` event (see `graphql::stream`).

use async_graphql::{Context, Result, Subscription};
use futures::{Stream, StreamExt};

use crate::{
    AppState,
    access::Role,
    graphql::{guard::RoleGuard, stream::resyncing, types::JobEvent},
    jobs::{JobEvent as ServiceEvent, JobEventKind},
};

/// Job subscriptions.
#[derive(Default)]
pub struct JobSubscription;

#[Subscription]
impl JobSubscription {
    /// Every change to any job (of one node, when `nodeId` is given): state or settings changed,
    /// job removed, or `RESYNC`.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn job_events(
        &self,
        ctx: &Context<'_>,
        node_id: Option<String>,
    ) -> Result<impl Stream<Item = JobEvent>> {
        let state = ctx.data::<AppState>()?;
        let events = resyncing(state.jobs.subscribe(), JobEvent, || {
            JobEvent(ServiceEvent {
                kind: JobEventKind::Resync,
                node_id: String::new(),
                name: String::new(),
                job: None,
            })
        });
        Ok(events.filter(move |e| {
            let keep = e.0.kind == JobEventKind::Resync
                || node_id.as_deref().is_none_or(|n| n == e.0.node_id);
            futures::future::ready(keep)
        }))
    }
}
