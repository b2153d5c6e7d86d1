//! One node: its facts, live stats, and the rename and remove actions.

use leptos::prelude::*;
use leptos_router::{components::A, hooks::use_params_map};

use crate::{
    Cluster, api,
    components::{ago, bytes, cpu, docker_words, memory, reload, state_word},
};

/// The node page.
#[component]
pub fn NodePage() -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let node = move || cluster.nodes.get().into_iter().find(|n| n.id == id());
    let new_name = RwSignal::new(String::new());
    let message = RwSignal::new(None::<String>);

    let rename = move |_| {
        let (id, name) = (id(), new_name.get());
        leptos::task::spawn_local(async move {
            let vars = api::rename_node::Variables {
                id,
                name: Some(name),
            };
            match api::run::<api::RenameNode>(vars).await {
                Ok(_) => {
                    message.set(Some("Renamed.".into()));
                    reload(cluster).await;
                }
                Err(e) => message.set(Some(e)),
            }
        });
    };
    let ping = move |_| {
        let id = id();
        leptos::task::spawn_local(async move {
            match api::run::<api::PingNode>(api::ping_node::Variables { id }).await {
                Ok(r) => message.set(Some(format!(
                    "The node answered “{}” in {:.0} ms.",
                    r.ping_node.message, r.ping_node.round_trip_ms
                ))),
                Err(e) => message.set(Some(e)),
            }
        });
    };
    let check_docker = move |_| {
        let id = id();
        leptos::task::spawn_local(async move {
            match api::run::<api::DockerEngine>(api::docker_engine::Variables { id }).await {
                Ok(r) => {
                    let e = r.docker_engine;
                    message.set(Some(format!(
                        "Docker {} (API {}, {}/{}) over {}: {} containers ({} running), {} images.",
                        e.version,
                        e.api_version,
                        e.os,
                        e.arch,
                        format!("{:?}", e.transport).to_uppercase(),
                        e.containers,
                        e.containers_running,
                        e.images
                    )));
                }
                Err(e) => message.set(Some(e)),
            }
        });
    };
    let set_insecure = move |insecure: bool| {
        let id = id();
        leptos::task::spawn_local(async move {
            let vars = api::set_node_docker_insecure::Variables { id, insecure };
            match api::run::<api::SetNodeDockerInsecure>(vars).await {
                Ok(_) => {
                    message.set(Some(if insecure {
                        "Plain TCP allowed: anyone who reaches that port controls the engine."
                            .into()
                    } else {
                        "TLS required again.".into()
                    }));
                    reload(cluster).await;
                }
                Err(e) => message.set(Some(e)),
            }
        });
    };
    let remove = move |_| {
        let id = id();
        leptos::task::spawn_local(async move {
            match api::run::<api::RemoveNode>(api::remove_node::Variables { id }).await {
                Ok(_) => {
                    message.set(Some("Removed.".into()));
                    reload(cluster).await;
                }
                Err(e) => message.set(Some(e)),
            }
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
                        let (how, warn) = docker_words(d.insecure, d.transport.as_ref().map(|t| format!("{t:?}")), d.refused.clone());
                        view! {
                            <code>{d.endpoint.clone()}</code> " "
                            <span class=if warn { "badge insecure" } else { "badge" }>{how}</span>
                        }.into_any()
                    }
                };
                view! {
                    <h1>{n.name.clone()} " " <span class=class>{word}</span></h1>
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
                        <dt>"Labels"</dt><dd>{if labels.is_empty() { "—".to_owned() } else { labels }}</dd>
                        <dt>"Docker"</dt><dd class="docker">{docker}</dd>
                    </dl>
                    <Show when=move || cluster.is_admin && tcp>
                        <p class="docker-admin">
                            {if insecure {
                                view! { <button type="button" class="require-tls" on:click=move |_| set_insecure(false)>"Require TLS for Docker"</button> }.into_any()
                            } else {
                                view! { <button type="button" class="danger allow-plain" on:click=move |_| set_insecure(true)>"Allow plain TCP to Docker (insecure)"</button> }.into_any()
                            }}
                        </p>
                    </Show>
                }.into_any()
            }
        }}
        <form class="actions" on:submit=|ev| ev.prevent_default()>
            <input type="text" placeholder="New name" prop:value=move || new_name.get()
                on:input=move |ev| new_name.set(event_target_value(&ev)) maxlength="64"/>
            <button type="button" on:click=rename>"Rename"</button>
            <button type="button" on:click=ping>"Ping"</button>
            <button type="button" class="check-docker" on:click=check_docker>"Check Docker"</button>
            <button type="button" class="danger" on:click=remove>"Remove node"</button>
        </form>
        <Show when=move || message.get().is_some()>
            <p class="message">{move || message.get().unwrap_or_default()}</p>
        </Show>
    }
}
