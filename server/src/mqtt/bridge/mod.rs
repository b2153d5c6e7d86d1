//! The MQTT bridge: subscribes to every node topic, turns messages into database writes and events
//! through the node service, and clears retained topics when a node is removed. A malformed message
//! is logged with its topic and reason and dropped; the bridge keeps running.
//!
//! It re-subscribes after every reconnect (rumqttc does not: bytebeamio/rumqtt#250), and a sweeper
//! marks nodes lost whose heartbeats are overdue, for the cases a last-will cannot cover.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use trellis_proto::{Action, BrokerAddr, Command, CommandResult, encode, topic};

use crate::nodes::Nodes;

mod router;

/// Publishes and subscribes the bridge may have queued for the broker client at once; past this a
/// command or enroll response fails at once as "not sent" instead of waiting.
pub const BRIDGE_REQUESTS: usize = 256;
/// Messages from the broker waiting for the router. When it is full the bridge stops reading from
/// the broker (back-pressure through TCP and MQTT flow control) rather than growing memory.
pub const BRIDGE_INBOX: usize = 1024;
/// Longest wait between reconnect attempts to the broker.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A command not answered this long after it was last sent is sent again (same id: the agent
/// runs it once and answers a repeat with its first result, RELIABILITY.md M3).
const RESEND_AFTER: Duration = Duration::from_secs(2);

/// Callers waiting for the broker to acknowledge their QoS 1 publishes. rumqttc reports neither
/// which request became which packet id nor acks per request, but it sends requests in order: the
/// n-th queued publish is the n-th new `Outgoing::Publish`, whose id its `PubAck` then carries.
/// Every QoS 1 publish of the bridge's client goes through [`Publisher::queue`] (with or without a
/// waiter), so the order holds. When a live connection breaks, rumqttc 0.25 takes every publish
/// not yet acknowledged, and every request still in its channel, into its pending list, and drops
/// that list when the broker answers the reconnect with no session (ours is a clean session,
/// `eventloop.rs`): none of them is ever sent or acknowledged. So the waiters go too (their
/// callers hear "connection lost"), and the order starts afresh; commands are sent again by
/// [`resend`].
#[derive(Default)]
struct AckWaiters {
    queued: std::collections::VecDeque<Option<oneshot::Sender<()>>>,
    sent: HashMap<u16, Option<oneshot::Sender<()>>>,
}

/// The bridge client's QoS 1 publishing, keeping [`AckWaiters`] in step.
#[derive(Clone)]
struct Publisher {
    client: AsyncClient,
    acks: Arc<std::sync::Mutex<AckWaiters>>,
}

impl Publisher {
    /// Queues a QoS 1 publish; `waiter` hears when the broker acknowledges it.
    fn queue(
        &self,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
        waiter: Option<oneshot::Sender<()>>,
    ) -> Result<(), rumqttc::ClientError> {
        // Hold the lock across queueing so the waiter order matches the request order.
        let mut w = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        self.client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)?;
        w.queued.push_back(waiter);
        Ok(())
    }
}

/// Why a command got no result.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The command could not be handed to the broker client.
    #[error("command not sent: {0}")]
    NotSent(String),
    /// The node did not answer in time.
    #[error("the node did not answer within {0:?}")]
    NoAnswer(Duration),
}

/// Handle on the running bridge.
#[derive(Clone)]
pub struct Bridge {
    connected: Arc<AtomicBool>,
    publisher: Publisher,
    pending: PendingCommands,
    first_login: FirstLogin,
}

/// Nodes (with the nonce of their response topic) whose retained enroll response is cleared once
/// they log in with their credentials.
type FirstLogin = Arc<std::sync::Mutex<HashMap<String, String>>>;

/// Commands sent and not yet answered, by command id.
type PendingCommands = Arc<std::sync::Mutex<HashMap<String, Waiting>>>;

