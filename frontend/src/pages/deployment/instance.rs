//! One node's instance of a deployment, `/deployments/<name>/<node>`: its state and container,
//! its live log, its live resource use (CPU, memory, network, disk, with a sparkline of the
//! CPU), its container's exits with their last lines ("why did it restart?"), and a box that
//! runs a command in the container.
//!
//! - The facts and exits come from `deploymentInstance`, loaded again after the deployment's
//!   events, as the deployment page does.
//! - The log is `containerLogs` (the last 100 lines, then each new one), standard error marked.
//!   A container's log ends when the container stops or goes (a new revision, a removal): the
//!   page asks again once the instance changes, and shows the new container's last lines. Lines are added to the list in the
//!   page as they come, not written out again each time; the page keeps the newest
//!   [`KEEP_LINES`] and follows the end while the reader is there.
//! - The stats are `containerStats`, about once a second, asked again in the same way.
//! - Both feeds are tasks of the page, cancelled (and so unsubscribed) when it goes.

use std::fmt::Write;

use futures::{FutureExt, StreamExt};
use leptos::{ev, html, prelude::*};
use serde_json::Value;
use wasm_bindgen::JsCast;

use crate::{
    Cluster,
    api::{
        self,
        deployments::{self as dep, instance_class, items, s, split_args},
        ws::{self, Feed},
    },
    components::{
        Alert, Feedback, Mutation, clock, escape, local_time, markup, name_of, node_names, number,
        on, size,
    },
    pages::deployments::follow,
};

/// Log lines the page keeps.
const KEEP_LINES: u32 = 1_000;
/// CPU samples the sparkline draws (about a minute).
const SPARK_POINTS: usize = 60;
/// How often the page looks whether the instance changed, after its log or stats ended.
const RECHECK_MS: u32 = 500;

/// The instance page.
#[component]
pub fn InstancePage(
    /// The deployment's name, from the path.
    name: Memo<String>,
    /// The node's id, from the path.
    node_id: Memo<String>,
) -> impl IntoView {
    move || view! { <InstanceView name=name.get() node_id=node_id.get()/> }
}

