//! The GraphQL client of the web app. Operations live in `src/operations/<domain>.graphql` and
//! are typed by `graphql_client` against the committed `schema.graphql`, so a schema change that
//! breaks the web app fails its build; this module has one submodule per domain with the typed
//! operations and the shared types pages use. Queries and mutations go over `fetch` ([`run`]);
//! subscriptions share the tab's one websocket ([`ws`]).
//!
//! Shared types: each schema enum is generated once, by the operation named in its module, and
//! every other operation takes it with `extern_enums`, so `Role` or `NodeState` is one Rust type
//! across the app (the generated modules see it through their `use super::*`).

pub mod access;
pub mod audit;
pub mod auth;
pub mod enroll;
pub mod jobs;
pub mod nodes;
pub mod ws;

use std::pin::Pin;

use graphql_client::{GraphQLQuery, Response};
use serde::{Serialize, de::DeserializeOwned};

pub use auth::Role;
pub use nodes::{DockerTransport, Node, NodeEventKind, NodeState};

/// RFC 3339 timestamps from the server (the schema's `DateTime` scalar).
pub type DateTime = String;
/// Any JSON value (the schema's `JSON` scalar: job settings, setting defaults). The generated
/// code names the scalar as the schema spells it, hence the upper-case alias.
#[allow(clippy::upper_case_acronyms)]
pub type JSON = serde_json::Value;

/// Declares one typed operation of `$file` (a path under the crate, as `graphql_client` wants it).
/// Responses derive `Clone, PartialEq` unless told otherwise: no `Debug`, which would only add
/// formatting code to the wasm.
macro_rules! operation {
    ($(#[$doc:meta])* $name:ident, $file:tt $(, extern_enums($($enum:tt),+))?) => {
        operation!($(#[$doc])* $name, $file $(, extern_enums($($enum),+))?, derives "Clone, PartialEq");
    };
    ($(#[$doc:meta])* $name:ident, $file:tt $(, extern_enums($($enum:tt),+))?, derives $derives:tt) => {
        $(#[$doc])*
        #[derive(graphql_client::GraphQLQuery)]
        #[graphql(
            schema_path = "../schema.graphql",
            query_path = $file,
            response_derives = $derives
            $(, extern_enums($($enum),+))?
        )]
        pub struct $name;
    };
}
use operation;

/// The page's own origin (`http://host:port`): the leader that served the app.
fn origin() -> String {
    web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default()
}

/// Converts between two generated copies of one fragment (each operation gets its own copy of
/// the structs), which share one JSON shape. Used where a subscription's event carries the same
/// fragment as the list it updates.
fn same_shape<A: Serialize, B: DeserializeOwned>(a: &A) -> Option<B> {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

/// Runs a query or mutation; the error is the text to show the user. Only the (de)serialising
/// is generic: the request itself is [`post`], one copy in the wasm for every operation.
pub async fn run<Q: GraphQLQuery>(variables: Q::Variables) -> Result<Q::ResponseData, String>
where
    Q::Variables: Serialize,
    Q::ResponseData: DeserializeOwned,
{
    let body = serde_json::to_string(&Q::build_query(variables)).map_err(|e| e.to_string())?;
    let text = post(body).await?;
    let parsed: Response<Q::ResponseData> =
        serde_json::from_str(&text).map_err(|e| format!("bad response: {e}"))?;
    if let Some(errors) = parsed.errors.filter(|e| !e.is_empty()) {
        return Err(errors
            .into_iter()
            .map(|e| e.message)
            .collect::<Vec<_>>()
            .join("; "));
    }
    parsed.data.ok_or_else(|| "empty response".to_owned())
}

/// Sends one GraphQL request body to the leader and returns the answer's text. Boxed, so every
/// operation's [`run`] shares this code instead of carrying the request's state machine inline.
fn post(body: String) -> Pin<Box<dyn Future<Output = Result<String, String>>>> {
    Box::pin(async move {
        let resp = gloo_net::http::Request::post(&format!("{}/graphql", origin()))
            .header("content-type", "application/json")
            .body(body)
            .map_err(|e| e.to_string())?
            .send()
            .await
            .map_err(|e| format!("cannot reach the leader: {e}"))?;
        resp.text().await.map_err(|e| format!("bad response: {e}"))
    })
}

/// Reloads the page at `path`: after logging in or out the app starts afresh with the new cookie.
pub fn reload_at(path: &str) {
    if let Some(w) = web_sys::window() {
        let _ = w.location().assign(path);
    }
}
