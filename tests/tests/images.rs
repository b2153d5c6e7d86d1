//! Issue 12: images with no registry. A second `dockerd` on this machine is a node's engine,
//! reached over TCP through a chaos proxy that can slow the link or cut it; the leader's engine
//! is this machine's. Images go from one to the other by sideload with their progress shown; a
//! deployment with `pull: SIDELOAD` starts from a sideloaded image; a transfer cut halfway fails
//! and a retry succeeds; a node whose Docker data root is nearly full refuses an image with the
//! space needed and free; prune removes what no deployment needs and keeps the rollback image;
//! a `docker save` archive uploaded to the leader lands in its engine, and a bad one is refused.

use serde_json::{Value, json};
use trellis_tests::{
    PATIENCE, Server, ServerOpts,
    chaos::{Chaos, Upstream},
    docker::{
        DockerGuard, SecondEngine, SmallDisk, TestImages, big_image, docker, docker_ok, image_id,
        join_edge,
    },
    wait_for,
};

async fn gql(server: &Server, query: &str, vars: Value) -> Value {
    let r = server.graphql(query, vars).await;
    assert!(r["errors"].is_null(), "{query}: {r}");
    r["data"].clone()
}

const TRANSFER: &str = "query($id: String!) { imageTransfer(id: $id) { id nodeId image imageId \
    state bytes totalBytes percent error cause createdBy finishedAt } }";

async fn sideload(server: &Server, node: &str, image: &str) -> Value {
    gql(
        server,
        "mutation($n: String!, $i: String!) { sideloadImage(nodeId: $n, image: $i) { id state } }",
        json!({"n": node, "i": image}),
    )
    .await["sideloadImage"]
        .clone()
}

