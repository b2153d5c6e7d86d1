//! Shared pieces: the live feed that keeps [`crate::Cluster`] current, the mutation helper, and
//! small formatters.

pub mod chart;
mod mutation;
pub mod router;

use futures::StreamExt;
use leptos::prelude::*;

pub use mutation::{Feedback, Mutation};

use crate::{
    Cluster,
    api::{
        self, DockerTransport, Node, NodeEventKind, NodeState, enroll, nodes,
        ws::{self, Feed},
    },
};

/// Loads the node list, then applies subscription events; reloads after every (re)connect or
/// `RESYNC`, so nothing missed while disconnected stays wrong. The feed lives as long as the
/// shell that called this (the logged-in app).
pub fn start_live_feed(cluster: Cluster) {
    let mut feed =
        ws::subscribe::<nodes::NodeEvents, nodes::NodeEventData>(nodes::node_events::Variables {})
            .scoped();
    leptos::task::spawn_local(async move {
        while let Some(item) = feed.next().await {
            match item {
                Feed::Resync => {
                    cluster.live.set(true);
                    reload(cluster).await;
                }
                Feed::Disconnected => cluster.live.set(false),
                Feed::Failed(why) => {
                    cluster.live.set(false);
                    cluster.error.set(Some(why));
                }
                Feed::Event(ev) => apply(cluster, ev.node_events).await,
            }
        }
    });
    leptos::task::spawn_local(async move {
        loop {
            gloo_timers::future::TimeoutFuture::new(1_000).await;
            if cluster.now_ms.try_set(js_sys::Date::now()).is_some() {
                // The shell is gone (logged out): stop ticking.
                return;
            }
        }
    });
}

/// A section's last error (a load or a feed that failed), in words, where it applies; hidden
/// while there is none.
#[component]
pub fn Alert(
    /// The error to show.
    error: RwSignal<Option<String>>,
) -> impl IntoView {
    view! {
        <p class="error" role="alert" class:hidden=Signal::derive(move || error.with(Option::is_none))>
            {move || error.get().unwrap_or_default()}
        </p>
    }
}

/// What a number input holds, read as a JSON value (`None` when it is not JSON; a caller checks
/// that it is a number). The browser's number inputs take `.5` and `-.5`, which JSON writes
/// `0.5` and `-0.5`. serde_json's number reading, which the app has anyway: `str::parse::<f64>`
/// would add core's float tables to the wasm (about 10 kB gzipped).
pub fn number_value(input: &str) -> Option<serde_json::Value> {
    let t = input.trim();
    let (sign, digits) = t.strip_prefix('-').map_or(("", t), |d| ("-", d));
    if digits.starts_with('.') {
        serde_json::from_str(&format!("{sign}0{digits}")).ok()
    } else {
        serde_json::from_str(t).ok()
    }
}

/// A measured number as a person reads it: about four significant digits (498.7, 0.5213,
/// 12345), since more would change every second without meaning anything; no trailing zeros.
pub fn number(x: f64) -> String {
    let decimals = [1000.0, 100.0, 10.0, 1.0]
        .iter()
        .take_while(|&&t| x.abs() < t)
        .count();
    let shown = format!("{x:.decimals$}");
    if decimals == 0 {
        return shown;
    }
    shown.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `Signal::derive`, through one boxed closure type per value type: Leptos' code for a derived
/// signal (and for the attribute or text it feeds) is generic over the closure, so every
/// `Signal::derive(move || ..)` carried its own copy, about 0.3 kB each in the wasm; boxed, the
/// copies are one per type of value. The pages with many reactive parts (experiments) use this.
pub fn derive<T: Send + Sync + 'static>(f: impl Fn() -> T + Send + Sync + 'static) -> Signal<T> {
    derive_boxed(Box::new(f))
}

fn derive_boxed<T: Send + Sync + 'static>(f: Box<dyn Fn() -> T + Send + Sync>) -> Signal<T> {
    Signal::derive(f)
}

/// Markup that a part of a page is written as (see `pages::experiment`), as a signal that
/// changes only when the markup does: a reload that brings the same rows, or a node's
/// heartbeat, leaves that part of the page as it is. Boxed, as [`derive`] is.
pub fn markup(f: impl Fn() -> String + Send + Sync + 'static) -> Signal<String> {
    markup_boxed(Box::new(f))
}

fn markup_boxed(f: Box<dyn Fn() -> String + Send + Sync>) -> Signal<String> {
    Memo::new(move |_| f()).into()
}

/// An event handler, boxed for the reason [`derive`] is: Leptos' code that attaches a handler
/// is generic over it, one copy per closure; boxed, one per kind of event.
pub fn on<E: 'static>(f: impl FnMut(E) + 'static) -> Box<dyn FnMut(E)> {
    Box::new(f)
}

/// A text input's handler that keeps `value` what the input holds.
pub fn bind(value: RwSignal<String>) -> Box<dyn FnMut(leptos::ev::Event)> {
    Box::new(move |e| value.set(event_target_value(&e)))
}

/// Every node's id and name, as a memo: what a page that shows node names follows, rather than
/// the node list, whose load and last contact change with every heartbeat.
pub fn node_names(cluster: Cluster) -> Memo<Vec<(String, String)>> {
    Memo::new(move |_| {
        cluster.nodes.with(|l| {
            l.iter()
                .map(|n| (n.id.clone(), n.name.clone()))
                .collect::<Vec<_>>()
        })
    })
}

