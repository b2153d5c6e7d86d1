//! The leader as a new user meets it: one process with a live local node, health endpoints,
//! GraphiQL served offline, the web app with client-side routes, node mutations, subscriptions
//! over both websocket protocols, and bad input answered with a clear error.

use std::{process::Command, time::Duration};

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use trellis_tests::{
    Broker, Mosquitto, MqttProbe, PATIENCE, Server, ServerOpts, binary, next_json, wait_for,
    web_dir, ws_connect, ws_session,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_with_no_configuration_is_a_cluster_of_one() {
    let server = Server::start(ServerOpts {
        web_dir: Some(web_dir()),
        ..ServerOpts::default()
    })
    .await;
    let node = server.wait_state("leader", "ONLINE", PATIENCE).await;
    assert_eq!(node["hardware"], "simulator");

    let http = server.http();
    assert_eq!(
        http.get(server.url("/healthz"))
            .send()
            .await
            .expect("healthz")
            .text()
            .await
            .expect("body"),
        "ok"
    );
    let ready: Value = http
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready, json!({"database": "ok", "broker": "ok"}));

    let nodes = server.graphql("{ nodes { id state } }", json!({})).await;
    assert_eq!(
        nodes["data"]["nodes"],
        json!([{"id": "leader", "state": "ONLINE"}])
    );

    // The web app, and its client-side routes fall back to index.html.
    let mut index = String::new();
    for path in ["/", "/nodes/leader", "/some/client/route"] {
        let resp = http.get(server.url(path)).send().await.expect("GET");
        assert_eq!(resp.status(), 200, "{path}");
        index = resp.text().await.expect("body");
        assert!(
            index.contains("/trellis_frontend-"),
            "{path} is not the web app"
        );
    }
    // The wasm it names, by content hash, kept by browsers for a year.
    let wasm_path = index
        .split(['\'', '"'])
        .find(|w| w.starts_with("/trellis_frontend_bg-") && w.ends_with(".wasm"))
        .unwrap_or_else(|| panic!("index.html names no hashed wasm: {index}"))
        .to_owned();
    let wasm = http.get(server.url(&wasm_path)).send().await.expect("wasm");
    assert_eq!(wasm.status(), 200, "{wasm_path}");
    assert_eq!(wasm.headers()["content-type"], "application/wasm");
    assert_eq!(
        wasm.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn graphiql_is_served_with_its_own_assets() {
    let server = Server::start(ServerOpts::default()).await;
    let page = server
        .http()
        .get(server.url("/graphiql"))
        .send()
        .await
        .expect("graphiql")
        .text()
        .await
        .expect("body");
    let assets: Vec<&str> = page
        .split('"')
        .filter(|s| s.starts_with("/graphiql/assets/"))
        .collect();
    assert_eq!(assets.len(), 5, "{page}");
    assert!(
        !page.contains("cdn") && !page.contains("https://"),
        "GraphiQL must not load from the internet"
    );
    for asset in assets {
        let resp = server
            .http()
            .get(server.url(asset))
            .send()
            .await
            .expect("asset");
        assert_eq!(resp.status(), 200, "{asset}");
        assert!(
            resp.bytes().await.expect("bytes").len() > 5_000,
            "{asset} is too small to be real"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_label_and_remove_a_node() {
    // On Mosquitto (anonymous in this test), so a probe can watch the retained topics directly.
    let mosquitto = Mosquitto::start().await;
    let server = Server::start(ServerOpts {
        broker: Broker::External(mosquitto.port),
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let mut agent = server.join_agent("bench-3").await;
    let node = server.wait_state("bench-3", "ONLINE", PATIENCE).await;
    let hostname = node["hostname"].as_str().expect("hostname").to_owned();

    let r = server
        .graphql(
            r#"mutation { renameNode(id: "bench-3", name: "  Bioreactor 3 ") { name renamed } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        r["data"]["renameNode"],
        json!({"name": "Bioreactor 3", "renamed": true})
    );
    let r = server
        .graphql(
            r#"mutation { renameNode(id: "bench-3", name: "") { name renamed } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        r["data"]["renameNode"],
        json!({"name": hostname, "renamed": false})
    );

    let set = r#"mutation($labels: [LabelInput!]!) { setNodeLabels(id: "bench-3", labels: $labels) { labels { key value } } }"#;
    let r = server.graphql(set, json!({"labels": [{"key": "room", "value": "B12"}, {"key": "kind", "value": "bioreactor"}]})).await;
    assert_eq!(
        r["data"]["setNodeLabels"]["labels"],
        json!([{"key": "kind", "value": "bioreactor"}, {"key": "room", "value": "B12"}])
    );
    let r = server
        .graphql(
            set,
            json!({"labels": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]}),
        )
        .await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    assert_eq!(r["errors"][0]["message"], "label key \"a\" given twice");
    let r = server.graphql(r#"mutation { renameNode(id: "bench-3", name: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx") { name } }"#, json!({})).await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    let r = server
        .graphql(
            r#"mutation { renameNode(id: "nope", name: "x") { name } }"#,
            json!({}),
        )
        .await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "NOT_FOUND");
    assert_eq!(
        server.node("bench-3").await.expect("node")["labels"]
            .as_array()
            .expect("labels")
            .len(),
        2,
        "the failed mutation changed nothing"
    );

    // GraphQL-over-HTTP: a mutation over GET is refused with 405 and changes nothing.
    let resp = server
        .http()
        .get(server.url("/graphql"))
        .query(&[(
            "query",
            r#"mutation { renameNode(id: "bench-3", name: "via GET") { name } }"#,
        )])
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 405);
    assert_eq!(
        server.node("bench-3").await.expect("node")["name"],
        hostname
    );
    // A query over GET works.
    let resp = server
        .http()
        .get(server.url("/graphql"))
        .query(&[("query", "{ nodes { id } }")])
        .header("Cookie", server.admin_cookie.clone().expect("logged in"))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        resp.json::<Value>().await.expect("json")["data"]["nodes"][0]["id"],
        "bench-3"
    );

    // Remove a dead node: it is gone, and its retained topics are cleared so it is no ghost.
    agent.proc.kill9();
    server
        .wait_state("bench-3", "LOST", Duration::from_secs(10))
        .await;
    let r = server
        .graphql(r#"mutation { removeNode(id: "bench-3") }"#, json!({}))
        .await;
    assert_eq!(r["data"]["removeNode"], true, "{r}");
    assert!(server.node("bench-3").await.is_none());
    let mut probe = MqttProbe::connect(server.mqtt_port, Some("trellis/v1/nodes/bench-3/+")).await;
    let retained = probe.collect(Duration::from_secs(2)).await;
    assert!(
        retained.is_empty(),
        "retained messages left behind: {:?}",
        retained
            .iter()
            .map(|p| (&p.topic, p.retain, String::from_utf8_lossy(&p.payload)))
            .collect::<Vec<_>>()
    );
    let r = server
        .graphql(r#"mutation { removeNode(id: "bench-3") }"#, json!({}))
        .await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "NOT_FOUND");

    // It comes back when its agent runs again.
    agent.respawn();
    server.wait_state("bench-3", "ONLINE", PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_mqtt_messages_are_dropped_and_everything_keeps_running() {
    let server = Server::start(ServerOpts::default()).await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    // A real node whose credentials then send garbage on its own topics.
    let (_agent, probe) = server.impersonate("junk").await;
    let junk: [(&str, &[u8]); 5] = [
        ("trellis/v1/nodes/junk/heartbeat", b"{not json"),
        ("trellis/v1/nodes/junk/status", b"{\"state\":\"exploded\"}"),
        (
            "trellis/v1/nodes/junk/announce",
            b"{\"node_id\":\"someone-else\"}",
        ),
        ("trellis/v1/nodes/junk/unknown", b"{}"),
        ("trellis/v1/nodes/junk/heartbeat", &[0xff, 0xfe, 0x00]),
    ];
    for (topic, payload) in junk {
        probe
            .client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.to_vec())
            .await
            .expect("publish");
    }
    let log = wait_for(
        "the bridge to log the malformed heartbeat",
        PATIENCE,
        || async {
            let log = server.proc.log_text();
            log.contains("malformed status payload").then_some(log)
        },
    )
    .await;
    assert!(
        log.contains("malformed heartbeat payload on trellis/v1/nodes/junk/heartbeat"),
        "{log}"
    );
    // Still running, still recording heartbeats from the real agent.
    let before = server.node("leader").await.expect("node")["lastSeen"].clone();
    let after = wait_for("a fresh heartbeat", PATIENCE, || async {
        server
            .node("leader")
            .await
            .filter(|n| n["lastSeen"] != before && n["state"] == "ONLINE")
    })
    .await;
    assert!(
        after["hostname"].as_str().is_some_and(|h| !h.is_empty()),
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_stream_node_events_over_both_websocket_protocols() {
    let server = Server::start(ServerOpts::default()).await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    let query = "subscription { nodeEvents { kind nodeId node { state cpuPercent } } }";

    // graphql-transport-ws (the current protocol).
    let mut ws = ws_session(&server, server.admin_cookie.as_deref(), json!({})).await;
    ws.send(Message::text(
        json!({"id": "1", "type": "subscribe", "payload": {"query": query}}).to_string(),
    ))
    .await
    .expect("send");
    let msg = next_json(&mut ws).await;
    assert_eq!(msg["type"], "next", "{msg}");
    let ev = &msg["payload"]["data"]["nodeEvents"];
    assert_eq!(
        (ev["kind"].as_str(), ev["nodeId"].as_str()),
        (Some("HEARTBEAT"), Some("leader")),
        "{msg}"
    );
    assert_eq!(ev["node"]["state"], "ONLINE");

    // graphql-ws (the older subscriptions-transport-ws protocol), for old clients.
    let mut ws = ws_connect(&server, "graphql-ws", server.admin_cookie.as_deref()).await;
    ws.send(Message::text(
        json!({"type": "connection_init", "payload": {}}).to_string(),
    ))
    .await
    .expect("send");
    assert_eq!(next_json(&mut ws).await["type"], "connection_ack");
    ws.send(Message::text(
        json!({"id": "1", "type": "start", "payload": {"query": query}}).to_string(),
    ))
    .await
    .expect("send");
    let msg = loop {
        let m = next_json(&mut ws).await;
        if m["type"] != "ka" {
            break m;
        }
    };
    assert_eq!(msg["type"], "data", "{msg}");
    assert_eq!(msg["payload"]["data"]["nodeEvents"]["nodeId"], "leader");
}

#[test]
fn bad_configuration_fails_fast_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&[&str], &str)] = &[
        (&["--http-listen", "everywhere"], "invalid http_listen"),
        (&["--broker-url", "http://x"], "invalid broker_url"),
        (&["--database-url", "mysql://x"], "invalid database_url"),
    ];
    for (args, want) in cases {
        let out = Command::new(binary("trellis"))
            .args(*args)
            .current_dir(dir.path())
            .output()
            .expect("run trellis");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started anyway");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    let conf = dir.path().join("trellis.toml");
    std::fs::write(&conf, "http_port = 80\n").expect("write");
    let out = Command::new(binary("trellis"))
        .arg("--config")
        .arg(&conf)
        .output()
        .expect("run trellis");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `http_port`"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(binary("trellis"))
        .args([
            "--mqtt-listen",
            &format!("127.0.0.1:{port}"),
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run trellis");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen for MQTT on 127.0.0.1:{port} (mqtt_listen)"
        )),
        "{stderr}"
    );
}