/// Follows a transfer every 50 ms until it ends; returns its end and every state seen.
async fn follow(server: &Server, id: &str) -> (Value, Vec<Value>) {
    let mut seen = Vec::new();
    let started = std::time::Instant::now();
    loop {
        let t = gql(server, TRANSFER, json!({"id": id})).await["imageTransfer"].clone();
        seen.push(t.clone());
        if t["state"] == "DONE" || t["state"] == "FAILED" {
            return (t, seen);
        }
        assert!(
            started.elapsed() < PATIENCE * 4,
            "transfer {id} did not end: {t}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Gives node `node` the label `site=edge`.
async fn label(server: &Server, node: &str) {
    gql(
        server,
        "mutation($id: String!) { setNodeLabels(id: $id, labels: [{key: \"site\", value: \"edge\"}]) { id } }",
        json!({"id": node}),
    )
    .await;
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

async fn remove(server: &Server, id: &str) {
    gql(
        server,
        "mutation($id: String!) { removeDeployment(id: $id) }",
        json!({"id": id}),
    )
    .await;
}

async fn start(extra: &[&str]) -> Server {
    Server::start(ServerOpts {
        local_agent: false,
        extra_args: extra.iter().map(|s| (*s).to_owned()).collect(),
        ..ServerOpts::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_sideloads_with_progress_and_a_deployment_starts_from_it() {
    let images = TestImages::make();
    let _guard = DockerGuard::new(&images.label);
    let big = big_image(&images.label, 48);
    let mut second = SecondEngine::start().await;
    let proxy = Chaos::start(Upstream::Unix(second.socket.clone())).await;
    let server = start(&["--docker-timeout-secs", "5"]).await;
    let _edge = join_edge(&server, "edge", &proxy, &second.data_root).await;

    // 48 MiB at 16 MiB/s: about three seconds of progress to watch.
    proxy.rate(16 << 20);
    let t = sideload(&server, "edge", &big).await;
    let (end, seen) = follow(&server, t["id"].as_str().expect("id")).await;
    assert_eq!(end["state"], "DONE", "{end}");
    assert_eq!(end["percent"], 100.0);
    assert_eq!(end["imageId"], image_id(&big));
    assert!(end["totalBytes"].as_i64() > Some(48 << 20), "{end}");
    assert!(end["bytes"].as_i64() >= end["totalBytes"].as_i64(), "{end}");
    assert_eq!(end["cause"], "sideloadImage");
    let midway: Vec<f64> = seen
        .iter()
        .filter(|t| t["state"] == "LOADING")
        .filter_map(|t| t["percent"].as_f64())
        .filter(|p| *p > 0.0 && *p < 100.0)
        .collect();
    assert!(
        midway.len() >= 3 && midway.windows(2).all(|w| w[0] <= w[1]),
        "progress seen on the way, never going back: {midway:?}"
    );
    assert_eq!(
        second.image_id(&big),
        Some(image_id(&big)),
        "the node has it"
    );

    // Again: nothing moves.
    proxy.rate(0);
    let t = sideload(&server, "edge", &big).await;
    let (again, _) = follow(&server, t["id"].as_str().expect("id")).await;
    assert_eq!(again["state"], "DONE");
    assert_eq!(again["bytes"], 0);
    assert_eq!(again["error"], "already on the node");

    // A deployment that says its image comes by sideload, to a node without the image.
    assert_eq!(second.image_id(&images.bb), None);
    let spec = json!({
        "container": {
            "image": images.bb,
            "pull": "SIDELOAD",
            "networkMode": "none",
            "labels": [{"name": "trellis-test", "value": images.label}],
            "stopGraceSecs": 1,
        },
        "target": {"nodeIds": ["edge"]},
        "update": {"minReadySecs": 1},
    });
    let id = create(&server, "offline", spec).await;
    wait_for(
        "the instance running on the second engine",
        PATIENCE,
        || async {
            let running = second.docker(&[
                "ps",
                "--filter",
                &format!("label=io.trellis.deployment={id}"),
                "--format",
                "{{.Image}}",
            ]);
            (running.trim() == images.bb).then_some(())
        },
    )
    .await;
    let list = gql(
        &server,
        "{ imageTransfers(nodeId: \"edge\") { image state cause createdBy error } }",
        json!({}),
    )
    .await["imageTransfers"]
        .clone();
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .any(|t| t["image"] == images.bb
                && t["state"] == "DONE"
                && t["cause"] == "deployment offline"
                && t["createdBy"] == "reconciler"),
        "{list}"
    );
    let on_node = gql(
        &server,
        "{ nodeImages(nodeId: \"edge\") { id tags sizeBytes containers } }",
        json!({}),
    )
    .await["nodeImages"]
        .clone();
    let bb = on_node
        .as_array()
        .expect("images")
        .iter()
        .find(|i| i["tags"][0] == images.bb)
        .unwrap_or_else(|| panic!("{on_node}"));
    assert_eq!(bb["containers"], 1, "{bb}");
    let audit = server.audit_log(50).await;
    assert!(
        trellis_tests::audit_has(&audit, &[("action", "sideloadImage"), ("outcome", "ok")]),
        "{audit:?}"
    );

    // The node's engine restarts and has forgotten everything (a new disk): the reconciler
    // relists, sends the image again and runs the instance anew.
    let before = second.docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=io.trellis.deployment={id}"),
    ]);
    second.restart_forgetting();
    assert_eq!(second.image_id(&images.bb), None, "forgotten");
    wait_for(
        "the instance running again on the new engine",
        PATIENCE * 2,
        || async {
            let running = second.docker(&[
                "ps",
                "-q",
                "--filter",
                &format!("label=io.trellis.deployment={id}"),
            ]);
            (!running.trim().is_empty() && running != before).then_some(())
        },
    )
    .await;
    let transfers = gql(
        &server,
        "{ imageTransfers(nodeId: \"edge\") { image state cause } }",
        json!({}),
    )
    .await["imageTransfers"]
        .clone();
    let sent = transfers
        .as_array()
        .expect("list")
        .iter()
        .filter(|t| {
            t["image"] == images.bb && t["state"] == "DONE" && t["cause"] == "deployment offline"
        })
        .count();
    assert_eq!(sent, 2, "the image went twice: {transfers}");
    remove(&server, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_transfer_is_retried_whole_and_a_full_disk_refuses_the_image() {
    let images = TestImages::make();
    let _guard = DockerGuard::new(&images.label);
    let big = big_image(&images.label, 32);
    let second = SecondEngine::start().await;
    let proxy = Chaos::start(Upstream::Unix(second.socket.clone())).await;
    let server = start(&["--docker-timeout-secs", "5"]).await;
    let _edge = join_edge(&server, "edge", &proxy, &second.data_root).await;

    // The link breaks after 12 MiB of the image.
    proxy.cut_after(Some(12 << 20));
    let t = sideload(&server, "edge", &big).await;
    let (cut, _) = follow(&server, t["id"].as_str().expect("id")).await;
    assert_eq!(cut["state"], "FAILED", "{cut}");
    let why = cut["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("node \"edge\"") && why.contains(" (after ") && why.ends_with(" MiB)"),
        "the reason names the node and how far it got: {why}"
    );
    assert_eq!(second.image_id(&big), None, "nothing half-loaded");
    // Retried whole, it works; the archive's whole layers from the first try do not block it.
    proxy.cut_after(None);
    let t = sideload(&server, "edge", &big).await;
    let (retried, _) = follow(&server, t["id"].as_str().expect("id")).await;
    assert_eq!(retried["state"], "DONE", "{retried}");
    assert_eq!(second.image_id(&big), Some(image_id(&big)));

    // A node entry whose Docker data root is an 8 MiB filesystem: no room for an image and the
    // 512 MiB margin.
    let small = SmallDisk::mount(8);
    let _full = join_edge(&server, "full", &proxy, small.path()).await;
    // (The big image is on that engine already, and would not move: a small one that is not.)
    let t = sideload(&server, "full", &images.bb_health).await;
    let (refused, _) = follow(&server, t["id"].as_str().expect("id")).await;
    assert_eq!(refused["state"], "FAILED");
    let why = refused["error"].as_str().unwrap_or_default();
    let path = small.path().display().to_string();
    assert!(
        why.starts_with("not enough disk on node \"full\": image ")
            && why.contains(" image + 512 MiB margin)")
            && why.contains(&format!("and {path} has "))
            && why.ends_with(" free"),
        "names the node, the space needed and the space free: {why}"
    );
    assert_eq!(refused["bytes"], 0, "refused before a byte moved");
    // The reconciler refuses the same way, and says so on the instance.
    let spec = json!({
        "container": {
            "image": images.bb_v2,
            "pull": "SIDELOAD",
            "networkMode": "none",
            "labels": [{"name": "trellis-test", "value": images.label}],
        },
        "target": {"nodeIds": ["full"]},
    });
    let id = create(&server, "nofit", spec).await;
    // bb-v2 is small (busybox), but not with the 512 MiB margin on top.
    let reason = wait_for("the instance's reason", PATIENCE, || async {
        let d = gql(
            &server,
            "query($id: String!) { deployment(id: $id) { instances { nodeId state reason } } }",
            json!({"id": id}),
        )
        .await["deployment"]
            .clone();
        d["instances"][0]["reason"]
            .as_str()
            .filter(|r| r.contains("not enough disk"))
            .map(str::to_owned)
    })
    .await;
    assert!(reason.contains("node \"full\""), "{reason}");
    assert_eq!(second.image_id(&images.bb_v2), None);
    remove(&server, &id).await;

    // A build on that node is refused the same way, before it starts.
    let dockerfile = format!("FROM {}\nCMD [\"true\"]\n", images.bb);
    let (status, up) = server
        .upload(
            "/upload/bundle",
            trellis_tests::bundles::bundle(
                "nofit",
                &[
                    ("Dockerfile", dockerfile.as_bytes()),
                    ("app.yaml", b"name: nofit\nversion: '1'\nbuild: node\n"),
                ],
            ),
        )
        .await;
    assert_eq!(status, 200, "{up}");
    gql(
        &server,
        "mutation { deployApp(name: \"nofit\", version: \"1\", target: {nodeIds: [\"full\"]}) { buildState } }",
        json!({}),
    )
    .await;
    let failed = wait_for("the build refused", PATIENCE, || async {
        let v = gql(
            &server,
            "{ appVersion(name: \"nofit\", version: \"1\") { buildState buildError } }",
            json!({}),
        )
        .await["appVersion"]
            .clone();
        (v["buildState"] == "FAILED").then_some(v)
    })
    .await;
    let why = failed["buildError"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("not enough disk on node \"full\": building nofit 1 needs ")
            && why.contains(" build context + 512 MiB margin)")
            && why.contains(&format!("and {path} has ")),
        "{why}"
    );
    assert!(!second.docker_ok(&["image", "inspect", "trellis-app/nofit:1"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_removes_what_no_revision_needs_and_keeps_the_rollback_image() {
    let images = TestImages::make();
    let _guard = DockerGuard::new(&images.label);
    let second = SecondEngine::start().await;
    let proxy = Chaos::start(Upstream::Unix(second.socket.clone())).await;
    // Pruned by hand only here: no prune at a rollout's end.
    let server = start(&["--docker-timeout-secs", "5", "--prune-every-secs", "0"]).await;
    let _edge = join_edge(&server, "edge", &proxy, &second.data_root).await;
    // An image no revision names: not Trellis's to remove.
    let foreign = format!("trellis-test/foreign:{}", images.label);
    docker(&["tag", &images.bb_health, &foreign]);
    let t = sideload(&server, "edge", &foreign).await;
    assert_eq!(
        follow(&server, t["id"].as_str().expect("id")).await.0["state"],
        "DONE"
    );

    let spec = |image: &str| {
        json!({
            "container": {
                "image": image,
                "pull": "SIDELOAD",
                "networkMode": "none",
                "labels": [{"name": "trellis-test", "value": images.label}],
                "stopGraceSecs": 1,
            },
            "target": {"nodeIds": ["edge"]},
            "update": {"minReadySecs": 1},
        })
    };
    let id = create(&server, "pr", spec(&images.bb)).await;
    let rolled_out = |rev: i64| trellis_tests::docker::rolled_out(&server, &id, rev, PATIENCE);
    rolled_out(1).await;
    for (rev, image) in [(2, &images.bb_v2), (3, &foreign)] {
        gql(
            &server,
            "mutation($id: String!, $s: DeploymentSpecInput!) { updateDeployment(id: $id, spec: $s) { id } }",
            json!({"id": id, "s": spec(image)}),
        )
        .await;
        rolled_out(rev).await;
    }
    // Revision 3 runs the image that was foreign; revision 2's is the rollback image;
    // revision 1's is needed by no one once its container is gone.
    wait_for("the old containers gone", PATIENCE, || async {
        let all = second.docker(&["ps", "-a", "--format", "{{.Image}}"]);
        (all.trim() == foreign).then_some(())
    })
    .await;
    assert!(second.image_id(&images.bb).is_some());
    let report = gql(
        &server,
        "mutation { pruneImages(nodeId: \"edge\") { removed kept inUse freedBytes } }",
        json!({}),
    )
    .await["pruneImages"]
        .clone();
    assert_eq!(report["removed"], json!([images.bb]), "{report}");
    assert!(report["freedBytes"].as_i64() > Some(100_000), "{report}");
    let kept: Vec<&str> = report["kept"]
        .as_array()
        .expect("kept")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(kept.contains(&images.bb_v2.as_str()), "{report}");
    assert_eq!(second.image_id(&images.bb), None, "removed from the node");
    assert!(
        second.image_id(&images.bb_v2).is_some(),
        "the rollback image stays"
    );
    assert!(second.image_id(&foreign).is_some());
    // And the rollback works from what stayed.
    gql(
        &server,
        "mutation($id: String!) { rollbackDeployment(id: $id, toRevision: 2) { id } }",
        json!({"id": id}),
    )
    .await;
    rolled_out(4).await;
    remove(&server, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uploaded_archive_lands_in_the_leaders_engine_and_a_bad_one_is_refused() {
    let images = TestImages::make();
    let _guard = DockerGuard::new(&images.label);
    let server = start(&["--upload-max-mib", "16"]).await;
    let saved = std::process::Command::new("docker")
        .args(["save", &images.bb_v2])
        .output()
        .expect("docker save");
    assert!(saved.status.success());
    let id = image_id(&images.bb_v2);
    docker(&["rmi", &images.bb_v2]);
    assert!(!docker_ok(&["image", "inspect", &images.bb_v2]));
    let (status, body) = server.upload("/upload/image", saved.stdout.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["loaded"], json!([images.bb_v2]));
    assert_eq!(image_id(&images.bb_v2), id, "the same image, back");
    let audit = server.audit_log(20).await;
    assert!(
        trellis_tests::audit_has(&audit, &[("action", "uploadImage"), ("outcome", "ok")]),
        "{audit:?}"
    );
    // A refused upload is answered before its body is all read, and the leader then closes the
    // connection: each of these goes on a connection of its own.
    let cookie = server.admin_cookie.clone().unwrap_or_default();
    let upload = |body: Vec<u8>, cookie: Option<String>| {
        let url = server.url("/upload/image");
        async move {
            let mut req = reqwest::Client::new().post(url).body(body);
            if let Some(c) = cookie {
                req = req.header("Cookie", c);
            }
            let resp = req.send().await.expect("POST an upload");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // Not an archive.
    let (status, body) = upload(
        b"this is not a tar archive".repeat(100),
        Some(cookie.clone()),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let msg = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("refused the archive"), "{msg}");
    // Cut short: the first half of a good one.
    let half = saved.stdout[..saved.stdout.len() / 2].to_vec();
    let (status, body) = upload(half, Some(cookie.clone())).await;
    assert_eq!(status, 400, "{body}");
    // Over the limit (16 MiB): refused on its length, before the body is read (a raw request,
    // as an HTTP client stops writing once it sees the answer).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = server.url("").rsplit(':').next().expect("port").to_owned();
    let mut raw = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .expect("connect");
    raw.write_all(
        format!(
            "POST /upload/image HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nContent-Length: {}\r\n\r\n",
            17 << 20
        )
        .as_bytes(),
    )
    .await
    .expect("headers");
    let mut answer = vec![0u8; 64];
    let n = raw.read(&mut answer).await.expect("an answer");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Nobody logged in: refused.
    let (status, _) = upload(saved.stdout, None).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_with_build_node_is_built_on_its_node_not_the_leader() {
    let images = TestImages::make();
    let mut guard = DockerGuard::new(&images.label);
    let second = SecondEngine::start().await;
    let proxy = Chaos::start(Upstream::Unix(second.socket.clone())).await;
    let server = start(&["--docker-timeout-secs", "5"]).await;
    let _edge = join_edge(&server, "edge", &proxy, &second.data_root).await;
    // The base the bundle's Dockerfile names, on the node.
    let t = sideload(&server, "edge", &images.bb).await;
    assert_eq!(
        follow(&server, t["id"].as_str().expect("id")).await.0["state"],
        "DONE"
    );

    let dockerfile = format!(
        "FROM {}\nCMD [\"sh\", \"-c\", \"trap 'exit 0' TERM; echo built on the node; while :; do sleep 1 & wait $!; done\"]\n",
        images.bb
    );
    let (status, up) = server
        .upload(
            "/upload/bundle",
            trellis_tests::bundles::bundle(
                "onnode",
                &[
                    ("Dockerfile", dockerfile.as_bytes()),
                    ("app.yaml", b"name: onnode\nversion: '1'\nbuild: node\n"),
                ],
            ),
        )
        .await;
    assert_eq!(status, 200, "{up}");
    // buildApp builds on the leader: refused for a version that builds on its nodes.
    let r = server
        .graphql(
            "mutation { buildApp(name: \"onnode\", version: \"1\") { buildState } }",
            json!({}),
        )
        .await;
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("builds on its nodes"),
        "{r}"
    );
    label(&server, "edge").await;
    let v = gql(
        &server,
        "mutation { deployApp(name: \"onnode\", version: \"1\", target: {labels: [{name: \"site\", value: \"edge\"}]}) { buildOn buildState } }",
        json!({}),
    )
    .await["deployApp"]
        .clone();
    assert_eq!(v, json!({"buildOn": "node", "buildState": "BUILDING"}));
    let built = wait_for("built on the node", PATIENCE * 2, || async {
        let v = gql(
            &server,
            "{ appVersion(name: \"onnode\", version: \"1\") { buildState buildLog buildError } }",
            json!({}),
        )
        .await["appVersion"]
            .clone();
        match v["buildState"].as_str() {
            Some("BUILT") => Some(v),
            Some("FAILED") => panic!("{v}"),
            _ => None,
        }
    })
    .await;
    let log = built["buildLog"].as_str().unwrap_or_default();
    assert!(
        log.contains("Trellis: on node edge")
            && log.contains("Successfully tagged trellis-app/onnode:1"),
        "{log}"
    );
    assert!(
        second.image_id("trellis-app/onnode:1").is_some(),
        "on the node"
    );
    assert!(
        !docker_ok(&["image", "inspect", "trellis-app/onnode:1"]),
        "not on the leader"
    );
    let pull = wait_for("the app's deployment", PATIENCE, || async {
        let d = gql(
            &server,
            "{ app(name: \"onnode\") { deployment { spec { container { pull image } } } } }",
            json!({}),
        )
        .await["app"]["deployment"]
            .clone();
        (!d.is_null()).then_some(d["spec"]["container"].clone())
    })
    .await;
    assert_eq!(
        pull,
        json!({"pull": "NEVER", "image": "trellis-app/onnode:1"})
    );

    // A node that gains the target's label later gets its own build: "late", this machine's
    // engine through a proxy, which has the base image but not the app's.
    let id = gql(
        &server,
        "{ app(name: \"onnode\") { deployment { id } } }",
        json!({}),
    )
    .await["app"]["deployment"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let host = Chaos::start(Upstream::Unix("/var/run/docker.sock".into())).await;
    let _late = join_edge(&server, "late", &host, std::path::Path::new("/")).await;
    label(&server, "late").await;
    let running = wait_for(
        "built and running on the late node",
        PATIENCE * 3,
        || async {
            trellis_tests::docker::on_node(&id, "late")
                .into_iter()
                .find(|c| c.state == "running")
                .map(|c| c.labels)
        },
    )
    .await;
    guard.also_cluster(&running["io.trellis.cluster"]);
    assert!(
        docker_ok(&["image", "inspect", "trellis-app/onnode:1"]),
        "built there"
    );
    let log = gql(
        &server,
        "{ appVersion(name: \"onnode\", version: \"1\") { buildLog } }",
        json!({}),
    )
    .await["appVersion"]["buildLog"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(log.contains("Trellis: on node late"), "{log}");
    gql(
        &server,
        "mutation { removeApp(name: \"onnode\") }",
        json!({}),
    )
    .await;
}

/// The prune loop (`--prune-every-secs`), on the leader's own node: after three revisions,
/// revision 1's image goes by itself; revision 2's (the rollback image) and 3's stay.
#[tokio::test(flavor = "multi_thread")]
async fn the_prune_loop_removes_what_no_revision_needs_by_itself() {
    prunes_by_itself("2").await;
}

/// With the timer an hour away, a rollout's end prunes its nodes.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollouts_end_prunes_the_image_it_replaced() {
    prunes_by_itself("3600").await;
}

/// Revisions 1, 2, 3 of a deployment on the leader's node, with `--prune-every-secs every`:
/// revision 1's image goes by itself, the rollback and the running ones stay.
async fn prunes_by_itself(every: &str) {
    let images = TestImages::make();
    let mut guard = DockerGuard::new(&images.label);
    let server = Server::start(ServerOpts {
        extra_args: vec!["--prune-every-secs".into(), every.into()],
        ..ServerOpts::default()
    })
    .await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    let spec = |image: &str| {
        json!({
            "container": {
                "image": image,
                "labels": [{"name": "trellis-test", "value": images.label}],
                "stopGraceSecs": 1,
            },
            "target": {"nodeIds": ["leader"]},
            "update": {"minReadySecs": 1},
        })
    };
    let id = create(&server, "loop", spec(&images.bb)).await;
    let rolled_out = |rev: i64| trellis_tests::docker::rolled_out(&server, &id, rev, PATIENCE);
    rolled_out(1).await;
    let cluster = trellis_tests::docker::docker_ps(&format!("io.trellis.deployment={id}"))
        .first()
        .map(|c| c.labels["io.trellis.cluster"].clone())
        .expect("the container");
    guard.also_cluster(&cluster);
    for (rev, image) in [(2, &images.bb_v2), (3, &images.bb_health)] {
        gql(
            &server,
            "mutation($id: String!, $s: DeploymentSpecInput!) { updateDeployment(id: $id, spec: $s) { id } }",
            json!({"id": id, "s": spec(image)}),
        )
        .await;
        rolled_out(rev).await;
    }
    wait_for("revision 1's image gone by itself", PATIENCE, || async {
        (!docker_ok(&["image", "inspect", &images.bb])).then_some(())
    })
    .await;
    assert!(
        docker_ok(&["image", "inspect", &images.bb_v2]),
        "the rollback image stays"
    );
    assert!(
        docker_ok(&["image", "inspect", &images.bb_health]),
        "the running one stays"
    );
    remove(&server, &id).await;
}
