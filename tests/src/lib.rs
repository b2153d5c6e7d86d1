//! The test harness: starts real parts as separate processes (the `trellis` leader, `trellis-agent`,
//! Mosquitto, chromedriver), gives every test its own temp directory, database and ports, and kills
//! what it started when the test ends. Scenarios live in `tests/tests/*.rs`.
//!
//! The binaries are taken from the cargo target directory this test binary was built into, so
//! build them first (`scripts/test.sh` does): `cargo build -p trellis-server -p trellis-agent`.

pub mod bench;
pub mod bundles;
pub mod chaos;
pub mod docker;
pub mod web;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// Password of the admin every test leader starts with (unless `bootstrap_admin` is off).
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// How long a test waits for something it expects before failing.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The cargo target profile directory holding the binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/<test binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("target profile dir")
        .to_path_buf()
}

/// The cargo target directory (`target`).
pub fn target_dir() -> PathBuf {
    bin_dir().parent().expect("target dir").to_path_buf()
}

/// Path of a workspace binary, failing with the command to build it. The binaries come from the
/// profile the test binary was built with: `cargo test --release` (the benchmarks) runs release
/// leaders and agents, which `cargo build --release -p trellis-server -p trellis-agent` builds.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    let release = if cfg!(debug_assertions) {
        ""
    } else {
        " --release"
    };
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build{release} -p trellis-server -p trellis-agent` (scripts/test.sh builds the debug ones, scripts/bench.sh the release ones)",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1 (bound and released; another process could take it, rarely).
/// Never the same port twice in one test process: the kernel may hand a released port out again,
/// and two leaders of parallel tests on one port would answer each other's tests.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The `extensions.code` of a GraphQL response's first error, or `"no error"`.
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("no error")
}

/// Whether `log` (from [`Server::audit_log`]) has an entry whose fields equal every
/// `(field, value)` of `want`.
pub fn audit_has(log: &[Value], want: &[(&str, &str)]) -> bool {
    log.iter()
        .any(|e| want.iter().all(|(field, value)| e[*field] == *value))
}

/// Waits until `check` returns `Some`, polling every 100 ms, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A child process that is killed when dropped, with its output in a log file.
pub struct Proc {
    child: Child,
    /// The log file (stdout and stderr).
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with its output going to `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        cmd.stdout(file.try_clone().expect("clone log"))
            .stderr(file)
            .stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child, log }
    }

    /// Sends a signal (`-9`, `-TERM`, `-STOP`, `-CONT`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(sig)
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(ok.success(), "kill {sig} failed");
    }

    /// The process id (to read its `/proc` figures).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many log lines so far hold every one of `needles` (one line, not the whole log: a
    /// check for a new event must not be satisfied by an older line that says part of it).
    pub fn log_lines_with(&self, needles: &[&str]) -> usize {
        self.log_text()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which database a test server uses.
#[derive(Debug, Clone)]
pub enum Db {
    /// A SQLite file in the test's temp directory.
    Sqlite,
    /// A fresh Postgres database (see [`Postgres`]).
    Postgres(String),
    /// A SQLite file at this path (on a filesystem a test controls).
    SqliteAt(PathBuf),
}

/// Which broker a test server uses.
#[derive(Debug, Clone, Copy)]
pub enum Broker {
    /// The embedded rumqttd on a free port.
    Embedded,
    /// An external broker on this port (a [`Mosquitto`]).
    External(u16),
}

/// Options for [`Server::start`].
#[derive(Debug, Clone)]
pub struct ServerOpts {
    /// Database.
    pub db: Db,
    /// Broker.
    pub broker: Broker,
    /// Run the leader's local agent.
    pub local_agent: bool,
    /// Serve this built web app.
    pub web_dir: Option<PathBuf>,
    /// Start with an admin `admin`/[`ADMIN_PASSWORD`] and log the harness in as it; off, the
    /// leader starts with no users, as on a real first start.
    pub bootstrap_admin: bool,
    /// More `trellis` flags.
    pub extra_args: Vec<String>,
    /// More environment variables for the leader (a debug build's `TRELLIS_TEST_PANIC`).
    pub env: Vec<(String, String)>,
    /// Serve HTTPS and MQTT over TLS with this certificate (see [`LeaderCert::issue`]); with an
    /// external broker, reach it over TLS trusting the same CA.
    pub tls: Option<LeaderCert>,
}

/// A certificate for the leader made by `trellis tls-cert`, with its CA.
#[derive(Debug, Clone)]
pub struct LeaderCert {
    /// The directory holding `ca.pem`, `cert.pem` and `key.pem`.
    pub dir: PathBuf,
}

/// How long the harness's HTTP clients keep an idle connection for reuse: well under the
/// leader's header timeout (`--request-timeout-secs`, 30 s by default, 2 s in some tests), after
/// which the leader closes an idle keep-alive connection; a request sent on one just as it closes
/// fails with "connection closed before message completed".
const IDLE_REUSE: Duration = Duration::from_secs(1);

impl LeaderCert {
    /// Runs `trellis tls-cert --host localhost --host 127.0.0.1 --out <dir>` and checks it worked;
    /// the command's output is returned with the certificate.
    pub fn issue(dir: &Path) -> (LeaderCert, String) {
        let out = Command::new(binary("trellis"))
            .args([
                "tls-cert",
                "--host",
                "localhost",
                "--host",
                "127.0.0.1",
                "--out",
            ])
            .arg(dir)
            .output()
            .expect("trellis tls-cert");
        assert!(
            out.status.success(),
            "trellis tls-cert: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            LeaderCert {
                dir: dir.to_owned(),
            },
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// The CA agents and clients trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// An HTTPS client trusting only this CA.
    pub fn http_client(&self) -> reqwest::Client {
        let pem = std::fs::read(self.ca()).expect("ca.pem");
        reqwest::Client::builder()
            .pool_idle_timeout(IDLE_REUSE)
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA certificate"))
            .build()
            .expect("HTTPS client")
    }
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts {
            db: Db::Sqlite,
            broker: Broker::Embedded,
            local_agent: true,
            web_dir: None,
            bootstrap_admin: true,
            extra_args: Vec::new(),
            env: Vec::new(),
            tls: None,
        }
    }
}

/// A running `trellis` leader process.
pub struct Server {
    /// The process.
    pub proc: Proc,
    /// Temp directory holding its data and logs.
    pub dir: tempfile::TempDir,
    /// HTTP port.
    pub http_port: u16,
    /// Broker port (embedded or external).
    pub mqtt_port: u16,
    opts: ServerOpts,
    http: reqwest::Client,
    generation: u32,
    /// The admin's session cookie (`trellis_session=...`), when logged in.
    pub admin_cookie: Option<String>,
}

/// Credentials a request carries.
#[derive(Debug, Clone)]
pub enum Auth {
    /// None.
    Anonymous,
    /// A `Cookie` header value.
    Cookie(String),
    /// An API token sent as `Authorization: Bearer`.
    Bearer(String),
}

fn spawn_server(
    opts: &ServerOpts,
    dir: &Path,
    http_port: u16,
    mqtt_port: u16,
    generation: u32,
) -> Proc {
    let mut cmd = Command::new(binary("trellis"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TRELLIS_") {
            cmd.env_remove(k);
        }
    }
    if opts.bootstrap_admin {
        cmd.env("TRELLIS_INITIAL_ADMIN_USERNAME", "admin")
            .env("TRELLIS_INITIAL_ADMIN_PASSWORD", ADMIN_PASSWORD);
    }
    cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
    cmd.env("TRELLIS_LOG", "info,sqlx=warn,rumqttd=warn")
        .env("TRELLIS_WS_INIT_TIMEOUT_SECS", "2")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
        .args(["--local-agent", &opts.local_agent.to_string()])
        .args(["--local-agent-node-id", "leader", "--heartbeat-secs", "1"]);
    match opts.broker {
        Broker::Embedded => cmd.args(["--mqtt-listen", &format!("127.0.0.1:{mqtt_port}")]),
        Broker::External(p) => match &opts.tls {
            // The external broker has the same certificate as the leader.
            Some(t) => cmd
                .args(["--broker-url", &format!("mqtts://localhost:{p}")])
                .arg("--broker-ca")
                .arg(t.ca()),
            None => cmd.args(["--broker-url", &format!("mqtt://127.0.0.1:{p}")]),
        },
    };
    match &opts.db {
        Db::Sqlite => {}
        Db::Postgres(url) => {
            cmd.args(["--database-url", url]);
        }
        Db::SqliteAt(path) => {
            cmd.arg("--database-url")
                .arg(format!("sqlite://{}", path.display()));
        }
    }
    if let Some(web) = &opts.web_dir {
        cmd.arg("--web-dir").arg(web);
    }
    if let Some(t) = &opts.tls {
        cmd.arg("--tls-cert")
            .arg(t.dir.join("cert.pem"))
            .arg("--tls-key")
            .arg(t.dir.join("key.pem"));
    }
    cmd.args(&opts.extra_args);
    Proc::spawn(cmd, dir.join(format!("server-{generation}.log")))
}

impl Server {
    /// The newest `limit` audit entries (actor, action, target, outcome, detail), read as `auth`.
    pub async fn audit_log_as(&self, auth: &Auth, limit: u32) -> Vec<Value> {
        let (_, r) = self
            .graphql_as(
                auth,
                "query($limit: Int!) { auditLog(limit: $limit) { actor action target outcome detail } }",
                json!({"limit": limit}),
            )
            .await;
        r["data"]["auditLog"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("no audit log in {r}"))
    }

    /// The newest `limit` audit entries, read as the admin.
    pub async fn audit_log(&self, limit: u32) -> Vec<Value> {
        let auth = self
            .admin_cookie
            .clone()
            .map(Auth::Cookie)
            .unwrap_or(Auth::Anonymous);
        self.audit_log_as(&auth, limit).await
    }

    /// Starts a leader and waits until `/readyz` says the database and broker are reachable.
    /// A port that some other process took between [`free_port`] and the leader's bind makes
    /// the leader stop with "cannot listen": it is started again on other ports (twice at most).
    pub async fn start(opts: ServerOpts) -> Server {
        let mut attempt = 0;
        let mut s = loop {
            attempt += 1;
            let dir = tempfile::tempdir().expect("tempdir");
            let http_port = free_port();
            let mqtt_port = match opts.broker {
                Broker::Embedded => free_port(),
                Broker::External(p) => p,
            };
            let proc = spawn_server(&opts, dir.path(), http_port, mqtt_port, 0);
            let http = match &opts.tls {
                Some(t) => t.http_client(),
                None => reqwest::Client::builder()
                    .pool_idle_timeout(IDLE_REUSE)
                    .build()
                    .expect("HTTP client"),
            };
            let mut s = Server {
                proc,
                dir,
                http_port,
                mqtt_port,
                opts: opts.clone(),
                http,
                generation: 0,
                admin_cookie: None,
            };
            match s.try_wait_ready().await {
                Ok(()) => break s,
                Err(log) if attempt < 3 && log.contains("cannot listen") => continue,
                Err(log) => panic!("{log}"),
            }
        };
        if s.opts.bootstrap_admin {
            let cookie = s
                .login("admin", ADMIN_PASSWORD)
                .await
                .unwrap_or_else(|e| panic!("admin login failed: {e}"));
            s.admin_cookie = Some(cookie);
        }
        s
    }

    /// Kills the leader with SIGKILL and starts it again on the same ports and database.
    pub async fn restart(&mut self) {
        self.restart_after(Duration::ZERO).await;
    }

    /// Like [`Server::restart`], with the leader down for `down` in between.
    pub async fn restart_after(&mut self, down: Duration) {
        self.proc.kill9();
        tokio::time::sleep(down).await;
        self.generation += 1;
        self.proc = spawn_server(
            &self.opts,
            self.dir.path(),
            self.http_port,
            self.mqtt_port,
            self.generation,
        );
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        if let Err(e) = self.try_wait_ready().await {
            panic!("{e}");
        }
    }

    /// Waits for `/readyz`; the error says why not, with the leader's log.
    async fn try_wait_ready(&mut self) -> Result<(), String> {
        let url = self.url("/readyz");
        let http = self.http.clone();
        let log = self.proc.log.clone();
        let start = Instant::now();
        loop {
            // Ready means this leader is: not another process on the same port.
            if self.proc.has_exited() {
                return Err(format!(
                    "the leader exited; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
                && !self.proc.has_exited()
            {
                return Ok(());
            }
            if start.elapsed() > PATIENCE {
                return Err(format!(
                    "leader not ready after {PATIENCE:?}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:<port><path>`, or `https://localhost:<port><path>` over TLS.
    pub fn url(&self, path: &str) -> String {
        match self.opts.tls {
            Some(_) => format!("https://localhost:{}{path}", self.http_port),
            None => format!("http://127.0.0.1:{}{path}", self.http_port),
        }
    }

    /// The HTTP client (trusting the leader's CA when it serves HTTPS).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// POSTs `body` to `path` as the admin (an upload); returns the status and the JSON answer
    /// (`null` when the answer is not JSON).
    pub async fn upload(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).body(body);
        if let Some(c) = &self.admin_cookie {
            req = req.header("Cookie", c);
        }
        let resp = req.send().await.expect("POST an upload");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// POSTs a GraphQL operation and returns the whole JSON response (`data` and `errors`).
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        let auth = self
            .admin_cookie
            .clone()
            .map(Auth::Cookie)
            .unwrap_or(Auth::Anonymous);
        self.graphql_as(&auth, query, variables).await.1
    }

    /// POSTs a GraphQL operation with the given credentials; returns the status, the JSON body and
    /// the `Set-Cookie` header's `name=value`, if any.
    pub async fn graphql_full(
        &self,
        auth: &Auth,
        query: &str,
        variables: Value,
    ) -> (u16, Value, Option<String>) {
        let mut req = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({"query": query, "variables": variables}));
        req = match auth {
            Auth::Anonymous => req,
            Auth::Cookie(c) => req.header("Cookie", c),
            Auth::Bearer(t) => req.header("Authorization", format!("Bearer {t}")),
        };
        let resp = req.send().await.expect("POST /graphql");
        let status = resp.status().as_u16();
        let cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().to_owned());
        (status, resp.json().await.expect("GraphQL JSON"), cookie)
    }

    /// Like [`Server::graphql_full`] without the cookie.
    pub async fn graphql_as(&self, auth: &Auth, query: &str, variables: Value) -> (u16, Value) {
        let (status, body, _) = self.graphql_full(auth, query, variables).await;
        (status, body)
    }

    /// Logs in; returns the session cookie (`trellis_session=...`) or the error body.
    pub async fn login(&self, username: &str, password: &str) -> Result<String, Value> {
        let q = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { username role } }";
        let (_, body, cookie) = self
            .graphql_full(&Auth::Anonymous, q, json!({"u": username, "p": password}))
            .await;
        match cookie {
            Some(c) if body["errors"].is_null() && c.starts_with("trellis_session=") => Ok(c),
            _ => Err(body),
        }
    }

    /// A node as GraphQL returns it (`id name state hostname ...`), or `None`.
    pub async fn node(&self, id: &str) -> Option<Value> {
        let r = self.graphql(NODE_QUERY, json!({"id": id})).await;
        let node = r["data"]["node"].clone();
        (!node.is_null()).then_some(node)
    }

    /// Waits until node `id` has `state` (`ONLINE`, `LOST`, `OFFLINE`), returning the node.
    pub async fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        wait_for(&format!("node {id} to be {state}"), timeout, || async {
            self.node(id).await.filter(|n| n["state"] == state)
        })
        .await
    }

    /// Pings a node through GraphQL; `Ok(message)` or `Err(error code)`.
    pub async fn ping(&self, id: &str) -> Result<String, String> {
        let r = self
            .graphql(
                "mutation($id: String!) { pingNode(id: $id) { message roundTripMs } }",
                json!({"id": id}),
            )
            .await;
        match r["data"]["pingNode"]["message"].as_str() {
            Some(m) => Ok(m.to_owned()),
            None => Err(r["errors"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or("no code")
                .to_owned()),
        }
    }

    /// The MQTT broker address, `mqtt://127.0.0.1:<port>` (`mqtts://localhost:<port>` over TLS).
    pub fn broker_url(&self) -> String {
        match self.opts.tls {
            Some(_) => format!("mqtts://localhost:{}", self.mqtt_port),
            None => format!("mqtt://127.0.0.1:{}", self.mqtt_port),
        }
    }
}

/// The fields tests read from a node.
pub const NODE_QUERY: &str = "query($id: String!) { node(id: $id) { id name renamed state hostname mac \
    ipAddresses arch os model agentVersion hardware labels { key value } heartbeatIntervalSecs \
    cpuPercent memUsedBytes memTotalBytes uptimeSecs firstSeen lastSeen } }";

/// A `trellis-agent` process.
pub struct Agent {
    /// The process.
    pub proc: Proc,
    node_id: String,
    broker: String,
    dir: PathBuf,
    generation: u32,
    join_token: Option<String>,
    extra_args: Vec<String>,
}

impl Agent {
    /// Starts an agent with a 1 s heartbeat and a 2 s keepalive, so a dead one is noticed quickly.
    /// Its state (credentials) lives in `<dir>/state-<node id>`. With a join token it enrolls.
    pub fn start(broker_url: &str, node_id: &str, dir: &Path) -> Agent {
        Agent::start_with_token(broker_url, node_id, dir, None)
    }

    /// Like [`Agent::start`], enrolling with `join_token` when it has no credentials.
    pub fn start_with_token(
        broker_url: &str,
        node_id: &str,
        dir: &Path,
        join_token: Option<&str>,
    ) -> Agent {
        Agent::start_with_args(broker_url, node_id, dir, join_token, &[])
    }

    /// Like [`Agent::start_with_token`], with more `trellis-agent` flags.
    pub fn start_with_args(
        broker_url: &str,
        node_id: &str,
        dir: &Path,
        join_token: Option<&str>,
        extra_args: &[&str],
    ) -> Agent {
        let join_token = join_token.map(str::to_owned);
        let extra_args: Vec<String> = extra_args.iter().map(|a| (*a).to_owned()).collect();
        let proc = spawn_agent(
            broker_url,
            node_id,
            dir,
            0,
            join_token.as_deref(),
            &extra_args,
        );
        Agent {
            proc,
            node_id: node_id.to_owned(),
            broker: broker_url.to_owned(),
            dir: dir.to_path_buf(),
            generation: 0,
            join_token,
            extra_args,
        }
    }

    /// Starts the agent again (after a kill), same node id and state.
    pub fn respawn(&mut self) {
        self.proc.kill9();
        self.generation += 1;
        self.proc = spawn_agent(
            &self.broker,
            &self.node_id,
            &self.dir,
            self.generation,
            self.join_token.as_deref(),
            &self.extra_args,
        );
    }

    /// The agent's state directory (where it keeps its credentials).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(format!("state-{}", self.node_id))
    }
}

fn spawn_agent(
    broker: &str,
    node_id: &str,
    dir: &Path,
    generation: u32,
    join_token: Option<&str>,
    extra_args: &[String],
) -> Proc {
    let mut cmd = Command::new(binary("trellis-agent"));
    cmd.env("TRELLIS_LOG", "info")
        .args(["--broker-url", broker, "--node-id", node_id])
        .args([
            "--heartbeat-secs",
            "1",
            "--keepalive-secs",
            "2",
            "--max-backoff-secs",
            "1",
        ])
        .arg("--state-dir")
        .arg(dir.join(format!("state-{node_id}")));
    if let Some(t) = join_token {
        cmd.args(["--join-token", t]);
    }
    cmd.args(extra_args);
    Proc::spawn(cmd, dir.join(format!("agent-{node_id}-{generation}.log")))
}

impl Server {
    /// Starts an agent process that joins this leader as a user would: on the embedded broker or
    /// a Mosquitto the leader manages it enrolls with a new join token and the admin approves it;
    /// on an anonymous test Mosquitto it just connects.
    pub async fn join_agent(&self, node_id: &str) -> Agent {
        self.join_agent_with(node_id, &[]).await
    }

    /// Like [`Server::join_agent`], with more `trellis-agent` flags.
    pub async fn join_agent_with(&self, node_id: &str, extra_args: &[&str]) -> Agent {
        // An anonymous test Mosquitto takes anyone; every other broker wants an enrolled node.
        let managed = self.opts.extra_args.iter().any(|a| a == "--mosquitto-dir");
        if matches!(self.opts.broker, Broker::External(_)) && !managed {
            return Agent::start_with_args(
                &self.broker_url(),
                node_id,
                self.dir.path(),
                None,
                extra_args,
            );
        }
        let token = self.join_token(&format!("test {node_id}")).await;
        let agent = Agent::start_with_args(
            &self.broker_url(),
            node_id,
            self.dir.path(),
            Some(&token),
            extra_args,
        );
        self.approve(node_id, &agent).await;
        agent
    }

    /// A new join token (as the admin).
    pub async fn join_token(&self, name: &str) -> String {
        let r = self
            .graphql(
                "mutation($n: String!) { createJoinToken(name: $n) { token } }",
                json!({"n": name}),
            )
            .await;
        r["data"]["createJoinToken"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("join token: {r}"))
            .to_owned()
    }

    /// The ids of the nodes waiting to join.
    pub async fn pending_ids(&self) -> Vec<String> {
        let r = self.graphql("{ pendingNodes { nodeId } }", json!({})).await;
        r["data"]["pendingNodes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["nodeId"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until `node_id` asks to join.
    pub async fn wait_pending(&self, node_id: &str) {
        wait_for(&format!("{node_id} to ask to join"), PATIENCE, || async {
            self.pending_ids()
                .await
                .iter()
                .any(|p| p == node_id)
                .then_some(())
        })
        .await;
    }

    /// A node that joined, with its agent killed and a raw MQTT client logged in with the node's
    /// own credentials in its place: for tests of what a node may and may not send.
    pub async fn impersonate(&self, node_id: &str) -> (Agent, MqttProbe) {
        let mut agent = self.join_agent(node_id).await;
        self.wait_state(node_id, "ONLINE", PATIENCE).await;
        agent.proc.kill9();
        let (user, password) = agent_credentials(&agent);
        let client_id = trellis_proto::node_client_id(node_id, Some(&password));
        let probe =
            MqttProbe::connect_as(self.mqtt_port, &client_id, Some((&user, &password)), None)
                .await
                .unwrap_or_else(|e| panic!("{node_id}'s own credentials refused: {e}"));
        (agent, probe)
    }

    /// Waits for `node_id` to ask to join, then approves it.
    pub async fn approve(&self, node_id: &str, agent: &Agent) {
        self.wait_pending(node_id).await;
        let r = self
            .graphql(
                "mutation($id: String!) { approveNode(id: $id) }",
                json!({"id": node_id}),
            )
            .await;
        assert_eq!(
            r["data"]["approveNode"],
            true,
            "approve {node_id}: {r}\nagent log:\n{}",
            agent.proc.log_text()
        );
    }
}

/// The MQTT username and password an enrolled agent stored in its state directory.
pub fn agent_credentials(agent: &Agent) -> (String, String) {
    let path = agent.state_dir().join("credentials.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).expect("credentials JSON");
    (
        v["username"].as_str().expect("username").to_owned(),
        v["password"].as_str().expect("password").to_owned(),
    )
}

/// A Mosquitto broker on a free port, anonymous, no persistence; killed on drop.
pub struct Mosquitto {
    /// The process.
    pub proc: Proc,
    /// Its port.
    pub port: u16,
    /// The directory whose accounts the leader manages, for a managed Mosquitto.
    pub accounts: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts Mosquitto and waits until it accepts connections.
    pub async fn start() -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .expect("write mosquitto.conf");
        let proc = spawn_mosquitto(dir.path(), port, 0).await;
        Mosquitto {
            proc,
            port,
            accounts: None,
            _dir: dir,
        }
    }

    /// Starts Mosquitto with the lines `trellis mosquitto-config <dir>` prints, so the leader
    /// (started with `--mosquitto-dir <dir>`) manages its accounts; nobody can connect until the
    /// leader has written them.
    pub async fn start_managed(dir: &Path) -> Mosquitto {
        Mosquitto::start_managed_with(dir, None).await
    }

    /// Like [`Mosquitto::start_managed`], speaking MQTT over TLS only with `tls`'s certificate
    /// when given.
    pub async fn start_managed_with(dir: &Path, tls: Option<&LeaderCert>) -> Mosquitto {
        let conf_dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        std::fs::create_dir_all(dir).expect("mosquitto dir");
        for f in ["passwd", "acl"] {
            std::fs::write(dir.join(f), "").expect("empty account file");
        }
        let out = Command::new(binary("trellis"))
            .arg("mosquitto-config")
            .arg(dir)
            .output()
            .expect("trellis mosquitto-config");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = String::from_utf8_lossy(&out.stdout);
        let tls_lines = tls
            .map(|t| {
                format!(
                    "certfile {}\nkeyfile {}\n",
                    t.dir.join("cert.pem").display(),
                    t.dir.join("key.pem").display()
                )
            })
            .unwrap_or_default();
        std::fs::write(
            conf_dir.path().join("mosquitto.conf"),
            format!("listener {port} 127.0.0.1\n{tls_lines}persistence false\n{lines}"),
        )
        .expect("write mosquitto.conf");
        let proc = spawn_mosquitto(conf_dir.path(), port, 0).await;
        Mosquitto {
            proc,
            port,
            accounts: Some(dir.to_owned()),
            _dir: conf_dir,
        }
    }

    /// Adds an account that may read every topic to a managed Mosquitto's files (with Debian's
    /// `mosquitto_passwd`), for a test that must see the broker's retained state itself. The
    /// leader rewrites the files on its next account change, so add it right before a restart.
    pub fn add_reader_account(&self, user: &str, password: &str) {
        let dir = self.accounts.as_ref().expect("a managed Mosquitto");
        let out = Command::new("mosquitto_passwd")
            .arg("-b")
            .arg(dir.join("passwd"))
            .args([user, password])
            .output()
            .expect("mosquitto_passwd");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut acl = std::fs::read_to_string(dir.join("acl")).expect("acl");
        acl.push_str(&format!("\nuser {user}\ntopic read #\n"));
        std::fs::write(dir.join("acl"), acl).expect("acl");
    }

    /// Options for a leader on this Mosquitto (managing its accounts when it is a managed one).
    pub fn server_opts(&self) -> ServerOpts {
        ServerOpts {
            broker: Broker::External(self.port),
            extra_args: self
                .accounts
                .iter()
                .flat_map(|d| ["--mosquitto-dir".to_owned(), d.display().to_string()])
                .collect(),
            ..ServerOpts::default()
        }
    }

    /// Kills Mosquitto with SIGKILL and starts it again on the same port. With no persistence it
    /// comes back knowing no sessions, subscriptions or retained messages.
    pub async fn restart(&mut self) {
        self.restart_after(Duration::ZERO).await;
    }

    /// Like [`Mosquitto::restart`], with the broker down for `down` in between (an outage).
    pub async fn restart_after(&mut self, down: Duration) {
        self.proc.kill9();
        tokio::time::sleep(down).await;
        self.proc = spawn_mosquitto(self._dir.path(), self.port, 1).await;
    }
}

async fn spawn_mosquitto(dir: &Path, port: u16, generation: u32) -> Proc {
    let mut cmd = Command::new("mosquitto");
    cmd.arg("-c").arg(dir.join("mosquitto.conf"));
    let proc = Proc::spawn(cmd, dir.join(format!("mosquitto-{generation}.log")));
    wait_for("mosquitto to listen", PATIENCE, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    proc
}

/// Sends a plain-text MQTT CONNECT with `login` to `port` and returns the CONNACK's return code,
/// or `None` when the listener answers no CONNACK (a TLS listener closes the connection).
pub async fn plain_mqtt_connack(port: u16, login: (&str, &str)) -> Option<u8> {
    use rumqttc::mqttbytes::v4::{Connect, Packet};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut connect = Connect::new("trellis-test-plain");
    connect.set_login(login.0, login.1);
    let mut frame = bytes::BytesMut::new();
    Packet::Connect(connect)
        .write(&mut frame, 4096)
        .expect("encode CONNECT");
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(&frame).await.ok()?;
    let mut reply = [0u8; 4];
    match tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut reply)).await {
        // CONNACK: type 2, remaining length 2, flags, return code.
        Ok(Ok(_)) if reply[0] == 0x20 && reply[1] == 2 => Some(reply[3]),
        _ => None,
    }
}

/// A fresh, uniquely named Postgres database, dropped at the end of the test. The server comes
/// from `TRELLIS_TEST_POSTGRES_URL` (an admin URL; `scripts/test.sh` starts Postgres and sets it).
pub struct Postgres {
    admin_url: String,
    name: String,
    /// URL of the new database.
    pub url: String,
}

impl Postgres {
    /// Creates the database.
    pub fn create() -> Postgres {
        let admin_url = std::env::var("TRELLIS_TEST_POSTGRES_URL").expect(
            "TRELLIS_TEST_POSTGRES_URL is not set: run the tests through scripts/test.sh, which starts Postgres",
        );
        let name = format!("trellis_test_{}", uuid::Uuid::new_v4().simple());
        psql(&admin_url, &format!("CREATE DATABASE {name}"));
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        let url = format!("{base}/{name}");
        Postgres {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.admin_url)
            .args([
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// A Postgres server of the test's own: a cluster made by `initdb` in a temporary directory,
/// run as the `postgres` user on a free port, so a test can freeze it (SIGSTOP, as a hung host
/// would be) or kill it without touching the shared server other tests use.
pub struct PrivatePostgres {
    /// The postmaster.
    pub proc: Proc,
    /// A URL of its `postgres` database (trust authentication, loopback only).
    pub url: String,
    _dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// Makes the cluster and starts it; returns once it accepts connections.
    pub async fn start() -> PrivatePostgres {
        use std::os::unix::process::CommandExt;
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (scripts/setup.sh)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("postgres").exists())
            .max()
            .expect("a PostgreSQL version");
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, "postgres"])
                .output()
                .expect("id");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("the postgres user")
        };
        let (uid, gid) = (id("-u"), id("-g"));
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        let data = dir.path().join("data");
        let out = Command::new(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .uid(uid)
            .gid(gid)
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .uid(uid)
            .gid(gid);
        let log = dir.path().join("postgres.log");
        std::fs::File::create(&log).expect("log");
        std::os::unix::fs::chown(&log, Some(uid), Some(gid)).expect("chown log");
        let proc = Proc::spawn(cmd, log);
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        wait_for("the private Postgres to answer", PATIENCE, || async {
            Command::new("psql")
                .arg(&url)
                .args(["-qAtc", "select 1"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| ())
        })
        .await;
        PrivatePostgres {
            proc,
            url,
            _dir: dir,
        }
    }

    /// Sends `sig` (`-STOP`, `-CONT`, `-9`) to every process of the server: the postmaster and
    /// its backends (each backend is a session of its own, so a process group would not reach
    /// them). The postmaster first, except for `-CONT`: stopped or killed, it forks no new
    /// backend meanwhile. Whether the postmaster took it.
    pub fn signal_all(&self, sig: &str) -> bool {
        let pid = self.proc.id().to_string();
        let postmaster = || {
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .is_ok_and(|s| s.success())
        };
        let backends = || {
            let _ = Command::new("pkill").args([sig, "-P", &pid]).status();
        };
        if sig == "-CONT" {
            backends();
            postmaster()
        } else {
            let ok = postmaster();
            backends();
            ok
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Thawed first, then killed, the postmaster first (the Proc's own drop reaps it).
        self.signal_all("-CONT");
        self.signal_all("-9");
    }
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .arg(url)
        .args(["-qc", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A raw MQTT client for tests that speak to the broker directly.
pub struct MqttProbe {
    /// The client.
    pub client: rumqttc::AsyncClient,
    rx: tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
}

impl MqttProbe {
    /// Connects anonymously to the broker at `port` and subscribes to `filter` (if any).
    pub async fn connect(port: u16, filter: Option<&str>) -> MqttProbe {
        let id = format!("probe-{}", uuid::Uuid::new_v4().simple());
        MqttProbe::connect_as(port, &id, None, filter)
            .await
            .unwrap_or_else(|e| panic!("MQTT probe connect: {e}"))
    }

    /// Connects with a client id and optional login; `Err` says how the broker refused (the
    /// CONNACK code, or "SUBACK failure" when the subscription was denied).
    pub async fn connect_as(
        port: u16,
        client_id: &str,
        login: Option<(&str, &str)>,
        filter: Option<&str>,
    ) -> Result<MqttProbe, String> {
        let mut opts = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        if let Some((u, p)) = login {
            opts.set_credentials(u, p);
        }
        let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 64);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        let sub = filter.map(str::to_owned);
        let c = client.clone();
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        if let Some(f) = &sub {
                            let _ = c.subscribe(f.clone(), rumqttc::QoS::AtLeastOnce).await;
                        } else if let Some(r) = ready.take() {
                            let _ = r.send(Ok(()));
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(ack))) => {
                        let denied = ack
                            .return_codes
                            .iter()
                            .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                        if let Some(r) = ready.take() {
                            let _ = r.send(if denied {
                                Err("SUBACK failure".into())
                            } else {
                                Ok(())
                            });
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(Err(format!("{code:?}")));
                        }
                        return;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        match tokio::time::timeout(PATIENCE, ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(MqttProbe { client, rx }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err("probe task ended".into()),
            Err(_) => Err("no answer from the broker".into()),
        }
    }

    /// Publishes at QoS 1.
    pub async fn publish(&self, topic: &str, payload: &[u8], retain: bool) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload.to_vec())
            .await
            .expect("publish");
    }

    /// The next message, if one comes within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<rumqttc::Publish> {
        tokio::time::timeout(within, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Every message received within `window`.
    pub async fn collect(&mut self, window: Duration) -> Vec<rumqttc::Publish> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(p)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            out.push(p);
        }
        out
    }
}

/// A chromedriver process and a WebDriver session in headless Chromium.
pub struct Browser {
    /// The WebDriver client.
    pub client: fantoccini::Client,
    _driver: Proc,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// The text of every element `css` finds (empty when none), read in one go by the page: a
    /// list the page replaces whole when it changes could lose elements found one by one before
    /// they are read.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        self.client
            .execute(
                "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText.trim())",
                vec![serde_json::json!(css)],
            )
            .await
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    /// Clicks `css`, found again and clicked again if the page redrew it in between.
    pub async fn click_redrawn(&self, css: &str) {
        wait_for(&format!("a click on {css}"), PATIENCE, || async {
            self.client
                .find(fantoccini::Locator::Css(css))
                .await
                .ok()?
                .click()
                .await
                .ok()
        })
        .await;
    }

    /// Starts chromedriver on a free port and opens headless Chromium with a fresh profile.
    pub async fn start() -> Browser {
        Browser::start_with(&[]).await
    }

    /// Like [`Browser::start`], with more Chromium flags.
    pub async fn start_with(extra_args: &[&str]) -> Browser {
        let profile = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}"));
        let driver = Proc::spawn(cmd, profile.path().join("chromedriver.log"));
        wait_for("chromedriver to listen", PATIENCE, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,800",
        ]
        .iter()
        .chain(extra_args)
        .map(|a| (*a).to_owned())
        .collect();
        args.push(format!(
            "--user-data-dir={}",
            profile.path().join("profile").display()
        ));
        let caps = json!({
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args }
        });
        let caps = caps
            .as_object()
            .expect("object")
            .clone()
            .into_iter()
            .collect();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("WebDriver session in headless Chromium");
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }
}

/// Where browser tests save screenshots: `<target>/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let dir = target_dir().join("screenshots");
    std::fs::create_dir_all(&dir).expect("create screenshots dir");
    dir
}

/// The built web app (`scripts/build-web.sh` puts it in `<target>/web`).
pub fn web_dir() -> PathBuf {
    let dir = target_dir().join("web");
    assert!(
        dir.join("index.html").is_file(),
        "{} has no web app: run scripts/build-web.sh",
        dir.display()
    );
    dir
}

/// A websocket client connection.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a websocket on `/graphql` with a subprotocol and, optionally, a `Cookie` header.
pub async fn ws_connect(server: &Server, protocol: &str, cookie: Option<&str>) -> Ws {
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue};
    let mut req = format!("ws://127.0.0.1:{}/graphql", server.http_port)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(protocol).expect("header"),
    );
    if let Some(c) = cookie {
        req.headers_mut()
            .insert("Cookie", HeaderValue::from_str(c).expect("cookie"));
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    assert_eq!(resp.headers()["sec-websocket-protocol"], protocol);
    ws
}

/// An acknowledged graphql-transport-ws session: connects (with the cookie, if any), sends
/// `connection_init` with `payload` and checks the `connection_ack`.
pub async fn ws_session(server: &Server, cookie: Option<&str>, payload: Value) -> Ws {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut ws = ws_connect(server, "graphql-transport-ws", cookie).await;
    let init = json!({"type": "connection_init", "payload": payload});
    ws.send(Message::text(init.to_string()))
        .await
        .expect("send connection_init");
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws
}

/// The next text message as JSON; panics when the socket closes or nothing comes in time.
pub async fn next_json(ws: &mut Ws) -> Value {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("message in time")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("json");
        }
    }
}

/// Everything the server sends until it closes the socket (or `limit` passes): the text messages,
/// and whether the socket was closed by then.
pub async fn until_closed(ws: &mut Ws, limit: Duration) -> (Vec<String>, bool) {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut texts = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return (texts, false),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return (texts, true),
            Ok(Some(Ok(Message::Text(t)))) => texts.push(t.to_string()),
            Ok(Some(Ok(_))) => {}
        }
    }
}
