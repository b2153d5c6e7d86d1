//! The MQTT gate: the listener agents connect to. rumqttd can authenticate a client but cannot
//! restrict topics per client, so the gate sits in front of it, in the server process. It reads
//! each client's CONNECT, checks the credentials, the client id and the will, then relays the
//! connection to rumqttd on a loopback port that only the gate can log in to. Every PUBLISH and
//! SUBSCRIBE from the client is checked against the client's rights on the way:
//!
//! - the server (`trellis-server`): everything;
//! - a node (username = its node id): publish its own announce, status, heartbeat and result
//!   topics, subscribe to its own command topic, will only on its own status topic, client id
//!   `trellis-agent-<node id>-<key from its password>` (`trellis_proto::node_client_id`, so it
//!   cannot take over another client's session: MQTT-3.1.4-2);
//! - an enrolling agent (username `join.<key>` from the join token, password = the join token,
//!   client id = the nonce of its request): publish enroll requests for one node id, subscribe to
//!   that node's enroll response named by its nonce.
//!
//! Anonymous clients and bad credentials get CONNACK "not authorised". A denied PUBLISH is dropped
//! and, at QoS 1, still acknowledged (as Mosquitto does), so the client is not wedged; a denied
//! SUBSCRIBE gets SUBACK failure (0x80). A node's connections are closed when the node is removed.
//!
//! A node's readings and log lines mostly do not go through rumqttd: the gate decodes them and
//! puts them in the ingester's queue itself, acknowledging at QoS 1 once they are queued
//! ([`crate::telemetry::Backlog::hand`]); only the leader's bridge subscribes to them (nodes may
//! not), so no client sees a difference. A heartbeat it relays holds that back until the router has it: a
//! node's first readings after a connect must not overtake the clock offset it brings. Those acknowledgements can overtake the broker's for the node's
//! other topics (rumqttc matches them by packet id).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::BytesMut;
use rumqttc::mqttbytes::{
    self, QoS,
    v4::{ConnAck, ConnectReturnCode, Login, Packet, PubAck, SubAck, SubscribeReasonCode},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;
use trellis_proto::{Direction, NodeMessage, topic};

use crate::enroll::Enroll;

/// Largest packet relayed, bytes (the broker's payload limit plus headers).
const MAX_PACKET: usize = crate::mqtt::broker::MAX_PAYLOAD + 4096;
/// Largest CONNECT accepted, bytes: ids, credentials and a will are small.
const MAX_CONNECT: usize = 4096;
/// Most agents enrolling at once with one join token.
pub const MAX_CONNECTIONS_PER_JOIN_TOKEN: usize = 32;
/// A client must send CONNECT within this time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// MQTT username of the server's own client.
pub const SERVER_USERNAME: &str = "trellis-server";

/// Who an MQTT client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttPrincipal {
    /// The leader's own bridge.
    Server,
    /// An approved node.
    Node(String),
    /// An agent asking to join: the id of the join token it used, and its nonce (its client id).
    Enroll(String, String),
}

impl MqttPrincipal {
    /// Whether this client may publish on `t`: a node its own node-to-leader topics, an
    /// enrolling agent enroll requests (the topic table says which topics those are).
    pub fn may_publish(&self, t: &str) -> bool {
        let parsed = trellis_proto::parse_topic(t);
        let direction = parsed.map(|p| p.kind.spec().direction);
        match self {
            MqttPrincipal::Server => true,
            MqttPrincipal::Node(n) => {
                direction == Some(Direction::NodeToLeader) && parsed.is_some_and(|p| p.node == n)
            }
            MqttPrincipal::Enroll(..) => direction == Some(Direction::JoinerToLeader),
        }
    }

