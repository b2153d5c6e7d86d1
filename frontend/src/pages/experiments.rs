//! The experiments: every one, newest first, with its state, nodes and start, live through
//! `experimentEvents`; and, for operators, a form that creates one with a name, a description
//! and nodes. A node that another running experiment holds says so beside its box; creating
//! with it anyway is refused (`CONFLICT`: a node is in one running experiment at a time), which
//! the page says in words, with a button that moves the node into the new experiment. The
//! table and the boxes are written as markup, as the experiment page's lists are (see there).
//! Below them, the storage section: what the database holds and how long it keeps readings.

mod storage;

use std::fmt::Write;

use futures::StreamExt;
use leptos::{ev, prelude::*};
use wasm_bindgen::JsCast;

use crate::{
    Cluster,
    api::{
        Refusal,
        experiments::{self, Summary},
        ws::{self, Feed},
    },
    components::{
        Alert, Feedback, Mutation, bind, derive, escape, local_time, markup, node_names, on, router,
    },
};

/// What a refused add or create says when the nodes it names are held by other running
/// experiments (`held`: node name, experiment name); `None` when none is (then the leader's
/// own words say what is wrong).
pub(crate) fn conflict_words(held: &[(String, String)]) -> Option<String> {
    if held.is_empty() {
        return None;
    }
    let which = held
        .iter()
        .map(|(node, exp)| format!("{node} is in the running experiment “{exp}”"))
        .collect::<Vec<_>>()
        .join("; ");
    Some(format!(
        "{which}. A node is in one running experiment at a time: move it here to take it out of that one."
    ))
}

/// The experiments page.
#[component]
pub fn ExperimentsPage() -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let list = RwSignal::new(Vec::<Summary>::new());
    let loaded = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let mut feed = ws::subscribe::<experiments::ExperimentEvents, serde_json::Value>(
        experiments::experiment_events::Variables { id: None },
    )
    .scoped();
    leptos::task::spawn_local(async move {
        while let Some(item) = feed.next().await {
            match item {
                // On (re)connect, and for every change: the list is short, so it is loaded again.
                Feed::Resync | Feed::Event(_) => match experiments::list_all().await {
                    Ok(l) => {
                        list.try_set(l);
                        error.try_set(None);
                        loaded.try_set(true);
                    }
                    Err(e) => {
                        error.try_set(Some(e));
                    }
                },
                Feed::Failed(why) => {
                    error.try_set(Some(why));
                }
                Feed::Disconnected => {}
            }
        }
    });
    let rows = markup(move || {
        let mut html = String::new();
        list.with(|l| {
            for e in l {
                let (word, class) = if e.running {
                    ("running", "state online")
                } else {
                    ("ended", "state offline")
                };
                let nodes = e
                    .nodes
                    .iter()
                    .map(|n| escape(&n.name))
                    .collect::<Vec<_>>()
                    .join(", ");
                let id = escape(&e.id);
                let _ = write!(
                    html,
                    r#"<tr data-experiment-id="{id}"><td><a href="/experiments/{id}">{}</a></td><td><span class="{class}">{word}</span></td><td>{nodes}</td><td>{}<small class="id">by {}</small></td></tr>"#,
                    escape(&e.name),
                    local_time(&e.created),
                    escape(e.created_by.strip_prefix("user:").unwrap_or(&e.created_by))
                );
            }
        });
        html
    });
    let none = derive(move || list.with(Vec::is_empty));

    view! {
        <h1>"Experiments"</h1>
        <Alert error/>
        <p class="empty" class:hidden=derive(move || !loaded.get() || !none.get())>
            "No experiments yet."
        </p>
        <table class="nodes experiments" class:hidden=none>
            <thead><tr><th>"Name"</th><th>"State"</th><th>"Nodes"</th><th>"Created"</th></tr></thead>
            <tbody inner_html=rows></tbody>
        </table>
        {cluster.can_operate.then(|| view! { <CreateForm list/> })}
        <storage::StorageSection/>
    }
}

