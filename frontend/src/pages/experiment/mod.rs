//! One experiment, `/experiments/<id>`: its name (renamed in place), description (edited in
//! place), state and End button (after a confirmation in the page), its profile runs and a form
//! starting one ([`profiles`]), live charts of every metric ([`charts`]), the CSV downloads, its
//! nodes (added, removed, or moved here from another running experiment), its jobs with their
//! states, its notes (and a form adding one) and its events (the audit log's entries on it, its
//! nodes and their jobs).
//!
//! - The page's facts come from one `experiment(id)` query, loaded again on each of the
//!   experiment's events (`experimentEvents(id)`: renamed, annotated, nodes changed, ...) and
//!   after each action taken here.
//! - Jobs change state without an experiment event: `jobEvents` carries each job's new state,
//!   which the page puts in place; a job it does not list yet, on one of its nodes, makes it
//!   load the page again (gathered for a second: a running job reports every second).
//! - The head and the lists (nodes, jobs, notes, events) are written as markup, every text in
//!   it escaped, and their buttons are handled by one listener each, by the buttons' `data-`
//!   attributes: Leptos generates code per kind of view and per closure, and writing these parts
//!   as Leptos views took the web app about 14 kB gzipped more (measured with
//!   `scripts/build-web.sh`); the app has a size budget (BENCHMARKS.md). Links in them are
//!   plain `<a href>`s, which the router follows in the page as any other.

mod charts;
mod profiles;

use std::fmt::Write;

use futures::{FutureExt, StreamExt};
use leptos::{ev, prelude::*};
use serde_json::Value;

use crate::{
    Cluster,
    api::experiments::{self, Details, Summary},
    api::ws::{self, Feed},
    components::{
        Alert, Feedback, Mutation, bind, chart::Mark, clicked, derive, escape, local_time, markup,
        name_of, node_names, on, router::A,
    },
    pages::experiments::conflict_words,
};

/// How long the page gathers job events before loading itself again.
const GATHER_MS: u32 = 1_000;

/// The experiment page.
#[component]
pub fn ExperimentPage(
    /// The experiment's id, from the path.
    id: Memo<String>,
) -> impl IntoView {
    // Another experiment's link gets a fresh view, with its own feeds.
    move || view! { <ExperimentView id=id.get()/> }
}

/// What the page shows of the experiment, and the running experiments (which hold nodes it
/// may offer to add). `Copy`, so event handlers can hold it.
#[derive(Clone, Copy)]
struct Page {
    id: StoredValue<String>,
    details: RwSignal<Option<Details>>,
    running: RwSignal<Vec<Summary>>,
    loaded: RwSignal<bool>,
    error: RwSignal<Option<String>>,
}

impl Page {
    async fn reload(self) {
        match experiments::one(self.id.get_value()).await {
            Ok((details, running)) => {
                self.details.try_set(details);
                self.running.try_set(running);
                self.error.try_set(None);
                self.loaded.try_set(true);
            }
            Err(e) => {
                self.error.try_set(Some(e));
            }
        }
    }

    /// Loads the page again, from an event handler.
    fn refresh(self) {
        leptos::task::spawn_local(self.reload());
    }

    /// Something of the experiment, as a signal (empty while there is none).
    fn show<T: Default + Clone + PartialEq + Send + Sync + 'static>(
        self,
        f: fn(&Details) -> T,
    ) -> Signal<T> {
        derive(move || self.details.with(|d| d.as_ref().map(f).unwrap_or_default()))
    }
}

/// Who did something, as people read it: the audit log's `user:admin` as `admin`.
fn actor(who: &str) -> &str {
    who.strip_prefix("user:").unwrap_or(who)
}

/// An RFC 3339 time as the local time of day.
fn clock(rfc3339: &str) -> String {
    crate::components::chart::clock(js_sys::Date::parse(rfc3339), true)
}

