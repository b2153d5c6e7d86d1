//! Server configuration, parsed once at start from flags, `TRELLIS_*` environment variables and an
//! optional TOML file (flags win over the environment, which wins over the file, which wins over the
//! defaults). A bad value fails start-up with the name of the key at fault.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args as ClapArgs, builder::BoolishValueParser};
use serde::Deserialize;
use trellis_proto::BrokerAddr;

/// Where the server keeps its data unless told otherwise (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "trellis-data";

/// Default of `mqtt_max_connections`: room for 500 nodes many times over, within a Pi's file
/// descriptor limit.
pub const DEFAULT_MQTT_MAX_CONNECTIONS: usize = 2_000;

/// Everything the server needs to run.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Directory for the SQLite database and other state; created if missing.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`.
    pub database_url: String,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// MQTT broker: embedded (listening on an address) or external.
    pub broker: BrokerMode,
    /// Whether the leader also runs a local agent (the simulator backend by default).
    pub local_agent: bool,
    /// Node id for the local agent; `None` derives it from the MAC address.
    pub local_agent_node_id: Option<String>,
    /// Heartbeat interval of the local agent.
    pub heartbeat_interval: Duration,
    /// Directory holding the built web app (`index.html` and its assets).
    pub web_dir: Option<PathBuf>,
    /// Serve GraphiQL at `/graphiql`.
    pub graphiql: bool,
    /// Answer introspection queries (`__schema`); turn off with GraphiQL in production.
    pub introspection: bool,
    /// Create this admin at start when no user exists (unattended installs): (username, password).
    pub initial_admin: Option<(String, String)>,
    /// Mark the session cookie `Secure` (set when the leader is served over HTTPS).
    pub cookie_secure: bool,
    /// Websocket clients must send `connection_init` within this time or are disconnected.
    pub ws_init_timeout: Duration,
    /// Longest time one HTTP request may take before it is answered 408.
    pub request_timeout: Duration,
    /// Most MQTT client connections the embedded broker's gate holds at once (rumqttd's own limit
    /// follows it). Each node's agent is one; so is each agent waiting to join.
    pub mqtt_max_connections: usize,
    /// Origins allowed to call the API from a browser (CORS); empty allows none but the leader's own.
    pub cors_origins: Vec<String>,
    /// MAC addresses whose enrollment requests are approved without an operator (as Grape does).
    pub auto_approve_macs: Vec<String>,
    /// Username and password for an external broker.
    pub broker_login: Option<(String, String)>,
    /// Directory where the leader writes the accounts of an external Mosquitto it manages.
    pub mosquitto_dir: Option<PathBuf>,
    /// Certificates for nodes' Docker engines over TLS (`ca.pem`, `cert.pem`, `key.pem`).
    pub docker_tls_dir: PathBuf,
    /// How long one call to a node's Docker engine may take before it counts as unreachable.
    pub docker_timeout: Duration,
    /// The longest wait between retries of an unreachable engine or a failed deployment step.
    pub deploy_backoff_max: Duration,
    /// The leader's own Docker engine (a unix socket): the source of sideloaded images.
    pub leader_docker: PathBuf,
    /// Most image transfers (sideloads) running at once, leader-wide.
    pub sideload_parallel: usize,
    /// Free disk a node must keep beyond an image's size for a load to go ahead, bytes.
    pub disk_margin: u64,
    /// How often nodes' images no deployment needs are removed; `None`: only when asked.
    pub prune_every: Option<Duration>,
    /// The largest image archive upload, bytes.
    pub upload_max: u64,
    /// The largest app bundle, bytes.
    pub bundle_max: u64,
    /// The base image `py3` apps are built on.
    pub py3_base_image: String,
    /// The base image `nodered` apps are built on.
    pub nodered_base_image: String,
    /// The leader's certificate chain and key, loaded: HTTPS and MQTT over TLS on its listeners.
    pub tls: Option<crate::infra::tls::LeaderTls>,
    /// Which certificates the leader trusts for an external broker over TLS (`mqtts://`): the
    /// `broker_ca` file's, or the system's.
    pub broker_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Which broker the server uses.
