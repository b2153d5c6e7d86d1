//! One deployment, `/deployments/<name>`: its state and revisions in a line, with Start, Stop,
//! Restart, Edit and Remove (after a confirmation in the page) for operators; a red banner when
//! its newest revision failed (rolled back, or its rollout paused, with the reason); its last
//! rollout with each batch's nodes and which batch is under way; each node's instance (state,
//! reason, container, revision, restarts, last exit) with its own Start / Stop / Restart and a
//! link to its log, stats and exec ([`instance`]); what its spec asks for; and its revisions,
//! newest first, each with its cause, author, changes and outcome, and a button that rolls back
//! to it.
//!
//! - The page comes from one `deployment(id)` query, loaded again after each burst of the
//!   deployment's events (`deploymentEvents(id)`: a new revision, an instance's state, a rollout's
//!   batch), which also keeps it right while a rollout moves.
//! - The parts are written as markup, every text in it escaped, and their buttons are handled by
//!   one listener, by their `data-act`, as the experiment page's are (see there for why).
//! - The edit form ([`SpecForm`]) starts from the spec of the revision that should run and names
//!   the newest revision, so a change made meanwhile by someone else is refused in words.

mod instance;

use std::fmt::Write;

use futures::FutureExt;
use leptos::{ev, prelude::*};
use serde_json::Value;

pub use instance::InstancePage;

use crate::{
    Cluster,
    api::{
        self,
        deployments::{
            self as dep, actor, instance_class, items, join_args, outcome_class, pairs_text, s,
            target_words,
        },
    },
    components::{
        Alert, Feedback, Mutation, clicked, derive, escape, local_time, markup, name_of,
        node_names, on,
    },
    pages::deployments::{Edit, SpecForm, follow},
};

/// The deployment page.
#[component]
pub fn DeploymentPage(
    /// The deployment's name, from the path.
    name: Memo<String>,
) -> impl IntoView {
    // Another deployment's link gets a fresh view, with its own feed.
    move || view! { <DeploymentView name=name.get()/> }
}

/// What a click on one of the page's buttons asks for.
fn act(
    e: &ev::MouseEvent,
    name: &str,
    d: RwSignal<Value>,
    confirming: RwSignal<bool>,
    editing: RwSignal<bool>,
    action: Mutation,
) {
    let Some(what) = clicked(e, "button[data-act]", "data-act") else {
        return;
    };
    let node = clicked(e, "button[data-act]", "data-node");
    let id = name.to_owned();
    let done = |_: Value| String::new();
    action.clear();
    match what.as_str() {
        "start" => {
            let vars = dep::start_deployment::Variables { id, node_id: node };
            action.run_json::<dep::StartDeployment, _>(vars, done, None);
        }
        "stop" => {
            let vars = dep::stop_deployment::Variables { id, node_id: node };
            action.run_json::<dep::StopDeployment, _>(vars, done, None);
        }
        "restart" => {
            let vars = dep::restart_deployment::Variables { id, node_id: node };
            action.run_json::<dep::RestartDeployment, _>(vars, done, None);
        }
        "resume" => {
            let vars = dep::resume_rollout::Variables { id };
            action.run_json::<dep::ResumeRollout, _>(vars, done, None);
        }
        "rollback" => {
            let Some(to) =
                clicked(e, "button[data-act]", "data-revision").and_then(|r| r.parse::<i64>().ok())
            else {
                return;
            };
            let vars = dep::rollback_deployment::Variables {
                id,
                to_revision: to,
            };
            action.run_json::<dep::RollbackDeployment, _>(
                vars,
                move |d| {
                    format!(
                        "Revision {} made from revision {to}; it rolls out now.",
                        d["rollbackDeployment"]["latestRevision"]
                    )
                },
                None,
            );
        }
        "edit" => editing.set(true),
        "remove" => confirming.set(true),
        "cancel" => confirming.set(false),
        "confirm-remove" => {
            confirming.set(false);
            let vars = dep::remove_deployment::Variables { id };
            action.run_json::<dep::RemoveDeployment, _>(
                vars,
                move |_| {
                    d.try_update(|d| d["removing"] = true.into());
                    "Removing: its containers go first.".to_owned()
                },
                None,
            );
        }
        _ => {}
    }
}

