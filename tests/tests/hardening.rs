//! The API's limits, as an attacker or a buggy client would meet them: nested and expensive
//! queries refused before anything runs, batches and oversized bodies refused, introspection and
//! GraphiQL switchable off, CORS only for listed origins, database failures reported by code
//! alone, slow bodies cut off, and a clean stop on SIGTERM even with clients connected.

use serde_json::{Value, json};
use trellis_tests::{Auth, Db, PATIENCE, Postgres, Server, ServerOpts};

use trellis_tests::error_code as code;

/// graphql-js's `getIntrospectionQuery()`, which GraphiQL sends on load.
const INTROSPECTION: &str = "query IntrospectionQuery { __schema { queryType { name } mutationType { name } \
    subscriptionType { name } types { ...FullType } directives { name description locations args { ...InputValue } } } }
    fragment FullType on __Type { kind name description fields(includeDeprecated: true) { name description \
    args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason } inputFields { ...InputValue } \
    interfaces { ...TypeRef } enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason } \
    possibleTypes { ...TypeRef } }
    fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
    fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name \
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } } }";

#[tokio::test(flavor = "multi_thread")]
async fn deep_expensive_and_batched_queries_are_refused() {
    let server = Server::start(ServerOpts::default()).await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;

    // What GraphiQL needs works.
    let r = server.graphql(INTROSPECTION, json!({})).await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(r["data"]["__schema"]["queryType"]["name"], "Query");

    // Too deep: refused, nothing executed.
    let deep = format!(
        "{{ __schema {{ types {{ {}name{} }} }} }}",
        "ofType { ".repeat(30),
        " }".repeat(30)
    );
    let r = server.graphql(&deep, json!({})).await;
    assert_eq!(
        r["errors"][0]["message"], "Query is nested too deep.",
        "{r}"
    );
    assert!(r["data"].is_null());

    // Too expensive: 1200 aliased fields. A mutation that would run is refused whole.
    let wide: String = (0..1200)
        .map(|i| format!("a{i}: nodes {{ id }} "))
        .collect();
    let r = server.graphql(&format!("{{ {wide} }}"), json!({})).await;
    assert_eq!(
        r["errors"][0]["message"],
        "Query is too complex.",
        "{}",
        r.to_string().chars().take(300).collect::<String>()
    );
    let renames: String = (0..1200)
        .map(|i| format!("r{i}: renameNode(id: \"leader\", name: \"n{i}\") {{ id }} "))
        .collect();
    let r = server
        .graphql(&format!("mutation {{ {renames} }}"), json!({}))
        .await;
    assert_eq!(r["errors"][0]["message"], "Query is too complex.");
    assert_eq!(
        server.node("leader").await.expect("node")["renamed"],
        false,
        "nothing ran"
    );

    // Batches are refused.
    let batch: Vec<Value> = (0..1000)
        .map(|_| json!({"query": "{ nodes { id } }"}))
        .collect();
    let resp = server
        .http()
        .post(server.url("/graphql"))
        .header("Cookie", server.admin_cookie.clone().expect("cookie"))
        .json(&batch)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), 400);

    // Bodies over 1 MiB are refused by their Content-Length, before the body is read. (Sent by
    // hand: a client still writing a big body may see the closed connection before the 413.)
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", server.http_port))
        .await
        .expect("connect");
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{{\"query\": \"{{ nodes {{ id }} }} #",
        3 * 1024 * 1024
    );
    raw.write_all(head.as_bytes()).await.expect("send head");
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(PATIENCE, raw.read(&mut answer))
        .await
        .expect("an answer")
        .expect("read");
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn production_settings_turn_off_introspection_and_graphiql() {
    let server = Server::start(ServerOpts {
        extra_args: ["--introspection", "false", "--graphiql", "false"]
            .map(String::from)
            .to_vec(),
        ..ServerOpts::default()
    })
    .await;
    // async-graphql answers introspection with null rather than an error: nothing is revealed.
    let q = "{ __schema { queryType { name } } __type(name: \"Node\") { name } }";
    let r = server.graphql(q, json!({})).await;
    assert_eq!(r["data"], json!({"__schema": null, "__type": null}), "{r}");
    let resp = server
        .http()
        .get(server.url("/graphiql"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 404);
    // The API itself still works.
    let r = server.graphql("{ me { username } }", json!({})).await;
    assert_eq!(r["data"]["me"]["username"], "admin");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_answers_only_listed_origins() {
    let server = Server::start(ServerOpts {
        extra_args: vec!["--cors-origins".into(), "https://dash.lab.example".into()],
        ..ServerOpts::default()
    })
    .await;
    let preflight = |origin: &'static str| {
        server
            .http()
            .request(reqwest::Method::OPTIONS, server.url("/graphql"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "content-type,authorization",
            )
            .send()
    };
    let resp = preflight("https://evil.example").await.expect("OPTIONS");
    assert!(
        resp.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        resp.headers()
    );
    let resp = preflight("https://dash.lab.example")
        .await
        .expect("OPTIONS");
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://dash.lab.example"
    );
    assert!(
        resp.headers()
            .get("access-control-allow-credentials")
            .is_none(),
        "no credentials across origins"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_failure_reaches_the_client_only_as_a_code() {
    let pg = Postgres::create();
    let server = Server::start(ServerOpts {
        db: Db::Postgres(pg.url.clone()),
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    // Break the database behind the leader's back.
    let out = std::process::Command::new("psql")
        .arg(&pg.url)
        .args(["-qc", "DROP TABLE node"])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = server.graphql("{ nodes { id } }", json!({})).await;
    assert_eq!(code(&r), "INTERNAL");
    assert_eq!(r["errors"][0]["message"], "internal server error");
    let text = r.to_string();
    assert!(
        !text.contains("relation") && !text.contains("node\"") && !text.contains("postgres"),
        "{text}"
    );
    // The operator's log has the real reason.
    let log = server.proc.log_text();
    assert!(
        log.contains("internal error in a GraphQL resolver") && log.contains("does not exist"),
        "{log}"
    );
    // Everything else keeps working.
    let (status, r) = server
        .graphql_as(
            &Auth::Anonymous,
            "{ setupStatus { needsSetup } }",
            json!({}),
        )
        .await;
    assert_eq!(
        (status, r["data"]["setupStatus"]["needsSetup"].as_bool()),
        (200, Some(false))
    );
}

/// A client that sends its body too slowly (slowloris) gets 408 when the request timeout runs
/// out, and the leader goes on answering everyone else meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_body_is_cut_off_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(ServerOpts {
        local_agent: false,
        extra_args: vec!["--request-timeout-secs".into(), "2".into()],
        ..ServerOpts::default()
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", server.http_port))
        .await
        .expect("connect");
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"query\": \"",
        server.http_port
    );
    slow.write_all(head.as_bytes()).await.expect("send head");
    let started = std::time::Instant::now();
    // A byte now and then, never the whole body.
    let trickle = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            if slow.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    // Meanwhile the leader answers others at once: well within the trickle, which goes on.
    let others = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            server.graphql("{ nodes { id } }", json!({})),
        )
        .await
        .expect("the leader stalled while one client trickled its body");
        assert!(r["errors"].is_null(), "{r}");
    };
    let trickle_for_a_while = async {
        // The trickle itself ends when the leader closes the connection, or after 4 s.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(4), trickle).await;
    };
    tokio::join!(others, trickle_for_a_while);
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(PATIENCE, slow.read(&mut answer))
        .await
        .expect("an answer")
        .expect("read");
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
}

/// A client that trickles its request headers (slowloris) is cut off once the request timeout
/// has passed, instead of holding its connection for ever.
#[tokio::test(flavor = "multi_thread")]
async fn trickled_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(ServerOpts {
        local_agent: false,
        extra_args: vec!["--request-timeout-secs".into(), "2".into()],
        ..ServerOpts::default()
    })
    .await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", server.http_port))
        .await
        .expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("send");
    let started = std::time::Instant::now();
    let trickle = tokio::spawn(async move {
        for i in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            if wr
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        rd.read_to_end(&mut answer),
    )
    .await
    .is_ok();
    trickle.abort();
    assert!(
        closed,
        "the connection was still open after 10 s of trickled headers"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(!text.contains("200 OK"), "{text}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
}

/// SIGTERM stops the leader cleanly and soon, even with a subscription socket open: it exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_leader_cleanly_with_clients_connected() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut server = Server::start(ServerOpts::default()).await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    let mut ws =
        trellis_tests::ws_session(&server, server.admin_cookie.as_deref(), json!({})).await;
    let sub = json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { nodeEvents { kind nodeId } }"}});
    ws.send(Message::text(sub.to_string())).await.expect("send");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.proc.signal("-TERM");
    let code = server.proc.wait_exit(std::time::Duration::from_secs(15));
    assert_eq!(
        code,
        Some(0),
        "the leader did not exit 0 within 15 s of SIGTERM; log:\n{}",
        server.proc.log_text()
    );
    assert!(server.proc.log_text().contains("shutting down"));
}

/// A request under way when SIGTERM comes is answered before the leader exits (G11): its body
/// is half sent, the leader is told to stop, the rest follows, and the answer is a 200 with the
/// data; then the leader exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_in_flight_at_sigterm_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let cookie = server.admin_cookie.clone().expect("the admin's cookie");
    let body = json!({"query": "{ nodes { id } }"}).to_string();
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", server.http_port))
        .await
        .expect("connect");
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
         Cookie: {cookie}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        server.http_port,
        body.len()
    );
    let (first, rest) = body.split_at(body.len() / 2);
    conn.write_all(head.as_bytes()).await.expect("send head");
    conn.write_all(first.as_bytes()).await.expect("send half");
    // The leader has the request in hand before it is told to stop.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.proc.signal("-TERM");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    conn.write_all(rest.as_bytes())
        .await
        .expect("send the rest");
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, conn.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#"{"data":{"nodes":["#), "{text}");
    assert_eq!(
        server.proc.wait_exit(std::time::Duration::from_secs(15)),
        Some(0),
        "{}",
        server.proc.log_text()
    );
}

/// A websocket message over the leader's limit (64 KiB) closes that socket, with "message too
/// big" (1009), and nothing else: the leader answers others, and a new socket works (G8). The
/// leader's memory does not grow with such messages (RSS before and after 20 of them).
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_websocket_message_closes_only_its_socket() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let cookie = server.admin_cookie.clone();
    let rss = || trellis_tests::bench::status_kib(server.proc.id(), "VmRSS");
    // Memory is measured after a few rounds: the first ones grow the allocator's pools once.
    let mut before = 0;
    for round in 0..23 {
        if round == 3 {
            before = rss();
        }
        let mut ws = trellis_tests::ws_session(&server, cookie.as_deref(), json!({})).await;
        let big =
            json!({"id": "1", "type": "subscribe", "payload": {"query": "x".repeat(100 * 1024)}});
        // The leader may close before the whole frame is read: a failed send is fine.
        let _ = ws.send(Message::text(big.to_string())).await;
        let close = loop {
            match tokio::time::timeout(PATIENCE, ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| f.code),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_)) | None) => break None,
                Err(_) => panic!("round {round}: the socket stayed open"),
            }
        };
        if let Some(code) = close {
            assert_eq!(code, CloseCode::Size, "round {round}");
        }
    }
    let after = rss();
    assert!(
        after < before + 8 * 1024,
        "RSS {before} KiB before, {after} KiB after 20 oversized messages"
    );
    let r = server.graphql("{ nodes { id } }", json!({})).await;
    assert!(r["errors"].is_null(), "{r}");
    let mut ws = trellis_tests::ws_session(&server, cookie.as_deref(), json!({})).await;
    let sub = json!({"id": "2", "type": "subscribe", "payload": {"query": "{ nodes { id } }"}});
    ws.send(Message::text(sub.to_string())).await.expect("send");
    let next = trellis_tests::next_json(&mut ws).await;
    assert_eq!(next["type"], "next", "{next}");
}