#[derive(Debug, Clone, PartialEq)]
pub enum BrokerMode {
    /// Start rumqttd in-process on this address.
    Embedded(SocketAddr),
    /// Connect to a broker someone else runs (Mosquitto, EMQX).
    External(BrokerAddr),
}

impl BrokerMode {
    /// The address clients on this machine connect to.
    pub fn client_addr(&self) -> BrokerAddr {
        match self {
            BrokerMode::Embedded(addr) => {
                let host = if addr.ip().is_unspecified() {
                    "127.0.0.1".to_owned()
                } else {
                    addr.ip().to_string()
                };
                BrokerAddr {
                    host,
                    port: addr.port(),
                    tls: false,
                }
            }
            BrokerMode::External(b) => b.clone(),
        }
    }
}

impl ServerConfig {
    /// The deployment reconciler's settings.
    pub fn deployment_settings(&self) -> crate::deployments::Settings {
        crate::deployments::Settings {
            docker_timeout: self.docker_timeout,
            backoff_max: self.deploy_backoff_max,
        }
    }

    /// The image service's settings.
    pub fn image_settings(&self) -> crate::images::Settings {
        crate::images::Settings {
            leader_docker: self.leader_docker.clone(),
            parallel: self.sideload_parallel,
            margin: self.disk_margin,
            docker_timeout: self.docker_timeout,
            local_node: self.local_node_id(),
        }
    }

    /// The app service's settings.
    pub fn app_settings(&self) -> crate::images::apps::Settings {
        crate::images::apps::Settings {
            data_dir: self.data_dir.clone(),
            bundle_max: self.bundle_max,
            py3_base: self.py3_base_image.clone(),
            nodered_base: self.nodered_base_image.clone(),
        }
    }

    /// The node id of the leader's own agent, when it runs one.
    pub fn local_node_id(&self) -> Option<String> {
        self.local_agent.then(|| {
            self.local_agent_node_id
                .clone()
                .unwrap_or_else(|| trellis_agent::system::facts().default_node_id())
        })
    }

    /// The defaults: everything on loopback, SQLite in `./trellis-data`, embedded broker, local agent.
    pub fn defaults_in(data_dir: PathBuf) -> Self {
        let database_url = sqlite_url(&data_dir);
        let docker_tls_dir = data_dir.join("docker-tls");
        ServerConfig {
            data_dir,
            database_url,
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            broker: BrokerMode::Embedded(SocketAddr::from(([127, 0, 0, 1], 1883))),
            local_agent: true,
            local_agent_node_id: None,
            heartbeat_interval: Duration::from_secs(5),
            web_dir: default_web_dir(),
            graphiql: true,
            introspection: true,
            initial_admin: None,
            cookie_secure: false,
            ws_init_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            mqtt_max_connections: DEFAULT_MQTT_MAX_CONNECTIONS,
            cors_origins: Vec::new(),
            auto_approve_macs: Vec::new(),
            broker_login: None,
            mosquitto_dir: None,
            docker_tls_dir,
            docker_timeout: crate::nodes::docker::DOCKER_TIMEOUT,
            deploy_backoff_max: Duration::from_secs(60),
            leader_docker: PathBuf::from("/var/run/docker.sock"),
            sideload_parallel: 2,
            disk_margin: 512 << 20,
            prune_every: Some(Duration::from_secs(3600)),
            upload_max: 4096 << 20,
            bundle_max: 256 << 20,
            py3_base_image: "python:3.11-slim".into(),
            nodered_base_image: "nodered/node-red:4.0".into(),
            tls: None,
            broker_tls: None,
        }
    }
}

