//! Container deployments on this machine's real Docker engine, with images made offline
//! (`trellis_tests::docker::TestImages`): deploy to the leader's own node, exec, drift by hand
//! (removed, stopped, changed) converging back, a foreign container never touched, a new revision
//! rolled out, a broken one rolled back on its own with the reason shown, a rollback by hand,
//! live logs and stats, and removal. Every container and image carries the test's label and is
//! removed by the guard, also when an assertion fails.

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use trellis_tests::{
    Db, Mosquitto, PATIENCE, Postgres, Server, ServerOpts,
    docker::{DockerGuard, TestImages, docker, docker_ok, docker_ps},
    next_json, wait_for, ws_session,
};

async fn gql(server: &Server, query: &str, vars: Value) -> Value {
    let r = server.graphql(query, vars).await;
    assert!(r["errors"].is_null(), "{query}: {r}");
    r["data"].clone()
}

const DEPLOYMENT: &str = "query($id: String!) { deployment(id: $id) { id name latestRevision \
    targetRevision liveRevision runState \
    instances { nodeId state reason containerId containerName observedRevision desiredRevision restartCount exitCode \
      restarts { exitCode logTail } } \
    lastRollout { kind state reason toRevision currentBatch batches } \
    revisions { revision cause changes outcome outcomeReason } } }";

async fn deployment(server: &Server, id: &str) -> Value {
    gql(server, DEPLOYMENT, json!({"id": id})).await["deployment"].clone()
}