/// One socket runs at most 100 operations at once (G8): the 101st `subscribe` gets an error for
/// its id naming the cap (also when sent again, as a binary frame), and nothing else changes;
/// once one completes, another runs.
#[tokio::test(flavor = "multi_thread")]
async fn one_socket_runs_at_most_100_operations() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let mut ws =
        trellis_tests::ws_session(&server, server.admin_cookie.as_deref(), json!({})).await;
    let subscribe = |id: &str, query: &str| {
        Message::text(
            json!({"id": id, "type": "subscribe", "payload": {"query": query}}).to_string(),
        )
    };
    for i in 1..=101 {
        ws.send(subscribe(
            &i.to_string(),
            "subscription { nodeEvents { kind } }",
        ))
        .await
        .expect("send");
    }
    let refused = trellis_tests::next_json(&mut ws).await;
    assert_eq!(
        (refused["id"].as_str(), refused["type"].as_str()),
        (Some("101"), Some("next")),
        "{refused}"
    );
    let error = &refused["payload"]["errors"][0];
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 100")
            && error["extensions"]["code"] == "RATE_LIMITED",
        "{refused}"
    );
    let end = trellis_tests::next_json(&mut ws).await;
    assert_eq!(
        (end["id"].as_str(), end["type"].as_str()),
        (Some("101"), Some("complete")),
        "{end}"
    );
    // The same id again, as a binary frame: still refused (ids and frame kinds do not matter).
    let again = json!({"id": "101", "type": "subscribe", "payload": {"query": "subscription { nodeEvents { kind } }"}});
    ws.send(Message::binary(again.to_string().into_bytes()))
        .await
        .expect("send");
    let again = trellis_tests::next_json(&mut ws).await;
    assert_eq!(
        again["payload"]["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{again}"
    );
    assert_eq!(trellis_tests::next_json(&mut ws).await["type"], "complete");
    // One ends; the next runs to its end.
    ws.send(Message::text(
        json!({"id": "1", "type": "complete"}).to_string(),
    ))
    .await
    .expect("send");
    ws.send(subscribe("102", "{ nodes { id } }"))
        .await
        .expect("send");
    // (The leader may first confirm the end of operation 1.)
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let m = trellis_tests::next_json(&mut ws).await;
        if m["id"] == "102" {
            seen.push(m["type"].as_str().unwrap_or_default().to_owned());
        } else {
            assert_eq!(
                (m["id"].as_str(), m["type"].as_str()),
                (Some("1"), Some("complete")),
                "{m}"
            );
        }
    }
    assert_eq!(seen, ["next", "complete"]);
}

