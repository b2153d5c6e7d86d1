//! The Trellis leader: database, MQTT broker and bridge, GraphQL API, web app and (by default) a
//! local agent, in one process. `main.rs` parses configuration and calls [`run`]; tests build the
//! same router with [`app`] and the same schema with [`graphql::build_schema`].

pub mod audit;
pub mod auth;
pub mod bridge;
pub mod broker;
pub mod config;
pub mod db;
pub mod docker;
pub mod enroll;
pub mod error;
pub mod graphql;
pub mod http;
pub mod mosquitto;
pub mod mqtt_gate;
pub mod net;
pub mod nodes;
pub mod tls;

use std::{sync::Arc, time::Duration};

use axum::Router;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

pub use config::{BrokerMode, ServerConfig};
pub use graphql::build_schema;

/// State shared by every handler and resolver. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Effective configuration.
    pub config: Arc<ServerConfig>,
    /// The node service.
    pub nodes: nodes::Nodes,
    /// Users, sessions and tokens.
    pub auth: auth::Auth,
    /// The audit log.
    pub audit: audit::Audit,
    /// The MQTT bridge.
    pub bridge: bridge::Bridge,
    /// Join tokens, pending nodes and node credentials.
    pub enroll: enroll::Enroll,
    /// Live MQTT connections of nodes (through the gate), to cut off removed nodes.
    pub mqtt_connections: mqtt_gate::Connections,
    /// Nodes' Docker engines.
    pub docker: docker::DockerAccess,
}

/// How the server takes part in MQTT: its login, the gate's live connections and where join
/// requests that arrive on the bridge go.
pub struct MqttSide {
    /// Where the server's own client connects (over TLS for `mqtts://`).
    pub broker: trellis_proto::BrokerAddr,
    /// Which broker certificates the server's client trusts, for a broker over TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The server's own broker login, if the broker wants one.
    pub login: Option<(String, String)>,
    /// Live connections of nodes through the gate (empty behind an external broker).
    pub connections: mqtt_gate::Connections,
    /// Where the bridge hands join requests (behind a managed Mosquitto); `None` ignores them.
    pub enroll_requests: Option<tokio::sync::mpsc::Sender<enroll::JoinRequest>>,
}

impl AppState {
    /// Builds the state and starts the MQTT bridge against the configured broker.
    pub fn start(
        config: ServerConfig,
        db: DatabaseConnection,
        shutdown: CancellationToken,
        mqtt: MqttSide,
        enroll: enroll::Enroll,
        docker_tls: docker::DockerTls,
    ) -> Self {
        let nodes = nodes::Nodes::new(db.clone());
        let bridge = bridge::Bridge::start(
            &mqtt.broker,
            mqtt.tls,
            mqtt.login,
            nodes.clone(),
            mqtt.enroll_requests,
            shutdown,
        );
        let auth = auth::Auth::new(db.clone());
        let audit = audit::Audit::new(db);
        let docker = docker::DockerAccess::new(docker_tls, config.local_node_id());
        AppState {
            config: Arc::new(config),
            nodes,
            auth,
            audit,
            bridge,
            enroll,
            mqtt_connections: mqtt.connections,
            docker,
        }
    }

    /// Approves a pending node: issues its credentials and sends them to its agent.
    /// The request stays pending until the broker has taken the credentials, so a failure can be
    /// retried; the join token must still be valid.
    pub async fn approve_node(&self, node_id: &str) -> error::ApiResult<()> {
        let request = self.enroll.pending_request(node_id).await?;
        let password = self.enroll.issue_credential(node_id).await?;
        if let Err(e) = self
            .bridge
            .send_enroll_response(node_id, &request.nonce, &password)
            .await
        {
            let _ = self.enroll.revoke_credential(node_id).await?;
            return Err(error::ApiError::Unavailable(format!(
                "the credentials could not be sent, try again: {e}"
            )));
        }
        self.enroll.forget_request(node_id).await
    }

