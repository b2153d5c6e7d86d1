//! The in-process tier (STYLE.md): the real router from `app()` and the real schema from
//! `build_schema()`, over a real SQLite file, driven with `tower::ServiceExt::oneshot`: no socket,
//! no process, no broker. Guards, error codes and their HTTP statuses, redaction and the HTTP rules
//! are checked here in milliseconds; `tests/` starts whole leaders for the rest.

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use trellis_server::{AppState, MqttSide, ServerConfig, app, build_schema, enroll, nodes::docker};

/// A leader's state and router with no broker behind it (the bridge keeps trying a closed port).
struct Leader {
    app: Router,
    state: AppState,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn leader() -> Leader {
    leader_with_web(None).await
}

async fn leader_with_web(web_dir: Option<std::path::PathBuf>) -> Leader {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServerConfig::defaults_in(dir.path().to_path_buf());
    config.local_agent = false;
    config.web_dir = web_dir;
    let db = trellis_server::infra::db::connect(&config.database_url)
        .await
        .expect("database");
    let docker_tls = docker::DockerTls::ensure(&config.docker_tls_dir).expect("docker tls");
    let shutdown = CancellationToken::new();
    let mqtt = MqttSide {
        // Port 9 (discard) on loopback: nothing answers, the bridge just retries.
        broker: "mqtt://127.0.0.1:9".parse().expect("broker addr"),
        tls: None,
        login: None,
        connections: Default::default(),
        enroll_requests: None,
        backlog: Default::default(),
    };
    let enroll = enroll::Enroll::new(db.clone(), Vec::new());
    let state = AppState::start(config, db, shutdown.clone(), mqtt, enroll, docker_tls);
    Leader {
        app: app(state.clone()),
        state,
        shutdown,
        _dir: dir,
    }
}

/// What a request got back: status, JSON body (or `null`), the session cookie set (if any).
struct Answer {
    status: StatusCode,
    body: Value,
    cookie: Option<String>,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("no error")
    }
}

impl Leader {
    async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.app.clone().oneshot(req).await.expect("router answers");
        let status = resp.status();
        let cookie = resp
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        let bytes = axum::body::to_bytes(resp.into_body(), 4 << 20)
            .await
            .expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            body,
            cookie,
        }
    }

    /// POSTs a GraphQL operation, with the session cookie `cookie` when given.
    async fn graphql(&self, cookie: Option<&str>, query: &str, variables: Value) -> Answer {
        let mut req = Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let body = json!({"query": query, "variables": variables}).to_string();
        self.send(req.body(Body::from(body)).expect("request"))
            .await
    }

    /// Creates the first admin; returns their session cookie.
    async fn admin(&self) -> String {
        let a = self
            .graphql(
                None,
                "mutation { setup(username: \"root\", password: \"correct horse\") { role } }",
                json!({}),
            )
            .await;
        assert_eq!(a.body["data"]["setup"]["role"], "ADMIN", "{}", a.body);
        a.cookie.expect("setup logs the admin in")
    }

    /// Creates a user with `role` and logs them in; returns their session cookie.
    async fn user(&self, admin: &str, name: &str, role: &str) -> String {
        let a = self
            .graphql(
                Some(admin),
                "mutation($u: String!, $r: Role!) { createUser(username: $u, password: \"password-1\", role: $r) { id } }",
                json!({"u": name, "r": role}),
            )
            .await;
        assert!(a.body["errors"].is_null(), "{}", a.body);
        let a = self
            .graphql(
                None,
                "mutation($u: String!) { login(username: $u, password: \"password-1\") { role } }",
                json!({"u": name}),
            )
            .await;
        assert_eq!(a.body["data"]["login"]["role"], role, "{}", a.body);
        a.cookie.expect("login sets the cookie")
    }
}