/// A chunked body with no Content-Length is held to the same 1 MiB as any (G5): past it the
/// leader answers 413 (or closes the connection) without reading on, runs nothing, and its
/// memory stays flat over 10 such requests (after 3 that warm the allocator up).
#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_body_over_the_limit_is_refused_and_memory_stays_flat() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let cookie = server.admin_cookie.clone().expect("the admin's cookie");
    let rss = || trellis_tests::bench::status_kib(server.proc.id(), "VmRSS");
    // Memory is measured after a few rounds: the first ones grow the allocator's pools once.
    let mut before = 0;
    for round in 0..13 {
        if round == 3 {
            before = rss();
        }
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", server.http_port))
            .await
            .expect("connect");
        let head = format!(
            "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Cookie: {cookie}\r\nTransfer-Encoding: chunked\r\n\r\n",
            server.http_port
        );
        conn.write_all(head.as_bytes()).await.expect("send head");
        // A valid start, then 64 KiB chunks of a string that never ends: 3 MiB in all, unless
        // the leader stops reading first.
        let mut body = b"{\"query\": \"mutation { renameNode(id: \\\"x\\\", name: \\\"".to_vec();
        body.extend(std::iter::repeat_n(b'a', 64 * 1024 - body.len()));
        let mut sent = 0usize;
        for _ in 0..48 {
            let chunk = format!("{:x}\r\n", body.len());
            let ok = conn.write_all(chunk.as_bytes()).await.is_ok()
                && conn.write_all(&body).await.is_ok()
                && conn.write_all(b"\r\n").await.is_ok();
            if !ok {
                break;
            }
            sent += body.len();
            body.fill(b'a');
        }
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.is_empty()
                || (text.starts_with("HTTP/1.1 413")
                    && text.contains("the request body is over the limit of 1 MiB")),
            "round {round}, {sent} bytes sent: {text}"
        );
    }
    let after = rss();
    assert!(
        after < before + 8 * 1024,
        "RSS {before} KiB before, {after} KiB after 10 chunked bodies of 3 MiB"
    );
    // Nothing ran, and the leader answers.
    let r = server.graphql("{ nodes { id name } }", json!({})).await;
    assert!(r["errors"].is_null(), "{r}");
}

