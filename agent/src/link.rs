//! The agent's MQTT session (the link to the leader): connect with a last-will, subscribe and
//! re-assert the node's retained state on every ConnAck, send heartbeats, hand commands to the
//! job runtime, send the jobs' readings and log lines from their outage buffers, and reconnect
//! with capped backoff until shut down.
//!
//! Readings and log lines leave their buffers only when the leader says they are stored (its
//! retained `stored` message for this agent run); when the connection breaks, or the leader stays
//! silent about what it was sent for [`RESEND_AFTER`] (doubling), the buffers rewind and send
//! again, and the leader skips what it has.

use std::{collections::HashSet, time::Duration};

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, Outgoing, Packet, QoS,
};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use trellis_proto::{Announce, NodeState, Status, TopicKind, encode, topic};

use crate::{
    AgentConfig,
    jobs::{commands::Commands, runtime::Runtime, telemetry::Telemetry},
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

/// How often the buffers are sent from while connected: readings wait at most this long, and a
/// batch gathers what arrived meanwhile (up to `MAX_BATCH` items).
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Longest wait for the jobs to halt when the agent stops (an `exec` program's SIGTERM grace is
/// 5 s unless its settings say otherwise). With [`STOP_LIMIT`] and [`DISCONNECT_LIMIT`] a clean
/// stop takes at most 11 s, inside the systemd unit's `TimeoutStopSec` (20 s).
pub(crate) const HALT_LIMIT: Duration = Duration::from_secs(6);
/// How long sent readings may wait for the leader's `stored` word before they are sent again
/// (doubled while it stays silent, up to [`MAX_RESEND_AFTER`]; back to this on any word): a leader
/// that died with them, or a broker that had no subscriber for them, gets them again.
const RESEND_AFTER: Duration = Duration::from_secs(10);
/// The longest wait between two resends to a silent leader.
const MAX_RESEND_AFTER: Duration = Duration::from_secs(300);

/// The session's publisher: every publication goes through it, so a clean stop can wait until the
/// broker has acknowledged everything.
struct Sender {
    client: AsyncClient,
    node_id: String,
    /// Publications queued to rumqttc and not written yet.
    queued: usize,
    /// QoS 1 publications written and not acknowledged yet.
    unacked: HashSet<u16>,
}

impl Sender {
    /// Queues `msg` on the node's `kind` topic with the QoS and retain flag the topic table gives
    /// it. Never waits: the task that calls this also drives the event loop, so an awaited publish
    /// on a full request queue would deadlock. The error says what was not sent and why.
    /// `arg` is the job name for a job's topic (see `TopicKind::topic`).
    fn publish<T: Serialize>(
        &mut self,
        kind: TopicKind,
        arg: Option<&str>,
        msg: &T,
    ) -> Result<(), String> {
        let spec = kind.spec();
        let payload = encode(msg).map_err(|e| format!("{} not sent: {e}", spec.name))?;
        // rumqttc finds an oversized packet only when writing it, and then drops the connection.
        if payload.len() + 1024 > crate::config::MAX_PACKET {
            return Err(format!(
                "{} not sent: {} bytes is over the MQTT packet limit",
                spec.name,
                payload.len()
            ));
        }
        self.client
            .try_publish(
                kind.topic(&self.node_id, arg),
                qos(spec.qos),
                spec.retain,
                payload,
            )
            .map_err(|e| format!("{} not sent: {e}", spec.name))?;
        self.queued += 1;
        Ok(())
    }

    /// rumqttc wrote a queued publication with packet id `pkid` (0 for QoS 0).
    fn written(&mut self, pkid: u16) {
        self.queued = self.queued.saturating_sub(1);
        if pkid != 0 {
            self.unacked.insert(pkid);
        }
    }

    /// The broker acknowledged packet `pkid`.
    fn acked(&mut self, pkid: u16) {
        self.unacked.remove(&pkid);
    }

    /// Whether everything queued was written and acknowledged.
    fn settled(&self) -> bool {
        self.queued == 0 && self.unacked.is_empty()
    }

    /// The connection broke: rumqttc drops what it had queued (a clean session), and the buffers
    /// send again what the leader has not confirmed, after the reconnect.
    fn broken(&mut self, telemetry: &Telemetry) {
        self.queued = 0;
        self.unacked.clear();
        telemetry.readings.rewind();
        telemetry.logs.rewind();
    }

    /// Sends what waits in the buffers, batch by batch, until they are empty or rumqttc's queue
    /// is full (the rest goes at the next flush).
    fn flush(&mut self, telemetry: &Telemetry) {
        while let Some(b) = telemetry.next_readings() {
            if let Err(e) = self.publish(TopicKind::Readings, None, &b) {
                tracing::debug!(error = %e, "readings wait for the next flush");
                telemetry.readings.rewind_to(b.seq);
                break;
            }
        }
        while let Some(b) = telemetry.next_logs() {
            if let Err(e) = self.publish(TopicKind::Logs, None, &b) {
                tracing::debug!(error = %e, "log lines wait for the next flush");
                telemetry.logs.rewind_to(b.seq);
                break;
            }
        }
    }
}

/// Applies the leader's `stored` marks (of this run: another run's, an earlier start of this
/// agent, say nothing); on a gap (something sent never reached the leader) what it has not
/// confirmed goes again. Returns whether the marks were this run's.
fn take_stored(telemetry: &Telemetry, payload: &[u8]) -> bool {
    match serde_json::from_slice::<trellis_proto::Stored>(payload) {
        Ok(s) if s.run == telemetry.run => {
            telemetry.readings.stored_until(s.readings);
            telemetry.logs.stored_until(s.logs);
            if s.gap {
                telemetry.readings.rewind();
                telemetry.logs.rewind();
            }
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(error = %e, "a stored message that does not decode");
            false
        }
    }
}

/// Longest wait, on a clean stop, for the leader's confirmation of what was sent.
const STOP_LIMIT: Duration = Duration::from_secs(4);
/// Longest wait for the DISCONNECT to be written and the broker to close the connection.
const DISCONNECT_LIMIT: Duration = Duration::from_secs(1);

/// First delay before reconnecting after a broker error; doubled per failure up to the configured cap.
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);

/// Why a broker session ended.
#[derive(Debug)]
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
    let (client, eventloop) = AsyncClient::new(opts, 256);
    let mut events = Poller::start(eventloop);
    let mut out = Sender {
        client: client.clone(),
        node_id: node_id.to_owned(),
        queued: 0,
        unacked: HashSet::new(),
    };
    let stored_topic = TopicKind::Stored.topic(node_id, None);
    let mut resend_after = RESEND_AFTER;
    let mut resend_check = tokio::time::interval(Duration::from_secs(1));
    resend_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let telemetry = work.jobs.telemetry().clone();
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut stats = system::StatsSampler::with_disk(&config.docker_root);
    let mut heartbeat = tokio::time::interval(config.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connected = false;
    let mut backoff = crate::backoff::Backoff::new(INITIAL_BACKOFF, config.max_backoff);
    let command_topic = topic::command(node_id);
    let mut refusals = 0u32;

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            status = work.jobs.next_update() => {
                // Retained, so the leader (and a leader started later) sees the latest; while
                // disconnected the next connect publishes every job's status anyway.
                if connected
                    && let Err(e) = out.publish(TopicKind::Job, Some(&status.name), &status)
                {
                    tracing::warn!(error = %e, job = status.name, "could not queue a job status");
                }
            }
            _ = heartbeat.tick() => {
                let beat = stats.sample();
                if connected {
                    // A dropped heartbeat is harmless: the next one follows.
                    if let Err(e) = out.publish(TopicKind::Heartbeat, None, &beat) {
                        tracing::debug!(error = %e, "heartbeat dropped");
                    }
                }
            }
            _ = flush.tick(), if connected => out.flush(&telemetry),
            _ = resend_check.tick(), if connected => {
                let silent = [telemetry.readings.waiting(), telemetry.logs.waiting()]
                    .into_iter()
                    .flatten()
                    .max();
                if let Some(silent) = silent.filter(|s| *s >= resend_after) {
                    tracing::info!(silent_s = silent.as_secs(), "the leader has not confirmed what it was sent: sending it again");
                    telemetry.readings.rewind();
                    telemetry.logs.rewind();
                    resend_after = (resend_after * 2).min(MAX_RESEND_AFTER);
                }
            }
            event = events.next() => match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    tracing::info!(session_present = ack.session_present, "connected to broker");
                    connected = true;
                    backoff.reset();
                    refusals = 0;
                    on_connect(&mut out, announce, &work.jobs);
                    heartbeat.reset_immediately();
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == command_topic => {
                    let before = work.jobs.calibrations();
                    if let Some(result) = work.commands.handle(&p.payload, &mut work.jobs)
                        && let Err(e) = out.publish(TopicKind::Result, None, &result)
                    {
                        tracing::warn!(error = %e, id = result.id, "could not queue a command result");
                    }
                    let after = work.jobs.calibrations();
                    if after != before
                        && let Err(e) = out.publish(TopicKind::Calibrations, None, &after)
                    {
                        tracing::warn!(error = %e, "could not queue the calibrations");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == stored_topic => {
                    if take_stored(&telemetry, &p.payload) {
                        resend_after = RESEND_AFTER;
                    }
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => out.written(pkid),
                Ok(Event::Incoming(Packet::PubAck(ack))) => out.acked(ack.pkid),
                Ok(_) => {}
                Err(e) => {
                    connected = false;
                    out.broken(&telemetry);
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
                    let wait = backoff.next_wait();
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "broker connection failed");
                    tokio::select! {
                        () = shutdown.cancelled() => {
                            // No broker to send to: the jobs still release their outputs.
                            work.jobs.halt_all(HALT_LIMIT).await;
                            return Ok(Ended::Shutdown);
                        }
                        () = tokio::time::sleep(wait) => {}
                    }
                    events.reconnect().await;
                }
            },
        }
    }

    // The jobs hand over their last readings and log lines before the buffers are flushed.
    work.jobs.halt_all(HALT_LIMIT).await;
    if connected {
        let offline = Status {
            state: NodeState::Offline,
        };
        // What waits in the buffers goes first (best effort: the drain below writes it).
        out.flush(&telemetry);
        if let Err(e) = out.publish(TopicKind::Status, None, &offline) {
            tracing::warn!(error = %e, "could not say offline");
        }
        // The broker must have the `offline` status (and what the buffers sent) before the
        // DISCONNECT: a broker still answering a PUBACK to a closed connection may count the
        // stop as unclean and publish the will. And the leader must have said it stored
        // everything sent (its `stored` marks), not only the broker that it took it: a broker
        // with no subscriber for it yet (just restarted, the leader's bridge not back)
        // acknowledges and drops. What the leader has not confirmed goes again every second.
        let confirmed_all = async {
            let mut again = tokio::time::interval(Duration::from_secs(1));
            again.reset();
            let confirmed = |out: &Sender| {
                out.settled() && telemetry.readings.depth().0 == 0 && telemetry.logs.depth().0 == 0
            };
            while !confirmed(&out) {
                tokio::select! {
                    event = events.next() => match event {
                        Ok(Event::Outgoing(Outgoing::Publish(pkid))) => out.written(pkid),
                        Ok(Event::Incoming(Packet::PubAck(ack))) => out.acked(ack.pkid),
                        Ok(Event::Incoming(Packet::Publish(p))) if p.topic == stored_topic => {
                            take_stored(&telemetry, &p.payload);
                        }
                        Ok(_) => {}
                        Err(_) => return false,
                    },
                    _ = again.tick() => {
                        telemetry.readings.rewind();
                        telemetry.logs.rewind();
                        out.flush(&telemetry);
                    }
                }
            }
            true
        };
        if !tokio::time::timeout(STOP_LIMIT, confirmed_all)
            .await
            .unwrap_or(false)
        {
            let (readings, _) = telemetry.readings.depth();
            let (lines, _) = telemetry.logs.depth();
            tracing::warn!(
                readings,
                lines,
                "the leader did not confirm everything in time; disconnecting anyway"
            );
        }
        // The DISCONNECT always goes (else the broker publishes the `lost` will over `offline`).
        let disconnect = async {
            let _ = client.try_disconnect();
            loop {
                match events.next().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            // Written; the broker closes the connection on a DISCONNECT (MQTT-3.14.4): a short
            // wait for that, not more.
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while events.next().await.is_ok() {}
            })
            .await;
        };
        if tokio::time::timeout(DISCONNECT_LIMIT, disconnect)
            .await
            .is_err()
        {
            tracing::warn!("broker did not take the clean disconnect in time");
        }
    }
    tracing::info!(node_id, "agent stopped");
    Ok(Ended::Shutdown)
}

