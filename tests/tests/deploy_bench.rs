//! The deployment benchmarks of issue 11 (a benchmark, not a test: `#[ignore]`d, run by
//! `bash scripts/bench.sh deploy`, or by hand with `cargo build --release -p trellis-server -p
//! trellis-agent && cargo test --release -p trellis-tests --test deploy_bench -- --ignored
//! --nocapture`). On this machine's one Docker engine, with an offline busybox image:
//!
//! 1. Deploy to one node beside `docker run` of the same container: Trellis is
//!    `createDeployment` sent → the instance `RUNNING` in the API (seen through
//!    `deploymentEvents`, opened beforehand); `docker run -d` is the command's whole run. Rounds
//!    alternate; medians.
//! 2. A rollout (a new env value) to 20 node entries at once beside one: `updateDeployment` sent →
//!    the rollout `succeeded`. The entries are nodes whose agents joined with
//!    `--docker-endpoint tcp://127.0.0.1:<port>` (one socat in front of the socket) and were then
//!    stopped; their rows, endpoints included, stay.
//! 3. 50 deployments on the leader's node: time until all run, then the leader's CPU and memory
//!    while converging and over a quiet minute (the 30 s resync and 10 s rechecks).
//!
//! Output: `name value unit` lines on stdout, prefixed `deploy_`.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use trellis_tests::{
    PATIENCE, Server, ServerOpts, Ws,
    bench::{cpu_secs, env, status_kib},
    docker::{DockerGuard, TestImages, docker, docker_over_tcp},
    next_json, wait_for, ws_session,
};

