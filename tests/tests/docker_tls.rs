//! Nodes' Docker engines over TCP: TLS with the leader's client certificate, plain TCP only for a
//! node an admin marked insecure, and a Unix socket only for the leader's own node.
//!
//! The engine is this machine's real Docker daemon, put on TCP by socat as a node would put it:
//! behind `OPENSSL-LISTEN` with `verify=1` and the certificate from `trellis docker-tls
//! server-cert` (like `dockerd --tlsverify`), or on plain `TCP-LISTEN` (like `-H tcp://0.0.0.0:2375`).
//! These tests make no containers or images.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command, time::Duration};

use serde_json::{Value, json};
use trellis_tests::{
    Auth, PATIENCE, Proc, Server, ServerOpts, audit_has, binary, free_port, wait_for,
};

const SOCKET: &str = "/var/run/docker.sock";

use trellis_tests::error_code as code;

/// OpenSSL settings for socat: no session tickets. socat sets no session id context, so OpenSSL
/// fails a resumed handshake from a client that shows a certificate ("session id context
/// uninitialized"); rustls resumes, dockerd (Go) would resume fine.
const NO_TICKETS: &str = "openssl_conf = init\n[init]\nssl_conf = ssl_sect\n[ssl_sect]\n\
    system_default = sys\n[sys]\nNumTickets = 0\nOptions = -SessionTicket\n";