fn sqlite_url(data_dir: &std::path::Path) -> String {
    format!("sqlite://{}", data_dir.join("trellis.db").display())
}

/// `web/` beside the executable, when it holds an `index.html`.
fn default_web_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.join("web");
    dir.join("index.html").is_file().then_some(dir)
}

/// Flags of `trellis serve` (and of `trellis` with no subcommand).
#[derive(Debug, Clone, Default, ClapArgs)]
pub struct Args {
    /// TOML file with any of the keys below (snake_case).
    #[arg(long, env = "TRELLIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (SQLite database and state).
    #[arg(long, env = "TRELLIS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://path or postgres://user:pass@host/db.
    #[arg(long, env = "TRELLIS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// HTTP listen address.
    #[arg(long, env = "TRELLIS_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Listen address of the embedded MQTT broker.
    #[arg(long, env = "TRELLIS_MQTT_LISTEN")]
    pub mqtt_listen: Option<String>,
    /// External broker, mqtt://host:port; when set, no embedded broker starts.
    #[arg(long, env = "TRELLIS_BROKER_URL")]
    pub broker_url: Option<String>,
    /// Run a local agent on the leader (true/false).
    #[arg(long, env = "TRELLIS_LOCAL_AGENT", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub local_agent: Option<bool>,
    /// Node id of the local agent.
    #[arg(long, env = "TRELLIS_LOCAL_AGENT_NODE_ID")]
    pub local_agent_node_id: Option<String>,
    /// Heartbeat interval of the local agent, seconds.
    #[arg(long, env = "TRELLIS_HEARTBEAT_SECS")]
    pub heartbeat_secs: Option<u64>,
    /// Directory of the built web app.
    #[arg(long, env = "TRELLIS_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Serve GraphiQL at /graphiql (true/false).
    #[arg(long, env = "TRELLIS_GRAPHIQL", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub graphiql: Option<bool>,
    /// Answer GraphQL introspection queries (true/false).
    #[arg(long, env = "TRELLIS_INTROSPECTION", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub introspection: Option<bool>,
    /// Username of the admin created at start when no user exists.
    #[arg(long, env = "TRELLIS_INITIAL_ADMIN_USERNAME")]
    pub initial_admin_username: Option<String>,
    /// Password of that admin (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "TRELLIS_INITIAL_ADMIN_PASSWORD", hide_env_values = true)]
    pub initial_admin_password: Option<String>,
    /// Mark the session cookie Secure (true/false); set it when serving over HTTPS.
    #[arg(long, env = "TRELLIS_COOKIE_SECURE", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub cookie_secure: Option<bool>,
    /// Seconds a websocket client has to send connection_init.
    #[arg(long, env = "TRELLIS_WS_INIT_TIMEOUT_SECS")]
    pub ws_init_timeout_secs: Option<u64>,
    /// Seconds one HTTP request may take.
    #[arg(long, env = "TRELLIS_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Most MQTT client connections at once on the embedded broker (default 2000).
    #[arg(long, env = "TRELLIS_MQTT_MAX_CONNECTIONS")]
    pub mqtt_max_connections: Option<usize>,
    /// Browser origins allowed to call the API (comma-separated), e.g. https://lab.example.org.
    #[arg(long, env = "TRELLIS_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
    /// MAC addresses approved without an operator when they ask to join (comma-separated).
    #[arg(long, env = "TRELLIS_AUTO_APPROVE_MACS", value_delimiter = ',')]
    pub auto_approve_macs: Option<Vec<String>>,
    /// Username for an external broker (with --broker-url).
    #[arg(long, env = "TRELLIS_BROKER_USERNAME")]
    pub broker_username: Option<String>,
    /// Password for an external broker.
    #[arg(long, env = "TRELLIS_BROKER_PASSWORD", hide_env_values = true)]
    pub broker_password: Option<String>,
    /// Directory where the leader writes the password and ACL files of the external Mosquitto it
    /// manages (see `trellis mosquitto-config`).
    #[arg(long, env = "TRELLIS_MOSQUITTO_DIR")]
    pub mosquitto_dir: Option<PathBuf>,
    /// Directory with the CA and client certificate for nodes' Docker engines over TLS
    /// (default <data-dir>/docker-tls, made at first start).
    #[arg(long, env = "TRELLIS_DOCKER_TLS_DIR")]
    pub docker_tls_dir: Option<PathBuf>,
    /// Seconds one call to a node's Docker engine may take before the engine counts as
    /// unreachable (default 10).
    #[arg(long, env = "TRELLIS_DOCKER_TIMEOUT_SECS")]
    pub docker_timeout_secs: Option<u64>,
    /// Longest wait, in seconds, between retries of an unreachable engine or a failed
    /// deployment step (default 60; the waits double from 1 s up to it).
    #[arg(long, env = "TRELLIS_DEPLOY_BACKOFF_MAX_SECS")]
    pub deploy_backoff_max_secs: Option<u64>,
    /// The leader's own Docker engine, a unix socket (default /var/run/docker.sock): images are
    /// sideloaded from it into nodes' engines.
    #[arg(long, env = "TRELLIS_LEADER_DOCKER")]
    pub leader_docker: Option<PathBuf>,
    /// Most image transfers to nodes at once (default 2).
    #[arg(long, env = "TRELLIS_SIDELOAD_PARALLEL")]
    pub sideload_parallel: Option<usize>,
    /// Free disk, in MiB, a node must keep beyond an image's size before the leader loads,
    /// pulls or builds the image there (default 512).
    #[arg(long, env = "TRELLIS_DISK_MARGIN_MIB")]
    pub disk_margin_mib: Option<u64>,
    /// Seconds between prunes of nodes' images no deployment needs (each deployment's current
    /// and rollback images stay); a deployment's nodes are also pruned after each of its
    /// rollouts. 0 prunes only when asked (`pruneImages`). Default 3600.
    #[arg(long, env = "TRELLIS_PRUNE_EVERY_SECS")]
    pub prune_every_secs: Option<u64>,
    /// The largest image archive upload (`docker save`), in MiB (default 4096).
    #[arg(long, env = "TRELLIS_UPLOAD_MAX_MIB")]
    pub upload_max_mib: Option<u64>,
    /// The largest app bundle upload, in MiB (default 256).
    #[arg(long, env = "TRELLIS_BUNDLE_MAX_MIB")]
    pub bundle_max_mib: Option<u64>,
    /// The base image `py3` app bundles are built on; it must have python3 (and pip, for a
    /// bundle with requirements.txt). Default python:3.11-slim.
    #[arg(long, env = "TRELLIS_PY3_BASE_IMAGE")]
    pub py3_base_image: Option<String>,
    /// The base image `nodered` app bundles are built on. Default nodered/node-red:4.0.
    #[arg(long, env = "TRELLIS_NODERED_BASE_IMAGE")]
    pub nodered_base_image: Option<String>,
    /// The leader's certificate (PEM, chain allowed): with --tls-key, the web app, API and
    /// embedded broker speak TLS only (see `trellis tls-cert`).
    #[arg(long, env = "TRELLIS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "TRELLIS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA file for an external broker over TLS (mqtts://); the system's CAs when left out.
    #[arg(long, env = "TRELLIS_BROKER_CA")]
    pub broker_ca: Option<PathBuf>,
}

