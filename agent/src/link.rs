//! The agent's MQTT session (the link to the leader): connect with a last-will, subscribe and
//! re-assert the node's retained state on every ConnAck, send heartbeats, hand commands to the
//! job runtime, and reconnect with capped backoff until shut down.

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, Outgoing, Packet, QoS,
};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use trellis_proto::{Announce, NodeState, Status, TopicKind, encode, topic};

use crate::{
    AgentConfig,
    jobs::{commands::Commands, runtime::Runtime},
    system,
};

/// What outlives a broker session: the job runtime (jobs keep running through an outage) and the
/// memory of recent commands (a command redelivered after a reconnect is not run twice).
pub struct Work {
    /// The jobs.
    pub jobs: Runtime,
    /// Recent command results.
    pub commands: Commands,
}

/// The rumqttc QoS for a QoS of the topic table.
pub fn qos(q: trellis_proto::Qos) -> QoS {
    match q {
        trellis_proto::Qos::AtMostOnce => QoS::AtMostOnce,
        trellis_proto::Qos::AtLeastOnce => QoS::AtLeastOnce,
    }
}

/// Queues `msg` on the node's `kind` topic with the QoS and retain flag the topic table gives it.
/// Never waits: the task that calls this also drives the event loop, so an awaited publish on a
/// full request queue would deadlock. The error says what was not sent and why.
/// `arg` is the job name for a job's topic (see `TopicKind::topic`).
pub fn publish<T: Serialize>(
    client: &AsyncClient,
    kind: TopicKind,
    node_id: &str,
    arg: Option<&str>,
    msg: &T,
) -> Result<(), String> {
    let spec = kind.spec();
    let payload = encode(msg).map_err(|e| format!("{} not sent: {e}", spec.name))?;
    client
        .try_publish(
            kind.topic(node_id, arg),
            qos(spec.qos),
            spec.retain,
            payload,
        )
        .map_err(|e| format!("{} not sent: {e}", spec.name))
}

/// First delay before reconnecting after a broker error; doubled per failure up to the configured cap.
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);

/// Why a broker session ended.
pub(crate) enum Ended {
    /// Shut down on request.
    Shutdown,
    /// The broker refused the credentials.
    Refused,
}

/// One broker session with fixed credentials: reconnects by itself until shut down, or until the
/// broker refuses stored credentials.
pub(crate) async fn session(
    config: &AgentConfig,
    announce: &Announce,
    login: Option<(String, String)>,
    work: &mut Work,
    shutdown: &CancellationToken,
) -> anyhow::Result<Ended> {
    let node_id = announce.node_id.as_str();
    let status_topic = topic::status(node_id);
    let client_id = trellis_proto::node_client_id(node_id, login.as_ref().map(|(_, p)| p.as_str()));
    let mut opts = config.mqtt_options(client_id)?;
    opts.set_keep_alive(config.keepalive);
    opts.set_clean_session(true);
    if let Some((user, password)) = &login {
        opts.set_credentials(user.clone(), password.clone());
    }
    // MQTT-3.1.2-8: the broker publishes the will when the connection ends without a DISCONNECT.
    let status_spec = TopicKind::Status.spec();
    opts.set_last_will(LastWill::new(
        status_topic.clone(),
        encode(&Status {
            state: NodeState::Lost,
        })?,
        qos(status_spec.qos),
        status_spec.retain,
    ));
    // Room for every job's status on (re)connect (MAX_JOBS running, MAX_FINISHED ended).
    let (client, mut eventloop) = AsyncClient::new(opts, 256);

    let mut stats = system::StatsSampler::new();
    let mut heartbeat = tokio::time::interval(config.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connected = false;
    let mut backoff = INITIAL_BACKOFF;
    let command_topic = topic::command(node_id);
    let mut refusals = 0u32;

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            status = work.jobs.next_update() => {
                // Retained, so the leader (and a leader started later) sees the latest; while
                // disconnected the next connect publishes every job's status anyway.
                if connected
                    && let Err(e) = publish(&client, TopicKind::Job, node_id, Some(&status.name), &status)
                {
                    tracing::warn!(error = %e, job = status.name, "could not queue a job status");
                }
            }
            _ = heartbeat.tick() => {
                let beat = stats.sample();
                if connected {
                    // A dropped heartbeat is harmless: the next one follows.
                    if let Err(e) = publish(&client, TopicKind::Heartbeat, node_id, None, &beat) {
                        tracing::debug!(error = %e, "heartbeat dropped");
                    }
                }
            }
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    tracing::info!(session_present = ack.session_present, "connected to broker");
                    connected = true;
                    backoff = INITIAL_BACKOFF;
                    refusals = 0;
                    on_connect(&client, announce, &work.jobs);
                    heartbeat.reset_immediately();
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == command_topic => {
                    if let Some(result) = work.commands.handle(&p.payload, &mut work.jobs)
                        && let Err(e) = publish(&client, TopicKind::Result, node_id, None, &result)
                    {
                        tracing::warn!(error = %e, id = result.id, "could not queue a command result");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    connected = false;
                    if let ConnectionError::ConnectionRefused(
                        code @ (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized),
                    ) = &e
                    {
                        refusals += 1;
                        tracing::error!(?code, "the broker refused this agent's credentials");
                        // Twice in a row, so one refusal during a leader restart is not fatal.
                        if refusals >= 2 && config.join_token.is_some() {
                            return Ok(Ended::Refused);
                        }
                    }
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "broker connection failed");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(Ended::Shutdown),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(config.max_backoff);
                }
            },
        }
    }

    if connected {
        let offline = Status {
            state: NodeState::Offline,
        };
        if let Err(e) = publish(&client, TopicKind::Status, node_id, None, &offline) {
            tracing::warn!(error = %e, "could not say offline");
        }
        let _ = client.try_disconnect();
        // Drive the event loop until the DISCONNECT is written, so the broker drops the will.
        let drain = async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(3), drain)
            .await
            .is_err()
        {
            tracing::warn!("broker did not take the clean disconnect in time");
        }
    }
    tracing::info!(node_id, "agent stopped");
    Ok(Ended::Shutdown)
}

/// What every (re)connect does, whatever the broker remembers: subscribe again to every topic the
/// leader sends this node (a clean session, or a broker restarted without persistence, has
/// forgotten them, and rumqttc does not resubscribe: rumqtt#250), and re-assert the node's retained
/// state (the broker may have lost it, or an operator cleared it).
fn on_connect(client: &AsyncClient, announce: &Announce, jobs: &Runtime) {
    let node_id = announce.node_id.as_str();
    for t in trellis_proto::TOPICS
        .iter()
        .filter(|t| t.direction == trellis_proto::Direction::LeaderToNode)
    {
        if let Err(e) = client.try_subscribe(t.kind.topic(node_id, None), qos(t.qos)) {
            tracing::warn!(error = %e, topic = t.name, "could not queue a subscription");
        }
    }
    let online = Status {
        state: NodeState::Online,
    };
    let mut sent = vec![
        publish(client, TopicKind::Announce, node_id, None, announce),
        publish(client, TopicKind::Kinds, node_id, None, &jobs.kinds()),
    ];
    for status in jobs.statuses() {
        sent.push(publish(
            client,
            TopicKind::Job,
            node_id,
            Some(&status.name),
            status,
        ));
    }
    // The status last: "online" once everything else about the node is there.
    sent.push(publish(client, TopicKind::Status, node_id, None, &online));
    for sent in sent {
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not re-assert the node's retained state");
        }
    }
}
