//! Deployments across several node entries on this machine's one Docker engine (agents reaching
//! it over plain TCP through `socat`, marked insecure by the admin): targets by label as nodes
//! gain and lose it, an engine that goes away and comes back, batches gated on health, a crash
//! loop that holds back no other rollout, a leader killed mid-rollout, and who may do what.

use serde_json::{Value, json};
use trellis_tests::{
    Agent, Auth, PATIENCE, Server, ServerOpts,
    docker::{
        ContainerRow, DockerGuard, TestImages, docker, docker_over_tcp, docker_ps, instance,
        on_node,
    },
    wait_for,
};

async fn gql(server: &Server, query: &str, vars: Value) -> Value {
    let r = server.graphql(query, vars).await;
    assert!(r["errors"].is_null(), "{query}: {r}");
    r["data"].clone()
}

const DEPLOYMENT: &str = "query($id: String!) { deployment(id: $id) { id liveRevision targetRevision \
    instances { nodeId state reason containerId observedRevision desiredRevision restartCount attempts nextRetryAt \
      engine { reachable reason attempts } restarts { exitCode oomKilled logTail at } } \
    lastRollout { kind state reason toRevision currentBatch batches } } }";

async fn deployment(server: &Server, id: &str) -> Value {
    gql(server, DEPLOYMENT, json!({"id": id})).await["deployment"].clone()
}

fn running_on(deployment_id: &str, node: &str) -> Vec<String> {
    on_node(deployment_id, node)
        .into_iter()
        .filter(|c| c.state == "running")
        .map(|c| c.id)
        .collect()
}

