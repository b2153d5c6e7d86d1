//! Issue 12: app bundles, with no registry and no internet. The `py3` base image is this
//! machine's own Python (`python_image`), the other bases busybox; nothing is pulled. A `py3`
//! bundle with a local wheel in its requirements is uploaded, built (pip runs at build time),
//! run on the leader's own node with its parameter set, replaced by version 2 through a
//! rollout, and rolled back; a `dockerfile` bundle and a `nodered` bundle build and run; every
//! bad bundle is refused with its reason and leaves nothing stored; removing the app removes
//! its deployment, containers and images.

use std::{path::Path, process::Command, time::Duration};

use serde_json::{Value, json};
use trellis_tests::{
    PATIENCE, Server, ServerOpts,
    bundles::{bundle, hello_bundle, wheel},
    docker::{DockerGuard, TestImages, docker, docker_ok, docker_ps, python_image},
    wait_for,
};

async fn gql(server: &Server, query: &str, vars: Value) -> Value {
    let r = server.graphql(query, vars).await;
    assert!(r["errors"].is_null(), "{query}: {r}");
    r["data"].clone()
}

const VERSION: &str = "query($n: String!, $v: String!) { appVersion(name: $n, version: $v) { \
    id kind buildState buildLog buildError image imageId params { name kind default } } }";

async fn wait_built(server: &Server, name: &str, version: &str) -> Value {
    wait_for(&format!("{name} {version} built"), PATIENCE * 4, || async {
        let v = gql(server, VERSION, json!({"n": name, "v": version})).await["appVersion"].clone();
        match v["buildState"].as_str() {
            Some("BUILT") => Some(v),
            Some("FAILED") => panic!("the build failed: {v}"),
            _ => None,
        }
    })
    .await
}

/// The running container of deployment `id`'s log, once it has a line containing `want`.
fn wait_log(id: &str, want: &str) -> String {
    trellis_tests::docker::poll_for(&format!("a log line with {want:?}"), PATIENCE * 2, || {
        let rows = docker_ps(&format!("io.trellis.deployment={id}"));
        let c = rows.iter().find(|c| c.state == "running")?;
        let out = Command::new("docker").args(["logs", &c.id]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains(want).then_some(text)
    })
}

async fn rolled_out(server: &Server, id: &str, revision: i64) {
    trellis_tests::docker::rolled_out(server, id, revision, PATIENCE * 2).await;
}

/// A stand-in Node-RED base: busybox with an `npm` that notes how it was called in
/// `/data/npm-ran` and makes the package's directory, as `npm install` would.
fn nodered_base(images: &TestImages) -> String {
    let tag = format!("trellis-test/nodered:{}", images.label);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("npm"),
        "#!/bin/sh\necho \"npm $*\" > /data/npm-ran\nmkdir -p /data/node_modules/node-red-contrib-x\n",
    )
    .expect("npm");
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}\nCOPY npm /bin/npm\nRUN [\"chmod\", \"755\", \"/bin/npm\"]\nLABEL trellis-test={}\n",
            images.bb, images.label
        ),
    )
    .expect("Dockerfile");
    docker(&["build", "-q", "-t", &tag, &dir.path().display().to_string()]);
    tag
}

