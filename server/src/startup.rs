//! Wiring: opens the database, starts the broker (or connects to an external one) with its gate,
//! the bridge and the local agent, then serves HTTP until shutdown.

use std::{sync::Arc, time::Duration};

use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::{
    BrokerMode, ServerConfig, access, app, enroll,
    infra::{db, net},
    mqtt::{broker, gate as mqtt_gate, mosquitto},
    nodes::docker,
    state::{AppState, MqttSide},
};

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
    let backlog = crate::telemetry::Backlog::default();
    let mut enroll = enroll::Enroll::new(db.clone(), config.auto_approve_macs.clone());
    // Enroll requests reach the leader through the gate (embedded broker) or, behind a managed
    // Mosquitto, through the bridge's subscription.
    let mut bridge_enroll_tx = None;
    let (mqtt_login, enroll_rx) = match config.broker {
        BrokerMode::Embedded(listen) => {
            let (internal, broker_login) =
                broker::start_embedded_checked(config.mqtt_max_connections).await?;
            let gate_listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
                anyhow::anyhow!("cannot listen for MQTT on {listen} (mqtt_listen): {e}")
            })?;
            let server_password = access::new_token("trellis_m_");
            let (enroll_tx, enroll_rx) = tokio::sync::mpsc::channel(enroll::JOIN_QUEUE);
            let gate = mqtt_gate::Gate {
                auth: mqtt_gate::GateAuth {
                    server_password: server_password.clone(),
                    enroll: enroll.clone(),
                },
                broker: internal,
                broker_login,
                connections: mqtt_connections.clone(),
                enroll_requests: enroll_tx,
                slots: Arc::new(tokio::sync::Semaphore::new(config.mqtt_max_connections)),
                tls: leader_tls.as_ref().map(|t| t.acceptor.clone()),
                backlog: backlog.clone(),
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
                let server_password = access::new_token("trellis_m_");
                let managed = mosquitto::Mosquitto::new(dir.clone()).map_err(|e| {
                    anyhow::anyhow!("cannot use mosquitto_dir {}: {e}", dir.display())
                })?;
                enroll
                    .manage_mosquitto(managed, mqtt_gate::SERVER_USERNAME, &server_password)
                    .await
                    .map_err(|e| anyhow::anyhow!(e.log_message()))?;
                let (enroll_tx, enroll_rx) = tokio::sync::mpsc::channel(enroll::JOIN_QUEUE);
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
            // The local node's jobs are kept with the leader's data, so they start again with it.
            state_dir: Some(config.data_dir.join("local-agent")),
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
    // Transfers begun before this instant are the last run's.
    let started_ms = chrono::Utc::now().timestamp_millis();
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
            backlog,
        },
        enroll,
        docker_tls,
    );
    // Before any request: transfers and builds a stopped leader left under way are marked
    // failed, half-written uploads removed.
    match state.images.recover(started_ms).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            transfers = n,
            "image transfers cut by the last stop marked failed"
        ),
        Err(e) => tracing::warn!(
            error = e.log_message(),
            "cannot mark the transfers cut by the last stop"
        ),
    }
    if let Err(e) = state.apps.recover().await {
        tracing::warn!(
            error = e.log_message(),
            "cannot mark the builds cut by the last stop"
        );
    }
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
    let auth = access::Auth::new(db.clone());
    let needs_setup = auth
        .needs_setup()
        .await
        .map_err(|e| anyhow::anyhow!(e.log_message()))?;
    match (&config.initial_admin, needs_setup) {
        (Some((name, password)), true) => {
            auth.create_user(name, password, access::Role::Admin)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("cannot create the initial admin: {}", e.log_message())
                })?;
            access::audit::Audit::new(db.clone())
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
