//! What the leader's listeners share: accepting connections until shutdown, a bound on how many
//! not yet authenticated connections (TLS handshake, MQTT CONNECT) one address may hold, so one
//! host cannot take every slot, and the HTTP(S) server loop.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::ConnectInfo};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A client must finish the TLS handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long open requests may take to finish once the leader is asked to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Most connections one address may have between accept and authentication.
pub(crate) const MAX_UNAUTHENTICATED_PER_ADDRESS: usize = 16;

/// The next connection on `listener`, or `None` once `shutdown` is cancelled. Accept errors
/// (out of file descriptors, say) are logged and retried after a pause.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    shutdown: &CancellationToken,
    what: &str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            r = listener.accept() => match r {
                Ok(x) => return Some(x),
                Err(e) => {
                    tracing::warn!(error = %e, "{what} accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown`, then lets open requests
/// finish for a few seconds. Unlike `axum::serve` it bounds the time a client may take to send a
/// request's headers (`header_timeout`, so connections that trickle headers are closed), and
/// does TLS handshakes in each connection's own task within 5 s, at most 16 at once per address.
/// Handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve_http(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    let per_address = PerAddress::default();
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let what = if tls.is_some() { "HTTPS" } else { "HTTP" };
    while let Some((stream, peer)) = next_connection(&listener, &shutdown, what).await {
        let _ = stream.set_nodelay(true);
        let (app, builder, watcher) = (app.clone(), builder.clone(), graceful.watcher());
        match &tls {
            None => {
                tokio::spawn(serve_connection(builder, stream, app, peer, watcher));
            }
            Some(acceptor) => {
                let Some(handshaking) = per_address.take(peer.ip()) else {
                    tracing::warn!(%peer, "HTTPS connection refused: too many handshakes from this address");
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            drop(handshaking);
                            serve_connection(builder, stream, app, peer, watcher).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "no TLS handshake in time"),
                    }
                });
            }
        }
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "some HTTP connections were still open after {SHUTDOWN_GRACE:?}: closing them"
        );
    }
}

/// Serves one HTTP connection (plain or TLS) until it ends; `peer` reaches the handlers as
/// `ConnectInfo<SocketAddr>`.
async fn serve_connection<I>(
    builder: auto::Builder<TokioExecutor>,
    io: I,
    app: Router,
    peer: SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = app.map_request(move |mut req: axum::http::Request<_>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    let conn =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
}

/// Connections not yet authenticated, per client address.
#[derive(Clone, Default)]
pub(crate) struct PerAddress(
    Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
);

/// One not yet authenticated connection of one address; dropping it frees the place.
pub(crate) struct AddressSlot {
    map: PerAddress,
    ip: std::net::IpAddr,
}

impl PerAddress {
    pub(crate) fn take(&self, ip: std::net::IpAddr) -> Option<AddressSlot> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_default();
        if *n >= MAX_UNAUTHENTICATED_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            map: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.map.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_gets_a_bounded_share_of_handshakes() {
        let per = PerAddress::default();
        let ip: std::net::IpAddr = [10, 0, 0, 9].into();
        let mut held: Vec<_> = (0..MAX_UNAUTHENTICATED_PER_ADDRESS)
            .map(|_| per.take(ip).expect("a place"))
            .collect();
        assert!(
            per.take(ip).is_none(),
            "one address took more than its share"
        );
        assert!(
            per.take([10, 0, 0, 10].into()).is_some(),
            "others still get in"
        );
        held.pop();
        assert!(
            per.take(ip).is_some(),
            "a finished handshake frees its place"
        );
    }
}
