//! The GraphQL client of the web app. Operations live in `src/operations/<domain>.graphql` and
//! are typed by `graphql_client` against the committed `schema.graphql`, so a schema change that
//! breaks the web app fails its build; this module has one submodule per domain with the typed
//! operations and the shared types pages use. Queries and mutations go over `fetch` ([`run`]);
//! subscriptions share the tab's one websocket ([`ws`]). Answers are decoded from a [`Value`]
//! ([`decode`]), one deserialiser per answer type.
//!
//! Shared types: each schema enum is generated once, by the operation named in its module, and
//! every other operation takes it with `extern_enums`, so `Role` or `NodeState` is one Rust type
//! across the app (the generated modules see it through their `use super::*`).

pub mod access;
pub mod apps;
pub mod audit;
pub mod auth;
pub mod deployments;
pub mod enroll;
pub mod experiments;
pub mod images;
pub mod jobs;
pub mod nodes;
pub mod profiles;
pub mod storage;
pub mod ws;

use std::pin::Pin;

use graphql_client::GraphQLQuery;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

pub use auth::Role;
pub use nodes::{DockerTransport, Node, NodeEventKind, NodeState};

/// RFC 3339 timestamps from the server (the schema's `DateTime` scalar).
pub type DateTime = String;
/// Any JSON value (the schema's `JSON` scalar: job settings, setting defaults). The generated
/// code names the scalar as the schema spells it, hence the upper-case alias.
#[allow(clippy::upper_case_acronyms)]
pub type JSON = Value;

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

/// The request body of `Q` with these variables, as JSON (what [`request`] and the socket's
/// `subscribe` send). Only the variables' serialising is generic; everything else about a
/// request is one copy in the wasm for every operation.
pub fn body<Q: GraphQLQuery>(variables: Q::Variables) -> Value
where
    Q::Variables: Serialize,
{
    let q = Q::build_query(variables);
    let mut body = Map::new();
    body.insert("query".into(), q.query.into());
    body.insert("operationName".into(), q.operation_name.into());
    body.insert(
        "variables".into(),
        serde_json::to_value(&q.variables).unwrap_or(Value::Null),
    );
    Value::Object(body)
}

/// An answer's `data` as the operation's typed answer. Every decode goes through a
/// [`Value`], so each answer type is deserialised by one deserialiser (serde_json's text
/// deserialiser, inlined per type, costs the wasm several times more).
pub fn decode<T: DeserializeOwned>(data: Value) -> Result<T, String> {
    serde_json::from_value(data).map_err(|e| format!("bad response: {e}"))
}

/// An answer's `errors` as one line for the user (`None` when there are none): the messages,
/// joined with "; ". Read from the JSON as it came, so no typed error struct is decoded.
pub fn errors(answer: &Value) -> Option<String> {
    let messages = answer["errors"]
        .as_array()?
        .iter()
        .map(|e| e["message"].as_str().unwrap_or("error"))
        .collect::<Vec<_>>();
    (!messages.is_empty()).then(|| messages.join("; "))
}

/// Runs a query or mutation; the error is the text to show the user.
pub async fn run<Q: GraphQLQuery>(variables: Q::Variables) -> Result<Q::ResponseData, String>
where
    Q::Variables: Serialize,
    Q::ResponseData: DeserializeOwned,
{
    decode(request(body::<Q>(variables)).await?)
}

/// Sends one GraphQL request to the leader and returns the answer's `data`, or its errors in
/// words. Boxed and not generic, so every operation shares this code.
pub fn request(body: Value) -> Pin<Box<dyn Future<Output = Result<Value, String>>>> {
    Box::pin(async move { send(body).await.map_err(|r| r.message) })
}

/// Why the leader refused a request, or why it could not be asked.
pub struct Refusal {
    /// The first error's `extensions.code` (`CONFLICT`, `NOT_FOUND`, ...); empty when the
    /// leader gave none (it could not be reached, the answer was not understood).
    pub code: String,
    /// The text for the user.
    pub message: String,
}

impl From<String> for Refusal {
    fn from(message: String) -> Self {
        Refusal {
            code: String::new(),
            message,
        }
    }
}

/// [`request`], keeping the error's code for a page that answers one code in its own way (a
/// node another experiment holds can be moved).
pub fn send(body: Value) -> Pin<Box<dyn Future<Output = Result<Value, Refusal>>>> {
    Box::pin(async move {
        let resp = gloo_net::http::Request::post(&format!("{}/graphql", origin()))
            .header("content-type", "application/json")
            .body(body.to_string())
            .map_err(|e| e.to_string())?
            .send()
            .await
            .map_err(|e| format!("cannot reach the leader: {e}"))?;
        let text = resp
            .text()
            .await
            .map_err(|e| format!("bad response: {e}"))?;
        let mut answer: Value =
            serde_json::from_str(&text).map_err(|e| format!("bad response: {e}"))?;
        if let Some(message) = errors(&answer) {
            let code = answer["errors"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            return Err(Refusal { code, message });
        }
        match answer["data"].take() {
            Value::Null => Err("empty response".to_owned().into()),
            data => Ok(data),
        }
    })
}

/// A text field of an answer read from its JSON (empty when absent): see `experiments` for why
/// some answers are read this way rather than by serde.
pub(crate) fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

/// An optional text field of an answer read from its JSON.
pub(crate) fn opt(v: &Value, key: &str) -> Option<String> {
    v[key].as_str().map(str::to_owned)
}

/// A list field of an answer read from its JSON, each item by `each` (empty when absent).
pub(crate) fn list<T>(v: &Value, key: &str, each: fn(&Value) -> T) -> Vec<T> {
    v[key]
        .as_array()
        .map(|a| a.iter().map(each).collect())
        .unwrap_or_default()
}

/// Reloads the page at `path`: after logging in or out the app starts afresh with the new cookie.
pub fn reload_at(path: &str) {
    if let Some(w) = web_sys::window() {
        let _ = w.location().assign(path);
    }
}
