//! Liveness: the sweeper that marks nodes lost whose heartbeats are overdue, for the cases a
//! last-will cannot cover (a broker that lost the will, a node whose network died quietly).
//! It owns no state of its own: each pass reads the `node` table, so a restart loses nothing.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::nodes::Nodes;

/// How often overdue heartbeats are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Slack on top of three heartbeat intervals before a silent node is lost.
const SWEEP_GRACE_SECS: i64 = 2;

/// Marks overdue nodes lost, every [`SWEEP_EVERY`], until `shutdown`.
pub async fn sweep(nodes: Nodes, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match nodes
            .sweep_overdue(Utc::now(), chrono::Duration::seconds(SWEEP_GRACE_SECS))
            .await
        {
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
    fn heartbeats_closer_than_the_gap_are_dropped() {
        let mut t = HeartbeatThrottle::default();
        let t0 = Utc::now();
        assert!(t.admit("a", t0));
        assert!(!t.admit("a", t0 + chrono::TimeDelta::milliseconds(100)));
        assert!(t.admit("b", t0), "another node has its own allowance");
        assert!(t.admit("a", t0 + MIN_HEARTBEAT_GAP));
    }
}
