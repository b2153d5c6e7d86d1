//! The cluster overview: every node with its state, last contact, CPU and memory.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::{
    Cluster, api,
    components::{ago, cpu, memory, reload_pending, state_word},
};

/// The node list.
#[component]
pub fn NodesPage() -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let counts = move || {
        let nodes = cluster.nodes.get();
        let online = nodes
            .iter()
            .filter(|n| state_word(&n.state).0 == "online")
            .count();
        format!("{online} of {} online", nodes.len())
    };
    view! {
        <section>
            <h1>"Nodes" <small class="counts">{counts}</small></h1>
            <PendingNodes/>
            <Show
                when=move || !cluster.nodes.get().is_empty()
                fallback=|| view! { <p class="empty">"No nodes yet. Start an agent pointed at this leader's broker."</p> }
            >
                <table class="nodes">
                    <thead>
                        <tr><th>"Name"</th><th>"State"</th><th>"Last seen"</th><th>"CPU"</th><th>"Memory"</th><th>"Arch"</th><th>"Addresses"</th></tr>
                    </thead>
                    <tbody>
                        {move || {
                            let now = cluster.now_ms.get();
                            cluster.nodes.get().into_iter().map(|n| {
                                let (word, class) = state_word(&n.state);
                                let href = format!("/nodes/{}", n.id);
                                let name = n.name.clone();
                                let id = n.id.clone();
                                let insecure = n.docker.as_ref().is_some_and(|d| d.insecure);
                                view! {
                                    <tr data-node-id=n.id.clone()>
                                        <td>
                                            <A href=href>{name}</A>
                                            <Show when=move || insecure>
                                                " " <span class="badge insecure" title="An admin allowed plain TCP to this node's Docker engine">"insecure Docker"</span>
                                            </Show>
                                            <small class="id">{id}</small>
                                        </td>
                                        <td><span class=class>{word}</span></td>
                                        <td>{ago(&n.last_seen, now)}</td>
                                        <td class="num">{cpu(&n)}</td>
                                        <td class="num">{memory(&n)}</td>
                                        <td>{n.arch.clone()}</td>
                                        <td class="addr">{n.ip_addresses.join(", ")}</td>
                                    </tr>
                                }
                            }).collect_view()
                        }}
                    </tbody>
                </table>
            </Show>
        </section>
    }
}

/// Nodes that asked to join, with Approve and Reject for operators, and "Add a node", which
/// makes a join token and shows the command to run on the new machine.
#[component]
fn PendingNodes() -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let message = RwSignal::new(None::<String>);
    let decide = move |id: String, approve: bool| {
        leptos::task::spawn_local(async move {
            let result = if approve {
                api::run::<api::ApproveNode>(api::approve_node::Variables { id })
                    .await
                    .map(|_| ())
            } else {
                api::run::<api::RejectNode>(api::reject_node::Variables { id })
                    .await
                    .map(|_| ())
            };
            if let Err(e) = result {
                message.set(Some(e));
            }
            reload_pending(cluster).await;
        });
    };
    let add = move |_| {
        leptos::task::spawn_local(async move {
            let name = format!(
                "web app {}",
                String::from(js_sys::Date::new_0().to_iso_string())
            );
            match api::run::<api::CreateJoinToken>(api::create_join_token::Variables { name }).await
            {
                Ok(d) => {
                    let host = web_sys::window()
                        .and_then(|w| w.location().hostname().ok())
                        .unwrap_or_default();
                    let t = d.create_join_token;
                    let scheme = if t.broker_tls { "mqtts" } else { "mqtt" };
                    // The leader's own CA (`trellis tls-cert`) must be copied to the node.
                    let ca = if t.broker_uses_leader_ca {
                        " --broker-ca /etc/trellis/ca.pem"
                    } else {
                        ""
                    };
                    message.set(Some(format!(
                        "On the new machine run: trellis-agent --broker-url {scheme}://{host}:{}{ca} --join-token {} (valid 7 days, shown once){}",
                        t.broker_port,
                        t.token,
                        if t.broker_uses_leader_ca {
                            "; first copy the ca.pem made by trellis tls-cert to /etc/trellis/ca.pem there"
                        } else {
                            ""
                        }
                    )));
                }
                Err(e) => message.set(Some(e)),
            }
        });
    };
    view! {
        <Show when=move || cluster.can_operate>
            <p><button type="button" class="add-node" on:click=add>"Add a node"</button></p>
        </Show>
        <Show when=move || message.get().is_some()>
            <p class="message join-command"><code>{move || message.get().unwrap_or_default()}</code></p>
        </Show>
        <Show when=move || !cluster.pending.get().is_empty()>
            <h2>"Waiting to join"</h2>
            <table class="nodes pending">
                <thead><tr><th>"Node id"</th><th>"Hostname"</th><th>"MAC"</th><th>"Addresses"</th><th></th></tr></thead>
                <tbody>
                    {move || cluster.pending.get().into_iter().map(|p| {
                        let (a, r, shown) = (p.node_id.clone(), p.node_id.clone(), p.node_id.clone());
                        view! {
                            <tr data-pending-id=p.node_id>
                                <td><code>{shown}</code></td>
                                <td>{p.hostname.clone().unwrap_or_default()}</td>
                                <td>{p.mac.clone().unwrap_or_default()}</td>
                                <td class="addr">{p.ip_addresses.join(", ")}</td>
                                <td>
                                    <Show when=move || cluster.can_operate>
                                        <button type="button" class="approve" on:click={let a = a.clone(); move |_| decide(a.clone(), true)}>"Approve"</button>
                                        <button type="button" class="danger" on:click={let r = r.clone(); move |_| decide(r.clone(), false)}>"Reject"</button>
                                    </Show>
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </Show>
    }
}