#[tokio::test]
async fn roles_guard_every_mutation_and_refusals_are_audited() {
    let l = leader().await;
    // Before setup nobody is anyone.
    let a = l.graphql(None, "{ nodes { id } }", json!({})).await;
    assert_eq!(a.code(), "UNAUTHENTICATED");
    let admin = l.admin().await;
    let viewer = l.user(&admin, "vera", "VIEWER").await;
    let operator = l.user(&admin, "otto", "OPERATOR").await;

    // A viewer reads but may not change anything; an operator may not manage users.
    let a = l
        .graphql(Some(&viewer), "{ nodes { id } }", json!({}))
        .await;
    assert_eq!(a.body["data"]["nodes"], json!([]), "{}", a.body);
    let a = l
        .graphql(
            Some(&viewer),
            "mutation { createJoinToken(name: \"x\") { token } }",
            json!({}),
        )
        .await;
    assert_eq!(a.code(), "FORBIDDEN");
    let a = l
        .graphql(
            Some(&operator),
            "mutation { createUser(username: \"eve\", password: \"password-1\", role: ADMIN) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(a.code(), "FORBIDDEN");
    // An exec job runs a program on the node: operators may start jobs, but not that kind.
    let a = l
        .graphql(
            Some(&operator),
            "mutation { startJob(nodeId: \"leader\", kind: \"exec\", settings: {command: \"id\"}) { name } }",
            json!({}),
        )
        .await;
    assert_eq!(a.code(), "FORBIDDEN", "{}", a.body);
    // Nor store a preset that would start one.
    let a = l
        .graphql(
            Some(&operator),
            "mutation { saveJobPreset(name: \"sneaky\", kind: \"exec\", settings: {command: \"id\"}) { name } }",
            json!({}),
        )
        .await;
    assert_eq!(a.code(), "FORBIDDEN", "{}", a.body);
    // Setup is closed once an admin exists.
    let a = l
        .graphql(
            None,
            "mutation { setup(username: \"mallory\", password: \"password-1\") { role } }",
            json!({}),
        )
        .await;
    assert_eq!(a.code(), "FORBIDDEN");

    // The logged-in refusals are in the audit log, with who tried.
    let a = l
        .graphql(
            Some(&admin),
            "{ auditLog(limit: 20) { actor action outcome } }",
            json!({}),
        )
        .await;
    let log = a.body["data"]["auditLog"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let has = |actor: &str, action: &str| {
        log.iter()
            .any(|e| e["actor"] == actor && e["action"] == action && e["outcome"] == "FORBIDDEN")
    };
    assert!(has("user:vera", "createJoinToken"), "{log:?}");
    assert!(has("user:otto", "createUser"), "{log:?}");
    assert!(has("user:otto", "startJob"), "{log:?}");
    assert!(has("user:otto", "saveJobPreset"), "{log:?}");
}

#[tokio::test]
async fn codes_come_with_their_http_status_and_bad_input_is_named() {
    let l = leader().await;
    let admin = l.admin().await;
    // NOT_FOUND and BAD_REQUEST inside GraphQL (200 with the code, as GraphQL-over-HTTP says).
    let a = l
        .graphql(
            Some(&admin),
            "mutation { renameNode(id: \"nope\", name: \"x\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!((a.status, a.code()), (StatusCode::OK, "NOT_FOUND"));
    let a = l
        .graphql(
            Some(&admin),
            "mutation { createJoinToken(name: \"   \") { token } }",
            json!({}),
        )
        .await;
    assert_eq!(a.code(), "BAD_REQUEST");
    assert!(
        a.body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("join token name must be 1-64 characters")),
        "{}",
        a.body
    );
    let a = l
        .graphql(
            Some(&admin),
            "mutation { createJoinToken(name: \"t\", expiresInDays: 366) { token } }",
            json!({}),
        )
        .await;
    assert_eq!(a.code(), "BAD_REQUEST", "{}", a.body);

    // Before GraphQL runs: a bad bearer token is 401 with the code in a GraphQL-shaped body.
    let req = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer trellis_t_nonsense")
        .body(Body::from(json!({"query": "{ nodes { id } }"}).to_string()))
        .expect("request");
    let a = l.send(req).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
    );

    // A mutation over GET: 405 with Allow: POST, a listed code, and nothing changed.
    let req =
        Request::get("/graphql?query=mutation%7BcreateJoinToken(name%3A%22g%22)%7Btoken%7D%7D")
            .header(header::COOKIE, &admin)
            .body(Body::empty())
            .expect("request");
    let resp = l.app.clone().oneshot(req).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()[header::ALLOW], "POST");
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    let body: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    let a = l
        .graphql(Some(&admin), "{ joinTokens { name } }", json!({}))
        .await;
    assert_eq!(a.body["data"]["joinTokens"], json!([]), "{}", a.body);

    // A batch is refused; readiness says the broker is not there.
    let req = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"[{"query":"{ nodes { id } }"}]"#))
        .expect("request");
    assert_eq!(l.send(req).await.status, StatusCode::BAD_REQUEST);
    let a = l
        .send(
            Request::get("/readyz")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body, json!({"database": "ok", "broker": "unavailable"}));
}

