//! The leader's container image. No image can be pulled here, so this builds the Dockerfile's
//! runtime stage (`FROM scratch AS leader`) on this machine's Docker engine from the static musl
//! binary and web app that `scripts/test.sh` builds, runs it, and checks what a user would:
//! `/healthz`, the web app, and the container's own local node online through GraphQL.
//! Every image and container carries the `trellis-test` label and is removed at the end.

use std::{path::Path, process::Command};

use serde_json::json;
use trellis_tests::{PATIENCE, free_port, target_dir, wait_for, web_dir};

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes the test's container and image even when an assertion fails.
struct Cleanup {
    label: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label=trellis-test={}", self.label);
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        for id in String::from_utf8_lossy(&ids).split_whitespace() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
        let ids = Command::new("docker")
            .args(["images", "-q", "--filter", &filter])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        for id in String::from_utf8_lossy(&ids).split_whitespace() {
            let _ = Command::new("docker").args(["rmi", "-f", id]).output();
        }
    }
}

/// The Dockerfile's runtime stage, taking the build stage's `/out` from the build context instead.
fn runtime_stage(dockerfile: &str) -> String {
    let start = dockerfile
        .find("FROM scratch AS leader")
        .expect("the Dockerfile has a `FROM scratch AS leader` stage");
    let stage = dockerfile[start..].replace("COPY --from=build /out/ /", "COPY out/ /");
    assert!(
        !stage.contains("--from="),
        "the runtime stage may only copy the build stage's /out:\n{stage}"
    );
    stage
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runtime_image_builds_offline_and_serves_the_leader() {
    let binary = target_dir().join("x86_64-unknown-linux-musl/static-test/trellis");
    assert!(
        binary.is_file(),
        "{} is missing: `cargo build --profile static-test --target x86_64-unknown-linux-musl -p trellis-server` (scripts/test.sh does)",
        binary.display()
    );
    let ctx = tempfile::tempdir().expect("tempdir");
    let out = ctx.path().join("out");
    std::fs::create_dir_all(out.join("data")).expect("mkdir");
    std::fs::copy(&binary, out.join("trellis")).expect("copy binary");
    copy_dir(&web_dir(), &out.join("web"));
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Dockerfile"))
        .expect("Dockerfile");
    std::fs::write(ctx.path().join("Dockerfile"), runtime_stage(&dockerfile))
        .expect("write Dockerfile");

    let label = uuid::Uuid::new_v4().simple().to_string();
    let _cleanup = Cleanup {
        label: label.clone(),
    };
    let tag = format!("trellis-test-leader:{label}");
    let ctx_path = ctx.path().to_str().expect("utf-8 path");
    docker(&[
        "build",
        "-q",
        "--label",
        &format!("trellis-test={label}"),
        "-t",
        &tag,
        ctx_path,
    ]);

    let port = free_port();
    let container = docker(&[
        "run",
        "-d",
        "--label",
        &format!("trellis-test={label}"),
        "-p",
        &format!("127.0.0.1:{port}:8080"),
        "-e",
        "TRELLIS_LOCAL_AGENT_NODE_ID=in-container",
        "-e",
        "TRELLIS_INITIAL_ADMIN_PASSWORD=container-admin-password",
        &tag,
    ]);

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let health = wait_for("the container to answer /healthz", PATIENCE, || async {
        let r = http.get(format!("{base}/healthz")).send().await.ok()?;
        r.status().is_success().then_some(())?;
        r.text().await.ok()
    })
    .await;
    assert_eq!(health, "ok");
    let index = http
        .get(format!("{base}/"))
        .send()
        .await
        .expect("GET /")
        .text()
        .await
        .expect("body");
    assert!(index.contains("/trellis_frontend-"), "{index}");
    // Log in as the admin the container was started with.
    let login = json!({"query": "mutation { login(username: \"admin\", password: \"container-admin-password\") { username } }"});
    let resp = http
        .post(format!("{base}/graphql"))
        .json(&login)
        .send()
        .await
        .expect("login");
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(cookie.starts_with("trellis_session="), "{cookie}");
    let node = wait_for(
        "the container's local node to be online",
        PATIENCE,
        || async {
            let r: serde_json::Value = http
                .post(format!("{base}/graphql"))
                .header("Cookie", &cookie)
                .json(&json!({"query": "{ node(id: \"in-container\") { state } }"}))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (r["data"]["node"]["state"] == "ONLINE").then_some(r)
        },
    )
    .await;
    assert_eq!(node["data"]["node"]["state"], "ONLINE");
    let logs = docker(&["logs", &container]);
    assert!(!logs.contains("panicked"), "{logs}");
}
