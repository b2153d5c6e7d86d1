//! Issue 13: faults injected, what a user sees. A database outage (S3): Postgres cut off behind
//! a chaos proxy makes `/readyz` 503 with the reason and API calls `UNAVAILABLE`; a node's
//! readings wait under back-pressure; when the database returns everything resumes without a
//! restart and every acknowledged reading is stored once. SQLite on a full disk the same way.
//! A hung node (M1): with heartbeats a minute apart, the broker's keepalive alone marks a
//! SIGSTOPped agent lost. Crash durability (S1): writers that never stop, the leader killed -9
//! at random points: every acknowledged write is there, SQLite's integrity check is `ok`, and no
//! writer ever saw an error while the leader was up.

use std::time::Duration;

use serde_json::{Value, json};
use trellis_tests::{
    Db, PATIENCE, Server, ServerOpts,
    bench::{Publisher, batches, node_logins},
    chaos::{Chaos, Upstream},
    docker::SmallDisk,
    error_code, wait_for,
};

/// `/readyz` as the leader answers it: status and body.
async fn readyz(server: &Server) -> (u16, Value) {
    let r = server
        .http()
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits until `/readyz` says the database is unavailable; its body.
async fn unready(server: &Server) -> Value {
    wait_for("/readyz 503 for the database", PATIENCE, || async {
        let (status, body) = readyz(server).await;
        (status == 503 && body["database"] == "unavailable").then_some(body)
    })
    .await
}

/// Waits until `/readyz` is 200 again.
async fn ready(server: &Server) {
    wait_for("/readyz 200 again", PATIENCE, || async {
        (readyz(server).await.0 == 200).then_some(())
    })
    .await;
}

/// Waits until a mutation gets `UNAVAILABLE` with `reason` in its message, and a query too
/// when `reads_fail` (a database out of reach); else a query still works (a full disk).
async fn api_unavailable(server: &Server, node: &str, reason: &str, reads_fail: bool) {
    let mutation = format!("mutation {{ renameNode(id: \"{node}\", name: \"renamed\") {{ id }} }}");
    let query = "{ nodes { id } }";
    let mut asks = vec![("a mutation", mutation.as_str())];
    if reads_fail {
        asks.push(("a query", query));
    }
    for (what, ask) in asks {
        // (On a full disk a write may first meet the ingester's failing transaction as a lock.)
        let want = format!("{reason}: try again shortly");
        wait_for(&format!("{what} UNAVAILABLE: {want}"), PATIENCE, || async {
            let r = server.graphql(ask, json!({})).await;
            (error_code(&r) == "UNAVAILABLE" && r["errors"][0]["message"] == want.as_str())
                .then_some(())
        })
        .await;
    }
    if !reads_fail {
        let r = server.graphql(query, json!({})).await;
        assert!(r["errors"].is_null(), "reads work: {r}");
    }
}

/// Starts sending the publisher's readings (connected before the outage: its login is checked
/// against the database) and, a few seconds later, sees it held back. (The queue's depth cannot
/// be read meanwhile: the API's sessions are in the database too; its high-water mark is read
/// after.)
async fn flood(publisher: Publisher) -> tokio::task::JoinHandle<std::time::Instant> {
    let sent = tokio::spawn(publisher.run());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!sent.is_finished(), "the publisher is held back");
    sent
}

