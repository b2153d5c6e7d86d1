//! A Mosquitto whose accounts the leader manages (`--mosquitto-dir`): no anonymous clients, the
//! leader and its local agent log in with accounts the leader wrote, an operator issues a worker
//! its credentials, a node may not publish as another, and removing a node removes its account.
//! Join tokens work through it too.

use std::time::Duration;

use serde_json::json;
use trellis_tests::{
    Agent, Broker, LeaderCert, Mosquitto, MqttProbe, PATIENCE, Server, ServerOpts,
    agent_credentials, binary, plain_mqtt_connack, wait_for,
};

/// A Mosquitto whose accounts live in `<dir>/mosquitto`, and a leader that manages them.
async fn managed_leader(dir: &std::path::Path) -> (Mosquitto, Server) {
    let accounts = dir.join("mosquitto");
    let mosquitto = Mosquitto::start_managed(&accounts).await;
    let server = Server::start(ServerOpts {
        broker: Broker::External(mosquitto.port),
        extra_args: vec!["--mosquitto-dir".into(), accounts.display().to_string()],
        ..ServerOpts::default()
    })
    .await;
    (mosquitto, server)
}

/// Waits until Mosquitto refuses `user`'s login (reloads are asynchronous).
async fn wait_refused(
    mosquitto: &Mosquitto,
    what: &str,
    client_id: &str,
    user: &str,
    password: &str,
) {
    wait_for(what, PATIENCE, || async {
        MqttProbe::connect_as(mosquitto.port, client_id, Some((user, password)), None)
            .await
            .err()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_leader_writes_mosquittos_accounts_and_acls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mosquitto, server) = managed_leader(dir.path()).await;
    let accounts = dir.path().join("mosquitto");
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

    // In plain MQTT (this Mosquitto has no TLS) the account gets its CONNACK, a wrong password
    // "not authorised".
    assert_eq!(
        plain_mqtt_connack(mosquitto.port, ("edge-1", &password)).await,
        Some(0)
    );
    assert_eq!(
        plain_mqtt_connack(mosquitto.port, ("edge-1", "wrong")).await,
        Some(5)
    );

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
    // A sentinel after the forgery on the same connection: edge-1's own announce with a new
    // hostname. Once the leader shows it, a forgery it let through would have arrived before.
    let mut genuine = forged.clone();
    genuine["node_id"] = json!("edge-1");
    genuine["hostname"] = json!("sentinel");
    probe
        .publish(
            "trellis/v1/nodes/edge-1/announce",
            genuine.to_string().as_bytes(),
            true,
        )
        .await;
    wait_for("edge-1's own announce to arrive", PATIENCE, || async {
        (server.node("edge-1").await?["hostname"] == "sentinel").then_some(())
    })
    .await;
    assert_ne!(
        server.node("leader").await.expect("leader")["hostname"],
        "forged",
        "the ACL let edge-1 publish as the leader"
    );

    // Nor take the leader node's session over by reusing its client id (MQTT-3.1.4-2): Mosquitto
    // does not tie ids to accounts, but a node's id comes from its password, so nobody else
    // knows it. The real id (as Mosquitto logged it) has that form; the best edge-1 can make for
    // the leader's node, from its own password, is another id, and using it kicks nobody off.
    let mosquitto_log = mosquitto.proc.log_text();
    let real_id = mosquitto_log
        .split_whitespace()
        .find(|w| w.starts_with("trellis-agent-leader-"))
        .unwrap_or_else(|| {
            panic!("Mosquitto logged no client id of the leader's node: {mosquitto_log}")
        })
        .to_owned();
    assert_eq!(
        real_id.len(),
        "trellis-agent-leader-".len() + 16,
        "{real_id}"
    );
    let guess = trellis_proto::node_client_id("leader", Some(&password));
    assert!(guess.starts_with("trellis-agent-leader-") && guess != real_id);
    let agent_connects = |log: &str| log.matches("connected to broker").count();
    let before = agent_connects(&server.proc.log_text());
    let kicker = MqttProbe::connect_as(mosquitto.port, &guess, Some(("edge-1", &password)), None)
        .await
        .expect("edge-1's account connects under another id");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.ping("leader").await, Ok("pong".to_owned()));
    assert_eq!(
        agent_connects(&server.proc.log_text()),
        before,
        "the leader's node was kicked off"
    );
    drop(kicker);

    // Removing edge-1 removes its account: it cannot log in again.
    let _ = agent.kill();
    let _ = agent.wait();
    let r = server
        .graphql("mutation { removeNode(id: \"edge-1\") }", json!({}))
        .await;
    assert_eq!(r["data"]["removeNode"], true, "{r}");
    let passwd = std::fs::read_to_string(accounts.join("passwd")).expect("passwd");
    assert!(!passwd.contains("edge-1:"), "{passwd}");
    wait_refused(
        &mosquitto,
        "Mosquitto to refuse edge-1",
        "edge-1-again",
        "edge-1",
        &password,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn join_tokens_enroll_through_a_managed_mosquitto_and_removal_cuts_the_node_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mosquitto, server) = managed_leader(dir.path()).await;
    let accounts = dir.path().join("mosquitto");
    server.wait_state("leader", "ONLINE", PATIENCE).await;

    // A join token is an account that may only ask to join; the token itself is not stored.
    let token = server.join_token("field").await;
    let join_user = trellis_proto::join_username(&token);
    let passwd = std::fs::read_to_string(accounts.join("passwd")).expect("passwd");
    assert!(passwd.contains(&format!("{join_user}:$7$101$")), "{passwd}");
    assert!(
        !passwd.contains(&token),
        "plaintext join token in the password file"
    );

    // A worker with the token asks to join, is approved and comes online, as on the embedded
    // broker.
    let agent = Agent::start_with_token(&server.broker_url(), "edge-2", dir.path(), Some(&token));
    server.approve("edge-2", &agent).await;
    server.wait_state("edge-2", "ONLINE", PATIENCE).await;
    assert_eq!(server.ping("edge-2").await, Ok("pong".to_owned()));
    let (user, password) = agent_credentials(&agent);
    assert_eq!(user, "edge-2");

    // The join account cannot speak as a node.
    let joiner = MqttProbe::connect_as(
        mosquitto.port,
        "0123456789abcdef0123456789abcdef",
        Some((&join_user, &token)),
        None,
    )
    .await
    .expect("the join account connects");
    joiner
        .publish(
            "trellis/v1/nodes/edge-2/status",
            br#"{"state":"offline"}"#,
            true,
        )
        .await;
    // The sentinel: an enroll request on the same connection (the one thing a join account
    // may publish) reaches the leader, which records it; the forged status, sent before it,
    // would have been recorded first.
    let ask = json!({"announce": {"node_id": "sentinel-node", "hostname": "s", "mac": null, "ip_addresses": [],
        "arch": "x", "os": "x", "model": null, "agent_version": "0", "hardware": "simulator",
        "heartbeat_interval_secs": 1}, "nonce": "0123456789abcdef0123456789abcdef", "join_token": token});
    joiner
        .publish(
            "trellis/v1/enroll/sentinel-node/request",
            ask.to_string().as_bytes(),
            false,
        )
        .await;
    server.wait_pending("sentinel-node").await;
    assert_eq!(
        server.node("edge-2").await.expect("edge-2")["state"],
        "ONLINE",
        "the ACL let a join account publish a node's status"
    );

    // Removing the node while its agent runs: Mosquitto drops the live session when it reloads
    // the accounts, the agent's credentials are refused, and it asks to join again with its
    // token. Until approved again it is not a node.
    let r = server
        .graphql("mutation { removeNode(id: \"edge-2\") }", json!({}))
        .await;
    assert_eq!(r["data"]["removeNode"], true, "{r}");
    server.wait_pending("edge-2").await;
    assert!(server.node("edge-2").await.is_none());
    let again = MqttProbe::connect_as(
        mosquitto.port,
        "edge-2-again",
        Some(("edge-2", &password)),
        None,
    )
    .await;
    assert!(again.is_err(), "the removed node's password still works");

    // A revoked join token's account is gone: nobody gets in with it.
    let r = server
        .graphql("{ joinTokens { id name } }", json!({}))
        .await;
    let id = r["data"]["joinTokens"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "field"))
        .and_then(|t| t["id"].as_str())
        .expect("the field token")
        .to_owned();
    let r = server
        .graphql(
            "mutation($id: String!) { revokeJoinToken(id: $id) { active } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(r["data"]["revokeJoinToken"]["active"], false, "{r}");
    wait_refused(
        &mosquitto,
        "Mosquitto to refuse the revoked join token",
        "fedcba9876543210fedcba9876543210",
        &join_user,
        &token,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_managed_mosquitto_over_tls_takes_the_leader_and_workers_that_trust_its_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, _) = LeaderCert::issue(&dir.path().join("tls"));
    let accounts = dir.path().join("mosquitto");
    let mosquitto = Mosquitto::start_managed_with(&accounts, Some(&cert)).await;
    let server = Server::start(ServerOpts {
        broker: Broker::External(mosquitto.port),
        extra_args: vec!["--mosquitto-dir".into(), accounts.display().to_string()],
        tls: Some(cert.clone()),
        ..ServerOpts::default()
    })
    .await;
    // The leader's bridge and its own node reach Mosquitto over TLS.
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    assert!(server.broker_url().starts_with("mqtts://"));

    // A worker joins with a join token over TLS, trusting the CA.
    let token = server.join_token("tls").await;
    let ca = cert.ca().display().to_string();
    let agent = Agent::start_with_args(
        &server.broker_url(),
        "edge-3",
        dir.path(),
        Some(&token),
        &["--broker-ca", &ca],
    );
    server.approve("edge-3", &agent).await;
    server.wait_state("edge-3", "ONLINE", PATIENCE).await;
    assert_eq!(server.ping("edge-3").await, Ok("pong".to_owned()));

    // Plain MQTT on Mosquitto's TLS listener gets nowhere, even with valid credentials.
    let (user, password) = agent_credentials(&agent);
    assert_eq!(
        plain_mqtt_connack(mosquitto.port, (&user, &password)).await,
        None,
        "plain MQTT answered on Mosquitto's TLS listener"
    );
}
