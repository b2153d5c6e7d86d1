//! A job's own page, `/nodes/<node>/jobs/<name>`: its card as the node page shows it (state,
//! actions, latest values, settings), its newest readings by metric, and its live log.
//!
//! - The card comes from the node's job list, as on the node page, and the readings from
//!   `readings(job)`; both are loaded again when the job's events arrive (gathered for a second,
//!   as on the node page: a job reports its values every second).
//! - The log starts with the newest 200 lines the leader keeps, then appends each line the
//!   `jobLogs` feed brings; after a (re)connect or a server `RESYNC` the list is loaded again. The
//!   page keeps the newest [`KEEP_LINES`], and follows the end while the reader is there.

use std::{collections::BTreeMap, sync::Arc};

use futures::{FutureExt, StreamExt};
use leptos::{html, prelude::*};

use super::jobs::{JobCard, RELOAD_EVERY_MS, Section, reload, reload_jobs};
use crate::{
    Cluster,
    api::{
        self,
        jobs::{self, JobEventKind, JobLogEventKind, LogLine, Reading},
        ws::{self, Feed},
    },
    components::{Alert, clock, number, router::A},
};

/// Log lines the page keeps: minutes of a chatty program to scroll back over, few enough that
/// each new line stays cheap to add.
const KEEP_LINES: usize = 1_000;

/// The job page.
#[component]
pub fn JobPage(
    /// The node's id, from the path.
    node_id: Memo<String>,
    /// The job's name, from the path.
    name: Memo<String>,
) -> impl IntoView {
    // Another job's page (a link from one to another) gets a fresh view with its own feeds.
    move || view! { <JobView node_id=node_id.get() name=name.get()/> }
}

/// The log as the page holds it: each line with a number of its own, the key its row keeps
/// while older lines leave. Shared (`Arc`), so the list is cheap to copy for each new line.
type Lines = RwSignal<Vec<(u64, Arc<LogLine>)>>;

