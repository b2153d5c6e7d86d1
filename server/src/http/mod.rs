//! The HTTP surface: `/graphql` (POST, GET, and the websocket upgrade for subscriptions with both
//! graphql-transport-ws and the older graphql-ws), GraphiQL with its assets served by the leader
//! itself (a leader often has no internet, and the stock page loads them from a CDN), `/healthz`,
//! `/readyz`, streamed CSV exports under `/export/`, and the web app with client-side routes falling back to `index.html`.

mod caller;
pub mod export;
mod graphiql;
mod graphql;
mod health;
mod router;
mod spa;
mod upload;
mod ws;
mod ws_protocol;

use crate::{AppState, graphql::TrellisSchema};

pub use router::router;

/// Largest request body accepted, bytes. async-graphql-axum reads the body as a stream, so axum's
/// own default limit does not apply (axum-core `DefaultBodyLimit` docs): this layer enforces it.
pub const MAX_BODY: usize = 1024 * 1024;

/// State shared by the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    /// The application state.
    pub app: AppState,
    /// The executable GraphQL schema.
    pub schema: TrellisSchema,
}