/// After the database is back: every batch acknowledged, every reading stored once, none
/// dropped, `/readyz` 200 again, and the leader never panicked.
async fn all_stored(
    server: &Server,
    login: &trellis_tests::bench::NodeLogin,
    sent: tokio::task::JoinHandle<std::time::Instant>,
    readings: u64,
) {
    match tokio::time::timeout(Duration::from_secs(120), sent).await {
        Ok(done) => {
            done.expect("the publisher");
        }
        Err(_) => {
            let log = server.proc.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "not every batch acknowledged in 120 s; the leader's log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    let stored = wait_for("every reading stored", Duration::from_secs(90), || async {
        let r = server.graphql("{ storage { readings } }", json!({})).await;
        let n = r["data"]["storage"]["readings"].as_u64()?;
        (n >= readings).then_some(n)
    })
    .await;
    assert_eq!(stored, readings, "every reading once");
    let r = server
        .graphql(
            &format!("{{ node(id: \"{}\") {{ readingsDropped }} }}", login.id),
            json!({}),
        )
        .await;
    assert_eq!(r["data"]["node"]["readingsDropped"], 0, "{r}");
    // The queue filled up to its bound meanwhile, and no further (a publish relayed just as
    // another was counted can pass it by a few, never by many).
    let q = server
        .graphql("{ ingestQueue { highWater capacity } }", json!({}))
        .await["data"]["ingestQueue"]
        .clone();
    let (high, cap) = (
        q["highWater"].as_i64().unwrap_or(0),
        q["capacity"].as_i64().unwrap_or(0),
    );
    assert!(high >= cap && high <= cap + cap / 8, "{q}");
    ready(server).await;
    // The API works again, on the same leader process.
    let r = server
        .graphql(
            "mutation($id: String!) { renameNode(id: $id, name: \"back\") { name } }",
            json!({"id": login.id}),
        )
        .await;
    assert_eq!(r["data"]["renameNode"]["name"], "back", "{r}");
    assert!(!server.proc.log_text().contains("panicked"));
}

