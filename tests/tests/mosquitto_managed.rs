//! A Mosquitto whose accounts the leader manages (`--mosquitto-dir`): no anonymous clients, the
//! leader and its local agent log in with accounts the leader wrote, an operator issues a worker
//! its credentials, a node may not publish as another, and removing a node removes its account.

use std::time::Duration;

use serde_json::json;
use trellis_tests::{Broker, Mosquitto, MqttProbe, PATIENCE, Server, ServerOpts, binary, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn the_leader_writes_mosquittos_accounts_and_acls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let accounts = dir.path().join("mosquitto");
    let mosquitto = Mosquitto::start_managed(&accounts).await;
    let server = Server::start(ServerOpts {
        broker: Broker::External(mosquitto.port),
        extra_args: vec!["--mosquitto-dir".into(), accounts.display().to_string()],
        ..ServerOpts::default()
    })
    .await;
    // The leader and its own node got in with accounts the leader wrote.
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    let passwd = std::fs::read_to_string(accounts.join("passwd")).expect("passwd");
    assert!(
        passwd.contains("trellis-server:$7$101$") && passwd.contains("leader:$7$101$"),
        "{passwd}"
    );
    assert!(
        !passwd.contains("trellis_m_") && !passwd.contains("trellis_n_"),
        "plaintext in the password file"
    );

    // No anonymous clients.
    let anon = MqttProbe::connect_as(mosquitto.port, "anon", None, None).await;
    assert!(anon.is_err(), "anonymous client accepted");

    // A worker gets credentials from an operator and comes online with them.
    let r = server
        .graphql(
            "mutation { issueNodeCredentials(nodeId: \"edge-1\") { username password } }",
            json!({}),
        )
        .await;
    let password = r["data"]["issueNodeCredentials"]["password"]
        .as_str()
        .expect("password")
        .to_owned();
    let agent_dir = dir.path().join("edge-1");
    let mut cmd = std::process::Command::new(binary("trellis-agent"));
    cmd.args([
        "--broker-url",
        &server.broker_url(),
        "--node-id",
        "edge-1",
        "--heartbeat-secs",
        "1",
    ])
    .args(["--username", "edge-1", "--password", &password])
    .arg("--state-dir")
    .arg(&agent_dir)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let mut agent = cmd.spawn().expect("agent");
    let worker = server.wait_state("edge-1", "ONLINE", PATIENCE).await;
    assert_eq!(worker["hardware"], "simulator");

    // edge-1 cannot speak for the leader's node.
    let probe = MqttProbe::connect_as(
        mosquitto.port,
        "edge-1-probe",
        Some(("edge-1", &password)),
        None,
    )
    .await
    .expect("edge-1's account connects");
    let forged = json!({"node_id": "leader", "hostname": "forged", "mac": null, "ip_addresses": [], "arch": "x",
        "os": "x", "model": null, "agent_version": "0", "hardware": "simulator", "heartbeat_interval_secs": 1});
    probe
        .publish(
            "trellis/v1/nodes/leader/announce",
            forged.to_string().as_bytes(),
            true,
        )
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_ne!(
        server.node("leader").await.expect("leader")["hostname"],
        "forged",
        "the ACL let edge-1 publish as the leader"
    );

    // Removing edge-1 removes its account: it cannot log in again.
    let _ = agent.kill();
    let _ = agent.wait();
    let r = server
        .graphql("mutation { removeNode(id: \"edge-1\") }", json!({}))
        .await;
    assert_eq!(r["data"]["removeNode"], true, "{r}");
    let passwd = std::fs::read_to_string(accounts.join("passwd")).expect("passwd");
    assert!(!passwd.contains("edge-1:"), "{passwd}");
    wait_for("Mosquitto to refuse edge-1", PATIENCE, || async {
        MqttProbe::connect_as(
            mosquitto.port,
            "edge-1-again",
            Some(("edge-1", &password)),
            None,
        )
        .await
        .err()
    })
    .await;
}