/// The TOML file's keys; unknown keys are refused so a typo does not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    http_listen: Option<String>,
    mqtt_listen: Option<String>,
    broker_url: Option<String>,
    local_agent: Option<bool>,
    local_agent_node_id: Option<String>,
    heartbeat_secs: Option<u64>,
    web_dir: Option<PathBuf>,
    graphiql: Option<bool>,
    introspection: Option<bool>,
    initial_admin_username: Option<String>,
    initial_admin_password: Option<String>,
    cookie_secure: Option<bool>,
    ws_init_timeout_secs: Option<u64>,
    request_timeout_secs: Option<u64>,
    mqtt_max_connections: Option<usize>,
    cors_origins: Option<Vec<String>>,
    auto_approve_macs: Option<Vec<String>>,
    broker_username: Option<String>,
    broker_password: Option<String>,
    mosquitto_dir: Option<PathBuf>,
    docker_tls_dir: Option<PathBuf>,
    docker_timeout_secs: Option<u64>,
    deploy_backoff_max_secs: Option<u64>,
    leader_docker: Option<PathBuf>,
    sideload_parallel: Option<usize>,
    disk_margin_mib: Option<u64>,
    upload_max_mib: Option<u64>,
    prune_every_secs: Option<u64>,
    bundle_max_mib: Option<u64>,
    py3_base_image: Option<String>,
    nodered_base_image: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    broker_ca: Option<PathBuf>,
}