#[component]
fn InstanceView(name: String, node_id: String) -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let instance = RwSignal::new(Value::Null);
    let error = RwSignal::new(None::<String>);
    let log_error = RwSignal::new(None::<String>);
    let stats = RwSignal::new(Value::Null);
    let cpu = RwSignal::new(Vec::<f64>::new());
    let log_box = NodeRef::<html::Ol>::new();

    let (d, n) = (name.clone(), node_id.clone());
    let load = move || {
        let vars = dep::deployment_instance::Variables {
            id: d.clone(),
            node_id: n.clone(),
        };
        async move {
            match api::request(api::body::<dep::DeploymentInstance>(vars)).await {
                Ok(mut d) => {
                    instance.try_set(d["deploymentInstance"].take());
                    error.try_set(None);
                }
                Err(e) => {
                    error.try_set(Some(e));
                }
            }
        }
        .boxed_local()
    };
    let removed = move || {
        error.try_set(Some("The deployment was removed.".to_owned()));
    };
    follow(Some(name.clone()), error, Box::new(load), Box::new(removed));

    let (d, n) = (name.clone(), node_id.clone());
    let logs = move || {
        let vars = dep::container_logs::Variables {
            id: d.clone(),
            node_id: n.clone(),
        };
        ws::subscribe::<dep::ContainerLogs, Value>(vars)
    };
    let line = move |item: Feed<Value>| match item {
        // Every (re)subscription starts with the container's last lines.
        Feed::Resync => clear(log_box),
        Feed::Event(line) => {
            append(log_box, &line["containerLogs"]);
            log_error.try_set(None);
        }
        Feed::Failed(why) => {
            log_error.try_set(Some(why));
        }
        Feed::Disconnected => {}
    };
    keep(instance, Box::new(logs), Box::new(line), Box::new(|| {}));
    let (d, n) = (name.clone(), node_id.clone());
    let samples = move || {
        let vars = dep::container_stats::Variables {
            id: d.clone(),
            node_id: n.clone(),
        };
        ws::subscribe::<dep::ContainerStats, Value>(vars)
    };
    let sample = move |item: Feed<Value>| {
        if let Feed::Event(mut sample) = item {
            let sample = sample["containerStats"].take();
            let load = sample["cpuPercent"].as_f64().unwrap_or_default();
            cpu.try_update(|c| {
                c.push(load);
                let over = c.len().saturating_sub(SPARK_POINTS);
                c.drain(..over);
            });
            stats.try_set(sample);
        }
    };
    let ended = move || {
        stats.try_set(Value::Null);
    };
    keep(
        instance,
        Box::new(samples),
        Box::new(sample),
        Box::new(ended),
    );

    let names = node_names(cluster);
    let head = {
        let (name, id) = (name.clone(), node_id.clone());
        markup(move || {
            let page = escape(&name);
            format!(
                r#"<p><a href="/deployments/{}">← {page}</a></p><h1>{page} <small class="counts">on {}</small></h1>"#,
                escape(&String::from(js_sys::encode_uri_component(&name))),
                escape(&name_of(names, &id))
            )
        })
    };
    let facts = markup(move || instance.with(facts));
    let usage = markup(move || stats.with(|st| usage(st, &cpu.get())));
    let exits = markup(move || instance.with(restarts));

    view! {
        <div inner_html=head></div>
        <Alert error/>
        <div inner_html=facts></div>
        <section class="stats" inner_html=usage></section>
        <section class="container-log">
            <h2>"Log"</h2>
            <Alert error=log_error/>
            <ol class="log" node_ref=log_box></ol>
        </section>
        {cluster.can_operate.then(|| view! { <Exec name node_id/> })}
        <section class="restarts" inner_html=exits></section>
    }
}

/// Keeps a live feed of the page going: subscribes with `subscribe` and hands each item to
/// `each`. A container's feed ends when the container stops or goes (or fails when there is
/// none yet): then `ended` runs, and the page subscribes again once the instance it shows has
/// another container, state or restart count (a stopped container's log would otherwise be
/// sent again and again). The task is cancelled with the page, which unsubscribes. Not generic,
/// so the wasm carries the task once for both feeds.
fn keep(
    instance: RwSignal<Value>,
    subscribe: Box<dyn Fn() -> ws::Subscription<Value>>,
    each: Box<dyn Fn(Feed<Value>)>,
    ended: Box<dyn Fn()>,
) {
    let now = move || {
        instance.try_with_untracked(|i| {
            format!(
                "{} {} {}",
                s(i, "containerId"),
                s(i, "state"),
                i["restartCount"]
            )
        })
    };
    leptos::task::spawn_local_scoped_with_cancellation(async move {
        loop {
            let was = now();
            let mut feed = subscribe();
            while let Some(item) = feed.next().await {
                each(item);
            }
            ended();
            while now() == was {
                gloo_timers::future::TimeoutFuture::new(RECHECK_MS).await;
            }
        }
    });
}

/// Empties the log (a new subscription brings the last lines again).
fn clear(log_box: NodeRef<html::Ol>) {
    if let Some(b) = log_box.try_get_untracked().flatten() {
        b.set_inner_html("");
    }
}

