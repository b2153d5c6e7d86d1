//! Liveness: the sweeper that marks nodes lost whose heartbeats are overdue, for the cases a
//! last-will cannot cover (a broker that lost the will, a node whose network died quietly).
//! It reads what the bridge tells it about the leader's own hearing ([`Hearing`]): while the
//! leader hears nothing from the broker, silence proves nothing about a node, so no node is marked
//! lost, and after a reconnect each node gets its full allowance again (no false `lost` after a
//! broker restart); and while the router is behind (a burst of telemetry, a slow database), time
//! is counted up to the arrival of the message it is working on, since later heartbeats may be
//! waiting behind it. Each pass reads the `node` table, so a restart loses nothing.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
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

/// What the leader has heard, as the bridge and its router tell it (ms since the Unix epoch).
#[derive(Debug, Default)]
pub struct Hearing {
    /// When the bridge last connected to the broker; 0 while it is not connected.
    pub link_up: AtomicI64,
    /// When the message the router is working on arrived; 0 while the router waits for one.
    pub routing: AtomicI64,
}

impl Hearing {
    /// Up to when the leader has heard everything there was (`None`: it hears nothing now), and
    /// since when it has been listening.
    pub fn heard(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let up = self.link_up.load(Ordering::SeqCst);
        let up = DateTime::from_timestamp_millis(up).filter(|_| up > 0)?;
        let routing = self.routing.load(Ordering::SeqCst);
        let until = DateTime::from_timestamp_millis(routing)
            .filter(|_| routing > 0)
            .map_or(now, |t| t.min(now));
        Some((until, up))
    }
}

/// Marks overdue nodes lost, every [`SWEEP_EVERY`], until `shutdown`, by what the leader has
/// heard: not while the bridge is cut off from the broker, with silence counted from its last
/// connect and up to the arrival of the message the router is working on.
pub async fn sweep(nodes: Nodes, hearing: Arc<Hearing>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        crate::infra::supervise::panic_point("liveness");
        let Some((until, up)) = hearing.heard(Utc::now()) else {
            continue;
        };
        match nodes.sweep_overdue(until, up).await {
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
    fn the_leader_has_heard_up_to_the_message_its_router_works_on() {
        let h = Hearing::default();
        let now = Utc::now();
        assert_eq!(h.heard(now), None, "not connected: nothing heard");
        let up = now - chrono::TimeDelta::seconds(60);
        h.link_up.store(up.timestamp_millis(), Ordering::SeqCst);
        let ms = |t: DateTime<Utc>| t.timestamp_millis();
        assert_eq!(
            h.heard(now).map(|(u, s)| (ms(u), ms(s))),
            Some((ms(now), ms(up)))
        );
        let behind = now - chrono::TimeDelta::seconds(7);
        h.routing.store(behind.timestamp_millis(), Ordering::SeqCst);
        assert_eq!(h.heard(now).map(|(u, _)| ms(u)), Some(ms(behind)));
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