/// The form that creates an experiment.
#[component]
fn CreateForm(
    /// The experiments, to say which holds a node.
    list: RwSignal<Vec<Summary>>,
) -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let go = router::navigator();
    let name = RwSignal::new(String::new());
    let description = RwSignal::new(String::new());
    let chosen = RwSignal::new(Vec::<String>::new());
    let action = Mutation::new();
    // Whether the last attempt was refused for nodes other experiments hold (then the form
    // offers to move them).
    let held = RwSignal::new(false);
    // The running experiment that holds a node, by name.
    let holder_of = move |node_id: &str| {
        list.with(|l| {
            l.iter()
                .find(|e| e.running && e.nodes.iter().any(|n| n.id == node_id))
                .map(|e| e.name.clone())
        })
    };
    let all = node_names(cluster);
    let create = move |move_nodes: bool| {
        let n = name.get_untracked().trim().to_owned();
        if n.is_empty() {
            action.fail("Give the experiment a name.");
            return;
        }
        held.set(false);
        let vars = experiments::create_experiment::Variables {
            name: n,
            description: description.get_untracked().trim().to_owned(),
            node_ids: chosen.get_untracked(),
            move_nodes,
        };
        let refused = move |r: Refusal| {
            let taken = all.with_untracked(|a| {
                a.iter()
                    .filter(|(id, _)| chosen.with_untracked(|c| c.contains(id)))
                    .filter_map(|(id, node)| Some((node.clone(), holder_of(id)?)))
                    .collect::<Vec<_>>()
            });
            match conflict_words(&taken).filter(|_| r.code == "CONFLICT") {
                Some(words) => {
                    held.set(true);
                    words
                }
                None => r.message,
            }
        };
        action.run_json::<experiments::CreateExperiment, _>(
            vars,
            move |d| {
                let id = d["createExperiment"]["id"].as_str().unwrap_or_default();
                go(&format!("/experiments/{id}"));
                String::new()
            },
            Some(Box::new(refused)),
        );
    };
    // The boxes, each saying which running experiment holds its node, if one does.
    let boxes = markup(move || {
        let mut html = String::new();
        all.with(|a| {
            for (id, node) in a {
                let on = if chosen.with_untracked(|c| c.contains(id)) { " checked" } else { "" };
                let by = holder_of(id)
                    .map(|e| format!(" (in “{}”)", escape(&e)))
                    .unwrap_or_default();
                let _ = write!(
                    html,
                    r#"<label class="node-choice"><input type="checkbox" name="node" value="{}"{on}>{}<small>{by}</small></label>"#,
                    escape(id),
                    escape(node)
                );
            }
        });
        html
    });
    let toggle = move |e: ev::Event| {
        let Some(input) = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        else {
            return;
        };
        let (id, on) = (input.value(), input.checked());
        held.set(false);
        chosen.update(|c| {
            c.retain(|x| *x != id);
            if on {
                c.push(id);
            }
        });
    };
    let busy = action.busy();

    view! {
        <h2>"New experiment"</h2>
        <form class="create-experiment" on:submit=on(move |e: ev::SubmitEvent| { e.prevent_default(); create(false); })>
            <label>"Name"
                <input type="text" name="name" maxlength="100" required
                    prop:value=name on:input=bind(name)/>
            </label>
            <label>"Description"
                <textarea name="description" rows="2" prop:value=description
                    on:input=bind(description)></textarea>
            </label>
            <fieldset on:change=on(toggle)>
                <legend>"Nodes"</legend>
                <div class="node-choices" inner_html=boxes></div>
            </fieldset>
            <p class="form-buttons">
                <button type="submit" class="create" prop:disabled=busy>"Create"</button>
                <button type="button" class="move-nodes" class:hidden=derive(move || !held.get())
                    prop:disabled=busy on:click=on(move |_| create(true))>
                    "Move the nodes here and create"
                </button>
            </p>
            <Feedback mutation=action/>
        </form>
    }
}
