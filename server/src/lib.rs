//! The Trellis leader: database, MQTT broker and bridge, GraphQL API, web app and (by default) a
//! local agent, in one process. `main.rs` parses configuration and calls [`run`]; tests build the
//! same router with [`app`] and the same schema with [`graphql::build_schema`].

pub mod audit;
pub mod auth;
pub mod bridge;
pub mod broker;
pub mod config;
pub mod db;
pub mod error;
pub mod graphql;
pub mod http;
pub mod nodes;

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
}

impl AppState {
    /// Builds the state and starts the MQTT bridge against the configured broker.
    pub fn start(
        config: ServerConfig,
        db: DatabaseConnection,
        shutdown: CancellationToken,
    ) -> Self {
        let nodes = nodes::Nodes::new(db.clone());
        let bridge = bridge::Bridge::start(&config.broker.client_addr(), nodes.clone(), shutdown);
        let auth = auth::Auth::new(db.clone());
        let audit = audit::Audit::new(db);
        AppState {
            config: Arc::new(config),
            nodes,
            auth,
            audit,
            bridge,
        }
    }
}

/// The HTTP application for `state`.
pub fn app(state: AppState) -> Router {
    let schema = build_schema(Some(state.clone()));
    http::router(state, schema)
}

/// Runs a whole leader until `shutdown` is cancelled.
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let db = db::connect(&config.database_url).await?;
    bootstrap_admin(&config, &db).await?;
    tracing::info!(
        database = db::redact(&config.database_url),
        "database ready"
    );
    if let BrokerMode::Embedded(listen) = config.broker {
        broker::start_embedded(listen)?;
    }
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
        let agent_config = trellis_agent::AgentConfig {
            broker: config.broker.client_addr(),
            node_id: config.local_agent_node_id.clone(),
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
    let graphiql = if config.graphiql {
        format!(", GraphiQL at http://{http_addr}/graphiql")
    } else {
        String::new()
    };
    let broker = match &config.broker {
        BrokerMode::Embedded(a) => format!("embedded MQTT broker on {a}"),
        BrokerMode::External(b) => format!("external MQTT broker {b}"),
    };
    let state = AppState::start(config, db, shutdown.clone());
    tracing::info!(
        "Trellis leader listening: web app at http://{http_addr}/{web}{graphiql}, {broker}"
    );

    let service = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await?;
    if let Some(agent) = agent {
        // Let the local agent publish `offline` before the embedded broker goes with the process.
        let _ = tokio::time::timeout(Duration::from_secs(5), agent).await;
    }
    Ok(())
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
