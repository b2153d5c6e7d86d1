//! Node subscriptions, fed by the node service's broadcast channel. A client that falls behind
//! gets one `RESYNC` event instead of unbounded buffering (tokio's broadcast drops the oldest).

use async_graphql::{Context, Result, Subscription};
use futures::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use crate::{
    AppState,
    access::Role,
    graphql::guard::RoleGuard,
    graphql::types::NodeEvent,
    nodes::{NodeEvent as ServiceEvent, NodeEventKind},
};

/// Node subscriptions.
#[derive(Default)]
pub struct NodeSubscription;

#[Subscription]
impl NodeSubscription {
    /// Every change to any node: online, heartbeat, lost, offline, updated, removed.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn node_events(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = NodeEvent>> {
        let state = ctx.data::<AppState>()?;
        let rx = state.nodes.subscribe();
        Ok(futures::stream::unfold(rx, |mut rx| async move {
            let event = match rx.recv().await {
                Ok(e) => e,
                Err(RecvError::Lagged(_)) => ServiceEvent {
                    kind: NodeEventKind::Resync,
                    node_id: String::new(),
                    node: None,
                },
                Err(RecvError::Closed) => return None,
            };
            Some((NodeEvent(event), rx))
        })
        .boxed())
    }
}
