//! More of what deployments must get right, on this machine's Docker engine: a per-node override
//! reaches only its node; a container killed for want of memory is shown as such; logs from a
//! given time; a pull that hangs (a registry that accepts and never answers) survives a leader
//! killed meanwhile, keeps the old container running, and rolls back once the pull fails. And
//! the engine client itself (D1, D2): start and stop twice both succeed (Docker's 304), a
//! container gone is "not found", a name taken is a conflict, never a failure.

use std::{sync::Arc, time::Duration};

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use trellis_tests::{
    PATIENCE, Server, ServerOpts,
    docker::{DockerGuard, TestImages, docker_over_tcp, instance, on_node},
    until_closed, wait_for, ws_session,
};

async fn gql(server: &Server, query: &str, vars: Value) -> Value {
    let r = server.graphql(query, vars).await;
    assert!(r["errors"].is_null(), "{query}: {r}");
    r["data"].clone()
}

const DEPLOYMENT: &str = "query($id: String!) { deployment(id: $id) { id liveRevision \
    instances { nodeId state reason containerId observedRevision oomKilled restarts { exitCode oomKilled } } \
    lastRollout { kind state reason toRevision batches } revisions { revision outcome outcomeReason } } }";

async fn deployment(server: &Server, id: &str) -> Value {
    gql(server, DEPLOYMENT, json!({"id": id})).await["deployment"].clone()
}

