//! The cluster overview: every node with its state, last contact, CPU and memory.

use leptos::prelude::*;

use crate::{
    Cluster,
    api::{NodeState, enroll},
    components::{Feedback, Mutation, ago, cpu, memory, on, reload_pending, router::A, state_word},
};

/// The node list.
#[component]
pub fn NodesPage() -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let counts = move || {
        let nodes = cluster.nodes.get();
        let online = nodes
            .iter()
            .filter(|n| n.state == NodeState::ONLINE)
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
    // "Add a node" shows its command under the button; Approve and Reject report above the
    // table they are in.
    let add_node = Mutation::new();
    let decision = Mutation::new();
    let decide = move |id: String, approve: bool| {
        // Either answer is just `true`; the list tells the rest.
        fn reload<T>(cluster: Cluster) -> impl FnOnce(T) -> String {
            move |_| {
                leptos::task::spawn_local(reload_pending(cluster));
                String::new()
            }
        }
        if approve {
            let vars = enroll::approve_node::Variables { id };
            decision.run::<enroll::ApproveNode, _>(vars, reload(cluster));
        } else {
            let vars = enroll::reject_node::Variables { id };
            decision.run::<enroll::RejectNode, _>(vars, reload(cluster));
        }
    };
    let add = move |_| {
        let name = format!(
            "web app {}",
            String::from(js_sys::Date::new_0().to_iso_string())
        );
        add_node.run::<enroll::CreateJoinToken, _>(
            enroll::create_join_token::Variables { name },
            |d| {
                let host = web_sys::window()
                    .and_then(|w| w.location().hostname().ok())
                    .unwrap_or_default();
                let t = d.create_join_token;
                let scheme = if t.broker_tls { "mqtts" } else { "mqtt" };
                // The leader's own CA (`trellis tls-cert`) must be copied to the node.
                let (ca, copy_ca) = if t.broker_uses_leader_ca {
                    (
                        " --broker-ca /etc/trellis/ca.pem",
                        "; first copy the ca.pem made by trellis tls-cert to /etc/trellis/ca.pem there",
                    )
                } else {
                    ("", "")
                };
                format!(
                    "On the new machine run: trellis-agent --broker-url {scheme}://{host}:{}{ca} --join-token {} (valid 7 days, shown once){copy_ca}",
                    t.broker_port, t.token,
                )
            },
        );
    };
    view! {
        <Show when=move || cluster.can_operate>
            <p><button type="button" class="add-node" prop:disabled=add_node.busy() on:click=on(add)>"Add a node"</button></p>
        </Show>
        <Feedback mutation=add_node class="join-command" code=true/>
        <Show when=move || !cluster.pending.get().is_empty()>
            <h2>"Waiting to join"</h2>
            <Feedback mutation=decision/>
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
                                        <button type="button" class="approve" on:click=on({let a = a.clone(); move |_| decide(a.clone(), true)})>"Approve"</button>
                                        <button type="button" class="danger" on:click=on({let r = r.clone(); move |_| decide(r.clone(), false)})>"Reject"</button>
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
