//! A node's whole life as a user sees it through GraphQL, on every database and broker Trellis
//! supports: an agent process comes online with its facts and stats, is lost when killed with
//! SIGKILL or frozen with SIGSTOP, comes back when restarted or resumed, goes offline (not lost)
//! on a clean SIGTERM, and the leader keeps it all across its own crash and restart.

use std::time::Duration;

use trellis_tests::{
    Agent, Broker, Db, Mosquitto, MqttProbe, PATIENCE, Postgres, Server, ServerOpts, wait_for,
};

/// The whole life of one node on a leader started with `opts` (without its local agent).
async fn node_lifecycle(opts: ServerOpts) {
    let mut server = Server::start(ServerOpts {
        local_agent: false,
        ..opts
    })
    .await;
    let mut agent = server.join_agent("worker-1").await;

    let node = server.wait_state("worker-1", "ONLINE", PATIENCE).await;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(node["hostname"], hostname.trim());
    assert_eq!(
        node["name"],
        hostname.trim(),
        "an unnamed node shows its hostname"
    );
    assert_eq!(node["arch"], std::env::consts::ARCH);
    assert_eq!(node["hardware"], "simulator");
    assert_eq!(node["heartbeatIntervalSecs"], 1);
    assert_eq!(node["agentVersion"], env!("CARGO_PKG_VERSION"));
    assert!(
        node["os"].as_str().is_some_and(|os| !os.is_empty()),
        "{node}"
    );

    // Heartbeats bring stats.
    let node = wait_for("heartbeat stats", PATIENCE, || async {
        server
            .node("worker-1")
            .await
            .filter(|n| n["memTotalBytes"].as_i64().is_some_and(|m| m > 0))
    })
    .await;
    let (used, total) = (
        node["memUsedBytes"].as_i64().expect("used"),
        node["memTotalBytes"].as_i64().expect("total"),
    );
    assert!(used > 0 && used <= total, "{node}");
    assert!(node["uptimeSecs"].as_i64().is_some_and(|u| u > 0), "{node}");
    let cpu = node["cpuPercent"].as_f64().expect("cpu");
    assert!((0.0..=100.0).contains(&cpu), "{node}");

    // SIGKILL: the broker publishes the last-will and the node is lost.
    agent.proc.kill9();
    server
        .wait_state("worker-1", "LOST", Duration::from_secs(10))
        .await;

    // Restarted, it announces again and is online.
    agent.respawn();
    server.wait_state("worker-1", "ONLINE", PATIENCE).await;

    // SIGSTOP: no FIN, no will at once; the keepalive (1.5 × 2 s) or the overdue sweep finds it.
    agent.proc.signal("-STOP");
    server
        .wait_state("worker-1", "LOST", Duration::from_secs(15))
        .await;
    agent.proc.signal("-CONT");
    server.wait_state("worker-1", "ONLINE", PATIENCE).await;
    // The sweep (3 s at 1 s heartbeats) can find the hung agent before the broker's keepalive
    // (1.5 x 2 s) does; then the broker may still drop the resumed connection and publish its
    // will. That settles within a keepalive: the stop below must meet a settled session.
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.wait_state("worker-1", "ONLINE", PATIENCE).await;

    // SIGTERM: a clean shutdown says offline itself, and no will follows.
    agent.proc.signal("-TERM");
    assert_eq!(
        agent.proc.wait_exit(Duration::from_secs(10)),
        Some(0),
        "agent log:\n{}",
        agent.proc.log_text()
    );
    let asked = std::time::Instant::now();
    let mut state = serde_json::Value::Null;
    while asked.elapsed() < Duration::from_secs(10) {
        state = server.node("worker-1").await.unwrap_or_default()["state"].clone();
        if state == "OFFLINE" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if state != "OFFLINE" {
        panic!(
            "worker-1 is {state} 10 s after a clean stop\nagent log:\n{}\nleader log:\n{}",
            agent.proc.log_text(),
            server.proc.log_text()
        );
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        server.node("worker-1").await.expect("node")["state"],
        "OFFLINE",
        "a clean stop must not turn into lost"
    );

    // The leader crashes and restarts: the node is still known (migrations re-run cleanly), and
    // a restarted agent shows online again.
    server.restart().await;
    assert_eq!(
        server
            .node("worker-1")
            .await
            .expect("node kept across restart")["state"],
        "OFFLINE"
    );
    agent.respawn();
    server.wait_state("worker-1", "ONLINE", PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_on_sqlite_with_the_embedded_broker() {
    node_lifecycle(ServerOpts::default()).await;
}

/// On Mosquitto as Trellis configures it: no anonymous clients, accounts written by the leader,
/// the node enrolled with a join token.
#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_on_postgres_with_mosquitto() {
    let pg = Postgres::create();
    let dir = tempfile::tempdir().expect("tempdir");
    let mosquitto = Mosquitto::start_managed(&dir.path().join("accounts")).await;
    node_lifecycle(ServerOpts {
        db: Db::Postgres(pg.url.clone()),
        ..mosquitto.server_opts()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_on_sqlite_with_mosquitto() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mosquitto = Mosquitto::start_managed(&dir.path().join("accounts")).await;
    node_lifecycle(mosquitto.server_opts()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_on_postgres_with_the_embedded_broker() {
    let pg = Postgres::create();
    node_lifecycle(ServerOpts {
        db: Db::Postgres(pg.url.clone()),
        ..ServerOpts::default()
    })
    .await;
}

/// A leader started after its agents still learns they are online: their status is retained.
/// (A property of the broker, so on an anonymous Mosquitto: a managed one has no accounts before
/// its leader starts.)
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_started_late_sees_retained_agents() {
    let mosquitto = Mosquitto::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let _agent = Agent::start(
        &format!("mqtt://127.0.0.1:{}", mosquitto.port),
        "early-bird",
        dir.path(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let server = Server::start(ServerOpts {
        broker: Broker::External(mosquitto.port),
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let node = server.wait_state("early-bird", "ONLINE", PATIENCE).await;
    assert_eq!(node["id"], "early-bird");
}

/// Mosquitto crashes and comes back empty (no persistence): the server and the agent reconnect,
/// re-subscribe (rumqttc does not do it for them) and re-announce, so the node is online again and
/// commands reach it again.
#[tokio::test(flavor = "multi_thread")]
async fn everything_resubscribes_after_the_broker_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut mosquitto = Mosquitto::start_managed(&dir.path().join("accounts")).await;
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..mosquitto.server_opts()
    })
    .await;
    let _agent = server.join_agent("resub").await;
    server.wait_state("resub", "ONLINE", PATIENCE).await;
    assert_eq!(server.ping("resub").await, Ok("pong".to_owned()));
    // A running job, whose retained status must come back too.
    let r = server
        .graphql(
            "mutation { startJob(nodeId: \"resub\", kind: \"pwm\", name: \"fan\", settings: {pin: 18, duty: 40}) { state } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r["data"]["startJob"]["state"], "READY", "{r}");

    // The restarted broker keeps nothing (persistence false): every retained message on it
    // afterwards was published again after the restart. A reader account looks at them.
    mosquitto.add_reader_account("spy", "spy-password");
    mosquitto.restart().await;
    // Both sides must be back: the agent's announce reaches the server's new subscription, and
    // the server's command reaches the agent's new subscription.
    wait_for(
        "a ping to succeed after the broker restart",
        PATIENCE,
        || async { server.ping("resub").await.ok() },
    )
    .await;
    // A new subscriber now gets the retained state, which only the agent can have sent again.
    let mut spy = MqttProbe::connect_as(
        mosquitto.port,
        "spy",
        Some(("spy", "spy-password")),
        Some("trellis/v1/nodes/resub/#"),
    )
    .await
    .expect("the reader connects");
    let retained: Vec<(String, String)> = spy
        .collect(Duration::from_secs(2))
        .await
        .into_iter()
        .filter(|p| p.retain)
        .map(|p| (p.topic, String::from_utf8_lossy(&p.payload).into_owned()))
        .collect();
    assert!(
        retained
            .iter()
            .any(|(t, p)| t == "trellis/v1/nodes/resub/status" && p.contains("online")),
        "the agent did not re-assert its status after the restart: {retained:?}"
    );
    assert!(
        retained
            .iter()
            .any(|(t, p)| t == "trellis/v1/nodes/resub/announce"
                && p.contains("\"node_id\":\"resub\"")),
        "the agent did not re-announce after the restart: {retained:?}"
    );
    // The rest of the node's retained state (M5): the job with its state and settings, the job
    // kinds it offers, its pump calibrations.
    let has = |topic: &str, needle: &str| {
        retained
            .iter()
            .any(|(t, p)| t == &format!("trellis/v1/nodes/resub/{topic}") && p.contains(needle))
    };
    assert!(
        has("jobs/fan", "\"state\":\"ready\"") && has("jobs/fan", "\"duty\":40"),
        "the job's retained status is back: {retained:?}"
    );
    assert!(has("kinds", "\"pwm\""), "{retained:?}");
    assert!(has("calibrations", "media"), "{retained:?}");
    let node = server.wait_state("resub", "ONLINE", PATIENCE).await;
    assert_eq!(node["hostname"].as_str().map(str::is_empty), Some(false));
    // And the leader sees the job as it was.
    let jobs = server
        .graphql(
            "{ jobs(nodeId: \"resub\") { name state } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(
        jobs["data"]["jobs"],
        serde_json::json!([{"name": "fan", "state": "READY"}]),
        "{jobs}"
    );
}
