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

use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols};
use axum::{
    extract::{FromRequestParts, Request, WebSocketUpgrade, ws::Message},
    http::header,
    response::{IntoResponse, Response},
};
use futures::StreamExt;

use super::HttpState;
use crate::access::{self};

/// Read buffer of a subscription socket, bytes (see where it is set).
const WS_READ_BUFFER: usize = 8 * 1024;
/// How often an open subscription socket checks that its token or session is still valid.
const REVALIDATE_EVERY: Duration = Duration::from_secs(2);

/// Largest websocket message accepted from a client (axum's default is 64 MiB).
const MAX_WS_MESSAGE: usize = 64 * 1024;

/// Most operations one socket runs at once. A `subscribe` past it gets one result for its id,
/// an error (`RATE_LIMITED`) naming the cap, and runs nothing; the others go on. (The web app
/// runs about ten per tab.)
pub const MAX_SUBSCRIPTIONS: usize = 100;

/// The schema, counting the operations one socket runs: past [`MAX_SUBSCRIPTIONS`] a new one
/// is answered with an error and runs nothing. Counted where the streams live (each running
/// stream holds a ticket that gives its place back when the stream ends or is dropped), so ids
/// reused, text or binary frames and either protocol all count alike.
#[derive(Clone)]
struct Capped {
    schema: crate::graphql::TrellisSchema,
    running: Arc<std::sync::atomic::AtomicUsize>,
}

/// A running operation's place.
struct Ticket(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl async_graphql::Executor for Capped {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        self.schema.execute(request).await
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session_data: Option<Arc<async_graphql::Data>>,
    ) -> futures::stream::BoxStream<'static, async_graphql::Response> {
        let taken = self
            .running
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_SUBSCRIPTIONS).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            let mut error = async_graphql::ServerError::new(
                format!(
                    "too many operations on one socket (at most {MAX_SUBSCRIPTIONS}): complete some first"
                ),
                None,
            );
            let mut code = async_graphql::ErrorExtensionValues::default();
            code.set("code", "RATE_LIMITED");
            error.extensions = Some(code);
            return futures::stream::once(async move {
                async_graphql::Response::from_errors(vec![error])
            })
            .boxed();
        }
        let ticket = Ticket(self.running.clone());
        self.schema
            .execute_stream_with_session_data(request, session_data.unwrap_or_default())
            .map(move |r| {
                let _held = &ticket;
                r
            })
            .boxed()
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
    // The first of the client's protocols that is one of the two (as async-graphql picks).
    let Some(protocol) = parts
        .headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
        })
    else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
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
            let (sink, stream) = socket.split();
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
            // What the client sends, up to its first error or the end above: text and binary
            // messages (the websocket's own pings, pongs and close are answered beneath).
            let input = stream
                .take_until(ends)
                .take_while(|m| futures::future::ready(m.is_ok()))
                .filter_map(|m| {
                    futures::future::ready(match m {
                        Ok(m @ (Message::Text(_) | Message::Binary(_))) => Some(m.into_data()),
                        _ => None,
                    })
                });
            let schema = Capped {
                schema,
                running: Arc::default(),
            };
            let input = std::pin::pin!(input);
            super::ws_protocol::serve(sink, input, schema, protocol, move |payload| async move {
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
                .await;
        })
}