#[tokio::test]
async fn a_bad_stored_value_is_an_internal_error_that_names_nothing() {
    use sea_orm::ConnectionTrait;
    let l = leader().await;
    let admin = l.admin().await;
    let _vera = l.user(&admin, "vera", "VIEWER").await;
    // A role that is none of the roles (a hand edit, or a newer version's value) is not quietly
    // read as VIEWER: listing users fails as INTERNAL, and the message names no table or value.
    l.state
        .nodes
        .db()
        .execute_unprepared("UPDATE app_user SET role = 'superuser' WHERE username = 'vera'")
        .await
        .expect("update");
    let a = l
        .graphql(Some(&admin), "{ users { username role } }", json!({}))
        .await;
    assert_eq!(a.code(), "INTERNAL", "{}", a.body);
    let message = a.body["errors"][0]["message"].as_str().unwrap_or_default();
    assert_eq!(message, "internal server error");
    // A database failure is redacted the same way.
    l.state
        .nodes
        .db()
        .execute_unprepared("DROP TABLE node")
        .await
        .expect("drop");
    let a = l.graphql(Some(&admin), "{ nodes { id } }", json!({})).await;
    assert_eq!(a.code(), "INTERNAL");
    assert!(!a.body.to_string().contains("no such table"), "{}", a.body);
}

#[tokio::test]
async fn the_schema_limits_depth_without_running_anything() {
    let schema = build_schema(None);
    let mut q = String::from("{ __schema { types { fields { type ");
    q.push_str(&"{ ofType ".repeat(25));
    q.push_str("{ name }");
    let open = q.matches('{').count() - q.matches('}').count();
    q.push_str(&" }".repeat(open));
    let r = schema.execute(q.as_str()).await;
    assert!(
        r.errors
            .iter()
            .any(|e| e.message.contains("nested too deep")),
        "{:?}",
        r.errors
    );
    assert!(r.data == async_graphql::Value::Null, "nothing ran");
}