/// Job `name` of node `node_id`.
#[component]
fn JobView(node_id: String, name: String) -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let error = RwSignal::new(None::<String>);
    let s = Section::new(node_id.clone(), error);
    // Whether the node's jobs were loaded (before, a job not among them is not yet missing).
    let loaded = RwSignal::new(false);
    let readings = RwSignal::new(Vec::<Reading>::new());
    let lines: Lines = RwSignal::new(Vec::new());
    let dropped = RwSignal::new(0i64);
    let log_error = RwSignal::new(None::<String>);
    let log_box = NodeRef::<html::Ol>::new();

    let mut feed = ws::subscribe::<jobs::JobEvents, jobs::job_events::ResponseData>(
        jobs::job_events::Variables {
            node_id: node_id.clone(),
        },
    )
    .scoped();
    let this = name.clone();
    leptos::task::spawn_local(async move {
        let node_id = s.node_id.get_value();
        while let Some(item) = feed.next().await {
            match item {
                Feed::Resync => reload(s, &node_id, error).await,
                Feed::Event(ev) => {
                    let ev = ev.job_events;
                    if ev.kind != JobEventKind::RESYNC && ev.name != this {
                        continue;
                    }
                    gloo_timers::future::TimeoutFuture::new(RELOAD_EVERY_MS).await;
                    while let Some(Some(_)) = feed.next().now_or_never() {}
                    reload_jobs(s, &node_id, error).await;
                }
                Feed::Failed(why) => {
                    error.try_set(Some(why));
                    continue;
                }
                Feed::Disconnected => continue,
            }
            // A list that failed to load says nothing of whether the job exists.
            if error.with_untracked(Option::is_none) {
                loaded.try_set(true);
            }
            reload_readings(&node_id, &this, readings, error).await;
        }
    });

    let mut log = ws::subscribe::<jobs::JobLogs, jobs::JobLogData>(jobs::job_logs::Variables {
        node_id: node_id.clone(),
        name: name.clone(),
    })
    .scoped();
    let (log_node, log_job) = (node_id.clone(), name.clone());
    leptos::task::spawn_local(async move {
        let mut next = 0u64;
        // Lines that arrived while the list was loading may be in it already: until the first
        // line it does not hold, each is checked against it (the feed keeps the log's order).
        let mut overlap = false;
        while let Some(item) = log.next().await {
            let line = match item {
                Feed::Event(ev) => match (ev.job_logs.kind, ev.job_logs.line) {
                    (JobLogEventKind::LINE, Some(line)) => Some(line),
                    // RESYNC (this page fell behind), or a kind this app does not know.
                    _ => None,
                },
                Feed::Resync => None,
                Feed::Failed(why) => {
                    log_error.try_set(Some(why));
                    continue;
                }
                Feed::Disconnected => continue,
            };
            let Some(line) = line else {
                let vars = jobs::job_log_lines::Variables {
                    node_id: log_node.clone(),
                    name: log_job.clone(),
                };
                overlap = reload_log(vars, lines, &mut next, dropped, log_error).await;
                follow(log_box);
                continue;
            };
            if overlap && lines.with_untracked(|l| l.iter().any(|(_, x)| **x == line)) {
                continue;
            }
            overlap = false;
            next += 1;
            append(lines, log_box, next, line);
        }
    });

    let node_name = {
        let id = node_id.clone();
        Memo::new(move |_| {
            cluster
                .nodes
                .with(|l| l.iter().find(|n| n.id == id).map(|n| n.name.clone()))
                .unwrap_or_else(|| id.clone())
        })
    };
    // The card follows the job's kind: a name started again as another kind gets a fresh card.
    let kind = {
        let name = name.clone();
        Memo::new(move |_| {
            s.jobs
                .with(|l| l.iter().find(|j| j.name == name).map(|j| j.kind.clone()))
        })
    };
    let card_name = name.clone();
    // Parts that come and go are hidden, each by a `Signal<bool>`: one type for all of them,
    // so the wasm carries their code once (a closure each would be its own code).
    let no_readings = Signal::derive(move || readings.with(Vec::is_empty));
    let no_lines = Signal::derive(move || lines.with(Vec::is_empty));

    view! {
        <p><A href=format!("/nodes/{node_id}")>"← " {node_name}</A></p>
        <h1>{name.clone()} " " <small class="counts">"job on " {node_name}</small></h1>
        <section class="jobs job-page">
            <Alert error/>
            <p class="empty" class:hidden=Signal::derive(move || !loaded.get() || kind.with(Option::is_some))>
                "This node has no job " <code>{name}</code> "."
            </p>
            {move || kind.get().map(|kind| view! { <JobCard s name=card_name.clone() kind/> })}
            <h2>"Readings"</h2>
            <p class="empty" class:hidden=Signal::derive(move || !no_readings.get())>
                "No readings from this job."
            </p>
            <table class="values readings" class:hidden=no_readings>
                <caption>"Its newest 200 readings, by metric"</caption>
                <thead><tr><th>"metric"</th><th>"latest"</th><th>"readings"</th></tr></thead>
                <tbody>
                    {move || readings.with(|r| per_metric(r)).into_iter().map(|(metric, latest, count)| {
                        let key = metric.clone();
                        view! {
                            <tr data-metric=key>
                                <th>{metric}</th><td class="value">{latest}</td><td>{count}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            <h2>"Log"</h2>
            <Alert error=log_error/>
            <p class="empty" class:hidden=Signal::derive(move || dropped.get() == 0)>
                {move || format!("{} older lines not kept.", dropped.get())}
            </p>
            <p class="empty" class:hidden=Signal::derive(move || !no_lines.get())>"No log lines yet."</p>
            <ol class="log" node_ref=log_box class:hidden=no_lines>
                <For each=move || lines.get() key=|(n, _)| *n children=|(_, l)| {
                    let (word, class) = l.stream.word();
                    view! {
                        <li class=class>
                            <time datetime=l.time.clone()>{clock(&l.time)}</time>
                            <span class="stream">{word}</span>
                            <span class="text">{l.line.clone()}</span>
                        </li>
                    }
                }/>
            </ol>
        </section>
    }
}

/// Loads the job's newest readings.
async fn reload_readings(
    node_id: &str,
    name: &str,
    readings: RwSignal<Vec<Reading>>,
    error: RwSignal<Option<String>>,
) {
    let vars = jobs::job_readings::Variables {
        node_id: node_id.to_owned(),
        name: name.to_owned(),
    };
    match api::run::<jobs::JobReadings>(vars).await {
        Ok(d) => {
            readings.try_set(d.readings);
        }
        Err(e) => {
            error.try_set(Some(e));
        }
    }
}

/// Loads the newest lines of the log in place of what the page holds; true if it did (then
/// lines the feed brought meanwhile may repeat some of them).
async fn reload_log(
    vars: jobs::job_log_lines::Variables,
    lines: Lines,
    next: &mut u64,
    dropped: RwSignal<i64>,
    error: RwSignal<Option<String>>,
) -> bool {
    match api::run::<jobs::JobLogLines>(vars).await {
        Ok(d) => {
            let (got, older) = d.job.map(|j| (j.logs, j.logs_dropped)).unwrap_or_default();
            let numbered = got
                .into_iter()
                .map(|l| {
                    *next += 1;
                    (*next, Arc::new(l))
                })
                .collect();
            lines.try_set(numbered);
            dropped.try_set(older);
            error.try_set(None);
            true
        }
        Err(e) => {
            error.try_set(Some(e));
            false
        }
    }
}

/// Adds a line at the end of the log (dropping the oldest past [`KEEP_LINES`]). A reader at the
/// end of the list is kept there; one who scrolled back is left where they are.
fn append(lines: Lines, log_box: NodeRef<html::Ol>, n: u64, line: LogLine) {
    // The page may be gone (its feed still had lines queued): then nothing is shown.
    let at_end = log_box
        .try_get_untracked()
        .flatten()
        .is_none_or(|b| b.scroll_top() + b.client_height() + 8 >= b.scroll_height());
    lines.try_update(|l| {
        l.push((n, Arc::new(line)));
        let over = l.len().saturating_sub(KEEP_LINES);
        l.drain(..over);
    });
    if at_end {
        follow(log_box);
    }
}

/// Scrolls the log to its end once what was just put in it is in the page (the list renders
/// in a microtask, before the next frame).
fn follow(log_box: NodeRef<html::Ol>) {
    request_animation_frame(move || {
        if let Some(b) = log_box.try_get_untracked().flatten() {
            b.set_scroll_top(b.scroll_height());
        }
    });
}

/// The readings by metric, by name: the latest value with its unit, and how many there are.
fn per_metric(readings: &[Reading]) -> Vec<(String, String, usize)> {
    let mut m = BTreeMap::<&str, (&Reading, usize)>::new();
    // Oldest first: the last of each metric is its latest.
    for r in readings {
        let e = m.entry(r.metric.as_str()).or_insert((r, 0));
        *e = (r, e.1 + 1);
    }
    m.into_iter()
        .map(|(metric, (r, count))| {
            let latest = match &r.unit {
                Some(unit) => format!("{} {unit}", number(r.value)),
                None => number(r.value),
            };
            (metric.to_owned(), latest, count)
        })
        .collect()
}
