//! The leader's own listeners over TLS (`--tls-cert`, `--tls-key`, with a certificate from
//! `trellis tls-cert`): HTTPS for the web app and API, MQTT over TLS on the embedded broker. The
//! leader's own node and bridge connect through TLS too; a worker trusting the leader's CA joins
//! over `mqtts://`; plain connections and clients trusting another CA get nowhere.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use trellis_tests::{
    Agent, LeaderCert, PATIENCE, Server, ServerOpts, agent_credentials, plain_mqtt_connack,
    wait_for,
};

#[tokio::test(flavor = "multi_thread")]
async fn every_listener_speaks_tls_only_with_a_certificate_from_trellis_tls_cert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, printed) = LeaderCert::issue(&dir.path().join("tls"));
    assert!(
        printed.contains("--tls-cert") && printed.contains("--broker-ca"),
        "{printed}"
    );
    for key in ["key.pem", "ca-key.pem"] {
        let mode = std::fs::metadata(cert.dir.join(key))
            .expect(key)
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let server = Server::start(ServerOpts {
        tls: Some(cert.clone()),
        ..ServerOpts::default()
    })
    .await;
    // The harness got ready and logged in over HTTPS. The leader's own node came online: its
    // agent and the bridge speak TLS to the gate.
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    assert_eq!(server.ping("leader").await, Ok("pong".to_owned()));

    // The session cookie is Secure over HTTPS.
    let q = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { username } }";
    let r = server
        .http()
        .post(server.url("/graphql"))
        .json(&json!({"query": q, "variables": {"u": "admin", "p": trellis_tests::ADMIN_PASSWORD}}))
        .send()
        .await
        .expect("login over HTTPS");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );

    // Plain HTTP on the same port gets no answer at all.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", server.http_port))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    // A client that trusts another CA does not take the leader's certificate.
    let (foreign, _) = LeaderCert::issue(&dir.path().join("foreign"));
    let r = foreign
        .http_client()
        .get(server.url("/healthz"))
        .send()
        .await;
    assert!(r.is_err(), "a foreign CA accepted the leader: {r:?}");

    // A worker that trusts the leader's CA joins over mqtts://.
    let token = server.join_token("tls").await;
    let ca = cert.ca().display().to_string();
    let agent = Agent::start_with_args(
        &server.broker_url(),
        "edge-tls",
        dir.path(),
        Some(&token),
        &["--broker-ca", &ca],
    );
    server.approve("edge-tls", &agent).await;
    server.wait_state("edge-tls", "ONLINE", PATIENCE).await;
    assert_eq!(server.ping("edge-tls").await, Ok("pong".to_owned()));

    // Its own, valid credentials are no use in plain MQTT on the broker's port.
    let (user, password) = agent_credentials(&agent);
    assert_eq!(
        plain_mqtt_connack(server.mqtt_port, (&user, &password)).await,
        None,
        "plain MQTT answered on the TLS port"
    );

    // A worker that trusts another CA never reaches the leader: it is not even pending, and its
    // log says why.
    let foreign_ca = foreign.ca().display().to_string();
    let stranger = Agent::start_with_args(
        &server.broker_url(),
        "edge-stranger",
        dir.path(),
        Some(&token),
        &["--broker-ca", &foreign_ca],
    );
    wait_for(
        "the stranger to log the certificate it refused",
        PATIENCE,
        || async {
            stranger
                .proc
                .log_text()
                .to_lowercase()
                .contains("certificate")
                .then_some(())
        },
    )
    .await;
    assert!(
        !server
            .pending_ids()
            .await
            .contains(&"edge-stranger".to_owned())
    );
    assert_eq!(server.ping("edge-tls").await, Ok("pong".to_owned()));
}

#[test]
fn bad_tls_settings_stop_the_leader_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, _) = LeaderCert::issue(&dir.path().join("tls"));
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key").expect("write");
    let cases: [(Vec<std::path::PathBuf>, &str); 2] = [
        (
            vec![cert.dir.join("cert.pem"), garbage.clone()],
            "invalid tls_key",
        ),
        (vec![garbage, cert.dir.join("key.pem")], "invalid tls_cert"),
    ];
    for (files, says) in cases {
        let out = std::process::Command::new(trellis_tests::binary("trellis"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--tls-cert")
            .arg(&files[0])
            .arg("--tls-key")
            .arg(&files[1])
            .env_remove("TRELLIS_TLS_CERT")
            .output()
            .expect("trellis");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with {files:?}");
        assert!(err.contains(says), "{says}: {err}");
    }
}