async fn start(images: &TestImages, extra: &[&str]) -> Server {
    let py = python_image(&images.label);
    let mut args = vec![
        "--py3-base-image".to_owned(),
        py,
        "--nodered-base-image".to_owned(),
        nodered_base(images),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let server = Server::start(ServerOpts {
        extra_args: args,
        ..ServerOpts::default()
    })
    .await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn a_py3_app_builds_runs_rolls_out_version_2_and_rolls_back() {
    let images = TestImages::make();
    let mut guard = DockerGuard::new(&images.label);
    let server = start(&images, &[]).await;
    let wheel = wheel();

    let (status, up) = server
        .upload("/upload/bundle", hello_bundle("1.0", &wheel))
        .await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(
        up,
        json!({"app": "hello", "version": "1.0", "kind": "py3", "image": "trellis-app/hello:1.0", "buildState": "stored", "deployment": null})
    );
    let v1 = gql(
        &server,
        "mutation { buildApp(name: \"hello\", version: \"1.0\") { buildState } }",
        json!({}),
    )
    .await;
    assert_eq!(v1["buildApp"]["buildState"], "BUILDING");
    let v1 = wait_built(&server, "hello", "1.0").await;
    let log = v1["buildLog"].as_str().unwrap_or_default();
    assert!(
        log.contains("Successfully installed hello-dep-1.0")
            && log.contains("Successfully tagged trellis-app/hello:1.0"),
        "pip ran at build time: {log}"
    );
    assert_eq!(
        v1["params"],
        json!([{"name": "GREETING", "kind": "STRING", "default": "hello"}])
    );
    let labels = docker(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"io.trellis.app\"}} {{index .Config.Labels \"io.trellis.app-version\"}}",
        "trellis-app/hello:1.0",
    ]);
    assert_eq!(labels.trim(), "hello 1.0");

    // A parameter of the wrong name is refused, naming those there are.
    let r = server
        .graphql(
            "mutation { deployApp(name: \"hello\", version: \"1.0\", target: {nodeIds: [\"leader\"]}, env: [{name: \"GRETING\", value: \"x\"}]) { version } }",
            json!({}),
        )
        .await;
    let msg = r["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("no parameter \"GRETING\" (it has: GREETING)"),
        "{r}"
    );

    // Built already (above): deployed before the answer.
    let v = gql(
        &server,
        "mutation { deployApp(name: \"hello\", version: \"1.0\", target: {nodeIds: [\"leader\"]}, env: [{name: \"GREETING\", value: \"bonjour\"}]) { version buildState deployError } }",
        json!({}),
    )
    .await["deployApp"]
        .clone();
    assert_eq!(
        v,
        json!({"version": "1.0", "buildState": "BUILT", "deployError": null})
    );
    let d = gql(
        &server,
        "{ app(name: \"hello\") { deployment { id name } } }",
        json!({}),
    )
    .await["app"]["deployment"]
        .clone();
    assert_eq!(d["name"], "app-hello");
    let id = d["id"].as_str().expect("id").to_owned();
    let cluster = wait_for("the app's container", PATIENCE, || async {
        docker_ps(&format!("io.trellis.deployment={id}"))
            .first()
            .map(|c| c.labels["io.trellis.cluster"].clone())
    })
    .await;
    guard.also_cluster(&cluster);
    rolled_out(&server, &id, 1).await;
    wait_log(&id, "bonjour from v1.0: dep-ok tick");

    // Version 2, uploaded and deployed: built on the way, rolled out.
    let (status, up) = server
        .upload("/upload/bundle", hello_bundle("2.0", &wheel))
        .await;
    assert_eq!(status, 200, "{up}");
    gql(
        &server,
        "mutation { deployApp(name: \"hello\", version: \"2.0\") { buildState } }",
        json!({}),
    )
    .await;
    rolled_out(&server, &id, 2).await;
    wait_log(&id, "bonjour from v2.0: dep-ok tick");
    let app = gql(
        &server,
        "{ app(name: \"hello\") { name description tags versions { version buildState } deployment { name liveRevision } } }",
        json!({}),
    )
    .await["app"]
        .clone();
    assert_eq!(
        app,
        json!({"name": "hello", "description": "Says hello", "tags": ["demo"],
               "versions": [{"version": "2.0", "buildState": "BUILT"}, {"version": "1.0", "buildState": "BUILT"}],
               "deployment": {"name": "app-hello", "liveRevision": 2}})
    );

    // And back to version 1.
    gql(
        &server,
        "mutation($id: String!) { rollbackDeployment(id: $id, toRevision: 1) { id } }",
        json!({"id": id}),
    )
    .await;
    rolled_out(&server, &id, 3).await;
    wait_log(&id, "bonjour from v1.0: dep-ok tick");

    // The same version twice is refused.
    let (status, body) = server
        .upload("/upload/bundle", hello_bundle("2.0", &wheel))
        .await;
    assert_eq!(status, 409, "{body}");

    gql(
        &server,
        "mutation { removeApp(name: \"hello\") }",
        json!({}),
    )
    .await;
    wait_for("the app's containers gone", PATIENCE, || async {
        docker_ps(&format!("io.trellis.deployment={id}"))
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(!docker_ok(&["image", "inspect", "trellis-app/hello:2.0"]));
    let r = server.graphql("{ apps { name } }", json!({})).await;
    assert_eq!(r["data"]["apps"], json!([]));
    let audit = server.audit_log(50).await;
    for action in ["uploadBundle", "buildApp", "deployApp", "removeApp"] {
        assert!(
            trellis_tests::audit_has(&audit, &[("action", action), ("outcome", "ok")]),
            "{action} audited"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dockerfile_and_nodered_bundles_build_and_bad_bundles_are_refused() {
    let images = TestImages::make();
    let mut guard = DockerGuard::new(&images.label);
    let server = start(&images, &["--bundle-max-mib", "1"]).await;

    // A Dockerfile bundle, named on the upload (no app.yaml).
    let dockerfile = format!(
        "FROM {}\nCMD [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do echo dockerfile-app says hi; sleep 1 & wait $!; done\"]\n",
        images.bb
    );
    let (status, up) = server
        .upload(
            "/upload/bundle?name=df&version=1",
            bundle("df", &[("Dockerfile", dockerfile.as_bytes())]),
        )
        .await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["kind"], "dockerfile");
    // Not built yet: the answer comes at once, the deployment when the build ends.
    let v = gql(
        &server,
        "mutation { deployApp(name: \"df\", version: \"1\", target: {all: true}) { buildState } }",
        json!({}),
    )
    .await;
    assert_eq!(v["deployApp"]["buildState"], "BUILDING");
    let d = wait_for("the app's deployment", PATIENCE * 2, || async {
        let a = gql(
            &server,
            "{ app(name: \"df\") { deployment { id } } }",
            json!({}),
        )
        .await;
        a["app"]["deployment"]["id"].as_str().map(str::to_owned)
    })
    .await;
    let cluster = wait_for("the app's container", PATIENCE * 2, || async {
        docker_ps(&format!("io.trellis.deployment={d}"))
            .first()
            .map(|c| c.labels["io.trellis.cluster"].clone())
    })
    .await;
    guard.also_cluster(&cluster);
    wait_log(&d, "dockerfile-app says hi");

    // Fast deploy: built and run at once, no bundle kept; the node lists the app as installed
    // and running.
    let quick_file = dockerfile.replace("dockerfile-app says hi", "quick says hi");
    let (status, up) = server
        .upload(
            "/upload/bundle?name=quick&version=1&deploy=leader",
            bundle("quick", &[("Dockerfile", quick_file.as_bytes())]),
        )
        .await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["deployment"], "app-quick");
    let quick = gql(
        &server,
        "{ deployment(id: \"app-quick\") { id } appVersion(name: \"quick\", version: \"1\") { bundleKept buildState } }",
        json!({}),
    )
    .await;
    assert_eq!(
        quick["appVersion"],
        json!({"bundleKept": false, "buildState": "BUILT"})
    );
    let quick_id = quick["deployment"]["id"].as_str().expect("id").to_owned();
    wait_log(&quick_id, "quick says hi");
    let kept: Vec<_> = std::fs::read_dir(server.dir.path().join("data/bundles/quick"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(kept.is_empty(), "no bundle kept: {kept:?}");
    let installed = gql(
        &server,
        "{ nodeImages(nodeId: \"leader\") { tags app appVersion running } }",
        json!({}),
    )
    .await["nodeImages"]
        .clone();
    assert!(
        installed
            .as_array()
            .expect("images")
            .iter()
            .any(|i| i["app"] == "quick"
                && i["appVersion"] == "1"
                && i["running"] == 1
                && i["tags"] == json!(["trellis-app/quick:1"])),
        "{installed}"
    );
    gql(
        &server,
        "mutation { removeApp(name: \"quick\") }",
        json!({}),
    )
    .await;

    // A Node-RED bundle on its (here busybox) base: flows.json lands in /data.
    let (status, up) = server
        .upload(
            "/upload/bundle?name=flows&version=1",
            bundle(
                "flows",
                &[
                    ("flows.json", b"[{\"id\":\"n1\",\"type\":\"inject\"}]"),
                    ("settings.js", b"module.exports = {}"),
                    (
                        "package.json",
                        b"{\"dependencies\": {\"node-red-contrib-x\": \"1.0.0\"}}",
                    ),
                ],
            ),
        )
        .await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["kind"], "nodered");
    gql(
        &server,
        "mutation { buildApp(name: \"flows\", version: \"1\") { id } }",
        json!({}),
    )
    .await;
    wait_built(&server, "flows", "1").await;
    let flows = docker(&[
        "run",
        "--rm",
        "--label",
        &format!("trellis-test={}", images.label),
        "--network",
        "none",
        "trellis-app/flows:1",
        "cat",
        "/data/flows.json",
        "/data/settings.js",
        "/data/npm-ran",
    ]);
    assert_eq!(
        flows,
        "[{\"id\":\"n1\",\"type\":\"inject\"}]module.exports = {}npm install --prefix /data \
         --omit=dev --no-audit --no-fund --no-update-notifier"
    );

    // Every bad bundle, refused with its reason, before anything is stored.
    let raw_tar = |entries: &[(&str, &[u8])]| {
        let mut b = Vec::new();
        for (name, body) in entries {
            let mut h = [0u8; 512];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[100..107].copy_from_slice(b"0000644");
            let size = format!("{:011o}", body.len());
            h[124..135].copy_from_slice(size.as_bytes());
            h[136..147].copy_from_slice(b"00000000000");
            h[156] = b'0';
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
            h[148..156].copy_from_slice(b"        ");
            let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
            h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
            b.extend_from_slice(&h);
            b.extend_from_slice(body);
            b.resize(b.len().div_ceil(512) * 512, 0);
        }
        b.resize(b.len() + 1024, 0);
        b
    };
    let symlink_out = {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("x")).expect("mkdir");
        std::fs::write(dir.path().join("x/app.py"), "").expect("write");
        std::os::unix::fs::symlink("../../etc/shadow", dir.path().join("x/secret")).expect("ln");
        tar_of(dir.path(), "x")
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not a tar",
            b"just some text, not an archive".repeat(40),
            "bad bundle: not a tar archive (nor a gzip'd one)",
        ),
        (
            "dotdot",
            raw_tar(&[("app.py", b""), ("../escape.py", b"x")]),
            "bad bundle: unsafe path ../escape.py: '..' is not allowed",
        ),
        (
            "absolute",
            raw_tar(&[("app.py", b""), ("/etc/cron.d/x", b"x")]),
            "bad bundle: unsafe path /etc/cron.d/x: absolute paths are not allowed",
        ),
        (
            "symlink out",
            symlink_out,
            "bad bundle: symlink x/secret points outside the bundle (../../etc/shadow)",
        ),
        (
            "no app",
            bundle("e", &[("README", b"nothing to run")]),
            "bad bundle: the bundle has none of app.py (py3), Dockerfile (dockerfile) or flows.json (nodered) at its top",
        ),
        (
            "missing app.py",
            bundle("m", &[("app.yaml", b"type: py3\n"), ("main.py", b"")]),
            "bad bundle: a py3 bundle needs app.py at its top",
        ),
        (
            "bad app.yaml",
            bundle(
                "y",
                &[
                    ("app.py", b""),
                    ("app.yaml", b"name: x\nparameters:\n  - name: lower\n"),
                ],
            ),
            "bad bundle: app.yaml: parameter \"lower\": a name of capitals, digits and '_' (an environment variable)",
        ),
        (
            "no name",
            bundle("n", &[("app.py", b"")]),
            "name the app: ?name= on the upload, or name: in app.yaml",
        ),
    ];
    for (what, body, want) in cases {
        let path = if what == "no name" {
            "/upload/bundle?version=1"
        } else {
            "/upload/bundle?name=bad&version=1"
        };
        let (status, answer) = server.upload(path, body).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert_eq!(answer["errors"][0]["message"], want, "{what}");
    }
    // Over the 1 MiB limit.
    // Random bytes, so gzip cannot shrink the bundle under the limit.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let big: Vec<u8> = (0..(1usize << 20) + 4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect();
    let (status, answer) = server
        .upload(
            "/upload/bundle?name=big&version=1",
            bundle("big", &[("app.py", b""), ("data.bin", &big)]),
        )
        .await;
    assert!(status == 413 || status == 400, "{status} {answer}");
    let apps = gql(&server, "{ apps { name } }", json!({})).await["apps"].clone();
    assert_eq!(
        apps,
        json!([{"name": "df"}, {"name": "flows"}]),
        "nothing half-stored"
    );
    let incoming = server.dir.path().join("data/bundles/.incoming");
    let left: Vec<_> = std::fs::read_dir(&incoming)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "no upload left half-stored: {left:?}");

    gql(&server, "mutation { removeApp(name: \"df\") }", json!({})).await;
    gql(
        &server,
        "mutation { removeApp(name: \"flows\") }",
        json!({}),
    )
    .await;
    wait_for("the app's containers gone", PATIENCE, || async {
        docker_ps(&format!("io.trellis.deployment={d}"))
            .is_empty()
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// A tar of `dir`'s `top`, links kept as links.
fn tar_of(dir: &Path, top: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["cf", "-", "-C"])
        .arg(dir)
        .arg(top)
        .output()
        .expect("tar");
    assert!(out.status.success());
    out.stdout
}