/// The name of node `id` in `names` (its id when they do not have it).
pub fn name_of(names: Memo<Vec<(String, String)>>, id: &str) -> String {
    names
        .with(|a| a.iter().find(|(i, _)| i == id).map(|(_, n)| n.clone()))
        .unwrap_or_else(|| id.to_owned())
}

/// What a click on a button in a list was for: the `attr` attribute of the element matching
/// `button` that the click was on or in (lists of markup, and groups of buttons, have one
/// listener).
pub fn clicked(e: &leptos::ev::MouseEvent, button: &str, attr: &str) -> Option<String> {
    use wasm_bindgen::JsCast;
    e.target()?
        .dyn_into::<web_sys::Element>()
        .ok()?
        .closest(button)
        .ok()??
        .get_attribute(attr)
}

/// Text made safe to put in markup (for the parts of pages written as markup: see
/// [`chart`] and `pages::experiment`).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Reloads the whole node list and the nodes waiting to join.
pub async fn reload(cluster: Cluster) {
    match api::run::<nodes::Nodes>(nodes::nodes::Variables {}).await {
        Ok(data) => {
            cluster.nodes.set(data.nodes);
            cluster.error.set(None);
        }
        Err(e) => cluster.error.set(Some(e)),
    }
    reload_pending(cluster).await;
}

/// Reloads the nodes waiting to join.
pub async fn reload_pending(cluster: Cluster) {
    if let Ok(data) = api::run::<enroll::Pending>(enroll::pending::Variables {}).await {
        cluster.pending.set(data.pending_nodes);
    }
}

async fn apply(cluster: Cluster, ev: nodes::NodeEvent) {
    match ev.kind {
        NodeEventKind::RESYNC | NodeEventKind::Other(_) => reload(cluster).await,
        NodeEventKind::PENDING => reload_pending(cluster).await,
        NodeEventKind::REMOVED => cluster
            .nodes
            .update(|list| list.retain(|n| n.id != ev.node_id)),
        _ => {
            if let Some(node) = ev.node {
                cluster.nodes.update(|list| upsert(list, node));
            }
        }
    }
}

/// Replaces or inserts a node, keeping the list sorted by name.
pub fn upsert(list: &mut Vec<Node>, node: Node) {
    match list.iter_mut().find(|n| n.id == node.id) {
        Some(slot) => *slot = node,
        None => list.push(node),
    }
    list.sort_by_key(|n| n.name.to_lowercase());
}

/// The state as a word and a CSS class.
pub fn state_word(state: &NodeState) -> (&'static str, &'static str) {
    match state {
        NodeState::ONLINE => ("online", "state online"),
        NodeState::OFFLINE => ("offline", "state offline"),
        NodeState::LOST => ("lost", "state lost"),
        NodeState::Other(_) => ("unknown", "state lost"),
    }
}

/// "3 s ago", "5 min ago", "2 h ago", "4 d ago".
pub fn ago(rfc3339: &str, now_ms: f64) -> String {
    let then = js_sys::Date::parse(rfc3339);
    if then.is_nan() {
        return "—".into();
    }
    let secs = ((now_ms - then) / 1000.0).max(0.0) as u64;
    match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// Bytes as MiB or GiB.
pub fn bytes(b: i64) -> String {
    let b = b as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else {
        format!("{:.0} MiB", b / (1024.0 * 1024.0))
    }
}

/// A database's size as people read it, in decimal units: "812 B", "48.2 kB", "1.375 GB".
pub fn size(b: i64) -> String {
    let mut x = b as f64;
    for unit in ["B", "kB", "MB", "GB"] {
        if x < 1000.0 {
            return format!("{} {unit}", number(x));
        }
        x /= 1000.0;
    }
    format!("{} TB", number(x))
}

/// A count with thousands separators: "1,234,567".
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "38 % of 1.9 GiB".
pub fn memory(node: &Node) -> String {
    match (node.mem_used_bytes, node.mem_total_bytes) {
        (Some(used), Some(total)) if total > 0 => {
            format!(
                "{:.0} % of {}",
                used as f64 * 100.0 / total as f64,
                bytes(total)
            )
        }
        _ => "—".into(),
    }
}

/// "12.5 %".
pub fn cpu(node: &Node) -> String {
    node.cpu_percent
        .map(|c| format!("{c:.1} %"))
        .unwrap_or_else(|| "—".into())
}

/// An RFC 3339 time as the browser's local date and time ("21/11/2026, 06:30:15").
pub fn local_time(rfc3339: &str) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(rfc3339));
    if date.get_time().is_nan() {
        return rfc3339.to_owned();
    }
    String::from(date.to_locale_string("en-GB", &wasm_bindgen::JsValue::UNDEFINED))
}

/// An RFC 3339 time as the browser's local time of day ("06:30:15"), as a log shows it.
pub fn clock(rfc3339: &str) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(rfc3339));
    if date.get_time().is_nan() {
        return rfc3339.to_owned();
    }
    String::from(date.to_locale_time_string("en-GB"))
}

/// How a node's Docker engine is reached, for people, and whether that deserves a warning:
/// ("TLS", false), ("insecure: plain TCP", true), or the reason the leader refuses it.
pub fn docker_words(
    insecure: bool,
    transport: Option<&DockerTransport>,
    refused: Option<String>,
) -> (String, bool) {
    if let Some(why) = refused {
        return (format!("refused: {why}"), true);
    }
    if insecure {
        return ("insecure: plain TCP".into(), true);
    }
    match transport {
        Some(DockerTransport::TLS) => ("TLS".into(), false),
        Some(DockerTransport::UNIX) => ("local socket".into(), false),
        _ => ("—".into(), false),
    }
}