async fn publisher(
    server: &Server,
    login: &trellis_tests::bench::NodeLogin,
    readings: u64,
) -> Publisher {
    Publisher::connect(
        server.mqtt_port,
        login,
        100,
        batches("0123456789abcdef", 0, readings, 4, false),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_out_of_reach_makes_the_leader_unready_and_it_recovers_by_itself() {
    let pg = trellis_tests::Postgres::create();
    let proxy = Chaos::start(Upstream::Tcp("127.0.0.1:5432".parse().expect("addr"))).await;
    let through = pg.url.replacen(":5432/", &format!(":{}/", proxy.port), 1);
    assert_ne!(
        through, pg.url,
        "the URL goes through the proxy: {}",
        pg.url
    );
    let server = Server::start(ServerOpts {
        db: Db::Postgres(through),
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let login = node_logins(&server, "pg", 1).await.pop().expect("a node");
    let publisher = publisher(&server, &login, 200_000).await;
    assert_eq!(readyz(&server).await.0, 200);

    // Every connection cut, and every new one refused at its first byte.
    proxy.cut_after(Some(0));
    proxy.cut_all();
    let body = unready(&server).await;
    assert_eq!(
        body["databaseReason"], "the database cannot be reached",
        "{body}"
    );
    assert_eq!(body["broker"], "ok", "{body}");
    api_unavailable(&server, &login.id, "the database cannot be reached", true).await;
    let sent = flood(publisher).await;
    proxy.cut_after(None);
    all_stored(&server, &login, sent, 200_000).await;
    // Counted in the table itself: each value once.
    let out = std::process::Command::new("psql")
        .arg(&pg.url)
        .args([
            "-tAc",
            "SELECT COUNT(*), COUNT(DISTINCT value) FROM reading",
        ])
        .output()
        .expect("psql");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "200000|200000",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A database that stops answering (S3, the hung host): the test's own Postgres frozen with
/// SIGSTOP, every process of it. Nothing fails, everything waits: `/readyz` says 503 "the database
/// did not answer in 2 s"; an API call gets `UNAVAILABLE` naming the database within the request
/// timeout (4 s here) rather than hanging or a bare 408; readings wait under back-pressure.
/// SIGCONT: everything resumes without a restart and every reading is stored once.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_postgres_answers_unavailable_in_time_and_resumes_when_thawed() {
    let pg = trellis_tests::PrivatePostgres::start().await;
    let server = Server::start(ServerOpts {
        db: Db::Postgres(pg.url.clone()),
        local_agent: false,
        extra_args: vec!["--request-timeout-secs".into(), "4".into()],
        ..ServerOpts::default()
    })
    .await;
    let login = node_logins(&server, "frozen", 1)
        .await
        .pop()
        .expect("a node");
    let publisher = publisher(&server, &login, 200_000).await;
    assert_eq!(readyz(&server).await.0, 200);

    assert!(pg.signal_all("-STOP"), "Postgres frozen");
    let body = unready(&server).await;
    assert_eq!(
        body["databaseReason"], "the database did not answer in 2 s",
        "{body}"
    );
    for ask in [
        "{ nodes { id } }",
        "mutation { renameNode(id: \"x\", name: \"y\") { id } }",
    ] {
        let r = server.graphql(ask, json!({})).await;
        assert_eq!(error_code(&r), "UNAVAILABLE", "{ask}: {r}");
        assert_eq!(
            r["errors"][0]["message"], "the database did not answer within 3 s: try again shortly",
            "{r}"
        );
    }
    let sent = flood(publisher).await;
    assert!(pg.signal_all("-CONT"), "Postgres thawed");
    all_stored(&server, &login, sent, 200_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_on_a_full_disk_makes_the_leader_unready_and_it_recovers_by_itself() {
    // The database on a 64 MiB filesystem, which a file then fills.
    let disk = SmallDisk::mount(64);
    let server = Server::start(ServerOpts {
        db: Db::SqliteAt(disk.path().join("trellis.db")),
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let login = node_logins(&server, "full", 1).await.pop().expect("a node");
    // More than the write-ahead log has room for: it must grow.
    let publisher = publisher(&server, &login, 200_000).await;
    assert_eq!(readyz(&server).await.0, 200);
    let filler = disk.path().join("filler");
    let fill = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=64"])
        .arg(format!("of={}", filler.display()))
        .output()
        .expect("dd");
    // dd stops at "No space left on device": the disk is full.
    assert!(!fill.status.success(), "the disk filled up");
    // The readings need room the write-ahead log no longer has.
    let sent = flood(publisher).await;
    let body = unready(&server).await;
    assert_eq!(
        body["databaseReason"], "the database's disk is full",
        "{body}"
    );
    // Reads work; a small write may still find room in the write-ahead log, or wait behind the
    // failing ingest and be refused: never as an internal error.
    assert!(server.graphql("{ nodes { id } }", json!({})).await["errors"].is_null());
    let r = server
        .graphql(
            "mutation($id: String!) { renameNode(id: $id, name: \"full\") { id } }",
            json!({"id": login.id}),
        )
        .await;
    assert!(
        r["errors"].is_null() || error_code(&r) == "UNAVAILABLE",
        "{r}"
    );
    std::fs::remove_file(&filler).expect("room again");
    all_stored(&server, &login, sent, 200_000).await;
    eprintln!(
        "DEBUG closed {}",
        server.proc.log_lines_with(&["still in a transaction"])
    );
}

/// Keepalive alone finds a hung node (M1). The agent's heartbeats are a minute apart, so the
/// leader's own sweep (a node silent past about two heartbeats) cannot see it within this
/// test; its MQTT keepalive is 2 s. SIGSTOPped, it stops answering; the broker closes its
/// connection after 1.5 x keepalive = 3 s of silence and publishes its will, and the leader
/// marks it lost. The bound asserted: 3 s plus a stated margin of 3 s for the will's relay and
/// the leader's write on a loaded machine. SIGCONT brings it back online.
#[tokio::test(flavor = "multi_thread")]
async fn keepalive_alone_marks_a_hung_node_lost() {
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let agent = server
        .join_agent_with("hung", &["--heartbeat-secs", "60", "--keepalive-secs", "2"])
        .await;
    server.wait_state("hung", "ONLINE", PATIENCE).await;
    let node = server.node("hung").await.expect("the node");
    assert_eq!(node["heartbeatIntervalSecs"], 60, "{node}");
    agent.proc.signal("-STOP");
    server
        .wait_state("hung", "LOST", Duration::from_secs(3 + 3))
        .await;
    agent.proc.signal("-CONT");
    server.wait_state("hung", "ONLINE", PATIENCE).await;
}

/// Crash durability (S1). Four writers make experiments as fast as the leader answers, each
/// with its own numbered names; the leader is killed -9 at a random point (0.3 to 1.5 s in),
/// three times over, and started again on the same database. Every experiment whose creation
/// was answered without error is there afterwards, once; the writers never got an error while
/// the leader was up (concurrent writers never see the database busy); and SQLite's
/// `PRAGMA integrity_check` says `ok`.
#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill_9_at_random_points() {
    use std::sync::{Arc, Mutex};
    let mut server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let refused: Arc<Mutex<Vec<Value>>> = Arc::default();
    let mut next = 0u32;
    for round in 0..3 {
        let http = server.http().clone();
        let url = server.url("/graphql");
        let cookie = server.admin_cookie.clone().expect("admin");
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (http, url, cookie) = (http.clone(), url.clone(), cookie.clone());
                let (acknowledged, refused) = (acknowledged.clone(), refused.clone());
                let first = next + w * 100_000;
                tokio::spawn(async move {
                    for i in first.. {
                        let name = format!("w{w}-{i}");
                        let body = json!({
                            "query": "mutation($n: String!) { createExperiment(name: $n) { name } }",
                            "variables": {"n": name},
                        });
                        let Ok(resp) = http.post(&url).header("Cookie", &cookie).json(&body).send().await
                        else {
                            return; // the leader is gone
                        };
                        let Ok(r) = resp.json::<Value>().await else { return };
                        if r["errors"].is_null() && r["data"]["createExperiment"]["name"] == name.as_str() {
                            acknowledged.lock().expect("list").push(name);
                        } else {
                            refused.lock().expect("list").push(r);
                        }
                    }
                })
            })
            .collect();
        next += 10_000;
        let wait = 300 + (uuid::Uuid::new_v4().as_u128() % 1200) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.proc.kill9();
        for w in writers {
            w.await.expect("writer");
        }
        let errors = refused.lock().expect("list").clone();
        assert!(
            errors.is_empty(),
            "round {round}: errors while the leader was up: {errors:?}"
        );
        server.restart().await;
    }
    let acked = acknowledged.lock().expect("list").clone();
    assert!(acked.len() > 20, "the writers got going: {}", acked.len());
    let list = server.graphql("{ experiments { name } }", json!({})).await;
    let names: Vec<&str> = list["data"]["experiments"]
        .as_array()
        .expect("experiments")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    for name in &acked {
        assert_eq!(
            names.iter().filter(|n| *n == name).count(),
            1,
            "{name} acknowledged, then {} times in the list",
            names.iter().filter(|n| *n == name).count()
        );
    }
    let db = server.dir.path().join("data/trellis.db");
    server.proc.kill9();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\nprint(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])",
        ])
        .arg(&db)
        .output()
        .expect("python3");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `mutation` while the broker's replies to the leader are held (its command passes, the
/// PUBACK and the node's answer do not), cuts the leader's link as soon as the node's answer
/// has passed the broker, and lets the leader reconnect. Returns the caller's one response and
/// every answer the node published for the command.
async fn across_a_cut(
    server: &Server,
    proxy: &Chaos,
    answers: &mut trellis_tests::MqttProbe,
    mutation: &str,
) -> (Value, Vec<Value>) {
    proxy.hold_replies(true);
    let cut = async {
        let first = answers
            .next(PATIENCE)
            .await
            .expect("the node answers the command");
        // Applied and answered, and neither the PUBACK nor the answer reached the leader.
        proxy.cut_all();
        proxy.hold_replies(false);
        first
    };
    let (response, first) = tokio::join!(server.graphql(mutation, json!({})), cut);
    // Whatever the node answers to the command sent again.
    let mut all = vec![first];
    all.extend(answers.collect(Duration::from_secs(3)).await);
    let all = all
        .iter()
        .map(|p| serde_json::from_slice(&p.payload).expect("a CommandResult"))
        .collect();
    (response, all)
}

/// The agent's own words in a job's log.
async fn agent_lines(server: &Server, node: &str, job: &str) -> Vec<String> {
    let r = server
        .graphql(
            "query($n: String!, $j: String!) { job(nodeId: $n, name: $j) { logs(last: 1000) { stream line } } }",
            json!({"n": node, "j": job}),
        )
        .await;
    r["data"]["job"]["logs"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .filter(|l| l["stream"] == "AGENT")
        .filter_map(|l| l["line"].as_str().map(str::to_owned))
        .collect()
}

/// At-least-once commands across a cut connection (M3). The leader reaches its broker through
/// the chaos proxy, the node directly. A command passes, the node applies and answers it, and
/// the link is cut before the broker's PUBACK or the answer gets back to the leader (both lost
/// with the connection: clean sessions). The leader reconnects and sends the command again with
/// its id; the node answers from memory without running it again. The caller gets one answer,
/// and the pump ran once: one dose of media, not two (a pulse that ended frees its name, so a
/// second run would be accepted and dose again). The same for a setting change: one answer, one
/// change in the job's log.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_cut_off_before_its_ack_is_applied_once_and_answered_once() {
    let mosquitto = trellis_tests::Mosquitto::start().await;
    let proxy = Chaos::start(Upstream::Tcp(([127, 0, 0, 1], mosquitto.port).into())).await;
    let server = Server::start(ServerOpts {
        local_agent: false,
        broker: trellis_tests::Broker::External(proxy.port),
        ..ServerOpts::default()
    })
    .await;
    let agent_dir = tempfile::tempdir().expect("tempdir");
    let _agent = trellis_tests::Agent::start_with_args(
        &format!("mqtt://127.0.0.1:{}", mosquitto.port),
        "m3",
        agent_dir.path(),
        None,
        &[],
    );
    server.wait_state("m3", "ONLINE", PATIENCE).await;
    let mut answers =
        trellis_tests::MqttProbe::connect(mosquitto.port, Some("trellis/v1/nodes/m3/result")).await;

    // A dose: 1 ml of media through the pump's calibration.
    let (response, all) = across_a_cut(
        &server,
        &proxy,
        &mut answers,
        "mutation { startJob(nodeId: \"m3\", preset: \"add_media\", settings: {volume: 1}) { name } }",
    )
    .await;
    assert!(
        response["errors"].is_null(),
        "one answer, a good one: {response}"
    );
    assert_eq!(response["data"]["startJob"]["name"], "add_media");
    assert!(
        all.len() >= 2,
        "the leader sent the command again after the cut: {all:?}"
    );
    assert!(
        all.iter().all(|a| a == &all[0]) && all[0]["ok"] == true,
        "every answer is the first: {all:?}"
    );
    wait_for("the dose to end", PATIENCE, || async {
        let r = server
            .graphql(
                "{ job(nodeId: \"m3\", name: \"add_media\") { state } }",
                json!({}),
            )
            .await;
        (r["data"]["job"]["state"] == "STOPPED").then_some(())
    })
    .await;
    wait_for("the dose's log line", PATIENCE, || async {
        let lines = agent_lines(&server, "m3", "add_media").await;
        lines.iter().any(|l| l.starts_with("done:")).then_some(())
    })
    .await;
    // Time for a second dose, if there were one, to start and be told.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines = agent_lines(&server, "m3", "add_media").await;
    let doses = lines.iter().filter(|l| l.starts_with("done:")).count();
    assert_eq!(doses, 1, "the pump ran once: {lines:?}");
    let r = server
        .graphql(
            "{ readings(nodeId: \"m3\", job: \"add_media\", metric: \"media_ml\", limit: 100) { value } }",
            json!({}),
        )
        .await;
    let given: Vec<f64> = r["data"]["readings"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .filter_map(|v| v["value"].as_f64())
        .collect();
    assert!(
        given.len() == 1 && (0.9..1.2).contains(&given[0]),
        "one dose of 1 ml: {given:?}"
    );

    // A setting change across the same cut.
    let r = server
        .graphql(
            "mutation { startJob(nodeId: \"m3\", kind: \"pwm\", name: \"fan\", settings: {pin: 12, duty: 30}) { state } }",
            json!({}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let _ = answers.collect(Duration::from_millis(300)).await;
    let (response, all) = across_a_cut(
        &server,
        &proxy,
        &mut answers,
        "mutation { setJobSettings(nodeId: \"m3\", name: \"fan\", settings: {duty: 50}) { settings } }",
    )
    .await;
    assert!(response["errors"].is_null(), "{response}");
    assert_eq!(response["data"]["setJobSettings"]["settings"]["duty"], 50);
    assert!(
        all.len() >= 2 && all.iter().all(|a| a == &all[0]),
        "{all:?}"
    );
    wait_for("the change's log line", PATIENCE, || async {
        let lines = agent_lines(&server, "m3", "fan").await;
        lines
            .iter()
            .any(|l| l.starts_with("updated duty"))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lines = agent_lines(&server, "m3", "fan").await;
    let changes: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("updated duty"))
        .collect();
    assert_eq!(changes, ["updated duty from 30 to 50"], "{lines:?}");
}

/// A fleet after a broker crash (R2): 200 agents (the real agent loop, in this process) on a
/// Mosquitto they reach through the proxy, which notes when each connection reaches the broker.
/// The broker is killed -9 and comes back 10 s later. Every agent comes back by itself, spread
/// out by its jittered backoff: no second of their return holds most of them.
#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_agents_come_back_spread_out_after_a_broker_crash() {
    const FLEET: usize = 200;
    let mut mosquitto = trellis_tests::Mosquitto::start().await;
    let proxy = Chaos::start(Upstream::Tcp(([127, 0, 0, 1], mosquitto.port).into())).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let max_backoff = Duration::from_secs(30);
    for i in 0..FLEET {
        let config = trellis_agent::AgentConfig {
            broker: trellis_proto::BrokerAddr {
                host: "127.0.0.1".into(),
                port: proxy.port,
                tls: false,
            },
            node_id: Some(format!("herd-{i}")),
            heartbeat_interval: Duration::from_secs(60),
            max_backoff,
            ..trellis_agent::AgentConfig::default()
        };
        tokio::spawn(trellis_agent::run(config, stop.clone()));
    }
    wait_for("the fleet connected", PATIENCE, || async {
        (proxy.joined().len() >= FLEET).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let crash = std::time::Instant::now();
    mosquitto.restart_after(Duration::from_secs(10)).await;
    let up = std::time::Instant::now();
    let back = wait_for("every agent back", max_backoff * 2, || async {
        let back: Vec<Duration> = proxy
            .joined()
            .into_iter()
            .filter(|t| *t > crash)
            .map(|t| t.saturating_duration_since(up))
            .collect();
        (back.len() >= FLEET).then_some(back)
    })
    .await;
    let mut per_second = std::collections::BTreeMap::<u64, usize>::new();
    for t in &back[..FLEET] {
        *per_second.entry(t.as_secs()).or_default() += 1;
    }
    let busiest = per_second.values().max().copied().unwrap_or_default();
    assert!(
        busiest < FLEET / 2,
        "{busiest} of {FLEET} agents came back in one second: {per_second:?}"
    );
    let last = back[..FLEET].iter().max().copied().unwrap_or_default();
    assert!(
        last <= max_backoff + Duration::from_secs(5),
        "the last agent came back {last:?} after the broker"
    );
    eprintln!("agents back per second after the broker returned: {per_second:?}");
}