#[component]
fn ExperimentView(id: String) -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let p = Page {
        id: StoredValue::new(id.clone()),
        details: RwSignal::new(None),
        running: RwSignal::new(Vec::new()),
        loaded: RwSignal::new(false),
        error: RwSignal::new(None),
    };

    let mut feed = ws::subscribe::<experiments::ExperimentEvents, Value>(
        experiments::experiment_events::Variables {
            id: Some(id.clone()),
        },
    )
    .scoped();
    leptos::task::spawn_local(async move {
        while let Some(item) = feed.next().await {
            match item {
                Feed::Event(ev) if experiments::event_kind(&ev) == "REMOVED" => {
                    p.details.try_set(None);
                }
                Feed::Resync | Feed::Event(_) => p.reload().await,
                Feed::Failed(why) => {
                    p.error.try_set(Some(why));
                }
                Feed::Disconnected => {}
            }
        }
    });
    let mut jobs_feed = ws::subscribe::<experiments::AllJobEvents, Value>(
        experiments::all_job_events::Variables {},
    )
    .scoped();
    leptos::task::spawn_local(async move {
        while let Some(item) = jobs_feed.next().await {
            let Feed::Event(ev) = item else { continue };
            let ev = experiments::job_change(&ev);
            let mut known = false;
            p.details.try_update(|d| {
                let job = d.as_mut().and_then(|d| {
                    d.jobs
                        .iter_mut()
                        .find(|j| j.node_id == ev.node_id && j.name == ev.name)
                });
                if let Some(j) = job {
                    known = true;
                    if let Some(state) = &ev.state {
                        j.state = state.clone();
                    }
                }
            });
            let ours = p.details.with_untracked(|d| {
                d.as_ref()
                    .is_some_and(|d| d.nodes.iter().any(|n| n.id == ev.node_id))
            });
            if ev.kind == "RESYNC" || (ours && !known) {
                gloo_timers::future::TimeoutFuture::new(GATHER_MS).await;
                while let Some(Some(_)) = jobs_feed.next().now_or_never() {}
                p.reload().await;
            }
        }
    });

    // Notes and events, marked on the charts' time axes.
    let marks = Memo::new(move |_| {
        p.details.with(|d| {
            let Some(d) = d else { return Vec::new() };
            let notes = d.notes.iter().map(|n| Mark {
                time: js_sys::Date::parse(&n.time),
                text: format!(
                    "{} note by {}: {}",
                    clock(&n.time),
                    actor(&n.author),
                    n.text
                ),
                note: true,
            });
            let events = d.events.iter().map(|e| Mark {
                time: js_sys::Date::parse(&e.at),
                text: format!(
                    "{} {}: {} {}",
                    clock(&e.at),
                    actor(&e.actor),
                    e.action,
                    e.target.as_deref().unwrap_or_default()
                ),
                note: false,
            });
            notes.chain(events).collect::<Vec<_>>()
        })
    });

    let missing = derive(move || p.details.with(Option::is_none));
    let running = p.show(|d| d.running);
    let can = cluster.can_operate;
    let not_found = derive(move || !p.loaded.get() || p.details.with(Option::is_some));

    view! {
        <p><A href="/experiments">"← All experiments"</A></p>
        <Alert error=p.error/>
        <p class="empty" class:hidden=not_found>"No experiment " <code>{id.clone()}</code> "."</p>
        <Head p running can/>
        <div class:hidden=missing><profiles::Profiles p running can/></div>
        <charts::Charts id marks/>
        <div class="experiment-columns" class:hidden=missing>
            <Nodes p running can/>
            <Notes p can/>
        </div>
        <section class="events" inner_html=markup(move || p.details.with(|d| events(d.as_ref())))></section>
    }
}