    /// Whether this client may subscribe to `filter` (exact topics only: no wildcards). A node
    /// may read its own leader-to-node topics; an enrolling agent only the response for the node
    /// id of its own request (`enroll_node`), named by its own nonce.
    pub fn may_subscribe(&self, filter: &str, enroll_node: Option<&str>) -> bool {
        let parsed = trellis_proto::parse_topic(filter);
        let direction = parsed.map(|p| p.kind.spec().direction);
        match self {
            MqttPrincipal::Server => true,
            MqttPrincipal::Node(n) => {
                direction == Some(Direction::LeaderToNode) && parsed.is_some_and(|p| p.node == n)
            }
            MqttPrincipal::Enroll(_, nonce) => {
                direction == Some(Direction::LeaderToJoiner)
                    && parsed.is_some_and(|p| {
                        Some(p.node) == enroll_node && p.nonce == Some(nonce.as_str())
                    })
            }
        }
    }

    /// Whether this client may connect with this client id and will topic.
    pub fn may_connect(&self, client_id: &str, will_topic: Option<&str>, password: &str) -> bool {
        match self {
            MqttPrincipal::Server => client_id.starts_with("trellis-server-"),
            MqttPrincipal::Node(n) => {
                client_id == trellis_proto::node_client_id(n, Some(password))
                    && will_topic.is_none_or(|w| w == topic::status(n))
            }
            MqttPrincipal::Enroll(_, nonce) => client_id == nonce && will_topic.is_none(),
        }
    }
}

/// Credentials the gate checks.
#[derive(Clone)]
pub struct GateAuth {
    /// The server's own password (random per process).
    pub server_password: String,
    /// Node credentials and join tokens.
    pub enroll: Enroll,
}

impl GateAuth {
    /// Who `username`/`password` (connecting as `client_id`) are, if anyone.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
        client_id: &str,
    ) -> Option<MqttPrincipal> {
        if username == SERVER_USERNAME {
            // Compare digests, not the secrets, so the time taken says nothing about the password.
            let same = crate::access::token_hash(password)
                == crate::access::token_hash(&self.server_password);
            return same.then_some(MqttPrincipal::Server);
        }
        if username.starts_with(trellis_proto::JOIN_USERNAME_PREFIX) {
            let token = self.enroll.valid_join_token(password).await.ok()??;
            let ok = username == trellis_proto::join_username(password)
                && trellis_proto::valid_nonce(client_id);
            return ok.then(|| MqttPrincipal::Enroll(token.id, client_id.to_owned()));
        }
        trellis_proto::validate_node_id(username).ok()?;
        match self.enroll.check_node_password(username, password).await {
            Ok(true) => Some(MqttPrincipal::Node(username.to_owned())),
            _ => None,
        }
    }
}

/// Live connections by key (a node id, or `join:<token hash>` for enrolling agents), so removing
/// a node or revoking a join token can cut them off at once.
#[derive(Clone, Default)]
pub struct Connections(Arc<Mutex<Registry>>);

/// The last registration id handed out, and the live connections by key and id.
type Registry = (u64, HashMap<String, HashMap<u64, CancellationToken>>);

/// A registered connection; dropping it unregisters it.
pub struct Registration {
    connections: Connections,
    key: String,
    id: u64,
    /// Cancelled when the connection must close.
    pub token: CancellationToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut guard = self.connections.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(map) = guard.1.get_mut(&self.key) {
            map.remove(&self.id);
            if map.is_empty() {
                guard.1.remove(&self.key);
            }
        }
    }
}

impl Connections {
    /// Registers a connection under `key`.
    pub fn add(&self, key: &str) -> Registration {
        let token = CancellationToken::new();
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        guard.0 += 1;
        let id = guard.0;
        guard
            .1
            .entry(key.to_owned())
            .or_default()
            .insert(id, token.clone());
        Registration {
            connections: self.clone(),
            key: key.to_owned(),
            id,
            token,
        }
    }

    /// How many connections are registered under `key`.
    pub fn count(&self, key: &str) -> usize {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .get(key)
            .map_or(0, HashMap::len)
    }

    /// Closes every connection registered under `key`.
    pub fn disconnect(&self, key: &str) {
        let map = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .remove(key)
            .unwrap_or_default();
        for t in map.into_values() {
            t.cancel();
        }
    }
}

