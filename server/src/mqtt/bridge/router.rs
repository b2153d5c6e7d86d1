//! The bridge's router: every message the leader receives from the broker goes from here to the
//! domain that owns it (through the embedded broker the gate hands most readings and log lines to
//! the ingester itself: `telemetry::Backlog::hand`) (liveness and inventory to `nodes`, job kinds and statuses to `jobs`, readings, job logs and
//! calibrations to `telemetry`, command results to
//! their waiting callers, join requests to `enroll`). It owns only small bounded maps (statuses that came before their node's announce,
//! the heartbeat throttle); the database holds everything else, so a restart loses nothing that
//! the agents' retained messages do not bring back.

use std::collections::HashMap;

use chrono::Utc;
use tokio::sync::mpsc;
use trellis_proto::{NodeMessage, NodeState, TopicKind, decode, topic};

use super::{FirstLogin, PendingCommands, Publisher};
use crate::{enroll, nodes::Nodes, nodes::liveness::HeartbeatThrottle};

/// Most statuses kept for nodes whose announce has not arrived yet.
const MAX_EARLY_STATUSES: usize = 10_000;

/// The router's state; [`Router::run`] consumes messages until the bridge's inbox closes.
pub(super) struct Router {
    pub(super) nodes: Nodes,
    pub(super) jobs: crate::jobs::Jobs,
    pub(super) telemetry: crate::telemetry::Telemetry,
    pub(super) pending: PendingCommands,
    pub(super) first_login: FirstLogin,
    pub(super) publisher: Publisher,
    /// Where join requests go (behind a managed Mosquitto); `None` ignores them.
    pub(super) enroll_requests: Option<mpsc::Sender<enroll::JoinRequest>>,
    /// A status can arrive before the announce of a node not seen yet (retained messages come in
    /// no particular order): it waits here until the announce creates the node.
    pub(super) early_status: HashMap<String, NodeState>,
    pub(super) heartbeats: HeartbeatThrottle,
    /// Where the router says which message it works on (for the liveness sweep).
    pub(super) hearing: std::sync::Arc<crate::nodes::liveness::Hearing>,
}

/// A message from the broker: topic, payload, and when the bridge received it (a heartbeat's
/// time, however long it waited behind others).
pub(super) type Inbound = (String, Vec<u8>, chrono::DateTime<Utc>);

impl Router {
    /// Routes every message from `rx`.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Inbound>) {
        use std::sync::atomic::Ordering;
        while let Some((topic, payload, arrived)) = rx.recv().await {
            self.hearing
                .routing
                .store(arrived.timestamp_millis(), Ordering::SeqCst);
            self.route(&topic, &payload, arrived).await;
            // After it is queued (a heartbeat: its clock offset stored): until then the gate
            // relays nodes' next batches rather than handing them to the ingester ahead of it.
            if crate::telemetry::service::counted_in_backlog(&topic) {
                self.telemetry.backlog().arrived();
            }
            // Caught up when nothing else waits.
            if rx.is_empty() {
                self.hearing.routing.store(0, Ordering::SeqCst);
            }
        }
    }

    async fn route(&mut self, topic: &str, payload: &[u8], now: chrono::DateTime<Utc>) {
        let (node_id, msg) = match decode(topic, payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "dropped an MQTT message");
                return;
            }
        };
        if let NodeMessage::Status(st) = &msg
            && st.state == NodeState::Online
        {
            self.clear_enroll_response_after_login(&node_id);
        }
        let result = match msg {
            NodeMessage::Announce(a) => {
                let early = self.early_status.remove(&node_id);
                self.nodes.announce(&a, early, now).await.map(|_| ())
            }
            NodeMessage::Status(s) => match self.nodes.set_state(&node_id, s.state, now).await {
                Ok(None) => {
                    if self.early_status.len() < MAX_EARLY_STATUSES {
                        self.early_status.insert(node_id, s.state);
                    }
                    Ok(())
                }
                other => other.map(|_| ()),
            },
            NodeMessage::Heartbeat(h) => {
                if !self.heartbeats.admit(&node_id, now) {
                    return;
                }
                self.nodes.heartbeat(&node_id, &h, now).await.map(|_| ())
            }
            NodeMessage::Result(r) => {
                let waiter = self
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&r.id);
                match waiter {
                    Some(w) => {
                        let _ = w.answer.send(r);
                    }
                    // Late (after its caller gave up) or a duplicate of an answered command.
                    None => tracing::debug!(node_id, id = r.id, "result for no waiting command"),
                }
                Ok(())
            }
            NodeMessage::Kinds(k) => self.jobs.record_kinds(&node_id, &k).await,
            NodeMessage::Job(s) => self.jobs.record(&node_id, &s, now).await.map(|_| ()),
            NodeMessage::JobCleared(name) => self.jobs.forget(&node_id, &name).await,
            NodeMessage::Readings(b) => {
                self.telemetry
                    .submit(crate::telemetry::service::Batch::Readings(node_id, b))
                    .await;
                Ok(())
            }
            NodeMessage::Logs(b) => {
                self.telemetry
                    .submit(crate::telemetry::service::Batch::Logs(node_id, b))
                    .await;
                Ok(())
            }
            NodeMessage::Calibrations(c) => self.telemetry.record_calibrations(&node_id, &c).await,
            NodeMessage::EnrollRequest(r) => {
                self.enroll_request(&node_id, r);
                Ok(())
            }
            // Only a cleared status or announce says something about the node (it is being
            // removed); an empty message on another topic means nothing.
            NodeMessage::Cleared(TopicKind::Announce | TopicKind::Status) => {
                self.early_status.remove(&node_id);
                Ok(())
            }
            NodeMessage::Cleared(_) => Ok(()),
        };
        if let Err(e) = result {
            tracing::error!(
                error = e.log_message(),
                topic,
                "could not record an MQTT message"
            );
        }
    }

    /// The node logged in with its credentials: its retained enroll response has done its job.
    fn clear_enroll_response_after_login(&self, node_id: &str) {
        let nonce = self
            .first_login
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(node_id);
        if let Some(nonce) = nonce {
            let t = topic::enroll_response(node_id, &nonce);
            if let Err(e) = self.publisher.queue(t, Vec::new(), true, None) {
                tracing::warn!(error = %e, node_id, "could not clear the enroll response");
            }
        }
    }

    /// Behind an external broker, which checked only that the agent holds some join token, the
    /// request carries the token and the leader checks it (see `enroll::flow`). Through the
    /// embedded broker the gate takes requests itself, so none arrive here.
    fn enroll_request(&self, node: &str, r: trellis_proto::EnrollRequest) {
        let Some(tx) = &self.enroll_requests else {
            return;
        };
        match r.join_token {
            Some(token) => {
                let req = (r.announce, enroll::JoinProof::Token(token), r.nonce);
                if tx.try_send(req).is_err() {
                    tracing::warn!(node, "enroll request dropped: too many at once");
                }
            }
            None => tracing::warn!(node, "enroll request without a join token dropped"),
        }
    }
}