/// A command waiting for its answer, kept whole so it can be sent again: QoS 1 covers one
/// connection's redelivery, but a PUBLISH lost with a connection (the leader's or the node's, both
/// clean sessions) and a result published while the leader was away are not delivered again by
/// the broker. So the bridge resends every waiting command after it subscribes again, and any not
/// answered within [`RESEND_AFTER`]; the caller still gets exactly one answer (the first).
struct Waiting {
    answer: oneshot::Sender<CommandResult>,
    topic: String,
    payload: Vec<u8>,
    sent: std::time::Instant,
}

/// Sends again the waiting commands last sent at least `after` ago (all of them for zero).
fn resend(pending: &PendingCommands, publisher: &Publisher, after: Duration) {
    let now = std::time::Instant::now();
    let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
    // A caller that gave up (its request was cancelled) is not asked for again.
    p.retain(|_, w| !w.answer.is_closed());
    for (id, w) in p.iter_mut() {
        if now.duration_since(w.sent) < after {
            continue;
        }
        match publisher.queue(w.topic.clone(), w.payload.clone(), false, None) {
            Ok(()) => {
                tracing::debug!(id, topic = w.topic, "command sent again");
                w.sent = now;
            }
            Err(e) => tracing::debug!(id, error = %e, "could not queue a command again"),
        }
    }
}

/// The domains the bridge's router hands messages to.
pub struct Domains {
    /// Liveness and inventory.
    pub nodes: Nodes,
    /// Job kinds and statuses.
    pub jobs: crate::jobs::Jobs,
    /// Readings, job logs, calibrations.
    pub telemetry: crate::telemetry::Telemetry,
}