/// Waits until the deployment's newest rollout is in `state` and every instance is `RUNNING`
/// on revision `revision`.
async fn wait_rolled_out(server: &Server, id: &str, state: &str, revision: i64) -> Value {
    let started = std::time::Instant::now();
    loop {
        let d = deployment(server, id).await;
        let r = &d["lastRollout"];
        let all_running = d["instances"].as_array().is_some_and(|is| {
            !is.is_empty()
                && is.iter().all(|i| {
                    i["state"] == "RUNNING" && i["observedRevision"].as_i64() == Some(revision)
                })
        });
        if r["state"] == state
            && (state != "succeeded" || d["liveRevision"].as_i64() == Some(revision))
            && r["toRevision"].as_i64() == Some(revision)
            && all_running
        {
            return d;
        }
        assert!(
            started.elapsed() < PATIENCE * 2,
            "timed out waiting for the rollout to revision {revision} to be {state}; the deployment: {d}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn spec(image: &str, label: &str, greeting: &str) -> Value {
    json!({
        "container": {
            "image": image,
            "env": [{"name": "GREETING", "value": greeting}],
            "labels": [{"name": "trellis-test", "value": label}],
        },
        "target": {"nodeIds": ["leader"]},
        "update": {"minReadySecs": 1, "healthTimeoutSecs": 30},
    })
}

async fn exec(server: &Server, id: &str, command: &[&str]) -> Value {
    gql(
        server,
        "mutation($d: String!, $c: [String!]!) { execInInstance(deploymentId: $d, nodeId: \"leader\", command: $c) { exitCode stdout stderr truncated } }",
        json!({"d": id, "c": command}),
    )
    .await["execInInstance"]
        .clone()
}

/// A deployment's containers on the engine: those with its label and a cluster's (a foreign
/// container may carry the deployment's label too).
fn ours(deployment_id: &str) -> Vec<trellis_tests::docker::ContainerRow> {
    docker_ps(&format!("io.trellis.deployment={deployment_id}"))
        .into_iter()
        .filter(|c| c.labels.contains_key("io.trellis.cluster"))
        .collect()
}

/// The running ones.
fn running(deployment_id: &str) -> Vec<String> {
    ours(deployment_id)
        .into_iter()
        .filter(|c| c.state == "running")
        .map(|c| c.id)
        .collect()
}

async fn wait_one_running_other_than(server: &Server, id: &str, old: &str) -> String {
    wait_for("a new container running", PATIENCE, || async {
        let all = ours(id);
        let d = deployment(server, id).await;
        let inst = &d["instances"][0];
        let cid = inst["containerId"].as_str().unwrap_or_default().to_owned();
        (all.len() == 1
            && all[0].state == "running"
            && all[0].id != old
            && cid == all[0].id
            && inst["state"] == "RUNNING")
            .then_some(cid)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_converges_rolls_out_rolls_back_and_goes_on_sqlite() {
    scenario(ServerOpts::default(), "greeter").await;
}

/// The same on Postgres, with Mosquitto as the leader manages it.
#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_converges_rolls_out_rolls_back_and_goes_on_postgres_with_mosquitto() {
    let pg = Postgres::create();
    let dir = tempfile::tempdir().expect("tempdir");
    let mosquitto = Mosquitto::start_managed(&dir.path().join("accounts")).await;
    let opts = ServerOpts {
        db: Db::Postgres(pg.url.clone()),
        ..mosquitto.server_opts()
    };
    scenario(opts, "greeter-pg").await;
}

async fn scenario(opts: ServerOpts, name: &str) {
    // The guard is made before the leader so that it drops after it.
    let images = TestImages::make();
    let mut guard = DockerGuard::new(&images.label);
    let mut opts = opts;
    opts.extra_args
        .extend(["--docker-timeout-secs".into(), "5".into()]);
    let server = Server::start(opts).await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;

    // Deploy to the leader's own node.
    let created = gql(
        &server,
        "mutation($n: String!, $s: DeploymentSpecInput!) { createDeployment(name: $n, spec: $s) { id latestRevision } }",
        json!({"n": name, "s": spec(&images.bb, &images.label, "one")}),
    )
    .await;
    let id = created["createDeployment"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let d = wait_rolled_out(&server, &id, "succeeded", 1).await;
    assert_eq!(d["liveRevision"], 1, "{d}");
    let first = running(&id);
    assert_eq!(first.len(), 1, "one container: {first:?}");
    let rows = ours(&id);
    let cluster = rows[0].labels["io.trellis.cluster"].clone();
    guard.also_cluster(&cluster);
    assert!(
        rows[0].name.starts_with(&format!("trellis-{name}-leader-")),
        "{}",
        rows[0].name
    );
    assert_eq!(rows[0].labels["io.trellis.node"], "leader");
    assert_eq!(rows[0].labels["io.trellis.revision"], "1");

    // The node page's engine facts: version, disk use, and reached by the workers.
    let engine = gql(
        &server,
        "{ dockerEngine(nodeId: \"leader\") { version imagesBytes containersBytes } node(id: \"leader\") { docker { reach { reachable reason } } } }",
        json!({}),
    )
    .await;
    assert!(
        engine["dockerEngine"]["imagesBytes"].as_f64() > Some(1e6),
        "{engine}"
    );
    assert!(
        engine["dockerEngine"]["containersBytes"].as_f64() >= Some(0.0),
        "{engine}"
    );
    assert_eq!(
        engine["node"]["docker"]["reach"],
        json!({"reachable": true, "reason": null})
    );

    // A command in it, with its output and exit code.
    let out = exec(
        &server,
        &id,
        &["sh", "-c", "echo $GREETING; echo err >&2; exit 3"],
    )
    .await;
    assert_eq!(
        out,
        json!({"exitCode": 3, "stdout": "one\n", "stderr": "err\n", "truncated": false})
    );

    // A container Trellis did not make, even one carrying the deployment's label, is never
    // touched.
    let foreign = docker(&[
        "run",
        "-d",
        "--label",
        &format!("trellis-test={}", images.label),
        "--label",
        &format!("io.trellis.deployment={id}"),
        &images.bb,
    ]);

    // Removed by hand: made again.
    docker(&["rm", "-f", &first[0]]);
    let second = wait_one_running_other_than(&server, &id, &first[0]).await;
    // Stopped by hand: started again (the same container).
    docker(&["stop", "-t", "1", &second]);
    wait_for("the stopped container started again", PATIENCE, || async {
        (running(&id) == vec![second.clone()]).then_some(())
    })
    .await;
    // Paused by hand: unpaused (the same container).
    docker(&["pause", &second]);
    wait_for("the paused container unpaused", PATIENCE, || async {
        (docker(&["inspect", "-f", "{{.State.Status}}", &second]) == "running").then_some(())
    })
    .await;
    // Changed by hand: replaced, and the reason is shown meanwhile.
    docker(&["update", "--restart", "no", &second]);
    let third = wait_one_running_other_than(&server, &id, &second).await;
    let inspect = docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.RestartPolicy.Name}}",
        &third,
    ]);
    assert_eq!(inspect, "unless-stopped");
    assert!(
        docker_ok(&["inspect", &foreign]),
        "the foreign container is still there"
    );

    // A new revision rolls out; the old container goes once it has.
    let up = "mutation($id: String!, $s: DeploymentSpecInput!, $e: Int) { updateDeployment(id: $id, spec: $s, expectedRevision: $e) { latestRevision } }";
    gql(
        &server,
        up,
        json!({"id": id, "s": spec(&images.bb, &images.label, "two"), "e": 1}),
    )
    .await;
    let d = wait_rolled_out(&server, &id, "succeeded", 2).await;
    assert_eq!(
        d["revisions"][0]["changes"],
        json!(["container.env GREETING: \"one\" → \"two\""])
    );
    assert_eq!(
        exec(&server, &id, &["sh", "-c", "echo $GREETING"]).await["stdout"],
        "two\n"
    );
    wait_for("only revision 2's container left", PATIENCE, || async {
        (ours(&id).len() == 1).then_some(())
    })
    .await;
    // An editor who read revision 1 is told someone else changed it.
    let stale = server
        .graphql(
            up,
            json!({"id": id, "s": spec(&images.bb, &images.label, "x"), "e": 1}),
        )
        .await;
    assert_eq!(
        stale["errors"][0]["extensions"]["code"], "CONFLICT",
        "{stale}"
    );

    // A revision that exits at once: the rollout stops and goes back to revision 2 by itself,
    // with the reason shown; revision 2's container was kept, so it is the same one again.
    let r2_container = running(&id);
    let mut broken = spec(&images.bb, &images.label, "three");
    broken["container"]["command"] = json!(["sh", "-c", "echo starting; echo boom >&2; exit 3"]);
    gql(&server, up, json!({"id": id, "s": broken})).await;
    let d = wait_for("the broken revision rolled back", PATIENCE * 2, || async {
        let d = deployment(&server, &id).await;
        let back =
            d["lastRollout"]["kind"] == "auto_rollback" && d["lastRollout"]["state"] == "succeeded";
        back.then_some(d)
    })
    .await;
    assert_eq!(d["targetRevision"], 2, "{d}");
    assert_eq!(d["liveRevision"], 2, "{d}");
    let r3 = &d["revisions"][0];
    assert_eq!(r3["revision"], 3);
    assert_eq!(r3["outcome"], "failed", "{d}");
    let reason = r3["outcomeReason"].as_str().expect("a reason");
    assert!(
        reason.contains("node leader") && reason.contains("code 3") && reason.contains("boom"),
        "the reason names the node, the exit code and the last lines: {reason}"
    );
    let rolled_back = gql(
        &server,
        "query($id: String!) { deployment(id: $id) { rollouts(limit: 2) { kind state reason } } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(
        rolled_back["deployment"]["rollouts"][1]["state"], "rolled_back",
        "{rolled_back}"
    );
    wait_for("revision 2 running again", PATIENCE, || async {
        (running(&id) == r2_container).then_some(())
    })
    .await;
    assert_eq!(
        exec(&server, &id, &["sh", "-c", "echo $GREETING"]).await["stdout"],
        "two\n"
    );

    // Back to the first revision by hand: a new revision with its spec.
    gql(
        &server,
        "mutation($id: String!) { rollbackDeployment(id: $id, toRevision: 1) { latestRevision } }",
        json!({"id": id}),
    )
    .await;
    let d = wait_rolled_out(&server, &id, "succeeded", 4).await;
    assert_eq!(d["revisions"][0]["cause"], "rollback:3->1");
    assert_eq!(
        exec(&server, &id, &["sh", "-c", "echo $GREETING"]).await["stdout"],
        "one\n"
    );

    // Live logs: the last lines, then new ones as they come.
    let mut ws = ws_session(&server, server.admin_cookie.as_deref(), json!({})).await;
    let sub = json!({"id": "1", "type": "subscribe", "payload": {
        "query": "subscription($d: String!) { containerLogs(deploymentId: $d, nodeId: \"leader\", tail: 2) { at stream line } }",
        "variables": {"d": id}}});
    ws.send(Message::text(sub.to_string())).await.expect("send");
    let mut ticks = Vec::new();
    while ticks.len() < 4 {
        let m = next_json(&mut ws).await;
        assert_eq!(m["type"], "next", "{m}");
        let line = m["payload"]["data"]["containerLogs"]["line"]
            .as_str()
            .expect("line")
            .to_owned();
        assert!(line.starts_with("tick "), "{line}");
        ticks.push(line);
    }
    let n: Vec<i64> = ticks.iter().map(|t| t[5..].parse().expect("n")).collect();
    assert!(
        n.windows(2).all(|w| w[1] == w[0] + 1),
        "lines in order, none missed: {ticks:?}"
    );
    // Followed across a replacement: a new revision's container takes over; the log says so and
    // goes on from the new container's first line.
    gql(
        &server,
        up,
        json!({"id": id, "s": spec(&images.bb, &images.label, "five")}),
    )
    .await;
    let mut said = None;
    loop {
        let m = next_json(&mut ws).await;
        assert_eq!(m["type"], "next", "the log goes on: {m}");
        let l = &m["payload"]["data"]["containerLogs"];
        if l["stream"] == "TRELLIS" {
            said = l["line"].as_str().map(str::to_owned);
        } else if said.is_some() && l["line"] == "tick 0" {
            break;
        }
    }
    let said = said.unwrap_or_default();
    assert!(said.contains("ended; following its replacement"), "{said}");
    let sub = json!({"id": "2", "type": "subscribe", "payload": {
        "query": "subscription($d: String!) { containerStats(deploymentId: $d, nodeId: \"leader\") { cpuPercent memoryBytes memoryLimit netRx } }",
        "variables": {"d": id}}});
    ws.send(Message::text(sub.to_string())).await.expect("send");
    let stats = loop {
        let m = next_json(&mut ws).await;
        if m["id"] == "2" {
            break m["payload"]["data"]["containerStats"].clone();
        }
    };
    assert!(
        stats["memoryBytes"].as_f64().expect("memory") > 0.0,
        "{stats}"
    );
    assert!(
        stats["memoryLimit"].as_f64().expect("limit") > 0.0,
        "{stats}"
    );
    drop(ws);

    // Removed: its containers go, the foreign one stays, and it is gone from the API.
    gql(
        &server,
        "mutation($id: String!) { removeDeployment(id: $id) }",
        json!({"id": id}),
    )
    .await;
    wait_for("the deployment gone", PATIENCE, || async {
        let gone = gql(
            &server,
            "query($id: String!) { deployment(id: $id) { id } }",
            json!({"id": id}),
        )
        .await["deployment"]
            .is_null();
        (gone && docker_ps(&format!("io.trellis.cluster={cluster}")).is_empty()).then_some(())
    })
    .await;
    assert!(
        docker_ok(&["inspect", &foreign]),
        "the foreign container survives the removal"
    );
    let log = server.audit_log(50).await;
    for action in [
        "createDeployment",
        "updateDeployment",
        "autoRollback",
        "rollbackDeployment",
        "execInInstance",
        "removeDeployment",
    ] {
        assert!(
            log.iter().any(|e| e["action"] == action
                && e["target"].as_str().is_some_and(|t| t.starts_with(name))),
            "{action} in the audit log"
        );
    }
}
