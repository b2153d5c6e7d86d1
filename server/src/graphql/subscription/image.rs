//! Image subscriptions: transfers as they move (from the image service's broadcast channel,
//! `resync` for a client that fell behind).

use async_graphql::{Context, Result, Subscription};
use futures::{Stream, StreamExt};

use crate::{
    AppState,
    access::Role,
    graphql::{
        guard::RoleGuard,
        stream::resyncing,
        types::{ImageTransfer, ImageTransferEvent},
    },
};

/// Image subscriptions.
#[derive(Default)]
pub struct ImageSubscription;

#[Subscription]
impl ImageSubscription {
    /// Every change to an image transfer (of one node when `nodeId` is given; of one transfer
    /// when `id` is): queued, checking, each progress step (at most 4 a second), done or failed.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn image_transfer_events(
        &self,
        ctx: &Context<'_>,
        node_id: Option<String>,
        id: Option<String>,
    ) -> Result<impl Stream<Item = ImageTransferEvent>> {
        let state = ctx.data::<AppState>()?;
        let events = resyncing(
            state.images.subscribe(),
            |e| ImageTransferEvent {
                transfer: Some(ImageTransfer(e.transfer)),
                resync: false,
            },
            || ImageTransferEvent {
                transfer: None,
                resync: true,
            },
        );
        Ok(events.filter(move |e| {
            let keep = match &e.transfer {
                None => true,
                Some(t) => {
                    node_id.as_deref().is_none_or(|n| n == t.0.node_id)
                        && id.as_deref().is_none_or(|i| i == t.0.id)
                }
            };
            futures::future::ready(keep)
        }))
    }
}
