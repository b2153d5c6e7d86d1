//! One node: its facts (and the running experiment it is in), live stats, the rename and remove
//! actions, its dosing pumps ([`pumps`]), its hardware jobs ([`jobs`]), its images and apps
//! ([`images`]); and each job's own page ([`job`]).

mod images;
mod job;
mod jobs;
mod pumps;

pub use job::JobPage;

use futures::StreamExt;
use leptos::prelude::*;

use crate::{
    Cluster,
    api::{
        experiments, nodes,
        ws::{self, Feed},
    },
    components::{
        Feedback, Mutation, ago, bind, bytes, cpu, docker_words, escape, markup, memory, on,
        reload, router::A, state_word,
    },
};

/// The running experiment node `id` is in, as markup: a link to it, or "—". From the list of
/// experiments, loaded again whenever one changes (an experiment's events do not name the
/// nodes that came and went).
fn in_experiment(id: Memo<String>) -> Signal<String> {
    let list = RwSignal::new(Vec::new());
    let mut feed = ws::subscribe::<experiments::ExperimentEvents, serde_json::Value>(
        experiments::experiment_events::Variables { id: None },
    )
    .scoped();
    leptos::task::spawn_local(async move {
        while let Some(item) = feed.next().await {
            if let (Feed::Resync | Feed::Event(_), Ok(l)) = (item, experiments::list_all().await) {
                list.try_set(l);
            }
        }
    });
    markup(move || {
        let id = id.get();
        list.with(|l: &Vec<experiments::Summary>| {
            l.iter()
                .find(|e| e.running && e.nodes.iter().any(|n| n.id == id))
                .map(|e| {
                    format!(
                        r#"<a class="experiment-link" href="/experiments/{}">{}</a>"#,
                        escape(&e.id),
                        escape(&e.name)
                    )
                })
                .unwrap_or_else(|| "—".to_owned())
        })
    })
}

