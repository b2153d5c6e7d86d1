//! GraphQL subscriptions over a websocket: authentication in `connection_init`, an init timeout,
//! closing the socket when its credentials are revoked, a cap on the operations one socket runs
//! at once ([`MAX_SUBSCRIPTIONS`]), and a cap on a client message's size.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::Message;
use axum::{
    extract::{FromRequestParts, Request, WebSocketUpgrade},
    http::header,
    response::{IntoResponse, Response},
};
use futures::{SinkExt, StreamExt};

use super::HttpState;
use crate::access::{self};

/// Read buffer of a subscription socket, bytes (see where it is set).
const WS_READ_BUFFER: usize = 8 * 1024;
/// How often an open subscription socket checks that its token or session is still valid.
const REVALIDATE_EVERY: Duration = Duration::from_secs(2);

/// Largest websocket message accepted from a client (axum's default is 64 MiB).
const MAX_WS_MESSAGE: usize = 64 * 1024;

/// Most operations one socket runs at once. A `subscribe` past it gets an `error` message for
/// its id and runs nothing; the others go on. (The web app runs about ten per tab.)
pub const MAX_SUBSCRIPTIONS: usize = 100;

/// The `type` and `id` of a graphql-ws / graphql-transport-ws message.
#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
}

fn envelope(text: &str) -> Option<Envelope> {
    serde_json::from_str(text).ok()
}

/// The operations a socket runs: started by the client's `subscribe` (`start` in the old
/// protocol), ended by its `complete` (`stop`) or by the leader's `complete` or `error`.
#[derive(Default)]
struct Running(std::sync::Mutex<std::collections::HashSet<String>>);