impl Bridge {
    /// Connects to `broker` and starts the bridge tasks; they stop when `shutdown` is cancelled.
    pub fn start(
        broker: &BrokerAddr,
        tls: Option<Arc<rustls::ClientConfig>>,
        login: Option<(String, String)>,
        domains: Domains,
        enroll_requests: Option<mpsc::Sender<crate::enroll::JoinRequest>>,
        shutdown: CancellationToken,
    ) -> Bridge {
        let Domains {
            nodes,
            jobs,
            telemetry,
        } = domains;
        let client_id = format!("trellis-server-{}", uuid::Uuid::new_v4().simple());
        let mut opts = MqttOptions::new(client_id, broker.host.clone(), broker.port);
        opts.set_keep_alive(Duration::from_secs(10));
        opts.set_clean_session(true);
        trellis_agent::tls::apply(&mut opts, tls.as_ref());
        if let Some((user, password)) = login {
            opts.set_credentials(user, password);
        }
        opts.set_max_packet_size(
            crate::mqtt::broker::MAX_PAYLOAD,
            crate::mqtt::broker::MAX_PAYLOAD,
        );
        let (client, mut eventloop) = AsyncClient::new(opts, BRIDGE_REQUESTS);
        let connected = Arc::new(AtomicBool::new(false));
        let hearing = Arc::new(crate::nodes::liveness::Hearing::default());
        let loop_hearing = hearing.clone();
        let (tx, rx) = mpsc::channel::<router::Inbound>(BRIDGE_INBOX);

        let sub_client = client.clone();
        let backlog = telemetry.backlog().clone();
        let flag = connected.clone();
        let acks = Arc::new(std::sync::Mutex::new(AckWaiters::default()));
        let loop_acks = acks.clone();
        let pending = PendingCommands::default();
        let publisher = Publisher { client, acks };
        let loop_pending = pending.clone();
        let loop_publisher = publisher.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut backoff =
                trellis_agent::backoff::Backoff::new(Duration::from_millis(100), MAX_BACKOFF);
            loop {
                let event = tokio::select! {
                    () = stop.cancelled() => break,
                    e = eventloop.poll() => e,
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff.reset();
                        let filters = topic::leader_filters().into_iter().map(|(f, q)| {
                            rumqttc::SubscribeFilter::new(f, trellis_agent::link::qos(q))
                        });
                        if let Err(e) = sub_client.try_subscribe_many(filters) {
                            tracing::error!(error = %e, "cannot queue the node subscription");
                        }
                        flag.store(true, Ordering::SeqCst);
                        loop_hearing
                            .link_up
                            .store(chrono::Utc::now().timestamp_millis(), Ordering::SeqCst);
                        tracing::info!("bridge connected to the broker");
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        // Back-pressure: a slow database slows reading from the broker, it does
                        // not grow memory.
                        let arrived = chrono::Utc::now();
                        if tx
                            .send((p.topic, p.payload.to_vec(), arrived))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        let mut w = loop_acks.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(waiter) = w.queued.pop_front() {
                            w.sent.insert(pkid, waiter);
                        }
                    }
                    // Subscribed afresh (a clean session): nothing relayed before is coming,
                    // so answers to the commands still waiting may have been lost: ask again.
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        backlog.resync();
                        resend(&loop_pending, &loop_publisher, Duration::ZERO);
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        let mut w = loop_acks.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(Some(tx)) = w.sent.remove(&ack.pkid) {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        loop_hearing.link_up.store(0, Ordering::SeqCst);
                        if flag.swap(false, Ordering::SeqCst) {
                            // A live connection broke: what was sent or queued is dropped (see
                            // AckWaiters). (A failed connect attempt drops nothing.)
                            let mut w = loop_acks.lock().unwrap_or_else(|p| p.into_inner());
                            w.queued.clear();
                            w.sent.clear();
                            drop(w);
                            tracing::warn!(error = %e, "bridge lost the broker");
                        } else {
                            tracing::debug!(error = %e, "broker not reachable yet");
                        }
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = tokio::time::sleep(backoff.next_wait()) => {}
                        }
                    }
                }
            }
        });

        let first_login = FirstLogin::default();
        {
            let (pending, publisher, flag) =
                (pending.clone(), publisher.clone(), connected.clone());
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(RESEND_AFTER / 2);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    if flag.load(Ordering::SeqCst) {
                        resend(&pending, &publisher, RESEND_AFTER);
                    }
                }
            });
        }
        tokio::spawn(
            router::Router {
                nodes: nodes.clone(),
                jobs,
                telemetry,
                pending: pending.clone(),
                first_login: first_login.clone(),
                publisher: publisher.clone(),
                enroll_requests,
                early_status: HashMap::new(),
                heartbeats: crate::nodes::liveness::HeartbeatThrottle::default(),
                hearing: hearing.clone(),
            }
            .run(rx),
        );
        crate::infra::supervise::supervise("liveness sweep", shutdown.clone(), move || {
            crate::nodes::liveness::sweep(nodes.clone(), hearing.clone(), shutdown.clone())
        });
        Bridge {
            connected,
            publisher,
            pending,
            first_login,
        }
    }

    /// Whether the bridge holds a live broker connection.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Clears a node's retained topics (an empty retained message deletes one: MQTT-3.3.1-10), so a
    /// removed node does not come back as a ghost when the server re-subscribes: every retained
    /// topic the topic table gives a node, `jobs` naming the node's jobs for the per-job one.
    /// Returns once the broker has acknowledged each, so a subscriber arriving afterwards sees
    /// nothing.
    pub async fn clear_retained(&self, node_id: &str, jobs: &[String]) -> anyhow::Result<()> {
        use trellis_proto::{Direction, TOPICS, TopicKind};
        // Every retained topic the node publishes, from the table (a job's once per job), the
        // status last: a subscriber that still sees it sees the rest too.
        let mut topics = Vec::new();
        for t in TOPICS
            .iter()
            .filter(|t| {
                t.retain
                    && matches!(
                        t.direction,
                        Direction::NodeToLeader | Direction::LeaderToNode
                    )
            })
            .filter(|t| t.kind != TopicKind::Status)
        {
            if t.pattern.contains("{job}") {
                topics.extend(jobs.iter().map(|j| t.kind.topic(node_id, Some(j))));
            } else {
                topics.push(t.kind.topic(node_id, None));
            }
        }
        topics.push(topic::status(node_id));
        for t in topics {
            self.publish_acked(t, Vec::new(), true).await?;
        }
        Ok(())
    }

    /// Sends `action` to a node and waits up to `timeout` for its answer.
    pub async fn command(
        &self,
        node_id: &str,
        action: Action,
        timeout: Duration,
    ) -> Result<CommandResult, CommandError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (tx, rx) = oneshot::channel();
        let command = Command {
            id: id.clone(),
            action,
        };
        let sent = encode(&command)
            .map_err(|e| e.to_string())
            .and_then(|payload| {
                let topic = topic::command(node_id);
                // Queued and recorded under the pending lock, which the router takes to hand an
                // answer over: no answer can come before its record, and a command that could
                // not be queued is never recorded, so never resent.
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                let queued = self
                    .publisher
                    .queue(topic.clone(), payload.clone(), false, None)
                    .map_err(|e| e.to_string());
                if queued.is_ok() {
                    pending.insert(
                        id.clone(),
                        Waiting {
                            answer: tx,
                            topic,
                            payload,
                            sent: std::time::Instant::now(),
                        },
                    );
                }
                queued
            });
        let outcome = match sent {
            Err(e) => Err(CommandError::NotSent(e)),
            Ok(()) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(_)) | Err(_) => Err(CommandError::NoAnswer(timeout)),
            },
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        outcome
    }

    /// Publishes a node's enroll response (retained, so an agent that reconnects still gets it;
    /// only that enrolling agent may read the topic), and clears it when the node next says it is
    /// online, which proves it logged in with the credentials.
    pub async fn send_enroll_response(
        &self,
        node_id: &str,
        nonce: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        let response = trellis_proto::EnrollResponse {
            username: node_id.to_owned(),
            password: password.to_owned(),
        };
        self.first_login
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node_id.to_owned(), nonce.to_owned());
        self.publish_acked(
            topic::enroll_response(node_id, nonce),
            encode(&response)?,
            true,
        )
        .await
    }

    /// Tells a node how far its readings and log lines are stored (retained, so an agent that
    /// reconnects learns it at once). Not sent when the queue is full: the agent sends again what
    /// it has not heard of, and the next transaction says it once more.
    pub fn tell_stored(&self, node_id: &str, stored: &trellis_proto::Stored) {
        let sent = encode(stored)
            .map_err(|e| e.to_string())
            .and_then(|payload| {
                self.publisher
                    .queue(
                        trellis_proto::TopicKind::Stored.topic(node_id, None),
                        payload,
                        true,
                        None,
                    )
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = sent {
            tracing::debug!(error = %e, node_id, "could not queue the stored marks");
        }
    }

    /// Clears a node's retained enroll response, if one is still out (the node was removed or
    /// its approval undone before it logged in).
    pub fn clear_enroll_response(&self, node_id: &str) {
        let nonce = self
            .first_login
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(node_id);
        if let Some(nonce) = nonce
            && let Err(e) = self.publisher.queue(
                topic::enroll_response(node_id, &nonce),
                Vec::new(),
                true,
                None,
            )
        {
            tracing::warn!(error = %e, node_id, "could not clear the enroll response");
        }
    }

    /// Publishes at QoS 1 and waits (up to 10 s) for the broker's PUBACK.
    async fn publish_acked(
        &self,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    ) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.publisher
            .queue(topic.clone(), payload, retain, Some(tx))?;
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => anyhow::bail!("broker connection lost before {topic} was acknowledged"),
            Err(_) => anyhow::bail!("broker did not acknowledge {topic} within 10 s"),
        }
    }
}