/// The gate's settings.
#[derive(Clone)]
pub struct Gate {
    /// Who may connect.
    pub auth: GateAuth,
    /// Where rumqttd listens (loopback).
    pub broker: SocketAddr,
    /// The login rumqttd accepts from the gate.
    pub broker_login: Login,
    /// Live node connections.
    pub connections: Connections,
    /// Enroll requests go here (with the join token's id), not to the broker.
    pub enroll_requests: mpsc::Sender<crate::enroll::JoinRequest>,
    /// Caps the number of client connections at once.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// Speak MQTT over TLS with this (the leader's certificate); `None` for plain MQTT.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The ingester's backlog: while it is full, readings and log lines wait here (see
    /// [`crate::telemetry::Backlog`]).
    pub backlog: crate::telemetry::Backlog,
}

impl Gate {
    /// Accepts clients on `listener` until `shutdown`.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let per_address = crate::infra::net::PerAddress::default();
        while let Some((stream, peer)) =
            crate::infra::net::next_connection(&listener, &shutdown, "MQTT").await
        {
            // Until it has logged in, a connection counts against its address's share.
            let Some(unauthenticated) = per_address.take(peer.ip()) else {
                tracing::warn!(%peer, "MQTT connection refused: too many connections from this address not logged in yet");
                continue;
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "MQTT connection refused: too many connections");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let gate = self.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let ended = match gate.tls.clone() {
                    None => gate.handle(stream, peer, unauthenticated).await,
                    Some(tls) => {
                        match tokio::time::timeout(CONNECT_TIMEOUT, tls.accept(stream)).await {
                            Ok(Ok(stream)) => gate.handle(stream, peer, unauthenticated).await,
                            Ok(Err(e)) => Err(anyhow::anyhow!("TLS handshake failed: {e}")),
                            Err(_) => Err(anyhow::anyhow!(
                                "no TLS handshake within {CONNECT_TIMEOUT:?}"
                            )),
                        }
                    }
                };
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "MQTT client connection ended");
                }
            });
        }
    }

    async fn handle<S>(
        self,
        mut client: S,
        peer: SocketAddr,
        unauthenticated: crate::infra::net::AddressSlot,
    ) -> anyhow::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut buf = BytesMut::with_capacity(4096);
        let first = tokio::time::timeout(
            CONNECT_TIMEOUT,
            read_frame(&mut client, &mut buf, MAX_CONNECT),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no CONNECT within {CONNECT_TIMEOUT:?}"))??
        .ok_or_else(|| anyhow::anyhow!("closed before CONNECT"))?;
        let Packet::Connect(mut connect) = decode(&first)? else {
            anyhow::bail!("first packet is not CONNECT");
        };
        // Register before checking the credentials, so a removal that happens meanwhile still
        // finds (and closes) this connection.
        let key = connect.login.as_ref().map(|l| {
            if l.username.starts_with(trellis_proto::JOIN_USERNAME_PREFIX) {
                format!("join:{}", crate::access::token_hash(&l.password))
            } else {
                l.username.clone()
            }
        });
        if let Some(k) = key.as_deref().filter(|k| k.starts_with("join:"))
            && self.connections.count(k) >= MAX_CONNECTIONS_PER_JOIN_TOKEN
        {
            tracing::warn!(%peer, "MQTT connection refused: too many agents enrolling with one join token");
            write_packet(
                &mut client,
                &Packet::ConnAck(ConnAck::new(ConnectReturnCode::ServiceUnavailable, false)),
            )
            .await?;
            return Ok(());
        }
        let registration = key.map(|k| self.connections.add(&k));
        let principal = match &connect.login {
            Some(l) => {
                self.auth
                    .authenticate(&l.username, &l.password, &connect.client_id)
                    .await
            }
            None => None,
        };
        let will_topic = connect.last_will.as_ref().map(|w| w.topic.clone());
        let principal = match principal {
            Some(p)
                if p.may_connect(
                    &connect.client_id,
                    will_topic.as_deref(),
                    connect
                        .login
                        .as_ref()
                        .map(|l| l.password.as_str())
                        .unwrap_or_default(),
                ) =>
            {
                p
            }
            other => {
                let code = if other.is_some() {
                    ConnectReturnCode::NotAuthorized
                } else {
                    ConnectReturnCode::BadUserNamePassword
                };
                tracing::warn!(
                    %peer,
                    client_id = connect.client_id,
                    username = connect.login.as_ref().map(|l| l.username.as_str()).unwrap_or("(none)"),
                    "MQTT connection refused: {code:?}"
                );
                write_packet(&mut client, &Packet::ConnAck(ConnAck::new(code, false))).await?;
                return Ok(());
            }
        };
        drop(unauthenticated);
        let cancel = registration
            .as_ref()
            .map(|r| r.token.clone())
            .unwrap_or_default();

        let mut broker = TcpStream::connect(self.broker).await?;
        let _ = broker.set_nodelay(true);
        connect.login = Some(self.broker_login.clone());
        write_packet(&mut broker, &Packet::Connect(connect)).await?;

        let (mut client_rd, client_wr) = tokio::io::split(client);
        let (mut broker_rd, mut broker_wr) = broker.into_split();
        let (to_client, mut outbox) = mpsc::channel::<bytes::Bytes>(64);

        // One writer to the client, so frames from the broker and the gate's own answers
        // never interleave.
        let writer = async move {
            let mut client_wr = client_wr;
            while let Some(frame) = outbox.recv().await {
                client_wr.write_all(&frame).await?;
            }
            anyhow::Ok(())
        };
        let from_broker = {
            let to_client = to_client.clone();
            async move {
                let mut bbuf = BytesMut::with_capacity(4096);
                while let Some(frame) = read_frame(&mut broker_rd, &mut bbuf, MAX_PACKET).await? {
                    if to_client.send(frame.freeze()).await.is_err() {
                        break;
                    }
                }
                anyhow::Ok(())
            }
        };
        let from_client = async move {
            // The node id of this connection's enroll request: only its response may be read.
            let mut enroll_node: Option<String> = None;
            while let Some(frame) = read_frame(&mut client_rd, &mut buf, MAX_PACKET).await? {
                match decode(&frame)? {
                    Packet::Publish(p) if !principal.may_publish(&p.topic) => {
                        tracing::warn!(?principal, topic = p.topic, "MQTT publish denied");
                        if p.qos == QoS::AtLeastOnce {
                            to_client
                                .send(encode(&Packet::PubAck(PubAck::new(p.pkid)))?)
                                .await?;
                        } else if p.qos == QoS::ExactlyOnce {
                            anyhow::bail!("denied QoS 2 publish on {}", p.topic);
                        }
                    }
                    Packet::Publish(p) if matches!(principal, MqttPrincipal::Enroll(..)) => {
                        // The gate takes enroll requests itself: it knows which join token was used.
                        let MqttPrincipal::Enroll(token_id, nonce) = &principal else {
                            continue;
                        };
                        // The same decoding and checks as the bridge's (proto::decode), plus
                        // this connection's own nonce, and one node id per connection.
                        match trellis_proto::decode(&p.topic, &p.payload) {
                            Ok((node, NodeMessage::EnrollRequest(r)))
                                if r.nonce == *nonce
                                    && enroll_node.as_ref().is_none_or(|n| *n == node) =>
                            {
                                enroll_node = Some(node.clone());
                                if self
                                    .enroll_requests
                                    .try_send((
                                        r.announce,
                                        crate::enroll::JoinProof::TokenId(token_id.clone()),
                                        r.nonce,
                                    ))
                                    .is_err()
                                {
                                    tracing::warn!(
                                        node,
                                        "enroll request dropped: too many at once"
                                    );
                                }
                            }
                            Ok((node, _)) => tracing::warn!(
                                node,
                                "enroll request refused: its node id or nonce does not match this connection"
                            ),
                            Err(e) => tracing::warn!(error = %e, "malformed enroll request"),
                        }
                        if p.qos == QoS::AtLeastOnce {
                            to_client
                                .send(encode(&Packet::PubAck(PubAck::new(p.pkid)))?)
                                .await?;
                        }
                    }
                    Packet::Subscribe(s)
                        if !s
                            .filters
                            .iter()
                            .all(|f| principal.may_subscribe(&f.path, enroll_node.as_deref())) =>
                    {
                        tracing::warn!(?principal, filters = ?s.filters.iter().map(|f| &f.path).collect::<Vec<_>>(), "MQTT subscribe denied");
                        let codes = s
                            .filters
                            .iter()
                            .map(|_| SubscribeReasonCode::Failure)
                            .collect();
                        to_client
                            .send(encode(&Packet::SubAck(SubAck::new(s.pkid, codes)))?)
                            .await?;
                    }
                    Packet::Connect(_) => anyhow::bail!("second CONNECT"),
                    Packet::Publish(p)
                        if crate::telemetry::service::is_telemetry_topic(&p.topic) =>
                    {
                        // Back-pressure: while the ingester is full this connection is not read,
                        // its publishes stay unacknowledged, and the node's in-flight window
                        // holds it back.
                        self.backlog.admit().await;
                        match self.hand_to_ingester(&p) {
                            true if p.qos == QoS::AtLeastOnce => {
                                to_client
                                    .send(encode(&Packet::PubAck(PubAck::new(p.pkid)))?)
                                    .await?;
                            }
                            true => {}
                            false => self.relay_counted(&mut broker_wr, &frame).await?,
                        }
                    }
                    Packet::Publish(p)
                        if crate::telemetry::service::counted_in_backlog(&p.topic) =>
                    {
                        // A heartbeat: the readings behind it wait for its clock offset.
                        self.relay_counted(&mut broker_wr, &frame).await?;
                    }
                    _ => broker_wr.write_all(&frame).await?,
                }
            }
            anyhow::Ok(())
        };
        // Whichever side ends first ends the relay; dropping the sockets closes both, so a client
        // that vanished without DISCONNECT makes the broker publish its will.
        tokio::select! {
            r = from_client => r?,
            r = from_broker => r?,
            r = writer => r?,
            () = cancel.cancelled() => tracing::info!(%peer, "node removed: connection closed"),
        }
        Ok(())
    }
}

