//! Node subscriptions, fed by the node service's broadcast channel. A client that falls behind
//! gets one `RESYNC` event instead of unbounded buffering (see `graphql::stream`).

use async_graphql::{Context, Result, Subscription};
use futures::Stream;

use crate::{
    AppState,
    access::Role,
    graphql::{guard::RoleGuard, stream::resyncing, types::NodeEvent},
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
        Ok(resyncing(state.nodes.subscribe(), NodeEvent, || {
            NodeEvent(ServiceEvent {
                kind: NodeEventKind::Resync,
                node_id: String::new(),
                node: None,
            })
        }))
    }
}
