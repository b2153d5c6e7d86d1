//! Experiment subscriptions, fed by the experiments service's broadcast channel; a client that
//! falls behind gets one `RESYNC` event.

use async_graphql::{Context, Result, Subscription};
use futures::{Stream, StreamExt};

use crate::{
    AppState,
    access::Role,
    experiments::{ExperimentEvent as ServiceEvent, ExperimentEventKind},
    graphql::{guard::RoleGuard, stream::resyncing, types::ExperimentEvent},
};

/// Experiment subscriptions.
#[derive(Default)]
pub struct ExperimentSubscription;

#[Subscription]
impl ExperimentSubscription {
    /// Every change to any experiment (to one, when `id` is given): created, renamed, described,
    /// annotated, ended, nodes added or removed; or `RESYNC`.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn experiment_events(
        &self,
        ctx: &Context<'_>,
        id: Option<String>,
    ) -> Result<impl Stream<Item = ExperimentEvent>> {
        let state = ctx.data::<AppState>()?;
        let events = resyncing(state.experiments.subscribe(), ExperimentEvent, || {
            ExperimentEvent(ServiceEvent {
                kind: ExperimentEventKind::Resync,
                id: String::new(),
                experiment: None,
            })
        });
        Ok(events.filter(move |e| {
            let keep = e.0.kind == ExperimentEventKind::Resync
                || id.as_deref().is_none_or(|i| i == e.0.id);
            futures::future::ready(keep)
        }))
    }
}