/// A socat front for the local Docker socket on a free port, ready when this returns.
async fn socat(dir: &Path, name: &str, listen: impl FnOnce(u16) -> String) -> (Proc, u16) {
    let port = free_port();
    let conf = dir.join("socat-openssl.cnf");
    std::fs::write(&conf, NO_TICKETS).expect("write OpenSSL config");
    let mut cmd = Command::new("socat");
    cmd.env("OPENSSL_CONF", &conf);
    cmd.args(["-d", "-d"])
        .arg(listen(port))
        .arg(format!("UNIX-CONNECT:{SOCKET}"));
    let proc = Proc::spawn(cmd, dir.join(format!("socat-{name}.log")));
    wait_for(&format!("socat {name} on {port}"), PATIENCE, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    (proc, port)
}

async fn docker_of(server: &Server, id: &str) -> Value {
    let r = server
        .graphql(
            "query($id: String!) { node(id: $id) { docker { endpoint insecure transport refused } } }",
            json!({"id": id}),
        )
        .await;
    r["data"]["node"]["docker"].clone()
}

async fn engine(server: &Server, auth: &Auth, id: &str) -> Value {
    let (_, r) = server
        .graphql_as(
            auth,
            "query($id: String!) { dockerEngine(nodeId: $id) { version apiVersion os transport containers images } }",
            json!({"id": id}),
        )
        .await;
    r
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_over_tcp_takes_tls_with_the_leaders_certificates_or_an_admins_insecure_mark() {
    assert!(
        Path::new(SOCKET).exists(),
        "this test needs the machine's Docker engine at {SOCKET}"
    );
    let server = Server::start(ServerOpts::default()).await;
    let admin = Auth::Cookie(server.admin_cookie.clone().expect("admin"));
    let data = server.dir.path().join("data");
    let work = server.dir.path();

    // The leader made its CA and client certificate at first start, keys private.
    let tls = data.join("docker-tls");
    for (file, mode) in [("ca.pem", 0o644), ("cert.pem", 0o644), ("key.pem", 0o600)] {
        let meta = std::fs::metadata(tls.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
    }

    // A node's daemon certificate, issued from the leader's CA by the documented command.
    let daemon = work.join("daemon-tls");
    let said = run(Command::new(binary("trellis"))
        .args(["docker-tls", "server-cert", "--host", "127.0.0.1", "--out"])
        .arg(&daemon)
        .arg("--data-dir")
        .arg(&data));
    assert!(said.contains("--tlsverify"), "{said}");
    assert_eq!(
        std::fs::read(daemon.join("ca.pem")).expect("ca"),
        std::fs::read(tls.join("ca.pem")).expect("ca")
    );
    let key_mode = std::fs::metadata(daemon.join("server-key.pem"))
        .expect("server key")
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    // A daemon with a certificate from some other CA, which the leader must not trust.
    let foreign = work.join("foreign");
    std::fs::create_dir_all(&foreign).expect("mkdir");
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(foreign.join("key.pem"))
        .arg("-out")
        .arg(foreign.join("cert.pem")));

    let pem = |d: &Path, f: &str| d.join(f).display().to_string();
    let (_tls_front, tls_port) = socat(work, "tls", |p| {
        format!(
            "OPENSSL-LISTEN:{p},bind=127.0.0.1,reuseaddr,fork,cert={},key={},cafile={},verify=1",
            pem(&daemon, "server-cert.pem"),
            pem(&daemon, "server-key.pem"),
            pem(&daemon, "ca.pem"),
        )
    })
    .await;
    let (_plain_front, plain_port) = socat(work, "plain", |p| {
        format!("TCP-LISTEN:{p},bind=127.0.0.1,reuseaddr,fork")
    })
    .await;
    let (_foreign_front, foreign_port) = socat(work, "foreign", |p| {
        format!(
            "OPENSSL-LISTEN:{p},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
            pem(&foreign, "cert.pem"),
            pem(&foreign, "key.pem"),
        )
    })
    .await;

    let endpoint = |p: u16| format!("tcp://127.0.0.1:{p}");
    let (tls_ep, plain_ep, foreign_ep) = (
        endpoint(tls_port),
        endpoint(plain_port),
        endpoint(foreign_port),
    );
    let _a = server
        .join_agent_with("tls-node", &["--docker-endpoint", &tls_ep])
        .await;
    let _b = server
        .join_agent_with("plain-node", &["--docker-endpoint", &plain_ep])
        .await;
    let _c = server
        .join_agent_with("foreign-node", &["--docker-endpoint", &foreign_ep])
        .await;
    let _d = server
        .join_agent_with(
            "socket-node",
            &["--docker-endpoint", "unix:///var/run/docker.sock"],
        )
        .await;
    for id in [
        "leader",
        "tls-node",
        "plain-node",
        "foreign-node",
        "socket-node",
    ] {
        server.wait_state(id, "ONLINE", PATIENCE).await;
    }
    let expected = run(Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]));

    // TLS with the leader's certificates reaches the real engine.
    assert_eq!(
        docker_of(&server, "tls-node").await,
        json!({"endpoint": tls_ep, "insecure": false, "transport": "TLS", "refused": null})
    );
    let r = engine(&server, &admin, "tls-node").await;
    assert_eq!(
        r["data"]["dockerEngine"]["version"],
        expected.as_str(),
        "{r}\nsocat:\n{}\nleader:\n{}",
        _tls_front.log_text(),
        server.proc.log_text()
    );
    assert_eq!(r["data"]["dockerEngine"]["transport"], "TLS", "{r}");
    assert_eq!(r["data"]["dockerEngine"]["os"], "linux", "{r}");

    // The leader's own node uses its socket.
    assert_eq!(docker_of(&server, "leader").await["transport"], "UNIX");
    let r = engine(&server, &admin, "leader").await;
    assert_eq!(
        r["data"]["dockerEngine"]["version"],
        expected.as_str(),
        "{r}"
    );

    // A daemon whose certificate is not from the leader's CA is not trusted.
    let r = engine(&server, &admin, "foreign-node").await;
    assert_eq!(code(&r), "UNAVAILABLE", "{r}");

    // Plain TCP is refused: the leader speaks only TLS to it, and says how to fix that, without
    // passing on Docker's or the TLS library's own error text.
    let r = engine(&server, &admin, "plain-node").await;
    assert_eq!(code(&r), "UNAVAILABLE", "{r}");
    let message = r["errors"][0]["message"].as_str().expect("message");
    assert!(
        message.contains("--tlsverify") && message.contains("insecure"),
        "{message}"
    );
    for leak in [
        "hyper",
        "rustls",
        "InvalidContentType",
        "corrupt message",
        "error trying",
    ] {
        assert!(!message.contains(leak), "{message}");
    }

    // Only an admin may allow plain TCP; an operator may not.
    let q = "mutation($id: String!, $on: Boolean!) { setNodeDockerInsecure(id: $id, insecure: $on) { docker { insecure transport } } }";
    let r = server
        .graphql(
            "mutation { createUser(username: \"olga\", password: \"password-of-olga\", role: OPERATOR) { id } }",
            json!({}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let operator = Auth::Cookie(
        server
            .login("olga", "password-of-olga")
            .await
            .expect("operator login"),
    );
    let (_, r) = server
        .graphql_as(&operator, q, json!({"id": "plain-node", "on": true}))
        .await;
    assert_eq!(code(&r), "FORBIDDEN", "{r}");
    assert_eq!(docker_of(&server, "plain-node").await["insecure"], false);

    let (_, r) = server
        .graphql_as(&admin, q, json!({"id": "plain-node", "on": true}))
        .await;
    assert_eq!(
        r["data"]["setNodeDockerInsecure"]["docker"],
        json!({"insecure": true, "transport": "PLAIN"}),
        "{r}"
    );
    let r = engine(&server, &operator, "plain-node").await;
    assert_eq!(
        r["data"]["dockerEngine"]["version"],
        expected.as_str(),
        "{r}"
    );
    assert_eq!(r["data"]["dockerEngine"]["transport"], "PLAIN", "{r}");

    // The mark is the admin's, not the node's: the node announcing itself again keeps it...
    let _b = {
        let mut b = _b;
        b.respawn();
        b
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.wait_state("plain-node", "ONLINE", PATIENCE).await;
    assert_eq!(docker_of(&server, "plain-node").await["insecure"], true);
    // ...and taking it back makes the leader refuse plain TCP again.
    let (_, r) = server
        .graphql_as(&admin, q, json!({"id": "plain-node", "on": false}))
        .await;
    assert_eq!(
        r["data"]["setNodeDockerInsecure"]["docker"]["transport"], "TLS",
        "{r}"
    );
    assert_eq!(
        code(&engine(&server, &admin, "plain-node").await),
        "UNAVAILABLE"
    );

    // A worker naming a Unix socket must not make the leader drive the leader's own engine.
    let d = docker_of(&server, "socket-node").await;
    assert_eq!(d["transport"], Value::Null, "{d}");
    assert!(
        d["refused"]
            .as_str()
            .is_some_and(|m| m.contains("only the leader's own node")),
        "{d}"
    );
    assert_eq!(
        code(&engine(&server, &admin, "socket-node").await),
        "FORBIDDEN"
    );

    // Every change of the mark is in the audit log, with who did it.
    let log = server.audit_log(50).await;
    let entry = |action: &str, actor: &str, outcome: &str| {
        audit_has(
            &log,
            &[
                ("action", action),
                ("actor", actor),
                ("target", "plain-node"),
                ("outcome", outcome),
            ],
        )
    };
    assert!(
        entry("markNodeDockerInsecure", "user:admin", "ok"),
        "{log:?}"
    );
    assert!(entry("requireNodeDockerTls", "user:admin", "ok"), "{log:?}");
    assert!(
        entry("setNodeDockerInsecure", "user:olga", "FORBIDDEN"),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_tls_directory_without_its_files_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).expect("mkdir");
    // An admin's own CA, but the client certificate and key are missing.
    std::fs::write(tls.join("ca.pem"), "not really").expect("write");
    let out = Command::new(binary("trellis"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--docker-tls-dir")
        .arg(&tls)
        .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--mqtt-listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .expect("run trellis");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("docker_tls_dir") && err.contains("cert.pem"),
        "{err}"
    );
}