/// rumqttc's event loop in a task of its own, so the session's `select!` never cancels a poll
/// halfway (whether `EventLoop::poll` is cancel-safe is an open question upstream, rumqtt#601: a
/// poll dropped while writing could lose a packet already reported as sent). Events come through
/// a bounded channel in order; after an error the task waits until the session has slept its
/// backoff and asks for a reconnect. The task ends with the session.
struct Poller {
    events: tokio::sync::mpsc::Receiver<Result<Event, ConnectionError>>,
    go: tokio::sync::mpsc::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Poller {
    fn start(mut eventloop: rumqttc::EventLoop) -> Self {
        let (tx, events) = tokio::sync::mpsc::channel(64);
        let (go, mut go_rx) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(async move {
            loop {
                let polled = eventloop.poll().await;
                let failed = polled.is_err();
                if failed {
                    // rumqttc reports a publication before writing it; one whose write failed
                    // would still be reported after the reconnect, out of step with the
                    // session's record of what each publication carried.
                    eventloop.state.events.clear();
                }
                if tx.send(polled).await.is_err() {
                    return;
                }
                if failed && go_rx.recv().await.is_none() {
                    return;
                }
            }
        });
        Poller { events, go, task }
    }

    /// The next event; an error when the task is gone (it never is while the session runs).
    async fn next(&mut self) -> Result<Event, ConnectionError> {
        match self.events.recv().await {
            Some(e) => e,
            None => Err(ConnectionError::RequestsDone),
        }
    }

    /// After an error: connect again.
    async fn reconnect(&self) {
        let _ = self.go.send(()).await;
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What every (re)connect does, whatever the broker remembers: subscribe again to every topic the
/// leader sends this node (a clean session, or a broker restarted without persistence, has
/// forgotten them, and rumqttc does not resubscribe: rumqtt#250), and re-assert the node's retained
/// state (the broker may have lost it, or an operator cleared it).
fn on_connect(out: &mut Sender, announce: &Announce, jobs: &Runtime) {
    let node_id = announce.node_id.as_str();
    for t in trellis_proto::TOPICS
        .iter()
        .filter(|t| t.direction == trellis_proto::Direction::LeaderToNode)
    {
        if let Err(e) = out
            .client
            .try_subscribe(t.kind.topic(node_id, None), qos(t.qos))
        {
            tracing::warn!(error = %e, topic = t.name, "could not queue a subscription");
        }
    }
    let online = Status {
        state: NodeState::Online,
    };
    let mut sent = vec![
        out.publish(TopicKind::Announce, None, announce),
        out.publish(TopicKind::Kinds, None, &jobs.kinds()),
        out.publish(TopicKind::Calibrations, None, &jobs.calibrations()),
    ];
    for status in jobs.statuses() {
        sent.push(out.publish(TopicKind::Job, Some(&status.name), status));
    }
    // The status last: "online" once everything else about the node is there.
    sent.push(out.publish(TopicKind::Status, None, &online));
    for sent in sent {
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not re-assert the node's retained state");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Log output kept for the test to read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A broker that closes each connection at once, except the `good`-th, which gets a CONNACK
    /// and is closed once the agent has said something on it (its subscriptions and announce).
    async fn scripted_broker(listener: tokio::net::TcpListener, good: usize, attempts: usize) {
        for n in 1..=attempts {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            if n == good {
                let mut buf = [0u8; 4096];
                // CONNECT, then CONNACK (session not present, accepted).
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(&[0x20, 0x02, 0x00, 0x00]).await;
                let _ = s.read(&mut buf).await;
            }
            drop(s);
        }
    }

    /// The waits the loop chose (from its log), in order, with a `None` where it connected.
    fn waits_and_connects(log: &str) -> Vec<Option<u64>> {
        log.lines()
            .filter_map(|l| {
                if l.contains("connected to broker") {
                    return Some(None);
                }
                let at = l.find("retry_in_ms=")? + "retry_in_ms=".len();
                let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok().map(Some)
            })
            .collect()
    }

    /// RELIABILITY.md R2 on the real session loop, in paused time (the waits pass at once): a
    /// broker that keeps dropping the agent gets attempts whose waits double from 250 ms to the
    /// cap (2 s here), each drawn between half and all of its step, not all alike; a CONNACK
    /// resets them, so the next failure waits at most the first step again.
    #[tokio::test(start_paused = true)]
    async fn the_session_backs_off_to_its_cap_with_jitter_and_a_connack_resets_it() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        let _log = tracing::subscriber::set_default(subscriber);

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("a port");
        let port = listener.local_addr().expect("its address").port();
        let config = AgentConfig {
            broker: trellis_proto::BrokerAddr {
                host: "127.0.0.1".into(),
                port,
                tls: false,
            },
            node_id: Some("herd-1".into()),
            heartbeat_interval: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(2),
            ..AgentConfig::default()
        };
        let announce = Announce {
            node_id: "herd-1".into(),
            hostname: "test".into(),
            mac: None,
            ip_addresses: Vec::new(),
            arch: "x86_64".into(),
            os: "linux".into(),
            model: None,
            agent_version: "test".into(),
            hardware: "simulator".into(),
            heartbeat_interval_secs: 3600,
            docker_endpoint: None,
        };
        let mut work = Work {
            jobs: Runtime::new(Arc::new(crate::hardware::simulator::Simulator::new()), None),
            commands: Commands::new(),
        };
        let shutdown = CancellationToken::new();
        // Ten failures, the good one, four failures more.
        let (good, attempts) = (11, 15);
        let started = tokio::time::Instant::now();
        tokio::select! {
            r = session(&config, &announce, None, &mut work, &shutdown) => panic!("the session ended: {r:?}"),
            () = scripted_broker(listener, good, attempts) => {}
        }
        let log = String::from_utf8(captured.0.lock().expect("log").clone()).expect("utf-8");
        let seen = waits_and_connects(&log);
        let connected = seen
            .iter()
            .position(Option::is_none)
            .unwrap_or_else(|| panic!("never connected: {log}"));
        let before: Vec<u64> = seen[..connected].iter().flatten().copied().collect();
        assert!(before.len() >= good - 1, "{seen:?}");
        let mut step = 250u64;
        for w in &before {
            assert!(
                (step / 2..=step).contains(w),
                "a wait of {w} ms for a step of {step} ms: {before:?}"
            );
            step = (step * 2).min(2000);
        }
        let capped = &before[4..];
        assert!(
            capped.iter().any(|w| *w != capped[0]),
            "jittered, not all the same: {before:?}"
        );
        let after = seen[connected + 1].expect("a failure after the good connection");
        assert!(after <= 250, "reset by the CONNACK: {after} ms; {seen:?}");
        // Paused time: 10 waits of up to 2 s took no real time, and the virtual clock moved
        // by about their sum.
        let sum: u64 = before.iter().sum();
        assert!(
            started.elapsed() >= Duration::from_millis(sum),
            "{:?} for {sum} ms of waits",
            started.elapsed()
        );
    }
}