#[tokio::test]
async fn the_web_app_is_served_precompressed_and_cached_by_content_hash() {
    let web = tempfile::tempdir().expect("tempdir");
    let w = |name: &str, body: &[u8]| std::fs::write(web.path().join(name), body).expect("write");
    w("index.html", b"<!doctype html><title>Trellis</title>");
    w("app-0123456789abcdef.js", b"console.log('plain')");
    w("app-0123456789abcdef.js.br", b"BROTLI BYTES");
    w("app-0123456789abcdef.js.gz", b"GZIP BYTES");
    let l = leader_with_web(Some(web.path().to_path_buf())).await;
    let get = |path: &str, encoding: Option<&str>| {
        let mut req = Request::get(path);
        if let Some(e) = encoding {
            req = req.header(header::ACCEPT_ENCODING, e);
        }
        let app = l.app.clone();
        let req = req.body(Body::empty()).expect("request");
        async move {
            let resp = app.oneshot(req).await.expect("answer");
            let h = |name: header::HeaderName| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let (status, cache, enc, vary) = (
                resp.status(),
                h(header::CACHE_CONTROL),
                h(header::CONTENT_ENCODING),
                h(header::VARY),
            );
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .expect("body");
            (status, cache, enc, vary, body)
        }
    };
    // The hashed file: the copy the client prefers, kept for a year, varying by encoding.
    let (status, cache, enc, vary, body) = get("/app-0123456789abcdef.js", Some("br, gzip")).await;
    assert_eq!(
        (status, enc.as_str(), &body[..]),
        (StatusCode::OK, "br", &b"BROTLI BYTES"[..])
    );
    assert_eq!(cache, "public, max-age=31536000, immutable");
    assert!(vary.to_lowercase().contains("accept-encoding"), "{vary}");
    let (_, _, enc, _, body) = get("/app-0123456789abcdef.js", Some("gzip")).await;
    assert_eq!((enc.as_str(), &body[..]), ("gzip", &b"GZIP BYTES"[..]));
    let (_, _, enc, _, body) = get("/app-0123456789abcdef.js", None).await;
    assert_eq!(
        (enc.as_str(), &body[..]),
        ("", &b"console.log('plain')"[..])
    );
    // index.html, and client-side routes, are revalidated every time.
    for route in ["/", "/nodes/pi-01", "/audit"] {
        let (status, cache, _, _, body) = get(route, None).await;
        assert_eq!(status, StatusCode::OK, "{route}");
        assert_eq!(cache, "no-cache", "{route}");
        assert!(body.starts_with(b"<!doctype html>"), "{route}");
    }
    // An asset of another version is 404, not index.html kept for a year under its name.
    let (status, cache, _, _, _) = get("/app-fedcba9876543210.js", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!cache.contains("immutable"), "{cache}");
}

#[tokio::test]
async fn a_node_whose_clock_is_off_is_flagged() {
    let l = leader().await;
    let admin = l.admin().await;
    let now = chrono::Utc::now();
    let announce = trellis_proto::Announce {
        node_id: "pi-7".into(),
        hostname: "pi-7".into(),
        mac: None,
        ip_addresses: vec![],
        arch: "aarch64".into(),
        os: "Raspberry Pi OS".into(),
        model: None,
        agent_version: "0.1.0".into(),
        hardware: "simulator".into(),
        heartbeat_interval_secs: 5,
        docker_endpoint: None,
    };
    l.state
        .nodes
        .announce(&announce, None, now)
        .await
        .expect("announce");
    let beat = |offset_ms: i64| trellis_proto::Heartbeat {
        cpu_percent: 1.0,
        mem_used_bytes: 1,
        mem_total_bytes: 2,
        temperature_c: None,
        uptime_secs: 3,
        sent_at_ms: Some(now.timestamp_millis() + offset_ms),
        disk: None,
    };
    let clock = || async {
        let a = l
            .graphql(
                Some(&admin),
                "{ node(id: \"pi-7\") { clockOffsetMs clockSkewed } }",
                json!({}),
            )
            .await;
        a.body["data"]["node"].clone()
    };
    // Five seconds ahead: flagged.
    l.state
        .nodes
        .heartbeat("pi-7", &beat(5_000), now)
        .await
        .expect("heartbeat");
    assert_eq!(
        clock().await,
        json!({"clockOffsetMs": 5000, "clockSkewed": true})
    );
    // Fixed (NTP caught up): a second behind is within the 2 s allowed.
    l.state
        .nodes
        .heartbeat("pi-7", &beat(-1_000), now)
        .await
        .expect("heartbeat");
    assert_eq!(
        clock().await,
        json!({"clockOffsetMs": -1000, "clockSkewed": false})
    );
}