    /// Records an agent's request to join, and approves it at once when its MAC is listed.
    async fn enroll_request(
        &self,
        announce: trellis_proto::Announce,
        proof: enroll::JoinProof,
        nonce: String,
    ) {
        let node_id = announce.node_id.clone();
        let actor = format!("node:{node_id}");
        let join_token_id = match proof {
            enroll::JoinProof::TokenId(id) => id,
            enroll::JoinProof::Token(token) => match self.enroll.valid_join_token(&token).await {
                Ok(Some(t)) => t.id,
                Ok(None) => {
                    tracing::warn!(
                        node_id,
                        "enroll request with a wrong, revoked or expired join token refused"
                    );
                    self.audit
                        .record(
                            &actor,
                            "requestToJoin",
                            Some(&node_id),
                            "UNAUTHENTICATED",
                            Some("wrong, revoked or expired join token".into()),
                        )
                        .await;
                    return;
                }
                Err(e) => {
                    tracing::error!(
                        node_id,
                        error = e.log_message(),
                        "could not check a join token"
                    );
                    return;
                }
            },
        };
        match self.enroll.request(&announce, &join_token_id, &nonce).await {
            Ok(auto) => {
                self.audit
                    .record(
                        &actor,
                        "requestToJoin",
                        Some(&node_id),
                        "ok",
                        announce.mac.clone(),
                    )
                    .await;
                self.nodes.notify(nodes::NodeEventKind::Pending, &node_id);
                if auto {
                    let outcome = match self.approve_node(&node_id).await {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => e.code().to_owned(),
                    };
                    self.audit
                        .record(
                            "system",
                            "approveNode",
                            Some(&node_id),
                            &outcome,
                            Some("MAC on the auto-approve list".into()),
                        )
                        .await;
                }
            }
            Err(e @ error::ApiError::Forbidden(_)) => {
                tracing::warn!(node_id, reason = e.log_message(), "enroll request refused");
                self.audit
                    .record(
                        &actor,
                        "requestToJoin",
                        Some(&node_id),
                        e.code(),
                        Some(e.public_message()),
                    )
                    .await;
            }
            Err(e) => tracing::error!(
                node_id,
                error = e.log_message(),
                "could not record an enroll request"
            ),
        }
    }
}

/// The HTTP application for `state`.
pub fn app(state: AppState) -> Router {
    let schema = build_schema(Some(state.clone()));
    http::router(state, schema)
}

