//! The tab's one GraphQL websocket, shared by every live feed (graphql-transport-ws, as
//! async-graphql-axum speaks it on `GET /graphql`).
//!
//! - The socket opens lazily, with the first [`subscribe`], and stays open while the tab has live
//!   subscriptions. The session cookie the browser sends on the upgrade (same origin)
//!   authenticates it; `connection_init` carries an empty payload.
//! - Each subscription has its own id on the socket. Dropping its [`Subscription`], or the
//!   cleanup of the reactive owner it was [`Subscription::scoped`] to (a page unmounting), sends
//!   `complete` so the server stops the stream.
//! - When the socket drops, it is reopened after a capped exponential backoff with jitter, and
//!   every live subscription is subscribed again. Events sent while it was down are lost, so each
//!   subscription then yields [`Feed::Resync`]: the page reloads what it shows, as it does on a
//!   server-side `RESYNC`.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll},
};

use futures::{
    FutureExt, Sink, SinkExt, Stream, StreamExt, channel::mpsc, future::poll_fn, select,
};
use gloo_net::websocket::{Message, State, futures::WebSocket};
use gloo_timers::future::TimeoutFuture;
use graphql_client::GraphQLQuery;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

/// The subprotocol the server expects.
const PROTOCOL: &str = "graphql-transport-ws";
/// First wait before reopening a dropped socket; it doubles per failed attempt up to
/// [`MAX_BACKOFF_MS`], so a leader that restarts is not hammered by every open tab.
const MIN_BACKOFF_MS: f64 = 500.0;
/// Longest wait between attempts, so the app is live again soon after the leader is back.
const MAX_BACKOFF_MS: f64 = 30_000.0;
/// graphql-transport-ws lets the server wait for `connection_init`; a server that never
/// acknowledges is treated as a dropped socket after this long.
const ACK_TIMEOUT_MS: u32 = 10_000;

/// What a subscription's stream yields.
pub enum Feed<T> {
    /// The subscription is running (again) on an acknowledged socket. Events sent before may have
    /// been missed: reload what the page shows, then apply events.
    Resync,
    /// An event.
    Event(Box<T>),
    /// The socket dropped and is being reopened; [`Feed::Resync`] follows once it is back.
    Disconnected,
    /// The server refused this subscription (the text says why); nothing follows.
    Failed(String),
}

/// One live subscription as the socket keeps it: what to send again after a reconnect, and
/// where its messages go.
struct Entry {
    payload: Value,
    tx: mpsc::UnboundedSender<Feed<Value>>,
}

/// The tab's socket state. WASM in the browser runs on one thread, so a thread-local is the
/// tab's singleton.
#[derive(Default)]
struct Client {
    next_id: u64,
    subs: BTreeMap<u64, Entry>,
    /// The acknowledged socket's outgoing queue; `None` while (re)connecting.
    out: Option<mpsc::UnboundedSender<String>>,
    /// Whether the task that owns the socket runs.
    running: bool,
}

thread_local! {
    static CLIENT: RefCell<Client> = RefCell::new(Client::default());
}

/// A live subscription: a stream of [`Feed`] items. Dropping it unsubscribes.
pub struct Subscription<T> {
    id: u64,
    rx: mpsc::UnboundedReceiver<Feed<Value>>,
    _data: PhantomData<fn() -> T>,
}

/// Subscribes to `Q` on the tab's socket, opening the socket if needed. Its events are decoded
/// as `T`: `Q`'s generated answer, or a page's own type of the same JSON shape (an event that
/// carries the fragment a list query also asks for decodes straight into the list's type).
pub fn subscribe<Q: GraphQLQuery, T: DeserializeOwned>(variables: Q::Variables) -> Subscription<T>
where
    Q::Variables: Serialize,
{
    let payload = super::body::<Q>(variables);
    let (tx, rx) = mpsc::unbounded();
    let (id, start) = CLIENT.with_borrow_mut(|c| {
        c.next_id += 1;
        let id = c.next_id;
        if let Some(out) = &c.out {
            send_subscribe(out, id, &payload);
            let _ = tx.unbounded_send(Feed::Resync);
        }
        c.subs.insert(id, Entry { payload, tx });
        let start = !c.running;
        c.running = true;
        (id, start)
    });
    if start {
        wasm_bindgen_futures::spawn_local(drive());
    }
    Subscription {
        id,
        rx,
        _data: PhantomData,
    }
}