/// The node page.
#[component]
pub fn NodePage(
    /// The node's id, from the path: another node's link shows that node in the same page.
    id: Memo<String>,
) -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    // The jobs section depends on the node id alone: the node list changes with every
    // heartbeat, which must not re-create the section (its feed, drafts and messages).
    let node_id = id;
    let id = move || node_id.get();
    let node = move || cluster.nodes.get().into_iter().find(|n| n.id == id());
    let telemetry = pumps::Telemetry::new(node_id);
    let experiment = in_experiment(node_id);
    let new_name = RwSignal::new(String::new());
    // The action row's buttons share one status line under the row; the Docker admin button
    // in the facts has its own, next to it.
    let action = Mutation::new();
    let docker_admin = Mutation::new();

    let rename = move |_| {
        let vars = nodes::rename_node::Variables {
            id: id(),
            name: Some(new_name.get()),
        };
        action.run::<nodes::RenameNode, _>(vars, move |_| {
            leptos::task::spawn_local(reload(cluster));
            "Renamed.".into()
        });
    };
    let ping = move |_| {
        action.run::<nodes::PingNode, _>(nodes::ping_node::Variables { id: id() }, |r| {
            format!(
                "The node answered “{}” in {:.0} ms.",
                r.ping_node.message, r.ping_node.round_trip_ms
            )
        });
    };
    let check_docker = move |_| {
        let vars = nodes::docker_engine::Variables { id: id() };
        action.run::<nodes::DockerEngine, _>(vars, |r| {
            let e = r.docker_engine;
            #[allow(clippy::cast_possible_truncation)]
            let disk = |b: f64| bytes(b as i64);
            format!(
                "Docker {} (API {}, {}/{}) over {}: {} containers ({} running, {} written), {} images ({}).",
                e.version,
                e.api_version,
                e.os,
                e.arch,
                e.transport.name(),
                e.containers,
                e.containers_running,
                disk(e.containers_bytes),
                e.images,
                disk(e.images_bytes)
            )
        });
    };
    let set_insecure = move |insecure: bool| {
        let vars = nodes::set_node_docker_insecure::Variables { id: id(), insecure };
        docker_admin.run::<nodes::SetNodeDockerInsecure, _>(vars, move |_| {
            leptos::task::spawn_local(reload(cluster));
            if insecure {
                "Plain TCP allowed: anyone who reaches that port controls the engine.".into()
            } else {
                "TLS required again.".into()
            }
        });
    };
    let remove = move |_| {
        action.run::<nodes::RemoveNode, _>(nodes::remove_node::Variables { id: id() }, move |_| {
            leptos::task::spawn_local(reload(cluster));
            "Removed.".into()
        });
    };

    view! {
        <p><A href="/">"← All nodes"</A></p>
        {move || match node() {
            None => view! { <p class="empty">"No node " <code>{id()}</code> " in this cluster (yet)."</p> }.into_any(),
            Some(n) => {
                let (word, class) = state_word(&n.state);
                let now = cluster.now_ms.get();
                let labels = n.labels.iter().map(|l| format!("{}={}", l.key, l.value)).collect::<Vec<_>>().join(", ");
                let insecure = n.docker.as_ref().is_some_and(|d| d.insecure);
                let tcp = n.docker.as_ref().is_some_and(|d| d.endpoint.starts_with("tcp://"));
                let docker = match &n.docker {
                    None => view! { <span>"—"</span> }.into_any(),
                    Some(d) => {
                        let (how, warn) = docker_words(d.insecure, d.transport.as_ref(), d.refused.clone());
                        // Whether the deployment workers reached it at their last call.
                        let reach = d.reach.as_ref().map(|r| match (r.reachable, r.reason.clone()) {
                            (true, _) => view! { <span class="badge engine-reach ok">"reached"</span> }.into_any(),
                            (false, why) => view! {
                                <span class="badge engine-reach insecure">"unreachable"</span> " "
                                <span class="engine-reason">{why.unwrap_or_default()}</span>
                            }.into_any(),
                        });
                        view! {
                            <code>{d.endpoint.clone()}</code> " "
                            <span class=if warn { "badge insecure" } else { "badge" }>{how}</span> " "
                            {reach}
                        }.into_any()
                    }
                };
                view! {
                    <h1>{n.name.clone()} " " <span class=class>{word}</span></h1>
                    <pumps::Dropped t=telemetry/>
                    <dl class="facts">
                        <dt>"Node id"</dt><dd><code>{n.id.clone()}</code></dd>
                        <dt>"Hostname"</dt><dd>{n.hostname.clone()}</dd>
                        <dt>"Last seen"</dt><dd>{ago(&n.last_seen, now)}</dd>
                        <dt>"CPU"</dt><dd>{cpu(&n)}</dd>
                        <dt>"Memory"</dt><dd>{memory(&n)}</dd>
                        <dt>"Temperature"</dt><dd>{n.temperature_c.map(|t| format!("{t:.1} °C")).unwrap_or_else(|| "—".into())}</dd>
                        <dt>"Uptime"</dt><dd>{n.uptime_secs.map(|s| format!("{} h {} min", s / 3600, s % 3600 / 60)).unwrap_or_else(|| "—".into())}</dd>
                        <dt>"MAC"</dt><dd>{n.mac.clone().unwrap_or_else(|| "—".into())}</dd>
                        <dt>"Addresses"</dt><dd>{n.ip_addresses.join(", ")}</dd>
                        <dt>"Arch / OS"</dt><dd>{format!("{} / {}", n.arch, n.os)}</dd>
                        <dt>"Board"</dt><dd>{n.model.clone().unwrap_or_else(|| "—".into())}</dd>
                        <dt>"Agent"</dt><dd>{format!("{} ({} hardware, heartbeat every {} s)", n.agent_version, n.hardware, n.heartbeat_interval_secs)}</dd>
                        <dt>"Memory total"</dt><dd>{n.mem_total_bytes.map(bytes).unwrap_or_else(|| "—".into())}</dd>
                        <dt>"Experiment"</dt><dd class="experiment" inner_html=experiment></dd>
                        <dt>"Labels"</dt><dd>{if labels.is_empty() { "—".to_owned() } else { labels }}</dd>
                        <dt>"Docker"</dt><dd class="docker">{docker}</dd>
                    </dl>
                    <Show when=move || cluster.is_admin && tcp>
                        <p class="docker-admin">
                            {if insecure {
                                view! { <button type="button" class="require-tls" prop:disabled=docker_admin.busy() on:click=on(move |_| set_insecure(false))>"Require TLS for Docker"</button> }.into_any()
                            } else {
                                view! { <button type="button" class="danger allow-plain" prop:disabled=docker_admin.busy() on:click=on(move |_| set_insecure(true))>"Allow plain TCP to Docker (insecure)"</button> }.into_any()
                            }}
                        </p>
                        <Feedback mutation=docker_admin/>
                    </Show>
                }.into_any()
            }
        }}
        <form class="actions" on:submit=|ev| ev.prevent_default()>
            <input type="text" placeholder="New name" prop:value=new_name
                on:input=bind(new_name) maxlength="64"/>
            <button type="button" prop:disabled=action.busy() on:click=on(rename)>"Rename"</button>
            <button type="button" prop:disabled=action.busy() on:click=on(ping)>"Ping"</button>
            <button type="button" class="check-docker" prop:disabled=action.busy() on:click=on(check_docker)>"Check Docker"</button>
            <button type="button" class="danger" prop:disabled=action.busy() on:click=on(remove)>"Remove node"</button>
        </form>
        <Feedback mutation=action/>
        <pumps::PumpsSection t=telemetry/>
        {move || view! { <jobs::JobsSection node_id=node_id.get()/> }}
        {move || view! { <images::ImagesSection node_id=node_id.get()/> }}
    }
}