/// The Docker socket of the leader's own machine.
pub const LOCAL_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Runs a whole leader until `shutdown` is cancelled.
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    // One TLS provider for the whole process (Docker over TLS); a second call finds it installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = db::connect(&config.database_url).await?;
    let docker_tls = docker::DockerTls::ensure(&config.docker_tls_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot use docker_tls_dir {}: {e}",
            config.docker_tls_dir.display()
        )
    })?;
    let leader_tls = config.tls.clone();
    if let Some(t) = &leader_tls {
        t.log_summary();
    }
    // What the leader's own clients (bridge, local agent) connect to, and which certificates
    // they trust: exactly the leader's own for its TLS gate, else the broker's CA.
    let mut client_broker = config.broker.client_addr();
    let client_tls = match (&config.broker, &leader_tls) {
        (BrokerMode::Embedded(_), Some(t)) => {
            client_broker.tls = true;
            Some(t.client_config()?)
        }
        (BrokerMode::Embedded(_), None) => None,
        (BrokerMode::External(_), _) => config.broker_tls.clone(),
    };
    warn_if_clear_text(&config);
    bootstrap_admin(&config, &db).await?;
    tracing::info!(
        database = db::redact(&config.database_url),
        "database ready"
    );
    // The embedded broker sits behind the MQTT gate, which checks every client's credentials and
    // topics; an external broker does its own checking (see README).
    let mqtt_connections = mqtt_gate::Connections::default();
    let mut enroll = enroll::Enroll::new(db.clone(), config.auto_approve_macs.clone());
    // Enroll requests reach the leader through the gate (embedded broker) or, behind a managed
    // Mosquitto, through the bridge's subscription.
    let mut bridge_enroll_tx = None;
    let (mqtt_login, enroll_rx) = match config.broker {
        BrokerMode::Embedded(listen) => {
            let (internal, broker_login) = broker::start_embedded_checked().await?;
            let gate_listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
                anyhow::anyhow!("cannot listen for MQTT on {listen} (mqtt_listen): {e}")
            })?;
            let server_password = auth::new_token("trellis_m_");
            let (enroll_tx, enroll_rx) = tokio::sync::mpsc::channel(64);
            let gate = mqtt_gate::Gate {
                auth: mqtt_gate::GateAuth {
                    server_password: server_password.clone(),
                    enroll: enroll.clone(),
                },
                broker: internal,
                broker_login,
                connections: mqtt_connections.clone(),
                enroll_requests: enroll_tx,
                slots: Arc::new(tokio::sync::Semaphore::new(mqtt_gate::MAX_CONNECTIONS)),
                tls: leader_tls.as_ref().map(|t| t.acceptor.clone()),
            };
            tokio::spawn(gate.serve(gate_listener, shutdown.clone()));
            (
                Some((mqtt_gate::SERVER_USERNAME.to_owned(), server_password)),
                Some(enroll_rx),
            )
        }
        BrokerMode::External(_) => match &config.mosquitto_dir {
            // A Mosquitto whose accounts Trellis writes: the server makes its own account.
            Some(dir) => {
                let server_password = auth::new_token("trellis_m_");
                let managed = mosquitto::Mosquitto::new(dir.clone()).map_err(|e| {
                    anyhow::anyhow!("cannot use mosquitto_dir {}: {e}", dir.display())
                })?;
                enroll
                    .manage_mosquitto(managed, mqtt_gate::SERVER_USERNAME, &server_password)
                    .await
                    .map_err(|e| anyhow::anyhow!(e.log_message()))?;
                let (enroll_tx, enroll_rx) = tokio::sync::mpsc::channel(64);
                bridge_enroll_tx = Some(enroll_tx);
                (
                    Some((mqtt_gate::SERVER_USERNAME.to_owned(), server_password)),
                    Some(enroll_rx),
                )
            }
            None => (config.broker_login.clone(), None),
        },
    };
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen for HTTP on {} (http_listen): {e}",
                config.http_listen
            )
        })?;
    let http_addr = listener.local_addr()?;

    let agent = if config.local_agent {
        // The leader's own node is enrolled automatically: it gets fresh credentials each start.
        let node_id = config.local_node_id().unwrap_or_default();
        let credentials = match config.broker {
            BrokerMode::Embedded(_) => {
                let password = enroll
                    .issue_credential(&node_id)
                    .await
                    .map_err(|e| anyhow::anyhow!(e.log_message()))?;
                Some((node_id.clone(), password))
            }
            BrokerMode::External(_) if config.mosquitto_dir.is_some() => {
                let password = enroll
                    .issue_credential(&node_id)
                    .await
                    .map_err(|e| anyhow::anyhow!(e.log_message()))?;
                Some((node_id.clone(), password))
            }
            BrokerMode::External(_) => config.broker_login.clone(),
        };
        // The leader's own Docker engine, when it has one, is reached through its socket.
        let docker_endpoint = std::path::Path::new(LOCAL_DOCKER_SOCKET)
            .exists()
            .then(|| trellis_proto::DockerEndpoint::Unix(LOCAL_DOCKER_SOCKET.to_owned()));
        let agent_config = trellis_agent::AgentConfig {
            broker: client_broker.clone(),
            broker_tls: client_tls.clone(),
            docker_endpoint,
            node_id: Some(node_id),
            credentials,
            heartbeat_interval: config.heartbeat_interval,
            max_backoff: Duration::from_secs(5),
            ..trellis_agent::AgentConfig::default()
        };
        let token = shutdown.child_token();
        Some(tokio::spawn(async move {
            if let Err(e) = trellis_agent::run(agent_config, token).await {
                tracing::error!(error = %e, "local agent stopped");
            }
        }))
    } else {
        None
    };

    let web = if config.web_dir.is_some() {
        ""
    } else {
        " (web app not built: see README)"
    };
    let scheme = if leader_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let graphiql = if config.graphiql {
        format!(", GraphiQL at {scheme}://{http_addr}/graphiql")
    } else {
        String::new()
    };
    let broker = match &config.broker {
        BrokerMode::Embedded(a) if leader_tls.is_some() => {
            format!("embedded MQTT broker (TLS) on {a}")
        }
        BrokerMode::Embedded(a) => format!("embedded MQTT broker on {a}"),
        BrokerMode::External(b) => format!("external MQTT broker {b}"),
    };
    // A client gets as long to send a request's headers as a request may take.
    let request_timeout = config.request_timeout;
    let state = AppState::start(
        config,
        db,
        shutdown.clone(),
        MqttSide {
            broker: client_broker,
            tls: client_tls,
            login: mqtt_login,
            connections: mqtt_connections,
            enroll_requests: bridge_enroll_tx,
        },
        enroll,
        docker_tls,
    );
    if let Some(mut rx) = enroll_rx {
        let state = state.clone();
        tokio::spawn(async move {
            while let Some((announce, token_id, nonce)) = rx.recv().await {
                state.enroll_request(announce, token_id, nonce).await;
            }
        });
    }
    tracing::info!(
        "Trellis leader listening: web app at {scheme}://{http_addr}/{web}{graphiql}, {broker}"
    );

    net::serve_http(
        listener,
        leader_tls.map(|t| t.acceptor),
        app(state),
        request_timeout,
        shutdown.clone(),
    )
    .await;
    if let Some(agent) = agent {
        // Let the local agent publish `offline` before the embedded broker goes with the process.
        let _ = tokio::time::timeout(Duration::from_secs(5), agent).await;
    }
    Ok(())
}