/// Stops subscription `id`: the server is sent `complete` and the stream ends. Safe to call twice.
/// When it was the last one, the socket closes (after the `complete` goes out): an idle socket
/// would only make the leader re-check its credentials for nothing.
fn unsubscribe(id: u64) {
    CLIENT.with_borrow_mut(|c| {
        if c.subs.remove(&id).is_some()
            && let Some(out) = &c.out
        {
            let _ =
                out.unbounded_send(json!({"id": id.to_string(), "type": "complete"}).to_string());
        }
        if c.subs.is_empty() {
            // Dropping the last sender ends the session's outgoing stream, which closes it.
            c.out = None;
        }
    });
}

impl<T> Subscription<T> {
    /// Ties the subscription to the current reactive owner: when it is cleaned up (the page
    /// unmounts), `complete` is sent and the stream ends, even if a task still awaits it.
    pub fn scoped(self) -> Self {
        let id = self.id;
        leptos::prelude::on_cleanup(move || unsubscribe(id));
        self
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        unsubscribe(self.id);
    }
}

impl<T: DeserializeOwned> Stream for Subscription<T> {
    type Item = Feed<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Feed<T>>> {
        let this = self.get_mut();
        loop {
            let item = match this.rx.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(item)) => item,
            };
            return Poll::Ready(Some(match item {
                Feed::Resync => Feed::Resync,
                Feed::Disconnected => Feed::Disconnected,
                Feed::Failed(why) => Feed::Failed(why),
                Feed::Event(data) => match super::decode(*data) {
                    Ok(event) => Feed::Event(Box::new(event)),
                    Err(e) => {
                        leptos::logging::warn!("subscription event not understood: {e}");
                        continue;
                    }
                },
            }));
        }
    }
}

fn send_subscribe(out: &mpsc::UnboundedSender<String>, id: u64, payload: &Value) {
    let _ = out.unbounded_send(
        json!({"id": id.to_string(), "type": "subscribe", "payload": payload}).to_string(),
    );
}

/// Owns the socket: opens it, runs it until it drops, waits, opens it again. Ends when a drop
/// finds no live subscription left; the next [`subscribe`] starts it again.
async fn drive() {
    let mut failures: i32 = 0;
    loop {
        let acknowledged = session().await;
        let idle = CLIENT.with_borrow_mut(|c| {
            c.out = None;
            for entry in c.subs.values() {
                let _ = entry.tx.unbounded_send(Feed::Disconnected);
            }
            if c.subs.is_empty() {
                c.running = false;
            }
            c.subs.is_empty()
        });
        if idle {
            return;
        }
        failures = if acknowledged { 0 } else { failures + 1 };
        // Exponential backoff with ±50 % jitter, so tabs that lost the leader together do not
        // all come back in the same instant; capped after the jitter.
        let backoff = MIN_BACKOFF_MS * 2f64.powi(failures.min(10));
        let wait = (backoff * (0.5 + js_sys::Math::random())).min(MAX_BACKOFF_MS);
        TimeoutFuture::new(wait as u32).await;
    }
}