async fn create(server: &Server, name: &str, spec: &Value) -> String {
    gql(
        server,
        "mutation($n: String!, $s: DeploymentSpecInput!) { createDeployment(name: $n, spec: $s) { id } }",
        json!({"n": name, "s": spec}),
    )
    .await["createDeployment"]["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

async fn update(server: &Server, id: &str, spec: &Value) {
    gql(
        server,
        "mutation($id: String!, $s: DeploymentSpecInput!) { updateDeployment(id: $id, spec: $s) { id } }",
        json!({"id": id, "s": spec}),
    )
    .await;
}

async fn rolled_out(server: &Server, id: &str, revision: i64) -> Value {
    wait_for(
        &format!("revision {revision} rolled out"),
        PATIENCE * 2,
        || async {
            let d = deployment(server, id).await;
            (d["lastRollout"]["state"] == "succeeded" && d["liveRevision"] == revision).then_some(d)
        },
    )
    .await
}

async fn exec(server: &Server, id: &str, node: &str, command: &[&str]) -> Value {
    gql(
        server,
        "mutation($d: String!, $n: String!, $c: [String!]!) { execInInstance(deploymentId: $d, nodeId: $n, command: $c) { exitCode stdout } }",
        json!({"d": id, "n": node, "c": command}),
    )
    .await["execInInstance"]
        .clone()
}

fn spec(image: &str, label: &str) -> Value {
    json!({
        "container": {
            "image": image,
            "env": [{"name": "FOO", "value": "base"}],
            "labels": [{"name": "trellis-test", "value": label}],
            "stopGraceSecs": 2,
        },
        "target": {"nodeIds": ["leader"]},
        "update": {"minReadySecs": 1, "healthTimeoutSecs": 60},
    })
}

async fn start() -> (TestImages, DockerGuard, Server) {
    let images = TestImages::make();
    let guard = DockerGuard::new(&images.label);
    let server = Server::start(ServerOpts {
        extra_args: vec!["--deploy-backoff-max-secs".into(), "2".into()],
        ..ServerOpts::default()
    })
    .await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    (images, guard, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_override_reaches_only_its_node_and_an_oom_kill_is_shown() {
    let (images, mut guard, server) = start().await;
    let forward = docker_over_tcp(server.dir.path(), None).await;
    let endpoint = format!("tcp://127.0.0.1:{}", forward.port);
    let _n1 = server
        .join_agent_with("n1", &["--docker-endpoint", &endpoint])
        .await;
    server.wait_state("n1", "ONLINE", PATIENCE).await;
    gql(
        &server,
        "mutation { setNodeDockerInsecure(id: \"n1\", insecure: true) { id } }",
        json!({}),
    )
    .await;

    let mut s = spec(&images.bb, &images.label);
    s["target"] = json!({"nodeIds": ["leader", "n1"]});
    let id = create(&server, "tuned", &s).await;
    rolled_out(&server, &id, 1).await;
    guard.also_cluster(&on_node(&id, "n1")[0].labels["io.trellis.cluster"]);
    let leader_before = on_node(&id, "leader")[0].id.clone();

    // n1 alone gets another value: only n1 is in the rollout, the leader's container stays.
    s["overrides"] = json!([{"nodeId": "n1", "env": [{"name": "FOO", "value": "special"}]}]);
    update(&server, &id, &s).await;
    let d = rolled_out(&server, &id, 2).await;
    assert_eq!(d["lastRollout"]["batches"], json!([["n1"]]), "{d}");
    assert_eq!(
        exec(&server, &id, "n1", &["sh", "-c", "echo $FOO"]).await["stdout"],
        "special\n"
    );
    assert_eq!(
        exec(&server, &id, "leader", &["sh", "-c", "echo $FOO"]).await["stdout"],
        "base\n"
    );
    assert_eq!(on_node(&id, "leader").len(), 1);
    assert_eq!(
        on_node(&id, "leader")[0].id,
        leader_before,
        "the leader's container was kept"
    );

    // Logs from a time: only lines after it.
    let since = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut ws = ws_session(&server, server.admin_cookie.as_deref(), json!({})).await;
    let sub = json!({"id": "1", "type": "subscribe", "payload": {
        "query": "subscription($d: String!, $t: DateTime!) { containerLogs(deploymentId: $d, nodeId: \"leader\", since: $t, follow: false) { at line } }",
        "variables": {"d": id, "t": since.to_rfc3339()}}});
    ws.send(Message::text(sub.to_string())).await.expect("send");
    let (messages, _) = until_closed(&mut ws, Duration::from_secs(3)).await;
    let lines: Vec<Value> = messages
        .iter()
        .filter_map(|m| serde_json::from_str::<Value>(m).ok())
        .filter(|m| m["type"] == "next")
        .map(|m| m["payload"]["data"]["containerLogs"].clone())
        .collect();
    assert!(
        (1..=4).contains(&lines.len()),
        "about two seconds of ticks: {lines:?}"
    );
    for l in &lines {
        let at = chrono::DateTime::parse_from_rfc3339(l["at"].as_str().expect("at")).expect("time");
        assert!(at >= since, "{l} is from before {since}");
    }

    // Killed for want of memory: shown with the OOM flag on the exits and in the reason.
    let mut hog = spec(&images.bb, &images.label);
    hog["container"]["memoryMib"] = json!(8);
    hog["container"]["command"] = json!([
        "sh",
        "-c",
        "exec dd if=/dev/zero of=/dev/null bs=64M count=1"
    ]);
    let hog_id = create(&server, "hog", &hog).await;
    let i = wait_for("the OOM kill shown", PATIENCE, || async {
        let d = deployment(&server, &hog_id).await;
        let i = instance(&d, "leader")?.clone();
        let oom = i["restarts"].as_array().is_some_and(|r| {
            r.iter()
                .any(|r| r["oomKilled"] == true && r["exitCode"] == 137)
        });
        oom.then_some(i)
    })
    .await;
    drop(i);
    // And on the instance itself while it is down (between two of Docker's restarts it may be
    // running again: the crash loop comes back round to it).
    wait_for(
        "the OOM kill in the instance's reason",
        PATIENCE,
        || async {
            let d = deployment(&server, &hog_id).await;
            let i = instance(&d, "leader")?.clone();
            let reason = i["reason"].as_str().unwrap_or_default();
            (reason.contains("memory") || i["oomKilled"] == true).then_some(())
        },
    )
    .await;
    drop(forward);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_pull_survives_a_leader_kill_and_rolls_back_when_it_fails() {
    let (images, mut guard, mut server) = start().await;
    let s = spec(&images.bb, &images.label);
    let id = create(&server, "puller", &s).await;
    rolled_out(&server, &id, 1).await;
    let old = on_node(&id, "leader");
    guard.also_cluster(&old[0].labels["io.trellis.cluster"]);

    // A registry that accepts connections and never answers.
    let registry = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = registry.local_addr().expect("addr").port();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    let accepting = tokio::spawn(async move {
        while let Ok((sock, _)) = registry.accept().await {
            keep.lock().expect("held").push(sock);
        }
    });
    let mut hanging = s.clone();
    hanging["container"]["image"] = json!(format!("127.0.0.1:{port}/hang:1"));
    update(&server, &id, &hanging).await;
    wait_for("pulling", PATIENCE, || async {
        let d = deployment(&server, &id).await;
        (instance(&d, "leader")?["state"] == "PULLING").then_some(())
    })
    .await;

    // The leader is killed mid-pull and comes back: the rollout is still under way and the old
    // container never stopped.
    server.restart_after(Duration::from_secs(1)).await;
    wait_for("pulling again after the restart", PATIENCE, || async {
        let d = deployment(&server, &id).await;
        (instance(&d, "leader")?["state"] == "PULLING" && d["lastRollout"]["state"] == "running")
            .then_some(())
    })
    .await;
    let now = on_node(&id, "leader");
    assert_eq!(now.len(), 1, "no second container: {now:?}");
    assert_eq!(
        (now[0].id.as_str(), now[0].state.as_str()),
        (old[0].id.as_str(), "running")
    );

    // The registry goes: the pull fails, the rollout goes back, the reason says why.
    accepting.abort();
    held.lock().expect("held").clear();
    let d = wait_for(
        "rolled back after the failed pull",
        PATIENCE * 2,
        || async {
            let d = deployment(&server, &id).await;
            (d["revisions"][0]["outcome"] == "failed"
                && d["lastRollout"]["kind"] == "auto_rollback"
                && d["lastRollout"]["state"] == "succeeded")
                .then_some(d)
        },
    )
    .await;
    let reason = d["revisions"][0]["outcomeReason"].as_str().expect("reason");
    assert!(
        reason.contains("could not be pulled") && reason.contains("hang:1"),
        "{reason}"
    );
    let after = on_node(&id, "leader");
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].id.as_str(), after[0].state.as_str()),
        (old[0].id.as_str(), "running")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_start_restart_and_take_a_node_out() {
    let (images, mut guard, server) = start().await;
    let id = create(&server, "switch", &spec(&images.bb, &images.label)).await;
    rolled_out(&server, &id, 1).await;
    let first = on_node(&id, "leader");
    guard.also_cluster(&first[0].labels["io.trellis.cluster"]);
    let state = async |want: &str| {
        wait_for(&format!("the instance {want}"), PATIENCE, || async {
            let d = deployment(&server, &id).await;
            let i = instance(&d, "leader")?.clone();
            (i["state"] == want).then_some(i)
        })
        .await
    };
    let act = async |m: &str| {
        gql(
            &server,
            &format!("mutation($id: String!) {{ {m}(id: $id) {{ runState }} }}"),
            json!({"id": id}),
        )
        .await
    };

    // Stopped: the container stays, stopped, and is not started again by the reconciler.
    assert_eq!(
        act("stopDeployment").await["stopDeployment"]["runState"],
        "stopped"
    );
    state("STOPPED").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = on_node(&id, "leader");
    assert_eq!(
        (c.len(), c[0].id.as_str(), c[0].state.as_str()),
        (1, first[0].id.as_str(), "exited")
    );
    // Started: the same container runs again.
    act("startDeployment").await;
    state("RUNNING").await;
    assert_eq!(on_node(&id, "leader")[0].id, first[0].id);

    // Restarted: the same container, started anew.
    let started =
        || trellis_tests::docker::docker(&["inspect", "-f", "{{.State.StartedAt}}", &first[0].id]);
    let before = started();
    act("restartDeployment").await;
    wait_for("restarted", PATIENCE, || async {
        (started() != before && on_node(&id, "leader")[0].state == "running").then_some(())
    })
    .await;

    // One node taken out: its container goes though the target still chooses it; back in, it
    // returns.
    let excl = "mutation($id: String!, $x: Boolean!) { setDeploymentNodeExcluded(id: $id, nodeId: \"leader\", excluded: $x) { id } }";
    gql(&server, excl, json!({"id": id, "x": true})).await;
    wait_for("the container removed", PATIENCE, || async {
        on_node(&id, "leader").is_empty().then_some(())
    })
    .await;
    let d = deployment(&server, &id).await;
    assert!(
        instance(&d, "leader").is_some(),
        "the instance stays, taken out: {d}"
    );
    gql(&server, excl, json!({"id": id, "x": false})).await;
    state("RUNNING").await;
    assert_eq!(on_node(&id, "leader").len(), 1);
}

/// Docker's answers as states, on this machine's engine through the client the reconciler uses:
/// starting a started container and stopping a stopped one succeed (304), removing one twice
/// succeeds, a container that is gone is `NotFound` (404), and a create under a taken name is a
/// `Conflict` (409).
#[tokio::test(flavor = "multi_thread")]
async fn the_engine_client_takes_304_404_and_409_as_states() {
    use trellis_server::deployments::engine::{Engine, EngineError};
    let images = TestImages::make();
    let _guard = DockerGuard::new(&images.label);
    let docker = bollard::Docker::connect_with_unix(
        "/var/run/docker.sock",
        30,
        bollard::API_DEFAULT_VERSION,
    )
    .expect("the engine");
    let engine = Engine::new("leader", docker, Duration::from_secs(20));
    let name = format!("trellis-test-idem-{}", images.label);
    let id = trellis_tests::docker::docker(&[
        "create",
        "--name",
        &name,
        "--label",
        &format!("trellis-test={}", images.label),
        &images.bb,
    ]);
    let id = id.trim();
    for round in 0..2 {
        engine
            .start(id)
            .await
            .unwrap_or_else(|e| panic!("start {round}: {e:?}"));
    }
    assert_eq!(
        trellis_tests::docker::docker(&["inspect", "-f", "{{.State.Running}}", id]).trim(),
        "true"
    );
    for round in 0..2 {
        engine
            .stop(id, 1)
            .await
            .unwrap_or_else(|e| panic!("stop {round}: {e:?}"));
    }
    assert_eq!(
        trellis_tests::docker::docker(&["inspect", "-f", "{{.State.Running}}", id]).trim(),
        "false"
    );
    // A name taken: a conflict to reconcile.
    let taken = engine
        .create(
            &name,
            bollard::models::ContainerCreateBody {
                image: Some(images.bb.clone()),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(taken, Err(EngineError::Conflict)), "{taken:?}");
    engine.remove(id).await.expect("remove");
    engine.remove(id).await.expect("remove again: already gone");
    assert!(matches!(engine.inspect(id).await, Ok(None)));
    let gone = engine.start(id).await;
    assert!(matches!(gone, Err(EngineError::NotFound)), "{gone:?}");
}

/// Panic isolation of the loops that own a channel (G6). A debug build's `TRELLIS_TEST_PANIC`
/// makes the reconciler panic on the first deployment that changes and the ingester on the first
/// telemetry it stores. The leader stays up and says each loop was started again; the restarted
/// reconciler, holding the same inbox and workers, rereads everything and the deployment runs,
/// one container; the job's first log line, lost with the ingester's panic, comes again from its
/// agent (no `stored` mark covered it) and is shown with the rest.
#[tokio::test(flavor = "multi_thread")]
async fn the_reconciler_and_the_ingester_come_back_after_a_panic() {
    let images = TestImages::make();
    let _guard = DockerGuard::new(&images.label);
    let mut server = Server::start(ServerOpts {
        env: vec![("TRELLIS_TEST_PANIC".into(), "reconciler,ingester".into())],
        ..ServerOpts::default()
    })
    .await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    let id = create(&server, "after-panic", &spec(&images.bb, &images.label)).await;
    rolled_out(&server, &id, 1).await;
    assert_eq!(on_node(&id, "leader").len(), 1, "one container");

    // The node has no job yet, so the job's first words are the first telemetry stored.
    gql(
        &server,
        "mutation { startJob(nodeId: \"leader\", kind: \"pwm\", name: \"fan\", settings: {pin: 18, duty: 20}) { state } }",
        json!({}),
    )
    .await;
    let lines = wait_for("the job's first log line", PATIENCE * 2, || async {
        let d = gql(
            &server,
            "{ job(nodeId: \"leader\", name: \"fan\") { logs { stream line } } }",
            json!({}),
        )
        .await;
        let lines: Vec<String> = d["job"]["logs"]
            .as_array()?
            .iter()
            .filter(|l| l["stream"] == "AGENT")
            .filter_map(|l| l["line"].as_str().map(str::to_owned))
            .collect();
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert_eq!(lines, ["ready: duty=20, frequency=100.0, pin=18"]);
    for (which, lost) in [
        ("reconciler", "test hook: reconciler panics"),
        ("ingester", "telemetry batches lost with a panic"),
    ] {
        assert!(server.proc.log_lines_with(&[lost]) > 0, "{which} panicked");
        assert!(
            server
                .proc
                .log_lines_with(&["background loop started again", which])
                > 0,
            "{which} started again"
        );
    }
    assert!(!server.proc.has_exited(), "the leader is up");
}