/// A panic is contained (G6). In a debug build, `TRELLIS_TEST_PANIC` makes a chosen place panic
/// once: here the `renameNode` resolver and the liveness sweep (the loop that marks silent nodes
/// lost). The rename's caller gets a 500 and the leader stays up: the next rename works. The
/// sweep's loop is started again, and still does its work: an agent stopped by SIGSTOP, whose
/// keepalive is too long for the broker to notice, is marked lost by the sweep.
#[tokio::test(flavor = "multi_thread")]
async fn a_panic_in_a_resolver_or_a_loop_is_contained() {
    let mut server = Server::start(ServerOpts {
        local_agent: false,
        env: vec![("TRELLIS_TEST_PANIC".into(), "renameNode,liveness".into())],
        ..ServerOpts::default()
    })
    .await;
    let agent = server
        .join_agent_with("stuck", &["--keepalive-secs", "120"])
        .await;
    server.wait_state("stuck", "ONLINE", PATIENCE).await;
    let rename = || async {
        server
            .http()
            .post(server.url("/graphql"))
            .header("Cookie", server.admin_cookie.clone().expect("cookie"))
            .json(&json!({"query": "mutation { renameNode(id: \"stuck\", name: \"s\") { name } }"}))
            .send()
            .await
            .expect("POST")
    };
    assert_eq!(rename().await.status().as_u16(), 500, "the panicking call");
    let second = rename().await;
    assert_eq!(second.status().as_u16(), 200);
    let body: serde_json::Value = second.json().await.expect("json");
    assert_eq!(body["data"]["renameNode"]["name"], "s", "{body}");
    trellis_tests::wait_for("the sweep started again", PATIENCE, || async {
        (server
            .proc
            .log_lines_with(&["background loop started again", "liveness sweep"])
            > 0)
        .then_some(())
    })
    .await;
    agent.proc.signal("-STOP");
    server.wait_state("stuck", "LOST", PATIENCE).await;
    agent.proc.signal("-CONT");
    assert!(!server.proc.has_exited(), "the leader is up");
}

