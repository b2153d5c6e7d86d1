//! The Trellis leader: database, MQTT broker and bridge, GraphQL API, web app and (by default) a
//! local agent, in one process. `main.rs` parses configuration and calls [`startup::run`]; tests
//! build the same router with [`app`] and the same schema with [`graphql::build_schema`].
//!
//! One folder per domain (`access`, `nodes`, `enroll`, `jobs`, `telemetry`, `experiments`,
//! `deployments`), each owning its tables, rules and events;
//! `mqtt`, `http` and `graphql` only carry requests into them; `infra` holds what every domain
//! uses. `docs/architecture.md` draws the whole picture.

pub mod access;
pub mod config;
pub mod deployments;
pub mod enroll;
pub mod error;
pub mod experiments;
pub mod graphql;
pub mod http;
pub mod images;
pub mod infra;
pub mod jobs;
pub mod mqtt;
pub mod nodes;
pub mod startup;
pub mod state;
pub mod telemetry;

use axum::Router;

pub use config::{BrokerMode, ServerConfig};
pub use graphql::build_schema;
pub use startup::run;
pub use state::{AppState, MqttSide};

/// The HTTP application for `state`.
pub fn app(state: AppState) -> Router {
    let schema = build_schema(Some(state.clone()));
    http::router(state, schema)
}
