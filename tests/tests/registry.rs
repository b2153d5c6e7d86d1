//! Issue 12: a registry on the local network, with credentials kept on the leader. Debian's
//! `docker-registry` (the distribution registry) runs on 127.0.0.1 with htpasswd
//! authentication; a test image is pushed there and removed from this machine's engine. A
//! deployment of it fails to pull until an admin gives the leader the registry's credentials,
//! then runs. The password is never returned by the API, nor in the audit log, nor in the
//! leader's log.

use std::process::{Command, Stdio};

use serde_json::{Value, json};
use trellis_tests::{
    PATIENCE, Proc, Server, ServerOpts,
    chaos::{Chaos, Upstream},
    docker::{DockerGuard, SmallDisk, TestImages, docker, docker_ok, docker_ps, join_edge},
    free_port, wait_for,
};

async fn gql(server: &Server, query: &str, vars: Value) -> Value {
    let r = server.graphql(query, vars).await;
    assert!(r["errors"].is_null(), "{query}: {r}");
    r["data"].clone()
}

const PASSWORD: &str = "s3cret-registry-pass";

/// `docker-registry` on 127.0.0.1:`port` with the account `trellis` / [`PASSWORD`].
fn registry(dir: &std::path::Path, port: u16) -> Proc {
    let htpasswd = Command::new("htpasswd")
        .args(["-Bbn", "trellis", PASSWORD])
        .output()
        .expect("htpasswd (apache2-utils)");
    assert!(htpasswd.status.success());
    std::fs::write(dir.join("htpasswd"), &htpasswd.stdout).expect("htpasswd file");
    let config = format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: trellis-test\n    path: {auth}\n",
        data = dir.join("data").display(),
        auth = dir.join("htpasswd").display()
    );
    std::fs::write(dir.join("config.yml"), config).expect("registry config");
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve").arg(dir.join("config.yml"));
    Proc::spawn(cmd, dir.join("registry.log"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_registry_is_pulled_from_with_credentials_kept_on_the_leader() {
    let images = TestImages::make();
    let mut guard = DockerGuard::new(&images.label);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _registry = registry(dir.path(), port);
    let host = format!("127.0.0.1:{port}");
    wait_for("the registry", PATIENCE, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    // Pushed with the CLI's own login (a config directory of its own), then removed here.
    let image = format!("{host}/trellis-test/bb:{}", images.label);
    let cli = dir.path().join("cli");
    let mut login = Command::new("docker")
        .env("DOCKER_CONFIG", &cli)
        .args(["login", &host, "-u", "trellis", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker login");
    use std::io::Write;
    login
        .stdin
        .take()
        .expect("stdin")
        .write_all(PASSWORD.as_bytes())
        .expect("the password");
    let out = login.wait_with_output().expect("docker login");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second image, for a node with no room for it.
    let other = format!("{host}/trellis-test/bb2:{}", images.label);
    for (from, to) in [(&images.bb, &image), (&images.bb_v2, &other)] {
        docker(&["tag", from, to]);
        let push = Command::new("docker")
            .env("DOCKER_CONFIG", &cli)
            .args(["push", to])
            .output()
            .expect("docker push");
        assert!(
            push.status.success(),
            "{}",
            String::from_utf8_lossy(&push.stderr)
        );
        docker(&["rmi", to]);
        assert!(!docker_ok(&["image", "inspect", to]));
    }

    let server = Server::start(ServerOpts {
        extra_args: vec!["--deploy-backoff-max-secs".into(), "2".into()],
        ..ServerOpts::default()
    })
    .await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    let spec = json!({
        "container": {
            "image": image,
            "labels": [{"name": "trellis-test", "value": images.label}],
            "stopGraceSecs": 1,
        },
        "target": {"nodeIds": ["leader"]},
    });
    let id = gql(
        &server,
        "mutation($s: DeploymentSpecInput!) { createDeployment(name: \"private\", spec: $s) { id } }",
        json!({"s": spec}),
    )
    .await["createDeployment"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let instance = || async {
        gql(
            &server,
            "query($id: String!) { deployment(id: $id) { instances { state reason } } }",
            json!({"id": id}),
        )
        .await["deployment"]["instances"][0]
            .clone()
    };
    // No credentials: the registry says no, and the instance says the pull failed.
    let refused = wait_for("the pull refused", PATIENCE, || async {
        let i = instance().await;
        i["reason"]
            .as_str()
            .filter(|r| r.contains("could not be pulled"))
            .map(str::to_owned)
    })
    .await;
    assert!(refused.contains(&image), "{refused}");

    // Node "full" (this machine's engine through a proxy, its Docker data root an 8 MiB
    // filesystem) has no room for a pull: refused before it starts. Without the credentials
    // the leader cannot ask the registry the image's size either, so only the margin counts.
    let small = SmallDisk::mount(8);
    let proxy = Chaos::start(Upstream::Unix("/var/run/docker.sock".into())).await;
    let _full = join_edge(&server, "full", &proxy, small.path()).await;
    let spec = json!({
        "container": {
            "image": other,
            "labels": [{"name": "trellis-test", "value": images.label}],
            "stopGraceSecs": 1,
        },
        "target": {"nodeIds": ["full"]},
    });
    let full_id = gql(
        &server,
        "mutation($s: DeploymentSpecInput!) { createDeployment(name: \"nofit\", spec: $s) { id } }",
        json!({"s": spec}),
    )
    .await["createDeployment"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let full_reason = |want: &'static str| {
        let server = &server;
        let full_id = full_id.clone();
        async move {
            wait_for(want, PATIENCE, || async {
                gql(
                    server,
                    "query($id: String!) { deployment(id: $id) { instances { reason } } }",
                    json!({"id": full_id}),
                )
                .await["deployment"]["instances"][0]["reason"]
                    .as_str()
                    .filter(|r| r.contains(want))
                    .map(str::to_owned)
            })
            .await
        }
    };
    let unknown = full_reason("its size unknown to the leader").await;
    assert!(
        unknown.starts_with(&format!(
            "not enough disk on node \"full\": pulling image {other} (its size unknown to the leader: the registry wants credentials) needs 512 MiB (0 B image + 512 MiB margin) and {} has ",
            small.path().display()
        )),
        "{unknown}"
    );

    let set = gql(
        &server,
        "mutation($s: String!, $p: String!) { setRegistryCredential(server: $s, username: \"trellis\", password: $p) { server username updatedBy } }",
        json!({"s": host, "p": PASSWORD}),
    )
    .await;
    assert_eq!(
        set["setRegistryCredential"],
        json!({"server": host, "username": "trellis", "updatedBy": "user:admin"})
    );
    let running = wait_for(
        "pulled with the credentials and running",
        PATIENCE * 2,
        || async {
            let rows = docker_ps(&format!("io.trellis.deployment={id}"));
            rows.iter()
                .find(|c| c.state == "running")
                .map(|c| c.labels.clone())
        },
    )
    .await;
    guard.also_cluster(&running["io.trellis.cluster"]);
    assert_eq!(instance().await["state"], "RUNNING");
    // With the credentials, the registry's manifest gives the size: still no room, and now the
    // message says how big the image is.
    let known = full_reason(" compressed) needs ").await;
    assert!(
        known.starts_with(&format!(
            "not enough disk on node \"full\": pulling image {other} ("
        )) && !known.contains("(0 B compressed)")
            && known.contains(" image + 512 MiB margin)"),
        "{known}"
    );
    assert!(!docker_ok(&["image", "inspect", &other]), "never pulled");
    gql(
        &server,
        "mutation($id: String!) { removeDeployment(id: $id) }",
        json!({"id": full_id}),
    )
    .await;

    // The password never comes back.
    let list = gql(
        &server,
        "{ registryCredentials { server username } }",
        json!({}),
    )
    .await;
    assert_eq!(
        list["registryCredentials"],
        json!([{"server": host, "username": "trellis"}])
    );
    let asked = server
        .graphql("{ registryCredentials { password } }", json!({}))
        .await;
    assert!(
        !asked["errors"].is_null(),
        "no field to read it by: {asked}"
    );
    let audit = server.audit_log(50).await;
    assert!(trellis_tests::audit_has(
        &audit,
        &[("action", "setRegistryCredential"), ("outcome", "ok")]
    ));
    assert!(
        !serde_json::to_string(&audit)
            .unwrap_or_default()
            .contains(PASSWORD)
    );
    assert!(
        !server.proc.log_text().contains(PASSWORD),
        "the leader's log never has it"
    );
    // A bad server name is refused, naming the field.
    let bad = server
        .graphql(
            "mutation { setRegistryCredential(server: \"https://x/y\", username: \"u\", password: \"p\") { server } }",
            json!({}),
        )
        .await;
    assert!(
        bad["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("server \"https://x/y\""),
        "{bad}"
    );
    gql(
        &server,
        "mutation($s: String!) { removeRegistryCredential(server: $s) }",
        json!({"s": host}),
    )
    .await;
    let list = gql(&server, "{ registryCredentials { server } }", json!({})).await;
    assert_eq!(list["registryCredentials"], json!([]));
    gql(
        &server,
        "mutation($id: String!) { removeDeployment(id: $id) }",
        json!({"id": id}),
    )
    .await;
}