/// A slow consumer (G9). Two bursts of 150 000 readings from a node: the first with two
/// websocket clients reading its live readings (it warms the leader's memory up to what such a
/// burst takes), the second with one of them stalled (subscribed, never reading). The other
/// keeps getting its frames to the last reading; the leader's memory grows no further than in
/// the first burst (plus a margin); the stalled client, once it reads again, gets what waited
/// for it (bounded by the feed's capacity, 128 000 readings, and the socket's buffers) to the
/// last reading, or is told it fell behind (`resync`), or finds its socket closed.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_subscriber_does_not_hold_back_the_others() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use trellis_tests::bench::{Publisher, batches, node_logins};
    let server = Server::start(ServerOpts {
        local_agent: false,
        ..ServerOpts::default()
    })
    .await;
    let login = node_logins(&server, "burst", 1)
        .await
        .pop()
        .expect("a node");
    let cookie = server.admin_cookie.clone();
    let subscribe = |fps: u32| {
        Message::text(
            json!({"id": "1", "type": "subscribe", "payload": {"query": format!(
                "subscription {{ liveReadings(nodeId: \"{}\", fps: {fps}, maxPerFrame: 10000) {{ readings {{ value }} skipped resync }} }}",
                login.id
            )}})
            .to_string(),
        )
    };
    let mut live = trellis_tests::ws_session(&server, cookie.as_deref(), json!({})).await;
    live.send(subscribe(10)).await.expect("subscribe");
    let rss = || trellis_tests::bench::status_kib(server.proc.id(), "VmRSS");
    let half = 150_000u64;
    // Sends readings first..first + half and reads the live client until the last of them;
    // the highest RSS seen meanwhile.
    let burst = async |live: &mut trellis_tests::Ws, first: u64| {
        let publisher = Publisher::connect(
            server.mqtt_port,
            &login,
            100,
            // A run of its own per burst: a batch's number counts from 0 in each.
            batches(
                if first == 0 {
                    "0123456789abcdef"
                } else {
                    "fedcba9876543210"
                },
                first,
                half,
                1,
                false,
            ),
        )
        .await;
        let sent = tokio::spawn(publisher.run());
        let last = (first + half - 1) as f64;
        let mut frames = 0u32;
        let mut peak = rss();
        let seen = tokio::time::timeout(std::time::Duration::from_secs(120), async {
            while let Some(Ok(m)) = live.next().await {
                let Message::Text(t) = m else { continue };
                let v: Value = serde_json::from_str(&t).expect("json");
                frames += 1;
                peak = peak.max(rss());
                if v["payload"]["data"]["liveReadings"]["readings"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["value"].as_f64() == Some(last)))
                {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            seen,
            Ok(true),
            "the live client saw reading {last} ({frames} frames)"
        );
        sent.await.expect("every batch acknowledged");
        assert!(frames > 3, "frames went on during the burst: {frames}");
        peak
    };
    let mut second = trellis_tests::ws_session(&server, cookie.as_deref(), json!({})).await;
    second.send(subscribe(30)).await.expect("subscribe");
    let reader = tokio::spawn(async move {
        // Reads the first burst, then stops reading (it is handed back, still open).
        while let Some(Ok(m)) = second.next().await {
            if let Message::Text(t) = m
                && t.contains("149999")
            {
                break;
            }
        }
        second
    });
    let warm = burst(&mut live, 0).await;
    let mut stalled = reader.await.expect("the second client");
    let before = rss();
    let peak = burst(&mut live, half).await;
    assert!(
        peak < before.max(warm) + 32 * 1024,
        "RSS {warm} KiB at most in the first burst, {before} KiB before the second, {peak} KiB at most in it"
    );
    // The stalled client reads again: what waited for it (at most the feed's capacity and the
    // socket's buffers) comes through to the last reading, or it is told it fell behind, or
    // its socket is closed.
    let outcome = tokio::time::timeout(PATIENCE, async {
        loop {
            match stalled.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("json");
                    let frame = &v["payload"]["data"]["liveReadings"];
                    if frame["resync"] == true {
                        return "resync";
                    }
                    let last = frame["readings"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|r| r["value"].as_f64() == Some(299_999.0)));
                    if last {
                        return "caught up";
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return "closed",
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "the stalled client is stuck");
}