/// Says so in the log when a listener that other machines can reach speaks without TLS:
/// credentials are still required there, but they cross the network in clear text.
fn warn_if_clear_text(config: &ServerConfig) {
    let mut open = Vec::new();
    if config.tls.is_none() && !config.http_listen.ip().is_loopback() {
        open.push(format!("HTTP on {}", config.http_listen));
    }
    if let BrokerMode::Embedded(a) = config.broker
        && config.tls.is_none()
        && !a.ip().is_loopback()
    {
        open.push(format!("MQTT on {a}"));
    }
    if !open.is_empty() {
        tracing::warn!(
            "{} without TLS: passwords and tokens cross the network in clear text; \
             give the leader a certificate with --tls-cert and --tls-key (see `trellis tls-cert`)",
            open.join(" and ")
        );
    }
    if let BrokerMode::External(b) = &config.broker {
        let local = b
            .host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(b.host == "localhost");
        if !b.tls && !local {
            tracing::warn!(
                broker = %b,
                "the external broker is plain MQTT on another host: the leader's and nodes' \
                 broker passwords cross the network in clear text; use mqtts:// (and --broker-ca)"
            );
        }
    }
}

/// Creates the configured initial admin when no user exists yet, and says how to get started
/// when there is neither a user nor an initial admin.
async fn bootstrap_admin(config: &ServerConfig, db: &DatabaseConnection) -> anyhow::Result<()> {
    let auth = auth::Auth::new(db.clone());
    let needs_setup = auth
        .needs_setup()
        .await
        .map_err(|e| anyhow::anyhow!(e.log_message()))?;
    match (&config.initial_admin, needs_setup) {
        (Some((name, password)), true) => {
            auth.create_user(name, password, auth::Role::Admin)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("cannot create the initial admin: {}", e.log_message())
                })?;
            audit::Audit::new(db.clone())
                .record(
                    "system",
                    "createUser",
                    Some(name),
                    "ok",
                    Some("initial admin from configuration".into()),
                )
                .await;
            tracing::info!(
                username = name,
                "created the initial admin from configuration"
            );
        }
        (None, true) => tracing::info!("no users yet: open the web app to create the first admin"),
        _ => {}
    }
    Ok(())
}
