//! Every door is shut to those without the key: unauthenticated and wrong-role calls are refused
//! over HTTP and websockets, tokens are shown once and revocation bites at once, logins are rate
//! limited, and every mutation lands in the audit log with its outcome.

use std::time::Duration;

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use trellis_tests::{
    ADMIN_PASSWORD, Auth, PATIENCE, Server, ServerOpts, audit_has, next_json, until_closed,
    ws_connect, ws_session,
};

use trellis_tests::error_code as code;

async fn admin(server: &Server) -> Auth {
    Auth::Cookie(server.admin_cookie.clone().expect("admin logged in"))
}

async fn create_user(server: &Server, name: &str, role: &str) -> Auth {
    let q = "mutation($u: String!, $r: Role!) { createUser(username: $u, password: \"password-of-user\", role: $r) { id role } }";
    let r = server.graphql(q, json!({"u": name, "r": role})).await;
    assert_eq!(r["data"]["createUser"]["role"], role, "{r}");
    Auth::Cookie(server.login(name, "password-of-user").await.expect("login"))
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_decide_what_each_caller_may_do() {
    let server = Server::start(ServerOpts::default()).await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    let rename = r#"mutation { renameNode(id: "leader", name: "bench") { name } }"#;

    // Nobody: only the public fields answer.
    let (status, r) = server
        .graphql_as(&Auth::Anonymous, "{ nodes { id } }", json!({}))
        .await;
    assert_eq!((status, code(&r)), (200, "UNAUTHENTICATED"));
    assert_eq!(
        r["data"],
        Value::Null,
        "no data for an anonymous caller: {r}"
    );
    let (_, r) = server.graphql_as(&Auth::Anonymous, rename, json!({})).await;
    assert_eq!(code(&r), "UNAUTHENTICATED");
    let (_, r) = server
        .graphql_as(
            &Auth::Anonymous,
            "{ setupStatus { needsSetup } me { username } }",
            json!({}),
        )
        .await;
    assert_eq!(
        r["data"],
        json!({"setupStatus": {"needsSetup": false}, "me": null})
    );

    // A viewer reads but changes nothing.
    let viewer = create_user(&server, "vera", "VIEWER").await;
    let (_, r) = server
        .graphql_as(&viewer, "{ nodes { id } me { username role } }", json!({}))
        .await;
    assert_eq!(r["data"]["nodes"][0]["id"], "leader");
    assert_eq!(
        r["data"]["me"],
        json!({"username": "vera", "role": "VIEWER"})
    );
    let (_, r) = server.graphql_as(&viewer, rename, json!({})).await;
    assert_eq!(code(&r), "FORBIDDEN", "{r}");
    let (_, r) = server
        .graphql_as(&viewer, "{ auditLog { id } }", json!({}))
        .await;
    assert_eq!(code(&r), "FORBIDDEN");

    // An operator manages nodes but not users.
    let operator = create_user(&server, "otto", "OPERATOR").await;
    let (_, r) = server.graphql_as(&operator, rename, json!({})).await;
    assert_eq!(r["data"]["renameNode"]["name"], "bench", "{r}");
    let (_, r) = server
        .graphql_as(&operator, "mutation { createUser(username: \"eve\", password: \"12345678\", role: ADMIN) { id } }", json!({}))
        .await;
    assert_eq!(code(&r), "FORBIDDEN");
    let (_, r) = server
        .graphql_as(&operator, "{ users { username } }", json!({}))
        .await;
    assert_eq!(code(&r), "FORBIDDEN");

    // The admin sees everyone; the last admin cannot be demoted or deleted.
    let (_, r) = server
        .graphql_as(
            &admin(&server).await,
            "{ users { id username role } }",
            json!({}),
        )
        .await;
    let users = r["data"]["users"].as_array().expect("users").clone();
    assert_eq!(
        users
            .iter()
            .map(|u| u["username"].as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["admin", "otto", "vera"]
    );
    let admin_id = users[0]["id"].as_str().expect("id").to_owned();
    let r = server
        .graphql(
            "mutation($id: String!) { setUserRole(id: $id, role: VIEWER) { role } }",
            json!({"id": admin_id}),
        )
        .await;
    assert_eq!(
        (code(&r), r["errors"][0]["message"].as_str()),
        (
            "BAD_REQUEST",
            Some("the last admin cannot be removed or demoted")
        )
    );
    let r = server
        .graphql(
            "mutation($id: String!) { deleteUser(id: $id) }",
            json!({"id": admin_id}),
        )
        .await;
    assert_eq!(code(&r), "BAD_REQUEST");

    // Deleting a user ends their session at once.
    let vera_id = users[2]["id"].as_str().expect("id").to_owned();
    let r = server
        .graphql(
            "mutation($id: String!) { deleteUser(id: $id) }",
            json!({"id": vera_id}),
        )
        .await;
    assert_eq!(r["data"]["deleteUser"], true);
    let (_, r) = server
        .graphql_as(&viewer, "{ nodes { id } }", json!({}))
        .await;
    assert_eq!(code(&r), "UNAUTHENTICATED");

    // Setup cannot be run again.
    let (_, r) = server
        .graphql_as(
            &Auth::Anonymous,
            "mutation { setup(username: \"mallory\", password: \"takeover-attempt\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&r), "FORBIDDEN");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_tokens_are_shown_once_capped_by_role_and_revoked_at_once() {
    let server = Server::start(ServerOpts::default()).await;
    let create = "mutation($n: String!, $r: Role!) { createApiToken(name: $n, role: $r, expiresInDays: 30) { token apiToken { id name role prefix active expiresAt } } }";
    let r = server
        .graphql(create, json!({"n": "grafana", "r": "VIEWER"}))
        .await;
    let created = &r["data"]["createApiToken"];
    let token = created["token"]
        .as_str()
        .expect("token shown at creation")
        .to_owned();
    let id = created["apiToken"]["id"].as_str().expect("id").to_owned();
    assert!(
        token.starts_with("trellis_t_") && token.len() > 60,
        "{token}"
    );
    assert!(token.starts_with(created["apiToken"]["prefix"].as_str().expect("prefix")));
    assert_eq!(created["apiToken"]["active"], true);

    // The token reads, as a viewer.
    let bearer = Auth::Bearer(token.clone());
    let (status, r) = server
        .graphql_as(&bearer, "{ nodes { id } me { username role } }", json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        r["data"]["me"],
        json!({"username": "admin", "role": "VIEWER"}),
        "a token has its own role, not its creator's"
    );
    let (_, r) = server
        .graphql_as(
            &bearer,
            r#"mutation { renameNode(id: "leader", name: "x") { name } }"#,
            json!({}),
        )
        .await;
    assert_eq!(code(&r), "FORBIDDEN");
    let (_, r) = server
        .graphql_as(&bearer, create, json!({"n": "child", "r": "VIEWER"}))
        .await;
    assert_eq!(code(&r), "FORBIDDEN", "a token cannot mint tokens");

    // Listing never shows the secret again.
    let r = server
        .graphql("{ apiTokens { id name prefix } }", json!({}))
        .await;
    assert_eq!(r["data"]["apiTokens"][0]["name"], "grafana");
    assert!(
        !r.to_string().contains(&token),
        "the token leaked in a listing"
    );
    let r = server.graphql("{ apiTokens { token } }", json!({})).await;
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Unknown field")),
        "{r}"
    );

    // Lifetimes out of range are refused with the range.
    let r = server
        .graphql(
            "mutation { createApiToken(name: \"x\", role: VIEWER, expiresInDays: 0) { token } }",
            json!({}),
        )
        .await;
    assert_eq!(
        (code(&r), r["errors"][0]["message"].as_str()),
        ("BAD_REQUEST", Some("expiresInDays must be 1-3650"))
    );
    let r = server
        .graphql(
            "mutation { createJoinToken(name: \"x\", expiresInDays: 400) { token } }",
            json!({}),
        )
        .await;
    assert_eq!(
        (code(&r), r["errors"][0]["message"].as_str()),
        ("BAD_REQUEST", Some("expiresInDays must be 1-365"))
    );

    // A viewer cannot mint an operator token.
    let q = "mutation { createUser(username: \"vic\", password: \"password-of-vic\", role: VIEWER) { id } }";
    assert!(server.graphql(q, json!({})).await["errors"].is_null());
    let vic = Auth::Cookie(server.login("vic", "password-of-vic").await.expect("login"));
    let (_, r) = server
        .graphql_as(&vic, create, json!({"n": "escalate", "r": "OPERATOR"}))
        .await;
    assert_eq!(code(&r), "FORBIDDEN");

    // Revoked: the very next request is refused with 401.
    let r = server
        .graphql(
            "mutation($id: String!) { revokeApiToken(id: $id) { active revokedAt } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(r["data"]["revokeApiToken"]["active"], false);
    let (status, r) = server
        .graphql_as(&bearer, "{ nodes { id } }", json!({}))
        .await;
    assert_eq!((status, code(&r)), (401, "UNAUTHENTICATED"));
    let (status, _) = server
        .graphql_as(
            &Auth::Bearer("trellis_t_made_up".into()),
            "{ setupStatus { needsSetup } }",
            json!({}),
        )
        .await;
    assert_eq!(status, 401, "a bad token is refused even for public fields");
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_are_rate_limited_and_sessions_end_on_logout() {
    let server = Server::start(ServerOpts::default()).await;
    let auditor = create_user(&server, "auditor", "ADMIN").await;
    for _ in 0..5 {
        let e = server
            .login("admin", "wrong-password")
            .await
            .expect_err("wrong password");
        assert_eq!(code(&e), "UNAUTHENTICATED");
        assert_eq!(e["errors"][0]["message"], "wrong username or password");
    }
    let e = server
        .login("admin", ADMIN_PASSWORD)
        .await
        .expect_err("locked out");
    assert_eq!(code(&e), "RATE_LIMITED", "{e}");
    assert!(
        e["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("too many failed logins; try again in"))
    );
    // An unknown user is refused the same way as a wrong password.
    let e = server
        .login("nobody", "whatever-it-is")
        .await
        .expect_err("unknown user");
    assert_eq!(e["errors"][0]["message"], "wrong username or password");

    // The session from before the lock-out still works; logout ends it.
    let cookie = Auth::Cookie(server.admin_cookie.clone().expect("cookie"));
    let (_, r) = server
        .graphql_as(&cookie, "{ me { username } }", json!({}))
        .await;
    assert_eq!(r["data"]["me"]["username"], "admin");
    let (_, r, set_cookie) = server
        .graphql_full(&cookie, "mutation { logout }", json!({}))
        .await;
    assert_eq!(r["data"]["logout"], true);
    assert_eq!(set_cookie.as_deref(), Some("trellis_session="));
    let (_, r) = server
        .graphql_as(&cookie, "{ me { username } nodes { id } }", json!({}))
        .await;
    assert_eq!(r["data"]["me"], Value::Null, "{r}");
    assert!(r["data"]["nodes"].is_null());
    assert_eq!(code(&r), "UNAUTHENTICATED");

    // The audit log has it all, failures included.
    let log = server.audit_log_as(&auditor, 50).await;
    let has =
        |action: &str, outcome: &str| audit_has(&log, &[("action", action), ("outcome", outcome)]);
    assert!(
        has("login", "UNAUTHENTICATED")
            && has("login", "RATE_LIMITED")
            && has("login", "ok")
            && has("logout", "ok"),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_subscriptions_need_credentials_in_time() {
    let server = Server::start(ServerOpts::default()).await;
    server.wait_state("leader", "ONLINE", PATIENCE).await;
    let subscribe = |id: &str| {
        json!({"id": id, "type": "subscribe", "payload": {"query": "subscription { nodeEvents { kind nodeId } }"}}).to_string()
    };

    // No connection_init within the (test) limit of 2 s: closed, nothing sent.
    let mut ws = ws_connect(&server, "graphql-transport-ws", None).await;
    let (sent, closed) = until_closed(&mut ws, Duration::from_secs(6)).await;
    assert!(
        closed && sent.is_empty(),
        "init timeout: closed={closed}, sent={sent:?}"
    );

    // Subscribe before init: closed, no data.
    let mut ws = ws_connect(&server, "graphql-transport-ws", None).await;
    ws.send(Message::text(subscribe("1"))).await.expect("send");
    let (sent, closed) = until_closed(&mut ws, Duration::from_secs(6)).await;
    assert!(
        closed && !sent.iter().any(|m| m.contains("\"next\"")),
        "subscribe before init: {sent:?}"
    );

    // A bad token: closed, and nothing is ever sent.
    let mut ws = ws_connect(&server, "graphql-transport-ws", None).await;
    ws.send(Message::text(
        json!({"type": "connection_init", "payload": {"token": "trellis_t_forged"}}).to_string(),
    ))
    .await
    .expect("send");
    ws.send(Message::text(subscribe("1"))).await.ok();
    let (sent, closed) = until_closed(&mut ws, Duration::from_secs(6)).await;
    assert!(
        closed && sent.is_empty(),
        "bad token: closed={closed}, sent={sent:?}"
    );

    // No token and no cookie: refused the same way.
    let mut ws = ws_connect(&server, "graphql-transport-ws", None).await;
    ws.send(Message::text(
        json!({"type": "connection_init", "payload": {}}).to_string(),
    ))
    .await
    .expect("send");
    let (sent, closed) = until_closed(&mut ws, Duration::from_secs(6)).await;
    assert!(closed && sent.is_empty(), "anonymous: {sent:?}");

    // A valid API token in connection_init: events arrive.
    let r = server
        .graphql(
            "mutation { createApiToken(name: \"ws\", role: VIEWER) { token apiToken { id } } }",
            json!({}),
        )
        .await;
    let token = r["data"]["createApiToken"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let mut ws = ws_session(&server, None, json!({"token": token})).await;
    ws.send(Message::text(subscribe("1"))).await.expect("send");
    let msg = next_json(&mut ws).await;
    assert_eq!(
        (
            msg["type"].as_str(),
            msg["payload"]["data"]["nodeEvents"]["nodeId"].as_str()
        ),
        (Some("next"), Some("leader")),
        "{msg}"
    );

    // Revoking the token closes the open socket too, within a few seconds.
    let id = r["data"]["createApiToken"]["apiToken"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = server
        .graphql(
            "mutation($id: String!) { revokeApiToken(id: $id) { active } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(r["data"]["revokeApiToken"]["active"], false);
    let (_, closed) = until_closed(&mut ws, Duration::from_secs(10)).await;
    assert!(closed, "the socket outlived its revoked token");

    // A cookie sent from a foreign page's origin is not honoured (cross-site websocket hijacking).
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue};
    let mut req = format!("ws://127.0.0.1:{}/graphql", server.http_port)
        .into_client_request()
        .expect("req");
    let h = req.headers_mut();
    h.insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    h.insert(
        "Cookie",
        HeaderValue::from_str(server.admin_cookie.as_deref().expect("cookie")).expect("hv"),
    );
    h.insert("Origin", HeaderValue::from_static("https://evil.example"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("ws");
    ws.send(Message::text(
        json!({"type": "connection_init"}).to_string(),
    ))
    .await
    .expect("send");
    let (sent, closed) = until_closed(&mut ws, Duration::from_secs(6)).await;
    assert!(closed && sent.is_empty(), "foreign origin: {sent:?}");
}