/// The name, state, description and facts, with the download links, written as markup; for
/// operators, Rename and Edit buttons that edit the name and description in place, and (while
/// it runs) the End button, which asks first. One listener takes every button's click, by its
/// `data-act`.
#[component]
fn Head(p: Page, running: Signal<bool>, can: bool) -> impl IntoView {
    // What is being edited: "name", "description", "end" (asking), or nothing.
    let editing = RwSignal::new("");
    let draft = RwSignal::new(String::new());
    let action = Mutation::new();
    let id = move || p.id.get_value();
    let done = move |said: &'static str| {
        move |_: Value| {
            editing.set("");
            p.refresh();
            said.to_owned()
        }
    };
    let save = move |e: ev::SubmitEvent| {
        e.prevent_default();
        let text = draft.get_untracked().trim().to_owned();
        if editing.get_untracked() == "name" {
            let vars = experiments::rename_experiment::Variables {
                id: id(),
                name: text,
            };
            action.run_json::<experiments::RenameExperiment, _>(vars, done(""), None);
        } else {
            let vars = experiments::describe_experiment::Variables {
                id: id(),
                description: text,
            };
            action.run_json::<experiments::DescribeExperiment, _>(vars, done(""), None);
        }
    };
    let act = move |e: ev::MouseEvent| match clicked(&e, "button[data-act]", "data-act").as_deref()
    {
        Some("name") => {
            action.clear();
            draft.set(
                p.details
                    .with_untracked(|d| d.as_ref().map(|d| d.name.clone()).unwrap_or_default()),
            );
            editing.set("name");
        }
        Some("description") => {
            action.clear();
            draft.set(p.details.with_untracked(|d| {
                d.as_ref()
                    .map(|d| d.description.clone())
                    .unwrap_or_default()
            }));
            editing.set("description");
        }
        Some("end") => editing.set("end"),
        Some("confirm-end") => {
            let vars = experiments::end_experiment::Variables { id: id() };
            action.run_json::<experiments::EndExperiment, _>(vars, done("Ended."), None);
        }
        Some(_) => editing.set(""),
        None => {}
    };
    let head = markup(move || {
        let what = editing.get();
        p.details.with(|d| {
            d.as_ref()
                .map(|d| head(d, what, can && running.get()))
                .unwrap_or_default()
        })
    });
    view! {
        <div class="experiment-head" inner_html=head on:click=on(act)></div>
        <form class="edit-form" class:hidden=derive(move || !matches!(editing.get(), "name" | "description"))
            on:submit=on(save)>
            <textarea name="draft" rows=derive(move || if editing.get() == "name" { "1" } else { "3" })
                prop:value=draft on:input=bind(draft)></textarea>
            <button type="submit" prop:disabled=action.busy()>"Save"</button>
            <button type="button" on:click=on(move |_| editing.set(""))>"Cancel"</button>
        </form>
        <Feedback mutation=action/>
    }
}

