//! The agent's MQTT session (the link to the leader): connect with a last-will, subscribe and
//! re-assert the node's retained state on every ConnAck, send heartbeats, hand commands to the
//! job runtime, and reconnect with capped backoff until shut down.

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, Outgoing, Packet, QoS,
};
use tokio_util::sync::CancellationToken;
use trellis_proto::{Announce, NodeState, Status, encode, topic};

use crate::{AgentConfig, jobs::commands, system};

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
    opts.set_last_will(LastWill::new(
        status_topic.clone(),
        encode(&Status {
            state: NodeState::Lost,
        }),
        QoS::AtLeastOnce,
        true,
    ));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);

    let mut stats = system::StatsSampler::new();
    let mut heartbeat = tokio::time::interval(config.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connected = false;
    let mut backoff = INITIAL_BACKOFF;
    let command_topic = topic::command(node_id);
    let mut commands = commands::Commands::new();
    let mut refusals = 0u32;

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = heartbeat.tick() => {
                let beat = stats.sample();
                if connected {
                    // try_publish: this task also drives the event loop, so an awaited publish on a
                    // full request queue would deadlock; a dropped heartbeat is harmless.
                    if let Err(e) = client.try_publish(topic::heartbeat(node_id), QoS::AtMostOnce, false, encode(&beat)) {
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
                    // Subscribe on every connect: a clean session (or a broker restarted without
                    // persistence) has forgotten it, and rumqttc does not resubscribe (rumqtt#250).
                    if let Err(e) = client.try_subscribe(command_topic.clone(), QoS::AtLeastOnce) {
                        tracing::warn!(error = %e, "could not queue the command subscription");
                    }
                    // Re-assert retained state after every (re)connect: the broker may have restarted
                    // without persistence, or an operator may have cleared it.
                    let online = encode(&Status { state: NodeState::Online });
                    for (t, payload) in [(topic::announce(node_id), encode(announce)), (status_topic.clone(), online)] {
                        if let Err(e) = client.try_publish(t, QoS::AtLeastOnce, true, payload) {
                            tracing::warn!(error = %e, "could not queue announce");
                        }
                    }
                    heartbeat.reset_immediately();
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == command_topic => {
                    if let Some(result) = commands.handle(&p.payload) {
                        let t = topic::command_result(node_id);
                        if let Err(e) = client.try_publish(t, QoS::AtLeastOnce, false, encode(&result)) {
                            tracing::warn!(error = %e, id = result.id, "could not queue a command result");
                        }
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
        let offline = encode(&Status {
            state: NodeState::Offline,
        });
        let _ = client.try_publish(status_topic, QoS::AtLeastOnce, true, offline);
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