impl Gate {
    /// Hands a node's telemetry publish straight to the ingester's queue, when it may
    /// ([`crate::telemetry::Backlog::hand`]): not retained, QoS 0 or 1, a payload that decodes.
    /// `false`: relay it to the broker as any other publish (where the bridge reads it, or logs
    /// why it cannot).
    fn hand_to_ingester(&self, p: &mqttbytes::v4::Publish) -> bool {
        use crate::telemetry::service::Batch;
        if p.retain || p.qos == QoS::ExactlyOnce {
            return false;
        }
        let batch = match trellis_proto::decode(&p.topic, &p.payload) {
            Ok((node, NodeMessage::Readings(b))) => Batch::Readings(node, b),
            Ok((node, NodeMessage::Logs(b))) => Batch::Logs(node, b),
            _ => return false,
        };
        self.backlog.hand(batch).is_ok()
    }

    /// Relays a publish the backlog counts as on its way to the router.
    async fn relay_counted(
        &self,
        broker: &mut (impl AsyncWrite + Unpin),
        frame: &[u8],
    ) -> anyhow::Result<()> {
        self.backlog.relaying();
        let written = broker.write_all(frame).await;
        if written.is_err() {
            self.backlog.not_relayed();
        }
        Ok(written?)
    }
}

/// Reads one whole MQTT frame of at most `max` bytes, or `None` at end of stream.
async fn read_frame(
    r: &mut (impl AsyncReadExt + Unpin),
    buf: &mut BytesMut,
    max: usize,
) -> anyhow::Result<Option<BytesMut>> {
    loop {
        match mqttbytes::check(buf.iter(), max) {
            Ok(header) => return Ok(Some(buf.split_to(header.frame_length()))),
            Err(mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(mqttbytes::Error::PayloadSizeLimitExceeded(n)) => {
                // Said where operators look: a client that sends these loses its connection.
                tracing::warn!(
                    bytes = n,
                    limit = max,
                    "an MQTT packet over the size limit: its connection is closed"
                );
                anyhow::bail!("an MQTT packet of {n} bytes is over the limit of {max} bytes")
            }
            Err(e) => anyhow::bail!("malformed MQTT packet: {e:?}"),
        }
        if r.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

fn decode(frame: &BytesMut) -> anyhow::Result<Packet> {
    let mut copy = frame.clone();
    Packet::read(&mut copy, MAX_PACKET).map_err(|e| anyhow::anyhow!("malformed MQTT packet: {e:?}"))
}

fn encode(p: &Packet) -> anyhow::Result<bytes::Bytes> {
    let mut out = BytesMut::new();
    p.write(&mut out, MAX_PACKET)
        .map_err(|e| anyhow::anyhow!("cannot encode {p:?}: {e:?}"))?;
    Ok(out.freeze())
}

async fn write_packet(w: &mut (impl AsyncWrite + Unpin), p: &Packet) -> anyhow::Result<()> {
    w.write_all(&encode(p)?).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_may_only_use_their_own_topics() {
        let a = MqttPrincipal::Node("a".into());
        assert!(
            a.may_publish("trellis/v1/nodes/a/status")
                && a.may_publish("trellis/v1/nodes/a/heartbeat")
        );
        assert!(!a.may_publish("trellis/v1/nodes/b/status"));
        assert!(
            !a.may_publish("trellis/v1/nodes/a/command"),
            "only the server commands nodes"
        );
        // Its own job topics and kinds, and no other node's.
        assert!(
            a.may_publish("trellis/v1/nodes/a/jobs/stirring")
                && a.may_publish("trellis/v1/nodes/a/kinds")
        );
        assert!(
            !a.may_publish("trellis/v1/nodes/b/jobs/stirring")
                && !a.may_publish("trellis/v1/nodes/b/kinds")
                && !a.may_publish("trellis/v1/nodes/a/jobs/+")
                && !a.may_publish("trellis/v1/nodes/a/jobs/x/y")
        );
        assert!(a.may_subscribe("trellis/v1/nodes/a/command", None));
        assert!(
            !a.may_subscribe("trellis/v1/nodes/+/command", None) && !a.may_subscribe("#", None)
        );
        let id = trellis_proto::node_client_id("a", Some("pw"));
        assert!(id.starts_with("trellis-agent-a-") && id.len() == "trellis-agent-a-".len() + 16);
        assert!(a.may_connect(&id, Some("trellis/v1/nodes/a/status"), "pw"));
        assert!(
            !a.may_connect(&trellis_proto::node_client_id("b", Some("pw")), None, "pw")
                && !a.may_connect("trellis-agent-b", None, "pw"),
            "no taking over another node's client id"
        );
        assert!(
            !a.may_connect("trellis-agent-a", None, "pw"),
            "only the id that goes with the password"
        );
        assert!(!a.may_connect(&id, Some("trellis/v1/nodes/b/status"), "pw"));
        let e = MqttPrincipal::Enroll("t".into(), "0123456789abcdef".into());
        assert!(
            e.may_publish("trellis/v1/enroll/c/request")
                && !e.may_publish("trellis/v1/nodes/c/status")
        );
        let node = Some("c");
        assert!(e.may_subscribe("trellis/v1/enroll/c/response/0123456789abcdef", node));
        assert!(
            !e.may_subscribe("trellis/v1/enroll/c/response/0123456789abcdef", None),
            "no request yet"
        );
        assert!(!e.may_subscribe("trellis/v1/enroll/c/response/+", node));
        assert!(!e.may_subscribe("trellis/v1/enroll/d/response/0123456789abcdef", node));
        assert!(!e.may_subscribe("trellis/v1/enroll/c/response/fedcba9876543210", node));
        assert!(
            e.may_connect("0123456789abcdef", None, "t")
                && !e.may_connect("trellis-agent-c", None, "t")
        );
        assert!(
            MqttPrincipal::Server.may_publish("anything")
                && !MqttPrincipal::Server.may_connect("x", None, "p")
        );
    }
}
