//! What the benchmarks (`tests/tests/*_bench.rs`, run by `scripts/bench.sh`) and the tests that
//! flood the leader share: nodes whose MQTT login they publish with, batches of readings made
//! ahead and a publisher that sends them as fast as the broker takes them, and a process's CPU
//! time and memory.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use trellis_proto::{ReadingBatch, Series, TopicKind};

use crate::{PATIENCE, Server, agent_credentials};

/// A benchmark's knob: environment variable `name` parsed, or `default` when it is not set;
/// a value that does not parse stops the benchmark naming it.
pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

/// A node a benchmark speaks as: its id and MQTT login.
pub struct NodeLogin {
    pub id: String,
    pub user: String,
    pub password: String,
}

/// Nodes `<prefix>0..n` joined as a user's would, their agents then stopped: a benchmark logs in
/// with the nodes' own credentials in their place, so the gate treats it as the nodes.
pub async fn node_logins(server: &Server, prefix: &str, n: usize) -> Vec<NodeLogin> {
    let mut logins = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}{i}");
        let mut agent = server.join_agent(&id).await;
        server.wait_state(&id, "ONLINE", PATIENCE).await;
        agent.proc.kill9();
        let (user, password) = agent_credentials(&agent);
        logins.push(NodeLogin { id, user, password });
    }
    logins
}

/// An MQTT client connected to the leader's broker as `login`'s node, with `inflight` QoS 1
/// publishes unacknowledged at most.
pub async fn connect_as(port: u16, login: &NodeLogin, inflight: u16) -> (AsyncClient, EventLoop) {
    let client_id = trellis_proto::node_client_id(&login.id, Some(&login.password));
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_credentials(login.user.clone(), login.password.clone());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(inflight);
    let max = trellis_server::mqtt::broker::MAX_PAYLOAD;
    opts.set_max_packet_size(max, max);
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let deadline = Instant::now() + PATIENCE;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => break,
            Ok(_) => {}
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "{} cannot connect: {e}",
                    login.id
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    (client, eventloop)
}

/// User + system CPU seconds of a process (`/proc/<pid>/stat`, clock ticks of 1/100 s).
pub fn cpu_secs(stat: &str) -> f64 {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // Fields after the command name, which ends with the last ')'.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

/// A `kB` figure from `/proc/<pid>/status`.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Readings in one batch: the agent's most (`trellis_proto::MAX_BATCH`).
pub const BATCH: usize = trellis_proto::MAX_BATCH;
/// Every redelivered batch is sent again this many batches later (out of order, as a QoS 1
/// redelivery after a reconnect comes).
pub const REDELIVERY_LAG: usize = 5;
/// With `redeliver`, one batch in this many is sent twice.
pub const REDELIVER_EVERY: usize = 7;

/// One node's batches of a fresh run: readings `first..first + count` (value = number), round
/// robin over `series` series, a millisecond apart; with `redeliver`, one in
/// [`REDELIVER_EVERY`] sent again [`REDELIVERY_LAG`] batches later.
pub fn batches(run: &str, first: u64, count: u64, series: usize, redeliver: bool) -> Vec<Bytes> {
    let series: Vec<Series> = (0..series)
        .map(|i| Series {
            job: "bench".into(),
            metric: format!("m{i}"),
            unit: Some("u".into()),
        })
        .collect();
    let t0 = 1_800_000_000_000i64;
    let mut out: Vec<Bytes> = Vec::new();
    let mut again: Vec<(usize, Bytes)> = Vec::new();
    let mut seq = 0u64;
    while seq < count {
        let n = (count - seq).min(BATCH as u64);
        let b = ReadingBatch {
            run: run.to_owned(),
            seq,
            held: seq,
            dropped: 0,
            series: series.clone(),
            points: (seq..seq + n)
                .map(|s| {
                    (
                        (s % series.len() as u64) as u32,
                        t0 + s as i64,
                        (first + s) as f64,
                    )
                })
                .collect(),
        };
        let payload = Bytes::from(trellis_proto::encode(&b).expect("encode"));
        let index = out.len();
        if redeliver && index.is_multiple_of(REDELIVER_EVERY) {
            again.push((index + REDELIVERY_LAG, payload.clone()));
        }
        out.push(payload);
        while let Some(pos) = again.iter().position(|(at, _)| *at == out.len()) {
            let (_, p) = again.swap_remove(pos);
            out.push(p);
        }
        seq += n;
    }
    out.extend(again.into_iter().map(|(_, p)| p));
    out
}

/// One node's MQTT client, connected, with its batches ready.
pub struct Publisher {
    client: AsyncClient,
    eventloop: rumqttc::EventLoop,
    topic: String,
    batches: Vec<Bytes>,
}

impl Publisher {
    pub async fn connect(port: u16, login: &NodeLogin, inflight: u16, batches: Vec<Bytes>) -> Self {
        let (client, eventloop) = connect_as(port, login, inflight).await;
        Publisher {
            client,
            eventloop,
            topic: TopicKind::Readings.topic(&login.id, None),
            batches,
        }
    }

    /// Publishes every batch (rumqttc holds back once `inflight` are unacknowledged) and returns
    /// when the last is acknowledged.
    pub async fn run(mut self) -> Instant {
        let total = self.batches.len() as u64;
        let client = self.client.clone();
        let topic = self.topic.clone();
        let batches = std::mem::take(&mut self.batches);
        let sender = tokio::spawn(async move {
            for b in batches {
                client
                    .publish_bytes(topic.clone(), QoS::AtLeastOnce, false, b)
                    .await
                    .expect("queue a publish");
            }
        });
        let acked = Arc::new(AtomicU64::new(0));
        loop {
            match self.eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    if acked.fetch_add(1, Ordering::Relaxed) + 1 == total {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("# publisher connection: {e}; rumqttc reconnects and resends");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let done = Instant::now();
        sender.await.expect("sender");
        let _ = self.client.try_disconnect();
        // Let the DISCONNECT go out, so the broker publishes no will.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while self.eventloop.poll().await.is_ok() {}
        })
        .await;
        done
    }
}
