//! The deployments: every one with its image, where it runs in words, whether it runs, its
//! instances' states ("1/1 running") and its last rollout, live through `deploymentEvents`;
//! and, for operators, the form that makes one ([`form`]). The table is written as markup, as
//! the experiments' is (see `pages::experiment`).

mod form;

use std::fmt::Write;

use futures::{FutureExt, StreamExt, future::LocalBoxFuture};
use leptos::prelude::*;
use serde_json::Value;

pub(crate) use form::{Edit, SpecForm};

use crate::{
    Cluster,
    api::{
        self,
        deployments::{self as dep, instances_words, items, outcome_class, s, target_words},
        ws::{self, Feed},
    },
    components::{Alert, derive, escape, markup, name_of, node_names},
};

/// How long a page gathers deployment events before loading again: a rollout sends several a
/// second, and one load answers them all.
pub(crate) const GATHER_MS: u32 = 300;

/// What loads a page again.
pub(crate) type Load = Box<dyn Fn() -> LocalBoxFuture<'static, ()>>;

/// Follows `deploymentEvents` (of deployment `id`, or of all): `load` runs on every
/// (re)connect and after each burst of events; `gone` when the deployment is removed. Not
/// generic, so the wasm carries the task once for the three pages.
pub(crate) fn follow(
    id: Option<String>,
    error: RwSignal<Option<String>>,
    load: Load,
    gone: Box<dyn Fn()>,
) {
    let mut feed =
        ws::subscribe::<dep::DeploymentEvents, Value>(dep::deployment_events::Variables { id })
            .scoped();
    let removed = |item: &Feed<Value>| matches!(item, Feed::Event(ev) if s(&ev["deploymentEvents"], "kind") == "REMOVED");
    leptos::task::spawn_local(async move {
        while let Some(item) = feed.next().await {
            match item {
                item if removed(&item) => gone(),
                Feed::Event(_) => {
                    gloo_timers::future::TimeoutFuture::new(GATHER_MS).await;
                    // The burst is answered by one load; a removal in it is not lost.
                    let mut gone_meanwhile = false;
                    while let Some(Some(item)) = feed.next().now_or_never() {
                        gone_meanwhile |= removed(&item);
                    }
                    if gone_meanwhile {
                        gone();
                    } else {
                        load().await;
                    }
                }
                Feed::Resync => load().await,
                Feed::Failed(why) => {
                    error.try_set(Some(why));
                }
                Feed::Disconnected => {}
            }
        }
    });
}

/// The deployments page.
#[component]
pub fn DeploymentsPage() -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let list = RwSignal::new(Value::Null);
    let loaded = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let load = move || {
        async move {
            let body = api::body::<dep::Deployments>(dep::deployments::Variables {});
            match api::request(body).await {
                Ok(mut d) => {
                    list.try_set(d["deployments"].take());
                    error.try_set(None);
                    loaded.try_set(true);
                }
                Err(e) => {
                    error.try_set(Some(e));
                }
            }
        }
        .boxed_local()
    };
    // A removal is an event like any other here: the list is loaded again.
    let again = Box::new(move || leptos::task::spawn_local(load()));
    follow(None, error, Box::new(load), again);
    let names = node_names(cluster);
    let rows = markup(move || {
        let mut html = String::new();
        list.with(|l| {
            for d in l.as_array().map(Vec::as_slice).unwrap_or_default() {
                let name = escape(s(d, "name"));
                let href = String::from(js_sys::encode_uri_component(s(d, "name")));
                let spec = &d["spec"];
                let (word, class) = if d["removing"].as_bool().unwrap_or_default() {
                    ("removing", "state paused")
                } else if s(d, "runState") == "running" {
                    ("running", "state online")
                } else {
                    ("stopped", "state offline")
                };
                let r = &d["lastRollout"];
                let rollout = if r.is_null() {
                    "—".to_owned()
                } else {
                    format!(
                        r#"{} to revision {} <span class="{}">{}</span>"#,
                        s(r, "kind").replace('_', " "),
                        r["toRevision"],
                        outcome_class(s(r, "state")),
                        escape(&s(r, "state").replace('_', " "))
                    )
                };
                let _ = write!(
                    html,
                    r#"<tr data-deployment="{name}"><td><a href="/deployments/{href}">{name}</a><small class="id">revision {}</small></td><td><code>{}</code></td><td>{}</td><td><span class="{class}">{word}</span></td><td class="instances">{}</td><td class="rollout">{rollout}</td></tr>"#,
                    d["latestRevision"],
                    escape(s(&spec["container"], "image")),
                    escape(&target_words(&spec["target"], |id| name_of(names, id))),
                    escape(&instances_words(items(d, "instances")))
                );
            }
        });
        html
    });
    let none = derive(move || list.with(|l| l.as_array().is_none_or(Vec::is_empty)));

    view! {
        <h1>"Deployments"</h1>
        <Alert error/>
        <p class="empty" class:hidden=derive(move || !loaded.get() || !none.get())>
            "No deployments yet."
        </p>
        <table class="nodes deployments" class:hidden=none>
            <thead><tr><th>"Name"</th><th>"Image"</th><th>"Runs on"</th><th>"State"</th><th>"Instances"</th><th>"Last rollout"</th></tr></thead>
            <tbody inner_html=rows></tbody>
        </table>
        {cluster.can_operate.then(|| view! {
            <h2>"New deployment"</h2>
            <SpecForm/>
        })}
    }
}