/// A configuration error, naming the key at fault: the agent's, so both binaries report bad
/// configuration the same way.
pub use trellis_agent::config::ConfigError;
use trellis_agent::config::{invalid, read_file};

fn addr(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            key,
            format!("{value:?} is not an address like 127.0.0.1:8080"),
        )
    })
}

impl Args {
    /// Merges flags, environment, file and defaults.
    pub fn resolve(self) -> Result<ServerConfig, ConfigError> {
        let file: FileConfig = read_file(self.config.as_deref())?;
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let mut c = ServerConfig::defaults_in(data_dir);
        if let Some(url) = self.database_url.or(file.database_url) {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return Err(invalid(
                    "database_url",
                    format!("{url:?} must start with sqlite: or postgres://"),
                ));
            }
            c.database_url = url;
        }
        if let Some(v) = self.http_listen.or(file.http_listen) {
            c.http_listen = addr("http_listen", &v)?;
        }
        let mqtt_listen = self.mqtt_listen.or(file.mqtt_listen);
        match (self.broker_url.or(file.broker_url), mqtt_listen) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "broker_url",
                    "cannot be combined with mqtt_listen (an external broker starts no embedded one)",
                ));
            }
            (Some(url), None) => {
                c.broker =
                    BrokerMode::External(url.parse().map_err(|r: String| invalid("broker_url", r))?)
            }
            (None, Some(listen)) => c.broker = BrokerMode::Embedded(addr("mqtt_listen", &listen)?),
            (None, None) => {}
        }
        if let Some(v) = self.local_agent.or(file.local_agent) {
            c.local_agent = v;
        }
        if let Some(id) = self.local_agent_node_id.or(file.local_agent_node_id) {
            trellis_proto::validate_node_id(&id)
                .map_err(|e| invalid("local_agent_node_id", e.to_string()))?;
            c.local_agent_node_id = Some(id);
        }
        if let Some(s) = self.heartbeat_secs.or(file.heartbeat_secs) {
            if !(1..=3600).contains(&s) {
                return Err(invalid("heartbeat_secs", "must be between 1 and 3600"));
            }
            c.heartbeat_interval = Duration::from_secs(s);
        }
        if let Some(dir) = self.web_dir.or(file.web_dir) {
            if !dir.join("index.html").is_file() {
                return Err(invalid(
                    "web_dir",
                    format!("{} has no index.html", dir.display()),
                ));
            }
            c.web_dir = Some(dir);
        }
        if let Some(v) = self.graphiql.or(file.graphiql) {
            c.graphiql = v;
        }
        if let Some(v) = self.introspection.or(file.introspection) {
            c.introspection = v;
        }
        match (
            self.initial_admin_username.or(file.initial_admin_username),
            self.initial_admin_password.or(file.initial_admin_password),
        ) {
            (None, None) => {}
            (_, None) => {
                return Err(invalid(
                    "initial_admin_password",
                    "is required with initial_admin_username",
                ));
            }
            (name, Some(password)) => {
                let name = name.unwrap_or_else(|| "admin".into());
                crate::access::check_username(&name)
                    .map_err(|e| invalid("initial_admin_username", e.public_message()))?;
                crate::access::check_password(&password)
                    .map_err(|e| invalid("initial_admin_password", e.public_message()))?;
                c.initial_admin = Some((name, password));
            }
        }
        match (
            self.tls_cert.or(file.tls_cert),
            self.tls_key.or(file.tls_key),
        ) {
            (None, None) => {}
            (Some(_), None) => return Err(invalid("tls_key", "is required with tls_cert")),
            (None, Some(_)) => return Err(invalid("tls_cert", "is required with tls_key")),
            (Some(cert), Some(key)) => {
                c.tls = Some(
                    crate::infra::tls::LeaderTls::load(&cert, &key)
                        .map_err(|(k, why)| invalid(k, why))?,
                );
                // Over HTTPS the session cookie is Secure unless told otherwise.
                c.cookie_secure = true;
            }
        }
        if let Some(v) = self.cookie_secure.or(file.cookie_secure) {
            c.cookie_secure = v;
        }
        if let Some(s) = self.ws_init_timeout_secs.or(file.ws_init_timeout_secs) {
            if !(1..=300).contains(&s) {
                return Err(invalid("ws_init_timeout_secs", "must be between 1 and 300"));
            }
            c.ws_init_timeout = Duration::from_secs(s);
        }
        if let Some(n) = self.mqtt_max_connections.or(file.mqtt_max_connections) {
            // The leader's own bridge and local agent need slots too, and slots are taken before
            // a client logs in: a handful below this would let strangers lock the leader out.
            if !(16..=100_000).contains(&n) {
                return Err(invalid(
                    "mqtt_max_connections",
                    "must be between 16 and 100000",
                ));
            }
            c.mqtt_max_connections = n;
        }
        if let Some(s) = self.request_timeout_secs.or(file.request_timeout_secs) {
            if !(1..=3600).contains(&s) {
                return Err(invalid(
                    "request_timeout_secs",
                    "must be between 1 and 3600",
                ));
            }
            c.request_timeout = Duration::from_secs(s);
        }
        if let Some(origins) = self.cors_origins.or(file.cors_origins) {
            for o in &origins {
                let ok = (o.starts_with("http://") || o.starts_with("https://"))
                    && !o.ends_with('/')
                    && o.parse::<axum::http::HeaderValue>().is_ok();
                if !ok || o.contains('*') {
                    return Err(invalid(
                        "cors_origins",
                        format!(
                            "{o:?} is not an origin like https://lab.example.org (no wildcards, no path)"
                        ),
                    ));
                }
            }
            c.cors_origins = origins;
        }
        if let Some(macs) = self.auto_approve_macs.or(file.auto_approve_macs) {
            for m in &macs {
                let ok = m.len() == 17
                    && m.split(':').count() == 6
                    && m.split(':')
                        .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
                if !ok {
                    return Err(invalid(
                        "auto_approve_macs",
                        format!("{m:?} is not a MAC address like b8:27:eb:01:02:03"),
                    ));
                }
            }
            c.auto_approve_macs = macs.into_iter().map(|m| m.to_lowercase()).collect();
        }
        match (
            self.broker_username.or(file.broker_username),
            self.broker_password.or(file.broker_password),
        ) {
            (None, None) => {}
            (Some(u), Some(p)) => {
                if !matches!(c.broker, BrokerMode::External(_)) {
                    return Err(invalid(
                        "broker_username",
                        "only applies with broker_url (the embedded broker makes its own)",
                    ));
                }
                c.broker_login = Some((u, p));
            }
            (Some(_), None) => {
                return Err(invalid(
                    "broker_password",
                    "is required with broker_username",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "broker_username",
                    "is required with broker_password",
                ));
            }
        }
        if let Some(dir) = self.mosquitto_dir.or(file.mosquitto_dir) {
            if !matches!(c.broker, BrokerMode::External(_)) {
                return Err(invalid(
                    "mosquitto_dir",
                    "only applies with broker_url (a Mosquitto the leader manages)",
                ));
            }
            if c.broker_login.is_some() {
                return Err(invalid(
                    "mosquitto_dir",
                    "cannot be combined with broker_username: the leader makes its own account",
                ));
            }
            c.mosquitto_dir = Some(dir);
        }
        if let Some(dir) = self.docker_tls_dir.or(file.docker_tls_dir) {
            c.docker_tls_dir = dir;
        }
        if let Some(secs) = self.docker_timeout_secs.or(file.docker_timeout_secs) {
            if !(1..=600).contains(&secs) {
                return Err(invalid("docker_timeout_secs", "must be 1 to 600"));
            }
            c.docker_timeout = Duration::from_secs(secs);
        }
        if let Some(secs) = self
            .deploy_backoff_max_secs
            .or(file.deploy_backoff_max_secs)
        {
            if !(1..=86_400).contains(&secs) {
                return Err(invalid("deploy_backoff_max_secs", "must be 1 to 86400"));
            }
            c.deploy_backoff_max = Duration::from_secs(secs);
        }
        if let Some(path) = self.leader_docker.or(file.leader_docker) {
            if !path.is_absolute() {
                return Err(invalid(
                    "leader_docker",
                    "must be the absolute path of a unix socket",
                ));
            }
            c.leader_docker = path;
        }
        if let Some(n) = self.sideload_parallel.or(file.sideload_parallel) {
            if !(1..=16).contains(&n) {
                return Err(invalid("sideload_parallel", "must be 1 to 16"));
            }
            c.sideload_parallel = n;
        }
        if let Some(mib) = self.disk_margin_mib.or(file.disk_margin_mib) {
            if mib > 1 << 30 {
                return Err(invalid("disk_margin_mib", "must be 0 to 1073741824"));
            }
            c.disk_margin = mib << 20;
        }
        if let Some(mib) = self.upload_max_mib.or(file.upload_max_mib) {
            if !(1..=1 << 20).contains(&mib) {
                return Err(invalid("upload_max_mib", "must be 1 to 1048576"));
            }
            c.upload_max = mib << 20;
        }
        if let Some(secs) = self.prune_every_secs.or(file.prune_every_secs) {
            if secs > 30 * 24 * 3600 {
                return Err(invalid("prune_every_secs", "must be 0 to 2592000"));
            }
            c.prune_every = (secs > 0).then(|| Duration::from_secs(secs));
        }
        if let Some(mib) = self.bundle_max_mib.or(file.bundle_max_mib) {
            if !(1..=1 << 16).contains(&mib) {
                return Err(invalid("bundle_max_mib", "must be 1 to 65536"));
            }
            c.bundle_max = mib << 20;
        }
        for (key, value, slot) in [
            (
                "py3_base_image",
                self.py3_base_image.or(file.py3_base_image),
                &mut c.py3_base_image,
            ),
            (
                "nodered_base_image",
                self.nodered_base_image.or(file.nodered_base_image),
                &mut c.nodered_base_image,
            ),
        ] {
            if let Some(image) = value {
                crate::images::check_reference(&image).map_err(|e| invalid(key, e))?;
                *slot = image;
            }
        }
        let broker_ca = self.broker_ca.or(file.broker_ca);
        match &c.broker {
            // The same rules as an agent's.
            BrokerMode::External(b) => {
                c.broker_tls = trellis_agent::config::broker_tls(b, broker_ca.as_deref()).map_err(
                    |e| match e {
                        trellis_agent::config::ConfigError::Invalid { reason, .. } => {
                            invalid("broker_ca", reason)
                        }
                        other => invalid("broker_ca", other.to_string()),
                    },
                )?;
            }
            BrokerMode::Embedded(_) if broker_ca.is_some() => {
                return Err(invalid(
                    "broker_ca",
                    "only applies with an mqtts:// broker_url (a broker over TLS)",
                ));
            }
            BrokerMode::Embedded(_) => {}
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn resolve(list: &[&str]) -> Result<ServerConfig, ConfigError> {
        Cli::try_parse_from(std::iter::once("trellis").chain(list.iter().copied()))
            .unwrap()
            .args
            .resolve()
    }

    #[test]
    fn defaults_are_a_whole_leader_on_loopback() {
        let c = resolve(&[]).unwrap();
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            c.broker,
            BrokerMode::Embedded("127.0.0.1:1883".parse().unwrap())
        );
        assert_eq!(c.database_url, "sqlite://trellis-data/trellis.db");
        assert!(c.local_agent && c.graphiql);
    }

    #[test]
    fn file_then_flags_and_external_broker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trellis.toml");
        std::fs::write(&path, "http_listen = \"127.0.0.1:9000\"\nlocal_agent = false\nbroker_url = \"mqtt://127.0.0.1:1999\"\n").unwrap();
        let c = resolve(&[
            "--config",
            path.to_str().unwrap(),
            "--http-listen",
            "127.0.0.1:9001",
        ])
        .unwrap();
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:9001");
        assert!(!c.local_agent);
        assert_eq!(c.broker.client_addr().to_string(), "mqtt://127.0.0.1:1999");
        let c = resolve(&["--local-agent", "--data-dir", "/tmp/x"]).unwrap();
        assert!(c.local_agent);
        assert_eq!(c.database_url, "sqlite:///tmp/x/trellis.db");
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases: &[(&[&str], &str)] = &[
            (&["--http-listen", "8080"], "invalid http_listen"),
            (&["--database-url", "mysql://x"], "invalid database_url"),
            (&["--broker-url", "tcp:/x"], "invalid broker_url"),
            (
                &["--broker-url", "mqtt://a:1", "--mqtt-listen", "127.0.0.1:1"],
                "invalid broker_url",
            ),
            (&["--heartbeat-secs", "0"], "invalid heartbeat_secs"),
            (
                &["--local-agent-node-id", "a b"],
                "invalid local_agent_node_id",
            ),
            (&["--web-dir", "/nonexistent"], "invalid web_dir"),
            (
                &["--initial-admin-username", "root"],
                "invalid initial_admin_password",
            ),
            (
                &["--initial-admin-password", "short"],
                "invalid initial_admin_password",
            ),
            (&["--cors-origins", "*"], "invalid cors_origins"),
            (
                &["--cors-origins", "https://ok.example,https://x.example/"],
                "invalid cors_origins",
            ),
            (
                &["--ws-init-timeout-secs", "0"],
                "invalid ws_init_timeout_secs",
            ),
            (
                &["--auto-approve-macs", "b8:27:eb:01:02"],
                "invalid auto_approve_macs",
            ),
            (
                &["--broker-username", "u", "--broker-password", "p"],
                "invalid broker_username",
            ),
            (&["--tls-cert", "/nonexistent.pem"], "invalid tls_key"),
            (
                &["--tls-cert", "/nonexistent.pem", "--tls-key", "/k.pem"],
                "invalid tls_cert",
            ),
            (&["--broker-ca", "/ca.pem"], "invalid broker_ca"),
            (
                &[
                    "--broker-url",
                    "mqtts://x",
                    "--broker-ca",
                    "/nonexistent.pem",
                ],
                "invalid broker_ca",
            ),
        ];
        for (args, want) in cases {
            let e = resolve(args).unwrap_err().to_string();
            assert!(e.starts_with(want), "{args:?}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "http_lisen = \"x\"\n").unwrap();
        let e = resolve(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `http_lisen`"), "{e}");
    }
}