/// One socket, from opening to its end; true if the server acknowledged it.
async fn session() -> bool {
    let url = super::origin().replacen("http", "ws", 1) + "/graphql";
    let ws = match WebSocket::open_with_protocol(&url, PROTOCOL) {
        Ok(ws) => ws,
        Err(e) => {
            leptos::logging::warn!("cannot open the live feed: {e}");
            return false;
        }
    };
    // gloo's sink reports ready once the socket is past CONNECTING, open or not; sending on a
    // socket that failed to open only logs a browser error, so check first.
    let mut ws = Box::pin(ws);
    if poll_fn(|cx| ws.as_mut().poll_ready(cx)).await.is_err() || !matches!(ws.state(), State::Open)
    {
        return false;
    }
    let (mut sink, stream) = ws.split();
    let mut stream = stream.fuse();
    let (out_tx, mut out_rx) = mpsc::unbounded::<String>();
    let mut out_tx = Some(out_tx);
    let mut ack_deadline = TimeoutFuture::new(ACK_TIMEOUT_MS).fuse();
    let init = json!({"type": "connection_init", "payload": {}}).to_string();
    if sink.send(Message::Text(init)).await.is_err() {
        return false;
    }
    let mut acknowledged = false;
    loop {
        select! {
            incoming = stream.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Bytes(_))) => continue,
                    Some(Err(e)) => {
                        leptos::logging::warn!("live feed lost: {e}");
                        break;
                    }
                    None => break,
                };
                let Ok(msg) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                match msg["type"].as_str() {
                    Some("connection_ack") => {
                        acknowledged = true;
                        if let Some(out) = out_tx.take() {
                            resubscribe_all(out);
                        }
                    }
                    // graphql-transport-ws: a ping must be answered with a pong.
                    Some("ping") => {
                        let pong = json!({"type": "pong"}).to_string();
                        if sink.send(Message::Text(pong)).await.is_err() {
                            break;
                        }
                    }
                    Some("next") => deliver(&msg),
                    Some("error") => end(&msg, Some(msg["payload"].to_string())),
                    Some("complete") => end(&msg, None),
                    _ => {}
                }
            }
            outgoing = out_rx.next() => match outgoing {
                Some(text) => {
                    if sink.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                // The last subscription ended (see `unsubscribe`): close the idle socket.
                None => break,
            },
            () = ack_deadline => {
                if !acknowledged {
                    leptos::logging::warn!("the leader did not acknowledge the live feed");
                    break;
                }
            }
        }
    }
    // Dropping the socket closes it.
    acknowledged
}

/// The socket is acknowledged: (re)subscribe every live subscription, tell each to resync, and
/// let new subscriptions and `complete`s go straight out.
fn resubscribe_all(out: mpsc::UnboundedSender<String>) {
    CLIENT.with_borrow_mut(|c| {
        for (id, entry) in &c.subs {
            send_subscribe(&out, *id, &entry.payload);
            let _ = entry.tx.unbounded_send(Feed::Resync);
        }
        c.out = Some(out);
    });
}

fn message_id(msg: &Value) -> Option<u64> {
    msg["id"].as_str().and_then(|id| id.parse().ok())
}

/// Hands a `next` message's `data` to its subscription. An event with errors only
/// (graphql-transport-ws `next`) does not end the stream: it is skipped.
fn deliver(msg: &Value) {
    let Some(id) = message_id(msg) else { return };
    let data = &msg["payload"]["data"];
    if data.is_null() {
        let why = super::errors(&msg["payload"]).unwrap_or_default();
        leptos::logging::warn!("subscription event with errors: {why}");
        return;
    }
    CLIENT.with_borrow(|c| {
        if let Some(entry) = c.subs.get(&id) {
            let _ = entry.tx.unbounded_send(Feed::Event(Box::new(data.clone())));
        }
    });
}

/// The server ended subscription `id` (`error` with a reason, or `complete`): forget it, so a
/// reconnect does not subscribe it again, and end its stream.
fn end(msg: &Value, why: Option<String>) {
    let Some(id) = message_id(msg) else { return };
    let entry = CLIENT.with_borrow_mut(|c| c.subs.remove(&id));
    if let (Some(entry), Some(why)) = (entry, why) {
        leptos::logging::warn!("the leader refused a subscription: {why}");
        let _ = entry.tx.unbounded_send(Feed::Failed(why));
    }
}