impl Running {
    fn ids(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a client message may go on to the GraphQL session; `Some(refusal)` to send back
    /// instead when it would start one operation too many.
    fn client_says(&self, text: &str) -> Option<String> {
        let e = envelope(text)?;
        let id = e.id?;
        match e.kind.as_str() {
            "subscribe" | "start" => {
                let mut ids = self.ids();
                if ids.len() >= MAX_SUBSCRIPTIONS && !ids.contains(&id) {
                    let message = format!(
                        "too many operations on one socket (at most {MAX_SUBSCRIPTIONS}): complete some first"
                    );
                    let payload = if e.kind == "start" {
                        serde_json::json!({"message": message})
                    } else {
                        serde_json::json!([{"message": message, "extensions": {"code": "RATE_LIMITED"}}])
                    };
                    return Some(
                        serde_json::json!({"id": id, "type": "error", "payload": payload})
                            .to_string(),
                    );
                }
                ids.insert(id);
            }
            "complete" | "stop" => {
                self.ids().remove(&id);
            }
            _ => {}
        }
        None
    }

    /// Notes the leader's message: an operation that completed or failed is over.
    fn leader_says(&self, text: &str) {
        if let Some(Envelope { kind, id: Some(id) }) = envelope(text)
            && matches!(kind.as_str(), "complete" | "error")
        {
            self.ids().remove(&id);
        }
    }
}

/// Whether a browser's `Origin` may use the session cookie on a websocket: the leader's own origin
/// or an allowed one. Browsers send cookies on cross-site websocket upgrades (no CORS applies), so
/// without this check any page could subscribe as the logged-in user.
fn origin_allowed(headers: &axum::http::HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // Not a browser: cookies there are the client's own business.
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let own = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        == Some(host);
    own || allowed.iter().any(|a| a == origin)
}

/// A subscription session. The client must send `connection_init` within the configured time,
/// carrying `{"token": "<API token>"}` (or `Authorization: "Bearer <token>"`), or rely on the
/// session cookie sent with the upgrade. A bad token or no credentials closes the socket before
/// anything is sent; a missing `connection_init` closes it when the time is up.
pub(super) async fn websocket(s: HttpState, req: Request) -> Response {
    let (mut parts, _body) = req.into_parts();
    let protocol = match GraphQLProtocol::from_request_parts(&mut parts, &()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let cookie_session = if origin_allowed(&parts.headers, &s.app.config.cors_origins) {
        parts
            .headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(access::session_from_cookie_header)
            .map(str::to_owned)
    } else {
        None
    };
    let init_timeout = s.app.config.ws_init_timeout;
    let auth_service = s.app.auth.clone();
    let watcher_auth = s.app.auth.clone();
    let schema = s.schema.clone();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(MAX_WS_MESSAGE)
        // tungstenite zero-fills its read buffer up to this size on every read of the socket,
        // and the socket is read each time a frame goes out: at the default 128 KiB that was
        // an eighth of the leader's CPU with 100 live charts open. Clients send small messages.
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| async move {
            let (mut sink, stream) = socket.split();
            // The session writes to a channel; a forwarder passes its messages on, noting the
            // operations that end, and the cap's refusals join them there.
            let running = Arc::new(Running::default());
            let (out, mut outgoing) = futures::channel::mpsc::channel::<Message>(16);
            let seen_out = running.clone();
            let forward = async move {
                while let Some(m) = outgoing.next().await {
                    if let Message::Text(t) = &m {
                        seen_out.leader_says(t);
                    }
                    if sink.send(m).await.is_err() {
                        break;
                    }
                }
                let _ = sink.close().await;
            };
            let mut refusals = out.clone();
            let stream = stream.filter_map(move |msg| {
                let refusal = match &msg {
                    Ok(Message::Text(t)) => running.client_says(t),
                    _ => None,
                };
                let pass = match refusal {
                    Some(r) => {
                        let _ = refusals.try_send(Message::text(r));
                        None
                    }
                    None => Some(msg),
                };
                futures::future::ready(pass)
            });
            let initialised = Arc::new(AtomicBool::new(false));
            let seen = initialised.clone();
            let credential: Arc<std::sync::Mutex<Option<(access::Credential, access::Role)>>> = Arc::default();
            let in_use = credential.clone();
            // async-graphql has no init timeout, and a session outlives the credentials it began
            // with: end the input stream ourselves (which ends the session and closes the socket)
            // when no init came in time, or when the token or session is revoked.
            let ends = async move {
                tokio::time::sleep(init_timeout).await;
                if !seen.load(Ordering::SeqCst) {
                    return;
                }
                loop {
                    tokio::time::sleep(REVALIDATE_EVERY).await;
                    let current = in_use.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    if let Some((c, role)) = current
                        && !watcher_auth.still_allows(&c, role).await
                    {
                        tracing::info!(
                            "closing a subscription socket: its credentials were revoked or its role changed"
                        );
                        return;
                    }
                }
            };
            let stream = stream.take_until(ends);
            let session = GraphQLWebSocket::new_with_pair(out, stream, schema, protocol)
                .on_connection_init(move |payload| async move {
                    initialised.store(true, Ordering::SeqCst);
                    let token = payload
                        .get("token")
                        .and_then(|v| v.as_str())
                        .or_else(|| {
                            payload
                                .get("Authorization")
                                .and_then(|v| v.as_str())
                                .and_then(|v| v.strip_prefix("Bearer "))
                        })
                        .map(str::to_owned);
                    let used = match token {
                        Some(t) => Some(access::Credential::ApiToken(t)),
                        None => cookie_session.map(access::Credential::Session),
                    };
                    let principal = match &used {
                        Some(access::Credential::ApiToken(t)) => {
                            auth_service.from_api_token(t).await.ok().flatten()
                        }
                        Some(access::Credential::Session(t)) => {
                            auth_service.from_session(t).await.ok().flatten()
                        }
                        None => None,
                    };
                    if let (Some(p), Some(c)) = (&principal, used) {
                        *credential.lock().unwrap_or_else(|p| p.into_inner()) = Some((c, p.role));
                    }
                    match principal {
                        Some(p) => {
                            let mut data = async_graphql::Data::default();
                            data.insert(p);
                            Ok(data)
                        }
                        None => Err(async_graphql::Error::new(
                            "unauthenticated: send a valid token in connection_init",
                        )),
                    }
                })
                .serve();
            tokio::join!(session, forward);
        })
}