/// The head's markup: `editing` is what is being edited (not shown), `can` whether the user
/// may change the experiment (an operator, while it runs).
fn head(d: &Details, editing: &str, can: bool) -> String {
    let mut html = String::with_capacity(1024);
    let button = |act: &str, class: &str, word: &str| {
        format!(r#" <button type="button" class="small {class}" data-act="{act}">{word}</button>"#)
    };
    if editing != "name" {
        let (word, class) = if d.running {
            ("running", "online")
        } else {
            ("ended", "offline")
        };
        let _ = write!(
            html,
            r#"<h1 class="experiment-name"><span class="name">{}</span> <span class="state {class}">{word}</span>{}</h1>"#,
            escape(&d.name),
            if can {
                button("name", "rename", "Rename")
            } else {
                String::new()
            }
        );
    }
    if editing != "description" {
        let text = if d.description.is_empty() {
            "No description."
        } else {
            &d.description
        };
        let _ = write!(
            html,
            r#"<p class="description">{}{}</p>"#,
            escape(text),
            if can {
                button("description", "edit", "Edit")
            } else {
                String::new()
            }
        );
    }
    let _ = write!(
        html,
        r#"<dl class="facts"><dt>Created</dt><dd class="created">{} by {}</dd>"#,
        local_time(&d.created),
        escape(actor(&d.created_by))
    );
    if let Some(t) = &d.ended {
        let _ = write!(
            html,
            r#"<dt>Ended</dt><dd class="ended">{} by {}</dd>"#,
            local_time(t),
            escape(actor(d.ended_by.as_deref().unwrap_or_default()))
        );
    }
    let q = String::from(js_sys::encode_uri_component(&d.id));
    html.push_str(r#"<dt>Download</dt><dd class="downloads">"#);
    for (what, file, more, word) in [
        ("readings", "readings.csv", "", "Readings"),
        (
            "readings-gz",
            "readings.csv",
            "&amp;gzip=true",
            "Readings (gzip)",
        ),
        ("logs", "logs.csv", "", "Logs"),
        ("events", "events.csv", "", "Events"),
    ] {
        let _ = write!(
            html,
            r#"<a class="download" data-export="{what}" href="/export/{file}?experiment={q}{more}" download>{word} (CSV)</a>"#
        );
    }
    html.push_str("</dd></dl>");
    if can && editing == "end" {
        html.push_str(r#"<p class="confirm">End it? Its nodes leave it; their jobs keep running, in no experiment. <button type="button" class="danger confirm-end" data-act="confirm-end">End it</button> <button type="button" data-act="cancel">Cancel</button></p>"#);
    } else if can {
        html.push_str(r#"<p class="end-experiment"><button type="button" class="danger end" data-act="end">End experiment</button></p>"#);
    }
    html
}

/// The events' markup: what people did to it, its nodes and their jobs, newest first.
fn events(d: Option<&Details>) -> String {
    let Some(d) = d else { return String::new() };
    let mut html = String::from("<h2>Events</h2>");
    if d.events.is_empty() {
        html.push_str(r#"<p class="empty">Nothing done yet.</p>"#);
        return html;
    }
    html.push_str(r#"<table class="nodes audit experiment-events"><thead><tr><th>When</th><th>Who</th><th>What</th><th>On</th><th>Outcome</th></tr></thead><tbody>"#);
    for e in &d.events {
        let class = if e.outcome == "ok" {
            "state online"
        } else {
            "state lost"
        };
        let _ = write!(
            html,
            r#"<tr data-audit-id="{}"><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td><span class="{class}">{}</span></td></tr>"#,
            e.id,
            local_time(&e.at),
            escape(actor(&e.actor)),
            escape(&e.action),
            escape(e.target.as_deref().unwrap_or_default()),
            escape(&e.outcome)
        );
    }
    html.push_str("</tbody></table>");
    html
}

/// The jobs' markup: those that ran or run in it, with their states, each linking to its page.
fn jobs(d: &Details, name_of: impl Fn(&str) -> String) -> String {
    let mut html = String::from("<h2>Jobs</h2>");
    if d.jobs.is_empty() {
        html.push_str(r#"<p class="empty">No jobs have run in it.</p>"#);
        return html;
    }
    html.push_str(r#"<table class="nodes experiment-jobs"><thead><tr><th>Node</th><th>Job</th><th>Kind</th><th>State</th></tr></thead><tbody>"#);
    for j in &d.jobs {
        let (word, class) = j.state.word();
        let (nid, name) = (escape(&j.node_id), escape(&j.name));
        let _ = write!(
            html,
            r#"<tr data-job="{nid}/{name}" data-state="{}"><td><a href="/nodes/{nid}">{}</a></td><td><a href="/nodes/{nid}/jobs/{name}">{name}</a></td><td><span class="badge kind">{}</span></td><td><span class="{class}">{}</span></td></tr>"#,
            escape(j.state.name()),
            escape(&name_of(&j.node_id)),
            escape(&j.kind),
            escape(word)
        );
    }
    html.push_str("</tbody></table>");
    html
}

/// The experiment's nodes, each with a Remove button; and a control that adds one (moving it
/// from another running experiment when the user says so).
#[component]
fn Nodes(p: Page, running: Signal<bool>, can: bool) -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let action = Mutation::new();
    let adding = RwSignal::new(String::new());
    // Whether the last add was refused for a node another experiment holds.
    let held = RwSignal::new(false);
    // The running experiment other than this one that holds a node, by name.
    let holder_of = move |node_id: &str| {
        let this = p.id.get_value();
        p.running.with(|r| {
            r.iter()
                .find(|e| e.id != this && e.nodes.iter().any(|n| n.id == node_id))
                .map(|e| e.name.clone())
        })
    };
    let all = node_names(cluster);
    let locked = derive(move || !can || !running.get());
    let remove = move |e: ev::MouseEvent| {
        let Some(node_id) = clicked(&e, "button.remove-node", "data-id") else {
            return;
        };
        let vars = experiments::remove_experiment_nodes::Variables {
            id: p.id.get_value(),
            node_ids: vec![node_id],
        };
        action.run_json::<experiments::RemoveExperimentNodes, _>(
            vars,
            move |_| {
                p.refresh();
                String::new()
            },
            None,
        );
    };
    let add = move |move_nodes: bool| {
        let node_id = adding.get_untracked();
        if node_id.is_empty() {
            action.fail("Choose a node to add.");
            return;
        }
        held.set(false);
        let vars = experiments::add_experiment_nodes::Variables {
            id: p.id.get_value(),
            node_ids: vec![node_id.clone()],
            move_nodes,
        };
        let refused = move |r: crate::api::Refusal| {
            let name = all.with_untracked(|a| {
                a.iter()
                    .find(|(id, _)| *id == node_id)
                    .map_or(node_id.clone(), |(_, n)| n.clone())
            });
            let taken = holder_of(&node_id)
                .map(|exp| (name, exp))
                .into_iter()
                .collect::<Vec<_>>();
            match conflict_words(&taken).filter(|_| r.code == "CONFLICT") {
                Some(words) => {
                    held.set(true);
                    words
                }
                None => r.message,
            }
        };
        action.run_json::<experiments::AddExperimentNodes, _>(
            vars,
            move |_| {
                adding.set(String::new());
                p.refresh();
                String::new()
            },
            Some(Box::new(refused)),
        );
    };
    let list = markup(move || {
        let locked = locked.get();
        p.details.with(|d| {
            let mut html = String::new();
            for n in d.iter().flat_map(|d| &d.nodes) {
                let (id, name) = (escape(&n.id), escape(&n.name));
                let _ = write!(html, r#"<li data-node-id="{id}"><a href="/nodes/{id}">{name}</a>"#);
                if !locked {
                    let _ = write!(
                        html,
                        r#" <button type="button" class="small remove-node" data-id="{id}">Remove</button>"#
                    );
                }
                html.push_str("</li>");
            }
            if html.is_empty() {
                html.push_str(r#"<li class="empty">No nodes in it now.</li>"#);
            }
            html
        })
    });
    // The nodes not in it, each saying which running experiment holds it, if one does.
    let choices = markup(move || {
        let mut html = String::from(r#"<option value="">Add a node…</option>"#);
        p.details.with(|d| {
            all.with(|a| {
                for (id, name) in a {
                    if d.as_ref()
                        .is_some_and(|d| d.nodes.iter().any(|n| n.id == *id))
                    {
                        continue;
                    }
                    let held = holder_of(id);
                    let by = held
                        .map(|e| format!(" (in “{}”)", escape(&e)))
                        .unwrap_or_default();
                    let _ = write!(
                        html,
                        r#"<option value="{}">{}{by}</option>"#,
                        escape(id),
                        escape(name)
                    );
                }
            })
        });
        html
    });
    // New choices show "Add a node…" again.
    Effect::new(move |_| {
        choices.track();
        adding.set(String::new());
    });
    let busy = action.busy();
    let jobs = markup(move || {
        p.details.with(|d| {
            d.as_ref()
                .map(|d| jobs(d, |id| name_of(all, id)))
                .unwrap_or_default()
        })
    });
    view! {
        <section class="experiment-nodes">
        <h2>"Nodes"</h2>
        <ul class="experiment-node-list" inner_html=list on:click=on(remove)></ul>
        <form class="add-node actions" class:hidden=locked on:submit=on(move |e: ev::SubmitEvent| { e.prevent_default(); add(false); })>
            <select name="add-node" inner_html=choices
                on:change=on(move |e| { held.set(false); adding.set(event_target_value(&e)); })></select>
            <button type="submit" class="add" prop:disabled=busy>"Add"</button>
            <button type="button" class="move-node" class:hidden=derive(move || !held.get())
                prop:disabled=busy on:click=on(move |_| add(true))>"Move it here"</button>
        </form>
        <Feedback mutation=action/>
        <div inner_html=jobs></div>
        </section>
    }
}

/// The notes, oldest first, and a form adding one.
#[component]
fn Notes(p: Page, can: bool) -> impl IntoView {
    let text = RwSignal::new(String::new());
    let action = Mutation::new();
    let add = move |e: ev::SubmitEvent| {
        e.prevent_default();
        let t = text.get_untracked().trim().to_owned();
        if t.is_empty() {
            action.fail("Write the note first.");
            return;
        }
        let vars = experiments::annotate_experiment::Variables {
            id: p.id.get_value(),
            text: t,
        };
        action.run_json::<experiments::AnnotateExperiment, _>(
            vars,
            move |_| {
                text.set(String::new());
                p.refresh();
                String::new()
            },
            None,
        );
    };
    let notes = markup(move || {
        let mut html = String::new();
        p.details.with(|d| {
            for n in d.iter().flat_map(|d| &d.notes) {
                let _ = write!(
                    html,
                    r#"<li data-note-id="{}"><p class="note-text">{}</p><small>{} · {}</small></li>"#,
                    n.id,
                    escape(&n.text),
                    local_time(&n.time),
                    escape(actor(&n.author))
                );
            }
        });
        if html.is_empty() {
            html.push_str(r#"<li class="empty">No notes yet.</li>"#);
        }
        html
    });
    view! {
        <section class="notes">
            <h2>"Notes"</h2>
            <ol class="notes" inner_html=notes></ol>
            <form class="add-note" class:hidden=!can on:submit=on(add)>
                <textarea name="note" rows="2" placeholder="What happened, what you changed, what you saw…"
                    prop:value=text on:input=bind(text)></textarea>
                <button type="submit" class="add-note" prop:disabled=action.busy()>"Add note"</button>
            </form>
            <Feedback mutation=action/>
        </section>
    }
}