async fn create(server: &Server, name: &str, spec: Value) -> String {
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

async fn set_labels(server: &Server, node: &str, labels: &[(&str, &str)]) {
    let labels: Vec<Value> = labels
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    gql(
        server,
        "mutation($id: String!, $l: [LabelInput!]!) { setNodeLabels(id: $id, labels: $l) { id } }",
        json!({"id": node, "l": labels}),
    )
    .await;
}

/// Joins an agent whose node's engine is this machine's, reached at `port` over plain TCP, and
/// marks it insecure as an admin would.
async fn join_with_engine(server: &Server, node: &str, port: u16) -> Agent {
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let agent = server
        .join_agent_with(node, &["--docker-endpoint", &endpoint])
        .await;
    server.wait_state(node, "ONLINE", PATIENCE).await;
    gql(
        server,
        "mutation($id: String!) { setNodeDockerInsecure(id: $id, insecure: true) { id } }",
        json!({"id": node}),
    )
    .await;
    agent
}

fn base_spec(image: &str, label: &str) -> Value {
    json!({
        "container": {
            "image": image,
            "labels": [{"name": "trellis-test", "value": label}],
            "stopGraceSecs": 2,
        },
        "target": {"all": true},
        "update": {"minReadySecs": 1, "healthTimeoutSecs": 40},
    })
}

async fn start() -> (TestImages, DockerGuard, Server) {
    let images = TestImages::make();
    let guard = DockerGuard::new(&images.label);
    let server = Server::start(ServerOpts {
        extra_args: vec![
            "--docker-timeout-secs".into(),
            "3".into(),
            "--deploy-backoff-max-secs".into(),
            "4".into(),
        ],
        ..ServerOpts::default()
    })
    .await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    (images, guard, server)
}

fn cluster_of(rows: &[ContainerRow]) -> String {
    rows[0].labels["io.trellis.cluster"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_follow_node_labels_and_an_unreachable_engine_recovers() {
    let (images, mut guard, server) = start().await;
    let dir = server.dir.path().to_owned();
    let socat_a = docker_over_tcp(&dir, None).await;
    let socat_b = docker_over_tcp(&dir, None).await;
    let (port_a, port_b) = (socat_a.port, socat_b.port);
    let _a = join_with_engine(&server, "cam-a", port_a).await;
    let _b = join_with_engine(&server, "cam-b", port_b).await;
    set_labels(&server, "cam-a", &[("role", "cam")]).await;

    let mut spec = base_spec(&images.bb, &images.label);
    spec["target"] = json!({"labels": [{"name": "role", "value": "cam"}]});
    spec["update"]["parallelism"] = json!(0);
    // The preview names exactly the labelled node.
    let preview = gql(
        &server,
        "query($t: TargetInput!) { previewDeploymentTarget(target: $t) { nodeId hasEngine } }",
        json!({"t": spec["target"]}),
    )
    .await;
    assert_eq!(
        preview["previewDeploymentTarget"],
        json!([{"nodeId": "cam-a", "hasEngine": true}])
    );
    let id = create(&server, "cams", spec).await;
    let a1 = wait_for("cam-a running", PATIENCE, || async {
        let r = running_on(&id, "cam-a");
        (r.len() == 1).then(|| r[0].clone())
    })
    .await;
    guard.also_cluster(&cluster_of(&on_node(&id, "cam-a")));
    assert!(on_node(&id, "cam-b").is_empty() && on_node(&id, "leader").is_empty());

    // cam-b gains the label: it gets the deployment. cam-a loses it: its container goes.
    set_labels(&server, "cam-b", &[("role", "cam")]).await;
    wait_for("cam-b running", PATIENCE, || async {
        (running_on(&id, "cam-b").len() == 1).then_some(())
    })
    .await;
    set_labels(&server, "cam-a", &[]).await;
    wait_for("cam-a's container removed", PATIENCE, || async {
        let d = deployment(&server, &id).await;
        (on_node(&id, "cam-a").is_empty() && instance(&d, "cam-a").is_none()).then_some(())
    })
    .await;
    assert!(
        !docker_ps("io.trellis.node=cam-a")
            .iter()
            .any(|c| c.id == a1),
        "cam-a's container is gone"
    );

    // cam-b's engine goes away, and meanwhile its container is removed by hand.
    drop(socat_b);
    let b1 = running_on(&id, "cam-b")[0].clone();
    docker(&["rm", "-f", &b1]);
    let unreachable = wait_for("cam-b unreachable, retried", PATIENCE, || async {
        let d = deployment(&server, &id).await;
        let i = instance(&d, "cam-b")?.clone();
        (i["state"] == "UNREACHABLE" && i["attempts"].as_i64() >= Some(2)).then_some(i)
    })
    .await;
    let reason = unreachable["reason"].as_str().expect("a reason");
    assert!(
        reason.contains("cam-b") && reason.contains("Docker engine"),
        "{reason}"
    );
    assert!(unreachable["nextRetryAt"].is_string(), "{unreachable}");
    assert_eq!(unreachable["engine"]["reachable"], false, "{unreachable}");
    // Back on the same port: the container is made again and the reason cleared.
    let _socat_b = docker_over_tcp(&dir, Some(port_b)).await;
    wait_for("cam-b running again", PATIENCE, || async {
        let d = deployment(&server, &id).await;
        let i = instance(&d, "cam-b")?.clone();
        (i["state"] == "RUNNING" && i["reason"].is_null() && running_on(&id, "cam-b").len() == 1)
            .then_some(())
    })
    .await;

    // A deployment to all nodes reaches a node that joins later.
    let mut everywhere = base_spec(&images.bb, &images.label);
    everywhere["update"]["parallelism"] = json!(0);
    let all_id = create(&server, "everywhere", everywhere).await;
    wait_for("everywhere on the three nodes", PATIENCE, || async {
        let n = ["leader", "cam-a", "cam-b"]
            .iter()
            .filter(|n| running_on(&all_id, n).len() == 1)
            .count();
        (n == 3).then_some(())
    })
    .await;
    let socat_c = docker_over_tcp(&dir, None).await;
    let _c = join_with_engine(&server, "cam-c", socat_c.port).await;
    wait_for("the node that joined later runs it", PATIENCE, || async {
        (running_on(&all_id, "cam-c").len() == 1).then_some(())
    })
    .await;
    drop(socat_a);
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_wait_for_health_and_a_crash_loop_holds_back_no_other_rollout() {
    let (images, mut guard, server) = start().await;
    let dir = server.dir.path().to_owned();
    let socat = docker_over_tcp(&dir, None).await;
    let _n1 = join_with_engine(&server, "n1", socat.port).await;

    // A deployment that crash-loops on the leader's node.
    let mut crashing = base_spec(&images.bb, &images.label);
    crashing["container"]["command"] = json!(["sh", "-c", "echo starting; echo boom >&2; exit 3"]);
    crashing["target"] = json!({"nodeIds": ["leader"]});
    let crash_id = create(&server, "crasher", crashing).await;

    // Another, healthy after 2 s, on two nodes one at a time.
    let mut healthy = base_spec(&images.bb_health, &images.label);
    healthy["container"]["env"] = json!([{"name": "READY_AFTER", "value": "2"}]);
    healthy["target"] = json!({"nodeIds": ["leader", "n1"]});
    let id = create(&server, "healthy", healthy).await;
    // Batch 2 (n1) gets nothing before batch 1 (leader) is healthy.
    let saw_first_batch = std::sync::atomic::AtomicBool::new(false);
    let d = wait_for("the healthy deployment rolled out", PATIENCE * 2, || {
        let server = &server;
        let id = &id;
        let saw = &saw_first_batch;
        async move {
            let d = deployment(server, id).await;
            let r = &d["lastRollout"];
            if r["currentBatch"] == 0 && r["state"] == "running" {
                saw.store(true, std::sync::atomic::Ordering::Relaxed);
                let leader = instance(&d, "leader").map(|i| i["state"].clone());
                assert!(
                    on_node(id, "n1").is_empty(),
                    "n1 got its container while batch 1 was {leader:?}"
                );
            }
            (r["state"] == "succeeded").then_some(d)
        }
    })
    .await;
    assert!(
        saw_first_batch.into_inner(),
        "the rollout was seen waiting on its first batch"
    );
    assert_eq!(d["lastRollout"]["batches"], json!([["leader"], ["n1"]]));
    for n in ["leader", "n1"] {
        assert_eq!(instance(&d, n).expect(n)["state"], "HEALTHY", "{d}");
    }
    guard.also_cluster(&cluster_of(&on_node(&id, "n1")));

    // Meanwhile the crasher is a crash loop, shown with its exits, code and last lines.
    let c = wait_for("the crash loop shown", PATIENCE, || async {
        let d = deployment(&server, &crash_id).await;
        let i = instance(&d, "leader")?.clone();
        (i["state"] == "CRASH_LOOP").then_some(i)
    })
    .await;
    let restarts = c["restarts"].as_array().expect("restarts");
    assert!(!restarts.is_empty(), "{c}");
    assert_eq!(restarts[0]["exitCode"], 3, "{c}");
    assert!(
        restarts[0]["logTail"]
            .as_str()
            .expect("tail")
            .contains("boom"),
        "{c}"
    );
    assert!(
        c["reason"].as_str().expect("reason").contains("code 3"),
        "{c}"
    );

    // A new revision that never gets healthy, with PAUSE: paused with the reason, the old
    // containers running; then rolled back by hand.
    let before = running_on(&id, "leader");
    let mut never = base_spec(&images.bb_health, &images.label);
    never["container"]["env"] = json!([{"name": "READY_AFTER", "value": "never"}]);
    never["target"] = json!({"nodeIds": ["leader", "n1"]});
    never["update"]["failureAction"] = json!("PAUSE");
    never["update"]["healthTimeoutSecs"] = json!(6);
    gql(
        &server,
        "mutation($id: String!, $s: DeploymentSpecInput!) { updateDeployment(id: $id, spec: $s) { id } }",
        json!({"id": id, "s": never}),
    )
    .await;
    let d = wait_for("the rollout paused", PATIENCE * 2, || async {
        let d = deployment(&server, &id).await;
        (d["lastRollout"]["state"] == "paused").then_some(d)
    })
    .await;
    let reason = d["lastRollout"]["reason"].as_str().expect("reason");
    assert!(reason.contains("node leader"), "{reason}");
    assert_eq!(running_on(&id, "n1").len(), 1, "n1 still runs revision 1");
    gql(
        &server,
        "mutation($id: String!) { rollbackDeployment(id: $id, toRevision: 1) { id } }",
        json!({"id": id}),
    )
    .await;
    wait_for("back on revision 1's spec", PATIENCE * 2, || async {
        let d = deployment(&server, &id).await;
        (d["lastRollout"]["state"] == "succeeded" && d["liveRevision"] == 3).then_some(())
    })
    .await;
    assert_eq!(
        running_on(&id, "leader"),
        before,
        "revision 1's kept container runs again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_mid_rollout_resumes_it_with_no_duplicates() {
    let (images, mut guard, mut server) = start().await;
    let dir = server.dir.path().to_owned();
    let s1 = docker_over_tcp(&dir, None).await;
    let s2 = docker_over_tcp(&dir, None).await;
    let _n1 = join_with_engine(&server, "n1", s1.port).await;
    let _n2 = join_with_engine(&server, "n2", s2.port).await;
    let nodes = ["leader", "n1", "n2"];
    let mut spec = base_spec(&images.bb, &images.label);
    spec["update"]["minReadySecs"] = json!(3);
    spec["update"]["parallelism"] = json!(0);
    let id = create(&server, "steady", spec.clone()).await;
    wait_for("revision 1 everywhere", PATIENCE * 2, || async {
        let d = deployment(&server, &id).await;
        (d["lastRollout"]["state"] == "succeeded").then_some(())
    })
    .await;
    guard.also_cluster(&cluster_of(&on_node(&id, "n1")));

    spec["container"]["env"] = json!([{"name": "V", "value": "2"}]);
    spec["update"]["parallelism"] = json!(1);
    gql(
        &server,
        "mutation($id: String!, $s: DeploymentSpecInput!) { updateDeployment(id: $id, spec: $s) { id } }",
        json!({"id": id, "s": spec}),
    )
    .await;
    // Killed once batch 2 is under way; down for a second.
    let first = wait_for("batch 2 open", PATIENCE * 2, || async {
        let d = deployment(&server, &id).await;
        (d["lastRollout"]["currentBatch"] == 1).then(|| running_on(&id, "leader"))
    })
    .await;
    server
        .restart_after(std::time::Duration::from_secs(1))
        .await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    let d = wait_for(
        "the rollout finished after the restart",
        PATIENCE * 3,
        || async {
            let d = deployment(&server, &id).await;
            (d["lastRollout"]["state"] == "succeeded" && d["liveRevision"] == 2).then_some(d)
        },
    )
    .await;
    assert_eq!(
        d["lastRollout"]["toRevision"], 2,
        "the same rollout, not a new one: {d}"
    );
    assert_eq!(
        running_on(&id, "leader"),
        first,
        "batch 1's container was not made again"
    );
    for n in nodes {
        wait_for(&format!("one container on {n}"), PATIENCE, || async {
            let all = on_node(&id, n);
            (all.len() == 1
                && all[0].state == "running"
                && all[0].labels["io.trellis.revision"] == "2")
                .then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn viewers_read_operators_deploy_and_only_admins_get_privileges() {
    let server = Server::start(ServerOpts::default()).await;
    for (user, role) in [("vera", "VIEWER"), ("otto", "OPERATOR")] {
        gql(
            &server,
            "mutation($u: String!, $r: Role!) { createUser(username: $u, password: \"password-of-user\", role: $r) { id } }",
            json!({"u": user, "r": role}),
        )
        .await;
    }
    let viewer = Auth::Cookie(
        server
            .login("vera", "password-of-user")
            .await
            .expect("login"),
    );
    let operator = Auth::Cookie(
        server
            .login("otto", "password-of-user")
            .await
            .expect("login"),
    );
    let create = "mutation($n: String!, $s: DeploymentSpecInput!) { createDeployment(name: $n, spec: $s) { id } }";
    // A target no node matches: nothing runs anywhere.
    let mut spec = json!({
        "container": {"image": "registry.local/cam:1"},
        "target": {"labels": [{"name": "role", "value": "nobody"}]},
    });
    let (_, r) = server
        .graphql_as(&viewer, create, json!({"n": "v", "s": spec}))
        .await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "FORBIDDEN", "{r}");
    spec["container"]["privileged"] = json!(true);
    spec["container"]["devices"] = json!([{"host": "/dev/video0"}]);
    let (_, r) = server
        .graphql_as(&operator, create, json!({"n": "o", "s": spec}))
        .await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "FORBIDDEN", "{r}");
    let msg = r["errors"][0]["message"].as_str().expect("message");
    assert!(
        msg.contains("privileged") && msg.contains("devices"),
        "{msg}"
    );
    // The engine's own socket (or any path of the node) as a volume: an admin's alone, also
    // when only one node's override asks for it.
    let mut socket = spec.clone();
    socket["container"]["privileged"] = json!(false);
    socket["container"]["devices"] = json!([]);
    socket["container"]["volumes"] =
        json!([{"source": "/var/run/docker.sock", "target": "/var/run/docker.sock"}]);
    let (_, r) = server
        .graphql_as(&operator, create, json!({"n": "sock", "s": socket}))
        .await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "FORBIDDEN", "{r}");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("volumes from a node path"),
        "{r}"
    );
    let r = server.graphql("{ deployments { name } }", json!({})).await;
    assert_eq!(r["data"]["deployments"], json!([]), "nothing made: {r}");
    // Bad input is named.
    let mut bad = spec.clone();
    bad["container"]["image"] = json!("Not An Image");
    let r = server.graphql(create, json!({"n": "bad", "s": bad})).await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "BAD_REQUEST", "{r}");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .expect("m")
            .contains("container.image"),
        "{r}"
    );
    // The admin may; the operator may then edit what has no privileges.
    let r = server.graphql(create, json!({"n": "cam", "s": spec})).await;
    assert!(r["errors"].is_null(), "{r}");
    spec["container"]["privileged"] = json!(false);
    spec["container"]["devices"] = json!([]);
    let (_, r) = server
        .graphql_as(
            &operator,
            "mutation($s: DeploymentSpecInput!) { updateDeployment(id: \"cam\", spec: $s) { latestRevision } }",
            json!({"s": spec}),
        )
        .await;
    assert_eq!(r["data"]["updateDeployment"]["latestRevision"], 2, "{r}");
    let (_, r) = server
        .graphql_as(
            &viewer,
            "{ deployments { name latestRevision instances { nodeId } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        r["data"]["deployments"],
        json!([{"name": "cam", "latestRevision": 2, "instances": []}])
    );
    let log = server.audit_log(20).await;
    assert!(
        log.iter()
            .any(|e| e["action"] == "createDeployment" && e["outcome"] == "FORBIDDEN"),
        "refusals are audited: {log:?}"
    );
}
