//! What the benchmarks (`tests/tests/*_bench.rs`, run by `scripts/bench.sh`) share: nodes whose
//! MQTT login a benchmark publishes with, and a process's CPU time and memory.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet};

use crate::{PATIENCE, Server, agent_credentials};

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
