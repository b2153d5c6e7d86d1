//! The GraphQL client of the web app. Operations live in `operations.graphql` and are typed by
//! `graphql_client` against the committed `schema.graphql`, so a schema change that breaks the web
//! app fails its build. Queries and mutations go over `fetch`; subscriptions over a websocket
//! speaking graphql-transport-ws.

use futures::{SinkExt, StreamExt, channel::mpsc};
use gloo_net::websocket::{Message, futures::WebSocket};
use graphql_client::{GraphQLQuery, Response};
use serde::{Serialize, de::DeserializeOwned};

/// RFC 3339 timestamps from the server.
pub type DateTime = String;

/// Every node.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct Nodes;

/// Node change events.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct NodeEvents;

/// Rename a node.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct RenameNode;

/// Remove a node.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct RemoveNode;

/// Ask a node's Docker engine what it is.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct DockerEngine;

/// Allow plain TCP to a node's Docker engine, or require TLS again (admins).
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct SetNodeDockerInsecure;

/// Ping a node through its agent.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct PingNode;

/// The first-start status and the caller.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct Session;

/// Create the first admin.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct Setup;

/// Log in.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct Login;

/// Log out.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct Logout;

/// The newest audit events.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct AuditLog;

/// Live audit events.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct AuditEvents;

/// `Pending` (see operations.graphql).
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct Pending;

/// `ApproveNode` (see operations.graphql).
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct ApproveNode;

/// `RejectNode` (see operations.graphql).
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct RejectNode;

/// `CreateJoinToken` (see operations.graphql).
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct CreateJoinToken;

/// `Access` (see operations.graphql).
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct Access;

/// `Users` (see operations.graphql).
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct Users;

/// `CreateApiToken` (see operations.graphql).
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct CreateApiToken;

/// `RevokeApiToken` (see operations.graphql).
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct RevokeApiToken;

/// `CreateUser` (see operations.graphql).
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct CreateUser;

/// `DeleteUser` (see operations.graphql).
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "src/operations.graphql",
    response_derives = "Debug, Clone, PartialEq, Serialize"
)]
pub struct DeleteUser;

/// The node fields every page shows.
pub type Node = nodes::NodeFields;
/// A node's state.
pub type NodeState = nodes::NodeState;

fn origin() -> String {
    web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default()
}

/// Runs a query or mutation; the error is the text to show the user.
pub async fn run<Q: GraphQLQuery>(variables: Q::Variables) -> Result<Q::ResponseData, String>
where
    Q::Variables: Serialize,
    Q::ResponseData: DeserializeOwned,
{
    let body = Q::build_query(variables);
    let resp = gloo_net::http::Request::post(&format!("{}/graphql", origin()))
        .json(&body)
        .map_err(|e| e.to_string())?
        .send()
        .await
        .map_err(|e| format!("cannot reach the leader: {e}"))?;
    let parsed: Response<Q::ResponseData> = resp
        .json()
        .await
        .map_err(|e| format!("bad response: {e}"))?;
    if let Some(errors) = parsed.errors.filter(|e| !e.is_empty()) {
        return Err(errors
            .into_iter()
            .map(|e| e.message)
            .collect::<Vec<_>>()
            .join("; "));
    }
    parsed.data.ok_or_else(|| "empty response".to_owned())
}

/// What a subscription task reports.
pub enum Feed<T> {
    /// The socket is acknowledged: reload what the page shows, then apply events.
    Connected,
    /// An event.
    Event(Box<T>),
    /// The socket closed; it will be reopened.
    Disconnected,
}

/// Opens a subscription and forwards what happens; reconnects every 2 s after a loss. The
/// session cookie authenticates the socket (same origin).
pub fn subscribe<Q: GraphQLQuery + 'static>(
    variables: Q::Variables,
) -> mpsc::UnboundedReceiver<Feed<Q::ResponseData>>
where
    Q::Variables: Serialize + 'static,
    Q::ResponseData: DeserializeOwned + 'static,
{
    let (tx, rx) = mpsc::unbounded();
    let payload = serde_json::to_value(Q::build_query(variables)).unwrap_or_default();
    leptos::task::spawn_local(async move {
        loop {
            if let Err(e) = one_session::<Q::ResponseData>(&tx, &payload).await {
                leptos::logging::warn!("subscription ended: {e}");
            }
            if tx.unbounded_send(Feed::Disconnected).is_err() {
                return;
            }
            gloo_timers::future::TimeoutFuture::new(2_000).await;
        }
    });
    rx
}

async fn one_session<T: DeserializeOwned>(
    tx: &mpsc::UnboundedSender<Feed<T>>,
    query: &serde_json::Value,
) -> Result<(), String> {
    let url = origin().replacen("http", "ws", 1) + "/graphql";
    let ws =
        WebSocket::open_with_protocol(&url, "graphql-transport-ws").map_err(|e| e.to_string())?;
    let (mut sink, mut stream) = ws.split();
    let send = |v: serde_json::Value| Message::Text(v.to_string());
    sink.send(send(
        serde_json::json!({"type": "connection_init", "payload": {}}),
    ))
    .await
    .map_err(|e| e.to_string())?;
    while let Some(msg) = stream.next().await {
        let text = match msg.map_err(|e| e.to_string())? {
            Message::Text(t) => t,
            Message::Bytes(_) => continue,
        };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        match v["type"].as_str() {
            Some("connection_ack") => {
                sink.send(send(
                    serde_json::json!({"id": "1", "type": "subscribe", "payload": query}),
                ))
                .await
                .map_err(|e| e.to_string())?;
                let _ = tx.unbounded_send(Feed::Connected);
            }
            Some("ping") => {
                sink.send(send(serde_json::json!({"type": "pong"})))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Some("next") => {
                let data: Response<T> =
                    serde_json::from_value(v["payload"].clone()).map_err(|e| e.to_string())?;
                if let Some(d) = data.data
                    && tx.unbounded_send(Feed::Event(Box::new(d))).is_err()
                {
                    return Ok(());
                }
            }
            Some("error") | Some("complete") => {
                return Err(format!("server ended the subscription: {text}"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Reloads the page at `path`: after logging in or out the app starts afresh with the new cookie.
pub fn reload_at(path: &str) {
    if let Some(w) = web_sys::window() {
        let _ = w.location().assign(path);
    }
}
