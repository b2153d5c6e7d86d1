//! The embedded broker's doors: no anonymous clients, nodes join only with a join token and an
//! operator's approval (or a listed MAC), each node may publish and subscribe only under its own
//! topics, nobody takes over another node's session, and removing a node revokes its credentials
//! at once.

use std::time::Duration;

use serde_json::{Value, json};
use trellis_tests::{
    Agent, MqttProbe, PATIENCE, Server, ServerOpts, agent_credentials, audit_has, wait_for,
};

#[tokio::test(flavor = "multi_thread")]
async fn nodes_join_only_with_a_token_and_an_approval() {
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;

    // No credentials, wrong credentials, a made-up join token: all refused.
    let anon = MqttProbe::connect_as(server.mqtt_port, "anon", None, None).await;
    assert_eq!(anon.err().as_deref(), Some("BadUserNamePassword"));
    let wrong = MqttProbe::connect_as(
        server.mqtt_port,
        "trellis-agent-x",
        Some(("x", "guess")),
        None,
    )
    .await;
    assert_eq!(wrong.err().as_deref(), Some("BadUserNamePassword"));
    let forged_user = trellis_proto::join_username("trellis_j_forged");
    let forged = MqttProbe::connect_as(
        server.mqtt_port,
        "00112233445566778899aabbccddee00",
        Some((&forged_user, "trellis_j_forged")),
        None,
    )
    .await;
    assert_eq!(forged.err().as_deref(), Some("BadUserNamePassword"));

    // With a join token, the agent waits as pending; it is not a node yet.
    let r = server.graphql("mutation { createJoinToken(name: \"bench\", expiresInDays: 7) { token joinToken { id active } } }", json!({})).await;
    let token = r["data"]["createJoinToken"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let token_id = r["data"]["createJoinToken"]["joinToken"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let agent = Agent::start_with_token(
        &server.broker_url(),
        "newcomer",
        server.dir.path(),
        Some(&token),
    );
    server.wait_pending("newcomer").await;
    let r = server
        .graphql(
            "{ pendingNodes { nodeId hostname } nodes { id } }",
            json!({}),
        )
        .await;
    assert!(
        r["data"]["pendingNodes"][0]["hostname"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{r}"
    );
    assert_eq!(r["data"]["nodes"], json!([]));

    // A viewer can see it but not approve it.
    let q = "mutation { createUser(username: \"vi\", password: \"password-of-vi\", role: VIEWER) { id } }";
    assert!(server.graphql(q, json!({})).await["errors"].is_null());
    let viewer =
        trellis_tests::Auth::Cookie(server.login("vi", "password-of-vi").await.expect("login"));
    let (_, r) = server
        .graphql_as(
            &viewer,
            "mutation { approveNode(id: \"newcomer\") }",
            json!({}),
        )
        .await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "FORBIDDEN");

    // Approved: it gets its own credentials (stored 0600 by the agent) and comes online.
    server.approve("newcomer", &agent).await;
    server.wait_state("newcomer", "ONLINE", PATIENCE).await;
    assert!(server.pending_ids().await.is_empty());
    let (user, _) = agent_credentials(&agent);
    assert_eq!(user, "newcomer");

    // Another holder of the join token can neither snoop on enroll answers nor claim the id of
    // a node that already joined.
    let join_user = trellis_proto::join_username(&token);
    let login = Some((join_user.as_str(), token.as_str()));
    let snoop = MqttProbe::connect_as(
        server.mqtt_port,
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        login,
        Some("trellis/v1/enroll/newcomer/response/+"),
    )
    .await;
    assert_eq!(snoop.err().as_deref(), Some("SUBACK failure"));
    let claimer = MqttProbe::connect_as(
        server.mqtt_port,
        "00112233445566778899aabbccddeeff",
        login,
        None,
    )
    .await
    .expect("token holder connects");
    let mut claim = json!({"announce": {"node_id": "newcomer", "hostname": "evil", "mac": null, "ip_addresses": [], "arch": "x",
        "os": "x", "model": null, "agent_version": "0", "hardware": "simulator", "heartbeat_interval_secs": 1},
        "nonce": "00112233445566778899aabbccddeeff"});
    claimer
        .publish(
            "trellis/v1/enroll/newcomer/request",
            claim.to_string().as_bytes(),
            false,
        )
        .await;
    wait_for(
        "the claim to be refused in the audit log",
        PATIENCE,
        || async {
            let log = server.audit_log(50).await;
            audit_has(
                &log,
                &[
                    ("action", "requestToJoin"),
                    ("target", "newcomer"),
                    ("outcome", "FORBIDDEN"),
                ],
            )
            .then_some(())
        },
    )
    .await;
    assert!(
        server.pending_ids().await.is_empty(),
        "the claim must not become a pending request"
    );
    // A claim whose nonce is not hex is refused by the gate as malformed, before it reaches the
    // enroll flow: no new audit entry, no pending request.
    let refusals_before = audit_count(&server.audit_log(100).await, "requestToJoin");
    claim["nonce"] = json!("not-hex");
    claimer
        .publish(
            "trellis/v1/enroll/newcomer/request",
            claim.to_string().as_bytes(),
            false,
        )
        .await;
    wait_for("the gate to refuse the bad nonce", PATIENCE, || async {
        (server.proc.log_lines_with(&[
            "malformed enroll request",
            "nonce is not 16-64 lowercase hex",
        ]) > 0)
            .then_some(())
    })
    .await;
    assert_eq!(
        audit_count(&server.audit_log(100).await, "requestToJoin"),
        refusals_before,
        "a malformed claim reached the enroll flow"
    );
    assert!(server.pending_ids().await.is_empty());

    // A revoked join token lets nobody else in; the approved node keeps working.
    let r = server
        .graphql(
            "mutation($id: String!) { revokeJoinToken(id: $id) { active } }",
            json!({"id": token_id}),
        )
        .await;
    assert_eq!(r["data"]["revokeJoinToken"]["active"], false);
    let late = MqttProbe::connect_as(
        server.mqtt_port,
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        Some((&join_user, &token)),
        None,
    )
    .await;
    assert_eq!(late.err().as_deref(), Some("BadUserNamePassword"));
    assert_eq!(server.ping("newcomer").await, Ok("pong".to_owned()));

    // Rejecting a pending node.
    let token2 = server.join_token("second").await;
    let _intruder = Agent::start_with_token(
        &server.broker_url(),
        "intruder",
        server.dir.path(),
        Some(&token2),
    );
    server.wait_pending("intruder").await;
    let r = server
        .graphql("mutation { rejectNode(id: \"intruder\") }", json!({}))
        .await;
    assert_eq!(r["data"]["rejectNode"], true);
    assert!(!server.pending_ids().await.contains(&"intruder".to_owned()));
    assert!(server.node("intruder").await.is_none());

    // The audit log recorded the requests and decisions.
    let log = server.audit_log(100).await;
    for (actor, action, target) in [
        ("node:newcomer", "requestToJoin", "newcomer"),
        ("user:admin", "approveNode", "newcomer"),
        ("user:admin", "rejectNode", "intruder"),
    ] {
        assert!(
            audit_has(
                &log,
                &[("actor", actor), ("action", action), ("target", target)]
            ),
            "{actor} {action} {target}: {log:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_cannot_act_as_another_and_removal_revokes_it() {
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let mut a = server.join_agent("node-a").await;
    let _b = server.join_agent("node-b").await;
    server.wait_state("node-a", "ONLINE", PATIENCE).await;
    server.wait_state("node-b", "ONLINE", PATIENCE).await;
    a.proc.kill9();
    server
        .wait_state("node-a", "LOST", Duration::from_secs(10))
        .await;
    let (user, password) = agent_credentials(&a);
    let login = Some((user.as_str(), password.as_str()));
    let a_id = trellis_proto::node_client_id("node-a", Some(&password));

    // A's credentials cannot take B's client id (that would kick B off: MQTT-3.1.4-2), nor any
    // id but the one that goes with A's password.
    for id in ["trellis-agent-node-b", "trellis-agent-node-a"] {
        let takeover = MqttProbe::connect_as(server.mqtt_port, id, login, None).await;
        assert_eq!(takeover.err().as_deref(), Some("NotAuthorized"), "{id}");
    }
    // Nor listen to B's commands.
    let spy = MqttProbe::connect_as(
        server.mqtt_port,
        &a_id,
        login,
        Some("trellis/v1/nodes/node-b/command"),
    )
    .await;
    assert_eq!(spy.err().as_deref(), Some("SUBACK failure"));

    // Publishing as B is not delivered; the same message on A's own topic is.
    let probe = MqttProbe::connect_as(server.mqtt_port, &a_id, login, None)
        .await
        .expect("A connects");
    let lost = br#"{"state":"lost"}"#;
    probe
        .publish("trellis/v1/nodes/node-b/status", lost, true)
        .await;
    let forged = json!({"node_id": "node-b", "hostname": "forged", "mac": null, "ip_addresses": [], "arch": "x",
        "os": "x", "model": null, "agent_version": "0", "hardware": "simulator", "heartbeat_interval_secs": 1});
    probe
        .publish(
            "trellis/v1/nodes/node-b/announce",
            forged.to_string().as_bytes(),
            true,
        )
        .await;
    // B's job topics and telemetry are B's alone too.
    let job = br#"{"name":"heater","kind":"pwm","state":"ready","settings":{"duty":100}}"#;
    probe
        .publish("trellis/v1/nodes/node-b/jobs/heater", job, true)
        .await;
    let readings = br#"{"run":"0123456789abcdef","seq":0,"series":[{"job":"heater","metric":"t"}],"points":[[0,0,99.0]]}"#;
    probe
        .publish("trellis/v1/nodes/node-b/readings", readings, false)
        .await;
    let online = br#"{"state":"online"}"#;
    probe
        .publish("trellis/v1/nodes/node-a/status", online, true)
        .await;
    server.wait_state("node-a", "ONLINE", PATIENCE).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A delivered forgery would show: the announce changes B's hostname for good (a forged
    // status alone would be undone by B's next heartbeat).
    let b = server.node("node-b").await.expect("b");
    assert_ne!(
        b["hostname"], "forged",
        "A's forged announce for B was delivered"
    );
    assert_eq!(b["state"], "ONLINE");
    for topic in ["announce", "jobs/heater", "readings"] {
        assert_eq!(
            server.proc.log_lines_with(&[
                "MQTT publish denied",
                &format!("trellis/v1/nodes/node-b/{topic}")
            ]),
            1,
            "{topic}: {}",
            server.proc.log_text()
        );
    }
    let r = server
        .graphql(
            "{ jobs(nodeId: \"node-b\") { name } readings(nodeId: \"node-b\") { value } }",
            json!({}),
        )
        .await;
    assert_eq!(r["data"], json!({"jobs": [], "readings": []}), "{r}");
    // Only the server commands nodes: A cannot publish on its own command topic either.
    probe
        .publish(
            "trellis/v1/nodes/node-a/command",
            br#"{"id":"x","action":{"type":"ping"}}"#,
            false,
        )
        .await;
    wait_for(
        "the gate to deny A's publish on its command topic",
        PATIENCE,
        || async {
            (server
                .proc
                .log_lines_with(&["MQTT publish denied", "trellis/v1/nodes/node-a/command"])
                > 0)
            .then_some(())
        },
    )
    .await;

    // Removing A revokes its credentials and cuts its live connection.
    let r = server
        .graphql("mutation { removeNode(id: \"node-a\") }", json!({}))
        .await;
    assert_eq!(r["data"]["removeNode"], true, "{r}");
    let again = MqttProbe::connect_as(server.mqtt_port, &a_id, login, None).await;
    assert_eq!(again.err().as_deref(), Some("BadUserNamePassword"));
    wait_for("the gate to log the cut connection", PATIENCE, || async {
        server
            .proc
            .log_text()
            .contains("node removed: connection closed")
            .then_some(())
    })
    .await;

    // The removed agent, restarted with its join token, has to ask again.
    a.respawn();
    server.wait_pending("node-a").await;
    assert!(server.node("node-a").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn listed_mac_addresses_are_approved_without_an_operator() {
    // Every test agent on this machine has this machine's MAC.
    let mac = std::fs::read_dir("/sys/class/net")
        .expect("interfaces")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "lo")
        .filter_map(|e| std::fs::read_to_string(e.path().join("address")).ok())
        .map(|m| m.trim().to_owned())
        .filter(|m| m.len() == 17 && m != "00:00:00:00:00:00")
        .collect::<Vec<_>>();
    let server = Server::start(ServerOpts {
        local_agent: false,
        extra_args: vec!["--auto-approve-macs".into(), mac.join(",")],
        ..ServerOpts::default()
    })
    .await;
    let token = server.join_token("rack").await;
    let _agent = Agent::start_with_token(
        &server.broker_url(),
        "rack-1",
        server.dir.path(),
        Some(&token),
    );
    let node = server.wait_state("rack-1", "ONLINE", PATIENCE).await;
    assert!(
        mac.contains(&node["mac"].as_str().unwrap_or_default().to_owned()),
        "{node}"
    );
    let log = server.audit_log(20).await;
    assert!(
        audit_has(
            &log,
            &[
                ("actor", "system"),
                ("action", "approveNode"),
                ("outcome", "ok")
            ]
        ),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn floods_and_crowds_are_held_back() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let (_agent, probe) = server.impersonate("chatty").await;

    // Watch what the leader makes of a flood of 2000 heartbeats.
    let mut ws =
        trellis_tests::ws_session(&server, server.admin_cookie.as_deref(), json!({})).await;
    let sub = json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { nodeEvents { kind nodeId } }"}});
    ws.send(Message::text(sub.to_string())).await.expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let beat = json!({"cpu_percent": 1.0, "mem_used_bytes": 1, "mem_total_bytes": 2, "temperature_c": null, "uptime_secs": 3});
    // Past the agent's last real heartbeat, then a flood lasting 1.5 s.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let started = std::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_millis(1500) || sent < 2000 {
        sent += 1;
        probe
            .client
            .publish(
                "trellis/v1/nodes/chatty/heartbeat",
                rumqttc::QoS::AtMostOnce,
                false,
                beat.to_string(),
            )
            .await
            .expect("publish");
    }
    let mut heartbeats = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut seen = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(&t).expect("json");
        seen.push(v.clone());
        // The first accepted heartbeat brings the killed node back (ONLINE); later ones are HEARTBEAT.
        let kind = &v["payload"]["data"]["nodeEvents"]["kind"];
        if kind == "HEARTBEAT" || kind == "ONLINE" {
            heartbeats += 1;
        }
    }
    // At most one write per 500 ms, and the leader still answers.
    let allowed = (started.elapsed().as_millis() / 500) as usize + 2;
    assert!(
        heartbeats >= 1 && heartbeats <= allowed,
        "{heartbeats} heartbeat events, at most {allowed} expected: {seen:?}"
    );
    assert_eq!(
        server.node("chatty").await.expect("node")["memTotalBytes"],
        2
    );

    // One join token cannot fill the broker with enrolling connections.
    let r = server
        .graphql(
            "mutation { createJoinToken(name: \"crowd\") { token brokerPort } }",
            json!({}),
        )
        .await;
    assert_eq!(r["data"]["createJoinToken"]["brokerPort"], server.mqtt_port);
    let token = r["data"]["createJoinToken"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let mut crowd = Vec::new();
    for i in 0..trellis_server::mqtt::gate::MAX_CONNECTIONS_PER_JOIN_TOKEN {
        let (id, user) = (format!("{i:032x}"), trellis_proto::join_username(&token));
        crowd.push(
            MqttProbe::connect_as(server.mqtt_port, &id, Some((&user, &token)), None)
                .await
                .expect("within the cap"),
        );
    }
    let over = MqttProbe::connect_as(
        server.mqtt_port,
        "ffffffffffffffffffffffffffffffff",
        Some((&trellis_proto::join_username(&token), &token)),
        None,
    )
    .await;
    assert_eq!(over.err().as_deref(), Some("ServiceUnavailable"));
}

/// Connections that never log in hold at most a small share of the broker per address: the next
/// one from that address is closed at once, and a place frees when one of them goes.
#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_from_one_address_cannot_fill_the_broker() {
    use tokio::io::AsyncReadExt;
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", server.mqtt_port));
    // 16 connections that say nothing (the gate waits 10 s for their CONNECT).
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(connect().await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = connect().await.expect("connect");
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf))
        .await
        .expect("the extra connection is closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0, "the extra connection got an answer");
    assert!(
        server
            .proc
            .log_text()
            .contains("too many connections from this address")
    );
    // One idle connection goes: a client that speaks MQTT gets its answer again.
    drop(idle.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        trellis_tests::plain_mqtt_connack(server.mqtt_port, ("nobody", "wrong")).await,
        Some(4),
        "refused for its credentials, not for the crowd"
    );
}

/// How many entries of `log` have this action.
fn audit_count(log: &[Value], action: &str) -> usize {
    log.iter().filter(|e| e["action"] == action).count()
}

/// Payload limits (M7): a node's MQTT packet over the leader's limit (256 KiB of payload) closes
/// that connection, and the leader says so in its log with the size; the leader is unharmed (its
/// own node stays online, the node logs in again at once) and its memory stays flat over 20
/// such packets.
#[tokio::test(flavor = "multi_thread")]
async fn an_mqtt_packet_over_the_limit_closes_only_its_connection() {
    use rumqttc::mqttbytes::{
        QoS,
        v4::{Connect, Packet, Publish},
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(ServerOpts::default()).await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    let login = trellis_tests::bench::node_logins(&server, "big", 1)
        .await
        .pop()
        .expect("a node");
    let connect = || async {
        let mut c = Connect::new(trellis_proto::node_client_id(
            &login.id,
            Some(&login.password),
        ));
        c.set_login(&login.user, &login.password);
        let mut frame = bytes::BytesMut::new();
        Packet::Connect(c)
            .write(&mut frame, 4096)
            .expect("encode CONNECT");
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.mqtt_port))
            .await
            .expect("connect");
        stream.write_all(&frame).await.expect("send CONNECT");
        let mut reply = [0u8; 4];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut reply))
            .await
            .expect("a CONNACK in time")
            .expect("read");
        assert_eq!(reply, [0x20, 2, 0, 0], "accepted");
        stream
    };
    let rss = || trellis_tests::bench::status_kib(server.proc.id(), "VmRSS");
    // Memory is measured after a few rounds: the first ones grow the allocator's pools once.
    let mut before = 0;
    for round in 0..23 {
        if round == 3 {
            before = rss();
        }
        let mut stream = connect().await;
        let mut publish = Publish::new(
            format!("trellis/v1/nodes/{}/logs", login.id),
            QoS::AtLeastOnce,
            vec![b'x'; 300 * 1024],
        );
        publish.pkid = 1;
        let mut frame = bytes::BytesMut::new();
        Packet::Publish(publish)
            .write(&mut frame, 1 << 20)
            .expect("encode PUBLISH");
        // The leader may close before it has read it all.
        let _ = stream.write_all(&frame).await;
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "round {round}: the connection stayed open");
        assert!(rest.is_empty(), "round {round}: no PUBACK for it: {rest:?}");
    }
    let after = rss();
    assert!(
        after < before + 8 * 1024,
        "RSS {before} KiB before, {after} KiB after 20 packets of 300 KiB"
    );
    assert!(
        server
            .proc
            .log_text()
            .contains("an MQTT packet over the size limit"),
        "the leader's log says why"
    );
    // Unharmed: the node logs in again, the leader's own node is still live.
    drop(connect().await);
    let before = server.node("leader").await.expect("leader")["lastSeen"].clone();
    wait_for(
        "a fresh heartbeat from the leader's node",
        PATIENCE,
        || async {
            let n = server.node("leader").await?;
            (n["state"] == "ONLINE" && n["lastSeen"] != before).then_some(())
        },
    )
    .await;
}