/// Adds a line at the end of the log, dropping the oldest past [`KEEP_LINES`]. A reader at the
/// end is kept there; one who scrolled back is left where they are.
fn append(log_box: NodeRef<html::Ol>, line: &Value) {
    let Some(b) = log_box.try_get_untracked().flatten() else {
        return;
    };
    let at_end = b.scroll_top() + b.client_height() + 8 >= b.scroll_height();
    // TRELLIS lines say which container the log follows now (after a replacement).
    let (word, class) = match s(line, "stream") {
        "STDERR" => ("err", "stderr"),
        "TRELLIS" => ("trellis", "agent"),
        _ => ("out", "out"),
    };
    let at = s(line, "at");
    let row = format!(
        r#"<li class="{class}"><time datetime="{}">{}</time><span class="stream">{word}</span><span class="text">{}</span></li>"#,
        escape(at),
        clock(at),
        escape(s(line, "line"))
    );
    let _ = b.insert_adjacent_html("beforeend", &row);
    while b.child_element_count() > KEEP_LINES {
        match b.first_element_child() {
            Some(first) => first.remove(),
            None => break,
        }
    }
    if at_end {
        b.set_scroll_top(b.scroll_height());
    }
}

/// The instance's state, reason, container and revision.
fn facts(i: &Value) -> String {
    if i.is_null() {
        return String::new();
    }
    let state = s(i, "state");
    let mut html = format!(
        r#"<dl class="facts instance" data-state="{}"><dt>State</dt><dd><span class="{}">{}</span>"#,
        escape(state),
        instance_class(state),
        escape(&state.to_ascii_lowercase())
    );
    if let Some(why) = i["reason"].as_str() {
        let _ = write!(html, r#" <span class="reason">{}</span>"#, escape(why));
    }
    let since = i["runningSince"].as_str().map_or(String::new(), |t| {
        format!(", running since {}", local_time(t))
    });
    let exit = match (i["exitCode"].as_i64(), i["oomKilled"].as_bool()) {
        (_, Some(true)) => "killed for want of memory (OOM)".to_owned(),
        (Some(code), _) => format!("code {code}"),
        (None, _) => "—".to_owned(),
    };
    let _ = write!(
        html,
        r#"</dd><dt>Container</dt><dd><code>{}</code>{since}</dd><dt>Revision</dt><dd>{}</dd><dt>Restarts</dt><dd>{}</dd><dt>Last exit</dt><dd>{exit}</dd></dl>"#,
        escape(s(i, "containerName")),
        i["observedRevision"],
        i["restartCount"]
    );
    html
}

/// The last stats sample in words, with a sparkline of the CPU.
fn usage(st: &Value, cpu: &[f64]) -> String {
    let mut html = String::from("<h2>Resource use</h2>");
    if st.is_null() {
        html.push_str(r#"<p class="empty">No figures from the container now.</p>"#);
        return html;
    }
    let f = |k: &str| st[k].as_f64().unwrap_or_default();
    let bytes = |b: f64| size(b as i64);
    let limit = f("memoryLimit");
    let memory = if limit > 0.0 {
        format!(
            "{} of {} ({} %)",
            bytes(f("memoryBytes")),
            bytes(limit),
            number(f("memoryBytes") * 100.0 / limit)
        )
    } else {
        bytes(f("memoryBytes"))
    };
    let _ = write!(
        html,
        r#"<dl class="facts usage"><dt>CPU</dt><dd class="cpu">{} % {}</dd><dt>Memory</dt><dd class="memory">{memory}</dd><dt>Network</dt><dd class="net">{} received, {} sent</dd><dt>Disk</dt><dd>{} read, {} written</dd></dl>"#,
        number(f("cpuPercent")),
        sparkline(cpu),
        bytes(f("netRx")),
        bytes(f("netTx")),
        bytes(f("blockRead")),
        bytes(f("blockWrite"))
    );
    html
}

/// A small line of the CPU samples, scaled to their highest (at least 1 %).
fn sparkline(points: &[f64]) -> String {
    if points.len() < 2 {
        return String::new();
    }
    let top = points.iter().copied().fold(1.0, f64::max);
    let step = 120.0 / (SPARK_POINTS - 1) as f64;
    let start = SPARK_POINTS - points.len();
    let mut path = String::new();
    for (i, p) in points.iter().enumerate() {
        let x = (start + i) as f64 * step;
        let y = 20.0 - p / top * 18.0;
        let _ = write!(path, "{}{x:.1},{y:.1}", if i == 0 { "M" } else { "L" });
    }
    format!(
        r#"<svg class="sparkline" viewBox="0 0 120 21" width="120" height="21" role="img" aria-label="CPU over the last minute"><path d="{path}"/></svg>"#
    )
}

/// The container's exits, newest first, with their last lines.
fn restarts(i: &Value) -> String {
    let mut html = String::from("<h2>Exits</h2>");
    let all = items(i, "restarts");
    if all.is_empty() {
        html.push_str(r#"<p class="empty">Its containers have not exited.</p>"#);
        return html;
    }
    html.push_str(r#"<table class="nodes exits"><thead><tr><th>When</th><th>Revision</th><th>Exit</th><th>Its last lines</th></tr></thead><tbody>"#);
    for r in all {
        let exit = match (r["exitCode"].as_i64(), r["oomKilled"].as_bool()) {
            (_, Some(true)) => r#"<span class="state lost">OOM killed</span>"#.to_owned(),
            (Some(code), _) => format!("code {code}"),
            (None, _) => "—".to_owned(),
        };
        let _ = write!(
            html,
            r#"<tr><td>{}</td><td class="num">{}</td><td>{exit}</td><td><pre class="log-tail">{}</pre></td></tr>"#,
            local_time(s(r, "at")),
            r["revision"],
            escape(s(r, "logTail"))
        );
    }
    html.push_str("</tbody></table>");
    html
}

/// A command run in the container, with its exit code and output. The form is markup, read
/// when it is sent.
#[component]
fn Exec(name: String, node_id: String) -> impl IntoView {
    let result = RwSignal::new(Value::Null);
    let action = Mutation::new();
    let run = move |e: ev::SubmitEvent| {
        e.prevent_default();
        let typed = e
            .target()
            .and_then(|f| f.dyn_into::<web_sys::HtmlFormElement>().ok())
            .and_then(|f| web_sys::FormData::new_with_form(&f).ok())
            .and_then(|d| d.get("exec").as_string())
            .unwrap_or_default();
        let args = match split_args(&typed) {
            Some(a) if !a.is_empty() => a,
            Some(_) => return action.fail("Write the command to run."),
            None => return action.fail("A quote is not closed."),
        };
        let vars = dep::exec_in_instance::Variables {
            id: name.clone(),
            node_id: node_id.clone(),
            command: args,
        };
        result.set(Value::Null);
        action.run_json::<dep::ExecInInstance, _>(
            vars,
            move |mut d| {
                result.try_set(d["execInInstance"].take());
                String::new()
            },
            None,
        );
    };
    let output = markup(move || {
        result.with(|r| {
            if r.is_null() {
                return String::new();
            }
            let mut html = format!(
                r#"<p class="exit-code">Exit code <strong>{}</strong>{}</p>"#,
                r["exitCode"],
                if r["truncated"].as_bool().unwrap_or_default() {
                    " (output cut at 1 MiB)"
                } else {
                    ""
                }
            );
            for (key, word) in [("stdout", "Standard output"), ("stderr", "Standard error")] {
                let text = s(r, key);
                if !text.is_empty() {
                    let _ = write!(
                        html,
                        r#"<p class="hint">{word}</p><pre class="{key}">{}</pre>"#,
                        escape(text)
                    );
                }
            }
            html
        })
    });
    view! {
        <section class="exec">
            <h2>"Run a command in it"</h2>
            <form class="exec actions" on:submit=on(run) inner_html=EXEC_FORM></form>
            <Feedback mutation=action/>
            <div class="exec-result" inner_html=output></div>
        </section>
    }
}

/// The exec form's fields.
const EXEC_FORM: &str = r#"<input type="text" name="exec" placeholder="ls -l /" autocomplete="off"><button type="submit">Run</button><small class="hint">No shell: for one, run sh -c "…". It stops after 30 s.</small>"#;
