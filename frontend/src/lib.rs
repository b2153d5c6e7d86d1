//! The Trellis web app (Leptos, client-side rendered to WASM): the cluster's nodes with their state,
//! last contact and load, updated live through the `nodeEvents` subscription.

pub mod api;
mod components;
mod pages;

use leptos::prelude::*;
use leptos_router::{
    components::{A, Route, Router, Routes},
    path,
};

/// Live cluster state shared by the pages.
#[derive(Clone, Copy)]
pub struct Cluster {
    /// Nodes by name.
    pub nodes: RwSignal<Vec<api::Node>>,
    /// Whether the live feed is connected.
    pub live: RwSignal<bool>,
    /// The last error to show, if any.
    pub error: RwSignal<Option<String>>,
    /// Now, in ms since the epoch, ticking every second (for "5 s ago").
    pub now_ms: RwSignal<f64>,
}

/// The root component.
#[component]
pub fn App() -> impl IntoView {
    let cluster = Cluster {
        nodes: RwSignal::new(Vec::new()),
        live: RwSignal::new(false),
        error: RwSignal::new(None),
        now_ms: RwSignal::new(js_sys::Date::now()),
    };
    provide_context(cluster);
    components::start_live_feed(cluster);

    view! {
        <Router>
            <header class="top">
                <A href="/" attr:class="brand">"Trellis"</A>
                <nav>
                    <A href="/">"Nodes"</A>
                    <a href="/graphiql" rel="external">"GraphiQL"</a>
                </nav>
                <span class="live" class:on=move || cluster.live.get()>
                    {move || if cluster.live.get() { "live" } else { "reconnecting…" }}
                </span>
            </header>
            <Show when=move || cluster.error.get().is_some()>
                <p class="error" role="alert">{move || cluster.error.get().unwrap_or_default()}</p>
            </Show>
            <main>
                <Routes fallback=|| view! { <h1>"Page not found"</h1><p><A href="/">"Back to the nodes"</A></p> }>
                    <Route path=path!("/") view=pages::nodes::NodesPage/>
                    <Route path=path!("/nodes/:id") view=pages::node::NodePage/>
                </Routes>
            </main>
        </Router>
    }
}
