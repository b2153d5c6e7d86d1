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
