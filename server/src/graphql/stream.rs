//! Broadcast channel → GraphQL subscription stream, written once for every domain. Each domain
//! publishes its events on a bounded `tokio::sync::broadcast` channel; a subscriber that falls
//! behind loses the oldest events (the channel drops them, RELIABILITY.md G9) and gets one resync
//! item in their place, telling the client to reload, never unbounded memory and never a silent gap.

use futures::{Stream, StreamExt, stream::BoxStream};
use tokio::sync::broadcast::{Receiver, error::RecvError};

/// The events of `rx` as a stream: each turned into an item by `item`; a lag becomes `resync()`.
pub fn resyncing<T, U>(
    rx: Receiver<T>,
    item: impl Fn(T) -> U + Send + Sync + 'static,
    resync: impl Fn() -> U + Send + Sync + 'static,
) -> BoxStream<'static, U>
where
    T: Clone + Send + 'static,
    U: Send + 'static,
{
    let items = futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(e) => Some((Ok(e), rx)),
            Err(RecvError::Lagged(missed)) => Some((Err(missed), rx)),
            Err(RecvError::Closed) => None,
        }
    });
    fn boxed<S: Stream + Send + 'static>(s: S) -> BoxStream<'static, S::Item> {
        s.boxed()
    }
    boxed(items.map(move |e| match e {
        Ok(e) => item(e),
        Err(missed) => {
            tracing::debug!(missed, "a subscriber fell behind: sending a resync");
            resync()
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lagging_subscriber_gets_a_resync_then_the_newest_events() {
        let (tx, rx) = tokio::sync::broadcast::channel::<u32>(4);
        let mut s = resyncing(rx, |n| n.to_string(), || "RESYNC".to_owned());
        for n in 0..10 {
            tx.send(n).unwrap();
        }
        drop(tx);
        let got: Vec<String> = (&mut s).collect().await;
        assert_eq!(got, ["RESYNC", "6", "7", "8", "9"]);
    }
}
