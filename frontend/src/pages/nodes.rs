//! The cluster overview: every node with its state, last contact, CPU and memory.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::{
    Cluster,
    components::{ago, cpu, memory, state_word},
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
                                view! {
                                    <tr data-node-id=n.id.clone()>
                                        <td><A href=href>{name}</A><small class="id">{id}</small></td>
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
