//! The Raspberry Pi agent, end to end: the agent cross-built for `aarch64-unknown-linux-gnu` with
//! the `rpi` feature (as the README tells a user to build it; scripts/test.sh builds it) runs under
//! `qemu-aarch64-static` with Debian's arm64 C library, joins a real leader with a join token, is
//! approved, comes online as an `aarch64` node, runs a job on the simulator with a live setting
//! change, and goes `lost` when killed.

use std::{path::PathBuf, process::Command};

use serde_json::json;
use trellis_tests::{PATIENCE, Proc, Server, ServerOpts, target_dir, wait_for};

/// Where `cargo build --target aarch64-unknown-linux-gnu -p trellis-agent --features rpi` puts
/// the agent (the test profile's directory: debug).
fn arm64_agent() -> PathBuf {
    let bin = target_dir().join("aarch64-unknown-linux-gnu/debug/trellis-agent");
    assert!(
        bin.is_file(),
        "{} is missing: `cargo build -p trellis-agent --target aarch64-unknown-linux-gnu --features rpi` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread")]
async fn the_arm64_agent_joins_runs_a_job_and_is_lost_when_killed() {
    let agent = arm64_agent();
    // It is an arm64 executable, not a host one that happens to be there.
    let file = Command::new("file").arg(&agent).output().expect("file(1)");
    let described = String::from_utf8_lossy(&file.stdout);
    assert!(described.contains("ARM aarch64"), "{described}");

    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let token = server.join_token("pi").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("qemu-aarch64-static");
    // The arm64 dynamic loader and C library from Debian's libc6-arm64-cross.
    cmd.args(["-L", "/usr/aarch64-linux-gnu"])
        .arg(&agent)
        .args(["--broker-url", &server.broker_url()])
        .args(["--join-token", &token])
        .args(["--node-id", "pi-arm64", "--heartbeat-secs", "1"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("TRELLIS_LOG", "info");
    let mut proc = Proc::spawn(cmd, dir.path().join("agent.log"));

    server.wait_pending("pi-arm64").await;
    let r = server
        .graphql("mutation { approveNode(id: \"pi-arm64\") }", json!({}))
        .await;
    assert_eq!(r["data"]["approveNode"], true, "{r}");
    let node = server.wait_state("pi-arm64", "ONLINE", PATIENCE).await;
    assert_eq!(node["arch"], "aarch64", "{node}");

    // A job on the emulated Pi's simulator, with a live change echoed.
    wait_for("the Pi to offer job kinds", PATIENCE, || async {
        let r = server
            .graphql("{ jobKinds(nodeId: \"pi-arm64\") { kind } }", json!({}))
            .await;
        (!r["data"]["jobKinds"].as_array()?.is_empty()).then_some(())
    })
    .await;
    let r = server
        .graphql(
            "mutation { startJob(nodeId: \"pi-arm64\", kind: \"pwm\", name: \"fan\", settings: {duty: 20}) { state settings } }",
            json!({}),
        )
        .await;
    assert_eq!(r["data"]["startJob"]["state"], "READY", "{r}");
    let r = server
        .graphql(
            "mutation { setJobSettings(nodeId: \"pi-arm64\", name: \"fan\", settings: {duty: 60}) { settings } }",
            json!({}),
        )
        .await;
    assert_eq!(r["data"]["setJobSettings"]["settings"]["duty"], 60, "{r}");

    proc.kill9();
    server.wait_state("pi-arm64", "LOST", PATIENCE).await;
}
