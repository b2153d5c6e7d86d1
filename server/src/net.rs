//! What the leader's listeners share: accepting connections until shutdown, and a bound on how
//! many not yet authenticated connections (TLS handshake, MQTT CONNECT) one address may hold, so
//! one host cannot take every slot.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

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
