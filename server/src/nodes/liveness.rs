//! Liveness: the sweeper that marks nodes lost whose heartbeats are overdue, for the cases a
//! last-will cannot cover (a broker that lost the will, a node whose network died quietly).
//! It owns only the time the bridge last (re)connected to the broker: while the leader itself
//! hears nothing from the broker, silence proves nothing about a node, so no node is marked lost,
//! and after a reconnect each node gets its full allowance again (no false `lost` after a broker
//! restart). Each pass reads the `node` table, so a restart loses nothing.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::nodes::Nodes;

/// How often overdue heartbeats are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// How long a node with heartbeats every `interval_secs` may be silent before it is lost: two
/// intervals less 1.5 s, so a hung node or a cut network shows `lost` within two intervals of its
/// last heartbeat with the sweep's half second (9 s at the 5 s default), but never less than one
/// interval plus 2 s, so a heartbeat delayed by a busy node or broker (up to 2 s late) is no
/// false `lost` at short intervals.
pub fn allowed_silence(interval_secs: i64) -> chrono::Duration {
    let interval = interval_secs.clamp(1, 86_400) * 1000;
    chrono::Duration::milliseconds((2 * interval - 1500).max(interval + 2000))
}

/// When the bridge last connected to the broker, in ms since the Unix epoch; 0 while it is not
/// connected. Written by the bridge, read by the sweeper.
pub type LinkUp = std::sync::Arc<std::sync::atomic::AtomicI64>;

/// Marks overdue nodes lost, every [`SWEEP_EVERY`], until `shutdown`; not while the bridge is
/// cut off from the broker (`link_up` 0), and counting silence from the bridge's last connect.
pub async fn sweep(nodes: Nodes, link_up: LinkUp, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let up = link_up.load(std::sync::atomic::Ordering::SeqCst);
        let Some(up) = chrono::DateTime::from_timestamp_millis(up).filter(|_| up > 0) else {
            continue;
        };
        match nodes.sweep_overdue(Utc::now(), up).await {
            Ok(lost) => {
                for n in lost {
                    tracing::warn!(node_id = n.id, last_seen = %n.last_seen, "node heartbeats overdue: marked lost");
                }
            }
            Err(e) => tracing::error!(error = e.log_message(), "overdue-heartbeat sweep failed"),
        }
    }
}

/// Heartbeats from one node closer together than this are dropped.
pub const MIN_HEARTBEAT_GAP: chrono::TimeDelta = chrono::TimeDelta::milliseconds(500);
/// Most nodes the throttle remembers; past this it starts afresh (a flood of made-up node ids
/// cannot grow it without bound).
const MAX_THROTTLED_NODES: usize = 100_000;

/// Drops heartbeats that come faster than [`MIN_HEARTBEAT_GAP`] from one node, so a broken or
/// hostile agent cannot make the leader write faster than that.
#[derive(Default)]
pub struct HeartbeatThrottle {
    last: std::collections::HashMap<String, chrono::DateTime<Utc>>,
}

impl HeartbeatThrottle {
    /// Whether a heartbeat from `node_id` arriving at `now` is stored.
    pub fn admit(&mut self, node_id: &str, now: chrono::DateTime<Utc>) -> bool {
        if self
            .last
            .get(node_id)
            .is_some_and(|t| now - *t < MIN_HEARTBEAT_GAP)
        {
            return false;
        }
        if self.last.len() >= MAX_THROTTLED_NODES {
            self.last.clear();
        }
        self.last.insert(node_id.to_owned(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_node_is_lost_within_two_intervals_but_not_for_a_late_heartbeat() {
        let ms = |s: i64| allowed_silence(s).num_milliseconds();
        // With the sweep's 0.5 s, within two intervals at the 5 s default and longer ones...
        assert_eq!(ms(5), 8_500);
        assert_eq!(ms(30), 58_500);
        assert!((2..=600).all(|s| ms(s) + 500 <= 2 * s * 1000 || ms(s) == s * 1000 + 2000));
        // ...and never less than one interval plus 2 s of slack.
        assert_eq!(ms(1), 3_000);
        assert!((1..=600).all(|s| ms(s) >= s * 1000 + 2000));
    }

    #[test]
    fn heartbeats_closer_than_the_gap_are_dropped() {
        let mut t = HeartbeatThrottle::default();
        let t0 = Utc::now();
        assert!(t.admit("a", t0));
        assert!(!t.admit("a", t0 + chrono::TimeDelta::milliseconds(100)));
        assert!(t.admit("b", t0), "another node has its own allowance");
        assert!(t.admit("a", t0 + MIN_HEARTBEAT_GAP));
    }
}