#[component]
fn DeploymentView(name: String) -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let d = RwSignal::new(Value::Null);
    let loaded = RwSignal::new(false);
    let gone = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let confirming = RwSignal::new(false);
    let editing = RwSignal::new(false);
    let action = Mutation::new();
    let id = name.clone();
    let load = move || {
        let id = id.clone();
        async move {
            let body = api::body::<dep::Deployment>(dep::deployment::Variables { id });
            match api::request(body).await {
                Ok(mut answer) => {
                    d.try_set(answer["deployment"].take());
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
    let removed = move || {
        gone.try_set(true);
        d.try_set(Value::Null);
    };
    follow(Some(name.clone()), error, Box::new(load), Box::new(removed));

    let can = cluster.can_operate;
    let names = node_names(cluster);
    let node_name = move |id: &str| name_of(names, id);
    let head = markup(move || {
        let confirming = confirming.get();
        d.with(|d| {
            if d.is_null() {
                String::new()
            } else {
                head(d, can, confirming)
            }
        })
    });
    let banner = markup(move || d.with(banner));
    let rollout = markup(move || d.with(|d| rollout(d, node_name)));
    let nodes = {
        let page = name.clone();
        markup(move || d.with(|d| instances(d, &page, can, node_name)))
    };
    let spec = markup(move || d.with(|d| spec(&d["spec"], node_name)));
    let history = markup(move || d.with(|d| revisions(d, can)));
    let missing = derive(move || d.with(Value::is_null));
    // Above the page: the way back, and whether there is no such deployment (any longer).
    let status = {
        let name = escape(&name);
        markup(move || {
            let mut html = String::from(r#"<p><a href="/deployments">← All deployments</a></p>"#);
            if gone.get() {
                let _ = write!(
                    html,
                    r#"<p class="message gone" role="status">Deployment <code>{name}</code> was removed.</p>"#
                );
            } else if loaded.get() && missing.get() {
                let _ = write!(
                    html,
                    r#"<p class="empty">No deployment <code>{name}</code>.</p>"#
                );
            }
            html
        })
    };
    let page = name;
    let click = move |e: ev::MouseEvent| act(&e, &page, d, confirming, editing, action);
    let form = move || {
        editing.get().then(|| {
            let edit = d.with_untracked(|d| Edit {
                id: s(d, "id").to_owned(),
                revision: d["latestRevision"].as_i64().unwrap_or_default(),
                spec: d["spec"].clone(),
                open: editing,
            });
            view! { <h2>"Edit"</h2><SpecForm edit/> }
        })
    };

    view! {
        <div inner_html=status></div>
        <Alert error/>
        <div class="deployment" class:hidden=missing on:click=on(click)>
            <div inner_html=head></div>
            <Feedback mutation=action/>
            <div inner_html=banner></div>
            {form}
            <section class="rollout" inner_html=rollout></section>
            <section class="instances" inner_html=nodes></section>
            <section class="spec" inner_html=spec></section>
            <section class="revisions" inner_html=history></section>
        </div>
    }
}

/// A button of the page, handled by its `data-act` (and `data-node`, `data-revision`).
fn button(act: &str, word: &str, class: &str, more: &str) -> String {
    format!(r#"<button type="button" class="small {class}" data-act="{act}"{more}>{word}</button>"#)
}

/// The name, state and revisions, with the actions on the whole deployment.
fn head(d: &Value, can: bool, confirming: bool) -> String {
    let removing = d["removing"].as_bool().unwrap_or_default();
    let (word, class) = match (removing, s(d, "runState")) {
        (true, _) => ("removing", "state paused"),
        (false, "running") => ("running", "state online"),
        (false, _) => ("stopped", "state offline"),
    };
    let live = d["liveRevision"]
        .as_i64()
        .map_or("none yet".to_owned(), |r| r.to_string());
    let mut html = format!(
        r#"<h1 class="deployment-name"><span class="name">{}</span> <span class="{class} run-state">{word}</span></h1><p class="revisions-line">Revision {} is the newest; revision {} should run; revision {live} last rolled out completely. Created by {} on {}.</p>"#,
        escape(s(d, "name")),
        d["latestRevision"],
        d["targetRevision"],
        escape(actor(s(d, "createdBy"))),
        local_time(s(d, "created"))
    );
    if !can || removing {
        return html;
    }
    html.push_str(r#"<p class="deployment-actions">"#);
    if s(d, "runState") == "running" {
        html.push_str(&button("stop", "Stop", "stop", ""));
    } else {
        html.push_str(&button("start", "Start", "start", ""));
    }
    html.push_str(&button("restart", "Restart", "restart", ""));
    html.push_str(&button("edit", "Edit", "edit", ""));
    if confirming {
        let _ = write!(
            html,
            r#"<span class="confirm">Remove {}? Its containers are stopped and removed on every node. {}{}</span>"#,
            escape(s(d, "name")),
            button("confirm-remove", "Remove it", "danger confirm-remove", ""),
            button("cancel", "Cancel", "", "")
        );
    } else {
        html.push_str(&button("remove", "Remove", "danger remove", ""));
    }
    html.push_str("</p>");
    html
}

/// A red banner when the newest revision failed: rolled back on its own, or its rollout paused.
fn banner(d: &Value) -> String {
    let newest = &d["revisions"][0];
    let r = &d["lastRollout"];
    let paused = s(r, "state") == "paused";
    if s(newest, "outcome") != "failed" && !paused {
        return String::new();
    }
    let revision = &newest["revision"];
    let target = &d["targetRevision"];
    let what = if paused {
        format!("The rollout of revision {} is paused", r["toRevision"])
    } else if target != revision {
        format!("Revision {revision} failed and was rolled back to revision {target}")
    } else {
        format!("Revision {revision} failed")
    };
    let reason = newest["outcomeReason"]
        .as_str()
        .or(r["reason"].as_str())
        .unwrap_or("no reason given");
    let resume = if paused {
        button("resume", "Resume the rollout", "resume", "")
    } else {
        String::new()
    };
    format!(
        r#"<p class="banner failed" role="alert"><strong>{what}:</strong> <span class="reason">{}</span> {resume}</p>"#,
        escape(reason)
    )
}

/// The last rollout: what it brings, its state, and each batch with its nodes.
fn rollout(d: &Value, name_of: impl Fn(&str) -> String) -> String {
    let r = &d["lastRollout"];
    let mut html = String::from("<h2>Last rollout</h2>");
    if r.is_null() {
        html.push_str(r#"<p class="empty">None yet.</p>"#);
        return html;
    }
    let kind = match s(r, "kind") {
        "update" => "Update",
        "rollback" => "Rollback",
        "auto_rollback" => "Automatic rollback",
        other => other,
    };
    let state = s(r, "state");
    let from = r["fromRevision"]
        .as_i64()
        .map_or(String::new(), |f| format!(" from revision {f}"));
    let ended = r["ended"]
        .as_str()
        .map_or(String::new(), |t| format!(", ended {}", local_time(t)));
    let _ = write!(
        html,
        r#"<p class="rollout-head" data-state="{}">{kind}{from} to revision {}: <span class="{}">{}</span> <small>started by {} {}{ended}</small></p>"#,
        escape(state),
        r["toRevision"],
        outcome_class(state),
        escape(&state.replace('_', " ")),
        escape(actor(s(r, "startedBy"))),
        local_time(s(r, "started"))
    );
    if let Some(reason) = r["reason"].as_str() {
        let _ = write!(html, r#"<p class="rollout-reason">{}</p>"#, escape(reason));
    }
    let current = r["currentBatch"].as_u64().unwrap_or_default() as usize;
    let batches = items(r, "batches");
    if batches.is_empty() {
        html.push_str(r#"<p class="empty">No node's container changes.</p>"#);
        return html;
    }
    html.push_str(r#"<ol class="batches">"#);
    for (i, batch) in batches.iter().enumerate() {
        let (word, class) = if i < current {
            ("passed", "passed")
        } else if i > current {
            ("waiting", "waiting")
        } else {
            match state {
                "running" => ("under way", "current"),
                "paused" => ("paused", "current"),
                "succeeded" => ("passed", "passed"),
                "superseded" => ("stopped: a newer rollout took over", "waiting"),
                _ => ("failed", "failed"),
            }
        };
        let _ = write!(
            html,
            r#"<li class="batch {class}" data-batch="{i}"><strong>Batch {}</strong> <small>{word}</small>"#,
            i + 1
        );
        for node in batch.as_array().map(Vec::as_slice).unwrap_or_default() {
            let node = node.as_str().unwrap_or_default();
            let inst = items(d, "instances")
                .iter()
                .find(|i| s(i, "nodeId") == node);
            let (st, on) = inst.map_or(("—", Value::Null), |i| {
                (s(i, "state"), i["observedRevision"].clone())
            });
            let _ = write!(
                html,
                r#" <span class="batch-node" data-node-id="{}">{} <span class="{}">{}</span> <small>revision {on}</small></span>"#,
                escape(node),
                escape(&name_of(node)),
                instance_class(st),
                escape(&st.to_ascii_lowercase())
            );
        }
        html.push_str("</li>");
    }
    html.push_str("</ol>");
    html
}

/// Each node's instance, with its actions and a link to its log, stats and exec.
fn instances(d: &Value, page: &str, can: bool, name_of: impl Fn(&str) -> String) -> String {
    let mut html = String::from("<h2>Instances</h2>");
    let all = items(d, "instances");
    if all.is_empty() {
        html.push_str(r#"<p class="empty">Its target chooses no node.</p>"#);
        return html;
    }
    let page = String::from(js_sys::encode_uri_component(page));
    html.push_str(r#"<table class="nodes instances"><thead><tr><th>Node</th><th>State</th><th>Container</th><th>Revision</th><th>Restarts</th><th>Last exit</th><th></th></tr></thead><tbody>"#);
    for i in all {
        let node = s(i, "nodeId");
        let id = escape(node);
        let state = s(i, "state");
        let mut why = i["reason"].as_str().map_or(String::new(), |r| {
            format!(r#"<small class="reason">{}</small>"#, escape(r))
        });
        if let Some(t) = i["nextRetryAt"].as_str() {
            let _ = write!(why, "<small>next try {}</small>", local_time(t));
        }
        let revision = match (
            i["observedRevision"].as_i64(),
            i["desiredRevision"].as_i64(),
        ) {
            (Some(o), Some(w)) if o != w => format!("{o} → {w}"),
            (Some(o), _) => o.to_string(),
            (None, Some(w)) => format!("→ {w}"),
            (None, None) => "—".to_owned(),
        };
        let exit = match (i["exitCode"].as_i64(), i["oomKilled"].as_bool()) {
            (_, Some(true)) => r#"<span class="state lost">OOM killed</span>"#.to_owned(),
            (Some(code), _) => format!("code {code}"),
            (None, _) => "—".to_owned(),
        };
        let _ = write!(
            html,
            r#"<tr data-node-id="{id}" data-state="{}"><td><a href="/nodes/{id}">{}</a><small><a class="instance-link" href="/deployments/{page}/{id}">Log, stats, exec</a></small></td><td><span class="{}">{}</span>{why}</td><td><code>{}</code></td><td class="num">{revision}</td><td class="num">{}</td><td>{exit}</td><td class="row-actions">"#,
            escape(state),
            escape(&name_of(node)),
            instance_class(state),
            escape(&state.to_ascii_lowercase()),
            escape(s(i, "containerName")),
            i["restartCount"],
        );
        if can {
            let more = format!(r#" data-node="{id}""#);
            if i["stopped"].as_bool().unwrap_or_default() {
                html.push_str(&button("start", "Start", "start", &more));
            } else {
                html.push_str(&button("stop", "Stop", "stop", &more));
            }
            html.push_str(&button("restart", "Restart", "restart", &more));
        }
        html.push_str("</td></tr>");
    }
    html.push_str("</tbody></table>");
    html
}

/// What the spec of the revision that should run asks for.
fn spec(spec: &Value, name_of: impl Fn(&str) -> String) -> String {
    if spec.is_null() {
        return String::new();
    }
    let c = &spec["container"];
    let u = &spec["update"];
    let list = |v: &Value| {
        let text = pairs_text(v);
        if text.is_empty() {
            "—".to_owned()
        } else {
            text.lines()
                .map(|l| format!("<code>{}</code>", escape(l)))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let command = if items(c, "command").is_empty() {
        "the image's own".to_owned()
    } else {
        format!("<code>{}</code>", escape(&join_args(items(c, "command"))))
    };
    let ports = items(c, "ports")
        .iter()
        .map(|p| format!("{}:{}/{}", p["host"], p["container"], s(p, "protocol")))
        .collect::<Vec<_>>()
        .join(", ");
    let limit = |v: &Value, unit: &str| {
        if v.is_null() {
            "no limit".to_owned()
        } else {
            format!("{v}{unit}")
        }
    };
    let mut more = Vec::new();
    for (key, word) in [("volumes", "volumes"), ("devices", "devices")] {
        let n = items(c, key).len();
        if n > 0 {
            more.push(format!("{n} {word}"));
        }
    }
    if c["privileged"].as_bool().unwrap_or_default() {
        more.push("privileged".to_owned());
    }
    if !c["healthcheck"].is_null() {
        more.push("its own health check".to_owned());
    }
    for o in items(spec, "overrides") {
        more.push(format!(
            "settings for node {}",
            escape(&name_of(s(o, "nodeId")))
        ));
    }
    let restart = match s(c, "restartPolicy") {
        "" => "unless-stopped",
        p => p,
    };
    format!(
        r#"<h2>What it runs</h2><dl class="facts spec"><dt>Image</dt><dd class="image"><code>{}</code> <small>pull {}</small></dd><dt>Command</dt><dd class="command">{command}</dd><dt>Environment</dt><dd class="env">{}</dd><dt>Labels</dt><dd>{}</dd><dt>Ports</dt><dd>{}</dd><dt>Restart policy</dt><dd>{}</dd><dt>Limits</dt><dd>memory {}, CPUs {}</dd><dt>Runs on</dt><dd class="target">{}</dd><dt>Rollout</dt><dd>{} at once, ready after {} s, {} on failure, health timeout {} s</dd>{}</dl>"#,
        escape(s(c, "image")),
        escape(&s(c, "pull").to_ascii_lowercase().replace('_', " ")),
        list(&c["env"]),
        list(&c["labels"]),
        if ports.is_empty() {
            "—".to_owned()
        } else {
            escape(&ports)
        },
        escape(restart),
        limit(&c["memoryMib"], " MiB"),
        limit(&c["cpus"], ""),
        escape(&target_words(&spec["target"], name_of)),
        match u["parallelism"].as_i64() {
            Some(0) => "all nodes".to_owned(),
            Some(n) => format!("{n} node{}", if n == 1 { "" } else { "s" }),
            None => "—".to_owned(),
        },
        u["minReadySecs"],
        escape(&s(u, "failureAction").to_ascii_lowercase()),
        u["healthTimeoutSecs"],
        if more.is_empty() {
            String::new()
        } else {
            format!("<dt>Also</dt><dd>{}</dd>", escape(&more.join(", ")))
        }
    )
}

/// The revisions, newest first, each with a button that rolls back to it.
fn revisions(d: &Value, can: bool) -> String {
    let mut html = String::from(r#"<h2>Revisions</h2><ol class="revisions">"#);
    let target = d["targetRevision"].as_i64();
    let removing = d["removing"].as_bool().unwrap_or_default();
    for r in items(d, "revisions") {
        let n = r["revision"].as_i64().unwrap_or_default();
        let cause = s(r, "cause");
        let words = match cause {
            "create" => "created".to_owned(),
            "edit" => "edited".to_owned(),
            c => match c.strip_prefix("rollback:").and_then(|c| c.split_once("->")) {
                Some((_, to)) => format!("rolled back to revision {to}"),
                None => c.to_owned(),
            },
        };
        let (outcome, class) = match (s(r, "outcome"), Some(n) == target) {
            ("rolled_out", _) => ("rolled out", outcome_class("rolled_out")),
            ("failed", _) => ("failed", outcome_class("failed")),
            ("", true) => ("rolling out", "state paused"),
            ("", false) => ("not rolled out", "state offline"),
            (other, _) => (other, "state offline"),
        };
        let _ = write!(
            html,
            r#"<li data-revision="{n}" data-outcome="{}"><p class="revision-head"><strong>Revision {n}</strong> <span class="badge cause" data-cause="{}">{}</span> <span class="{class}">{outcome}</span>{} <small>by {} on {}</small>"#,
            escape(s(r, "outcome")),
            escape(cause),
            escape(&words),
            if Some(n) == target {
                r#" <span class="badge">should run</span>"#
            } else {
                ""
            },
            escape(actor(s(r, "createdBy"))),
            local_time(s(r, "created"))
        );
        if can && !removing && Some(n) != target {
            html.push_str(&button(
                "rollback",
                "Roll back to this revision",
                "rollback",
                &format!(r#" data-revision="{n}""#),
            ));
        }
        html.push_str(r#"</p><ul class="changes">"#);
        let changes = items(r, "changes");
        if changes.is_empty() {
            html.push_str(r#"<li class="empty">No change.</li>"#);
        }
        for line in changes {
            let _ = write!(
                html,
                "<li><code>{}</code></li>",
                escape(line.as_str().unwrap_or_default())
            );
        }
        html.push_str("</ul>");
        if let Some(why) = r["outcomeReason"].as_str() {
            let _ = write!(html, r#"<p class="reason">{}</p>"#, escape(why));
        }
        html.push_str("</li>");
    }
    html.push_str("</ol>");
    html
}