async fn gql(server: &Server, query: &str, vars: Value) -> Value {
    let r = server.graphql(query, vars).await;
    if !r["errors"].is_null() {
        let log = server.proc.log_text();
        let tail: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
            .collect();
        panic!(
            "{query}: {r}\n{}",
            tail[tail.len().saturating_sub(10)..].join("\n")
        );
    }
    r["data"].clone()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn spec(image: &str, label: &str, nodes: &[String], value: &str) -> Value {
    json!({
        "container": {
            "image": image,
            "env": [{"name": "V", "value": value}],
            "labels": [{"name": "trellis-test", "value": label}],
            "stopGraceSecs": 1,
        },
        "target": {"nodeIds": nodes},
        "update": {"parallelism": 0, "maxUnavailable": 0, "minReadySecs": 0},
    })
}

const RUNNING: &str = "query($id: String!) { deployment(id: $id) { instances { state } } }";

async fn all_running(server: &Server, id: &str) -> bool {
    let d = gql(server, RUNNING, json!({"id": id})).await;
    d["deployment"]["instances"]
        .as_array()
        .is_some_and(|is| !is.is_empty() && is.iter().all(|i| i["state"] == "RUNNING"))
}

async fn events(server: &Server) -> Ws {
    let mut ws = ws_session(server, server.admin_cookie.as_deref(), json!({})).await;
    let sub = json!({"id": "1", "type": "subscribe", "payload": {
        "query": "subscription { deploymentEvents { kind deploymentId nodeId } }"}});
    ws.send(Message::text(sub.to_string())).await.expect("send");
    ws
}

/// Asks `check` after each event (or every 500 ms) until it says yes.
async fn wait_events(ws: &mut Ws, check: impl AsyncFn() -> bool) {
    loop {
        if check().await {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), next_json(ws)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: bash scripts/bench.sh deploy"]
async fn deploy_benchmark() {
    let rounds: usize = env("DEPLOY_ROUNDS", 7);
    let entries: usize = env("DEPLOY_ENTRIES", 20);
    let many: usize = env("DEPLOY_MANY", 50);
    let images = TestImages::make();
    let _guard = DockerGuard::new(&images.label);
    let server = Server::start(ServerOpts::default()).await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    let mut ws = events(&server).await;
    let leader = vec!["leader".to_owned()];

    // 1. One node beside docker run.
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let name = format!("one-{round}");
        let t = Instant::now();
        let id = gql(
            &server,
            "mutation($n: String!, $s: DeploymentSpecInput!) { createDeployment(name: $n, spec: $s) { id } }",
            json!({"n": name, "s": spec(&images.bb, &images.label, &leader, "1")}),
        )
        .await["createDeployment"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        wait_events(&mut ws, async || all_running(&server, &id).await).await;
        ours.push(t.elapsed().as_secs_f64() * 1000.0);
        gql(
            &server,
            "mutation($id: String!) { removeDeployment(id: $id) }",
            json!({"id": id}),
        )
        .await;
        let label = format!("trellis-test={}", images.label);
        let t = Instant::now();
        let out = Command::new("docker")
            .args([
                "run",
                "-d",
                "--name",
                &format!("bench-run-{round}"),
                "--label",
                &label,
            ])
            .args(["-e", "V=1", "--restart", "unless-stopped", &images.bb])
            .output()
            .expect("docker run");
        theirs.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        docker(&["rm", "-f", &format!("bench-run-{round}")]);
        wait_for("the deployment removed", PATIENCE, || async {
            gql(
                &server,
                "query($id: String!) { deployment(id: $id) { id } }",
                json!({"id": id}),
            )
            .await["deployment"]
                .is_null()
                .then_some(())
        })
        .await;
    }
    let (o, d) = (median(&mut ours), median(&mut theirs));
    println!("deploy_one_trellis_ms {o:.0} ms");
    println!("deploy_one_docker_run_ms {d:.0} ms");
    println!("deploy_one_ratio {:.2} x", o / d);
    println!("deploy_one_rounds {rounds} rounds");

    // 2. A rollout to `entries` node entries beside one.
    let forward = docker_over_tcp(server.dir.path(), None).await;
    let endpoint = format!("tcp://127.0.0.1:{}", forward.port);
    let mut nodes = Vec::new();
    for i in 0..entries {
        let id = format!("e{i:02}");
        let mut agent = server
            .join_agent_with(&id, &["--docker-endpoint", &endpoint])
            .await;
        server.wait_state(&id, "ONLINE", PATIENCE).await;
        gql(
            &server,
            "mutation($id: String!) { setNodeDockerInsecure(id: $id, insecure: true) { id } }",
            json!({"id": id}),
        )
        .await;
        agent.proc.kill9();
        nodes.push(id);
    }
    let mut times = Vec::new();
    for (name, targets) in [("one", vec![nodes[0].clone()]), ("all", nodes.clone())] {
        let id = gql(
            &server,
            "mutation($n: String!, $s: DeploymentSpecInput!) { createDeployment(name: $n, spec: $s) { id } }",
            json!({"n": format!("roll-{name}"), "s": spec(&images.bb, &images.label, &targets, "0")}),
        )
        .await["createDeployment"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let done =
            "query($id: String!) { deployment(id: $id) { lastRollout { state toRevision } } }";
        let rolled = async |rev: i64| {
            let d = gql(&server, done, json!({"id": id})).await;
            let r = &d["deployment"]["lastRollout"];
            r["state"] == "succeeded" && r["toRevision"] == rev
        };
        wait_events(&mut ws, async || rolled(1).await).await;
        let mut t_all = Vec::new();
        for round in 0..5 {
            let t = Instant::now();
            gql(
                &server,
                "mutation($id: String!, $s: DeploymentSpecInput!) { updateDeployment(id: $id, spec: $s) { id } }",
                json!({"id": id, "s": spec(&images.bb, &images.label, &targets, &format!("{}", round + 1))}),
            )
            .await;
            let rev = i64::from(round) + 2;
            wait_events(&mut ws, async || rolled(rev).await).await;
            t_all.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.push(median(&mut t_all));
        gql(
            &server,
            "mutation($id: String!) { removeDeployment(id: $id) }",
            json!({"id": id}),
        )
        .await;
        wait_for("removed", PATIENCE * 4, || async {
            gql(
                &server,
                "query($id: String!) { deployment(id: $id) { id } }",
                json!({"id": id}),
            )
            .await["deployment"]
                .is_null()
                .then_some(())
        })
        .await;
    }
    // The same containers by hand: `docker run -d` of one, and of `entries` at once.
    let label = format!("trellis-test={}", images.label);
    let mut by_hand = Vec::new();
    for n in [1, entries] {
        let mut t_all = Vec::new();
        for round in 0..5 {
            let t = Instant::now();
            let children: Vec<_> = (0..n)
                .map(|i| {
                    Command::new("docker")
                        .args(["run", "-d", "--name", &format!("bench-par-{round}-{i}")])
                        .args(["--label", &label, "-e", "V=1", &images.bb])
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .expect("docker run")
                })
                .collect();
            for mut c in children {
                assert!(c.wait().expect("wait").success());
            }
            t_all.push(t.elapsed().as_secs_f64() * 1000.0);
            let ids = docker(&["ps", "-aq", "--filter", "name=bench-par-"]);
            let ids: Vec<&str> = ids.lines().collect();
            let mut rm = vec!["rm", "-f"];
            rm.extend(ids);
            docker(&rm);
        }
        by_hand.push(median(&mut t_all));
    }
    println!("deploy_by_hand_1_ms {:.0} ms", by_hand[0]);
    println!("deploy_by_hand_{entries}_ms {:.0} ms", by_hand[1]);
    println!("deploy_by_hand_ratio {:.2} x", by_hand[1] / by_hand[0]);
    println!("deploy_rollout_1_ms {:.0} ms", times[0]);
    println!("deploy_rollout_{entries}_ms {:.0} ms", times[1]);
    println!("deploy_rollout_entries {entries} entries");
    println!("deploy_rollout_ratio {:.2} x", times[1] / times[0]);
    drop(forward);

    // 3. Many deployments on the leader's node.
    let pid = server.proc.id();
    let stat = format!("/proc/{pid}/stat");
    let (cpu0, t0) = (cpu_secs(&stat), Instant::now());
    let rss0 = status_kib(pid, "VmRSS:");
    let mut ids = Vec::new();
    for i in 0..many {
        let id = gql(
            &server,
            "mutation($n: String!, $s: DeploymentSpecInput!) { createDeployment(name: $n, spec: $s) { id } }",
            json!({"n": format!("many-{i}"), "s": spec(&images.bb, &images.label, &leader, "1")}),
        )
        .await["createDeployment"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        ids.push(id);
    }
    let running = async || {
        let d = gql(
            &server,
            "{ deployments { instances { state } } }",
            json!({}),
        )
        .await;
        let n = d["deployments"].as_array().map_or(0, |ds| {
            ds.iter()
                .filter(|d| d["instances"][0]["state"] == "RUNNING")
                .count()
        });
        n == many
    };
    wait_events(&mut ws, async || running().await).await;
    let converge = t0.elapsed().as_secs_f64();
    let cpu_converge = (cpu_secs(&stat) - cpu0) / converge * 100.0;
    let rss_converged = status_kib(pid, "VmRSS:");
    let quiet: u64 = env("DEPLOY_QUIET_SECS", 60);
    let (cpu1, t1) = (cpu_secs(&stat), Instant::now());
    tokio::time::sleep(Duration::from_secs(quiet)).await;
    let cpu_quiet = (cpu_secs(&stat) - cpu1) / t1.elapsed().as_secs_f64() * 100.0;
    let containers = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=trellis-test={}", images.label),
    ])
    .lines()
    .count();
    println!("deploy_many {many} deployments");
    println!("deploy_many_converge_s {converge:.1} s");
    println!("deploy_many_cpu_converging {cpu_converge:.0} %");
    println!("deploy_many_cpu_quiet {cpu_quiet:.1} %");
    println!("deploy_many_rss_before {} MiB", rss0 / 1024);
    println!("deploy_many_rss_after {} MiB", rss_converged / 1024);
    println!("deploy_many_hwm {} MiB", status_kib(pid, "VmHWM:") / 1024);
    println!("deploy_many_containers {containers} containers");
    for id in &ids {
        gql(
            &server,
            "mutation($id: String!) { removeDeployment(id: $id) }",
            json!({"id": id}),
        )
        .await;
    }
    wait_for("all removed", PATIENCE * 4, || async {
        let d = gql(&server, "{ deployments { id } }", json!({})).await;
        d["deployments"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    })
    .await;
    let left = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=trellis-test={}", images.label),
    ])
    .lines()
    .count();
    println!("deploy_many_left {left} containers");
}
