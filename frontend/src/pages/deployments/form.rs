//! The form that makes a deployment, or edits one's spec: its container (image, command,
//! environment, labels, ports, restart policy, limits, pull policy), where it runs (all nodes,
//! chosen nodes, nodes with labels; with a live preview of the nodes that target chooses now),
//! and how a change rolls out (parallelism, minimum ready time, what a failure does).
//!
//! - The form is written as markup and read with `FormData` when it is sent: its many fields
//!   as Leptos views, each bound to a signal, would cost the size-budgeted wasm far more (see
//!   `pages::experiment`). The node boxes are their own markup, written again when the nodes'
//!   names change, with the boxes ticked as they were.
//! - An edit starts from the spec the page read and changes only the form's fields, so what
//!   the form does not show (volumes, devices, health check, per-node overrides, ...) is sent
//!   back as it was. It names the revision it started from (`expectedRevision`): a change made
//!   by someone else meanwhile is refused (`CONFLICT`), which the form says in words.
//! - Mistakes the page can see (a line without `=`, a port that is no number) are refused in
//!   words before anything is sent; everything else is the leader's to check, and its message is
//!   shown as it is.

use std::fmt::Write;

use leptos::{ev, html, prelude::*};
use serde_json::{Map, Value};

use crate::{
    Cluster,
    api::{
        self, Refusal,
        deployments::{
            self as dep, create_deployment, items, join_args, pairs_text,
            preview_deployment_target, s, split_args, update_deployment,
        },
    },
    components::{Feedback, Mutation, escape, node_names, on, router},
};

/// How long the preview waits for typing to pause before it asks the leader.
const PREVIEW_AFTER_MS: u32 = 300;

/// What an edit starts from.
#[derive(Clone)]
pub(crate) struct Edit {
    /// The deployment's id.
    pub id: String,
    /// Its newest revision when the form opened (`expectedRevision`).
    pub revision: i64,
    /// The spec the form shows and changes.
    pub spec: Value,
    /// Whether the form is open; closed once the change is made, or on Cancel.
    pub open: RwSignal<bool>,
}

/// The deployment form: a new deployment without `edit`, else a change of `edit`'s spec.
#[component]
pub(crate) fn SpecForm(#[prop(optional)] edit: Option<Edit>) -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let go = router::navigator();
    let form = NodeRef::<html::Form>::new();
    let action = Mutation::new();
    let preview = RwSignal::new(String::new());
    let spec = edit.as_ref().map(|e| e.spec.clone()).unwrap_or(Value::Null);
    let target = &spec["target"];
    // The nodes ticked, kept as the boxes are written again when the nodes' names change.
    let chosen = RwSignal::new(
        items(target, "nodeIds")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect::<Vec<_>>(),
    );
    let all_nodes = RwSignal::new(target["all"].as_bool().unwrap_or_default());
    let names = node_names(cluster);
    let boxes = Signal::derive(move || {
        let mut html = String::new();
        let _ = write!(
            html,
            r#"<label class="node-choice"><input type="checkbox" name="all"{}>All nodes</label>"#,
            if all_nodes.get_untracked() {
                " checked"
            } else {
                ""
            }
        );
        names.with(|a| {
            for (id, name) in a {
                let on = if chosen.with_untracked(|c| c.contains(id)) { " checked" } else { "" };
                let _ = write!(
                    html,
                    r#"<label class="node-choice"><input type="checkbox" name="node" value="{}"{on}>{}</label>"#,
                    escape(id),
                    escape(name)
                );
            }
        });
        html
    });

    // The preview: the newest change asks, once typing has paused.
    let asked = StoredValue::new(0u32);
    let changed = move || {
        let Some(fields) = Fields::of(form.get_untracked()) else {
            return;
        };
        chosen.set(fields.all("node"));
        all_nodes.set(fields.on("all"));
        let target = fields.target();
        asked.update_value(|n| *n += 1);
        let mine = asked.get_value();
        leptos::task::spawn_local(async move {
            gloo_timers::future::TimeoutFuture::new(PREVIEW_AFTER_MS).await;
            if asked.try_get_value() != Some(mine) {
                return;
            }
            let words = match target {
                Err(e) => e,
                Ok(target) => {
                    let vars = object(vec![("target", target)]);
                    let q = dep::body(
                        preview_deployment_target::QUERY,
                        preview_deployment_target::OPERATION_NAME,
                        vars,
                    );
                    match api::request(q).await {
                        Ok(d) => preview_words(items(&d, "previewDeploymentTarget")),
                        Err(e) => format!("Cannot preview: {e}"),
                    }
                }
            };
            if asked.try_get_value() == Some(mine) {
                preview.try_set(words);
            }
        });
    };
    // The first preview, once the form is in the page.
    request_animation_frame(changed);

    let edit_id = edit.as_ref().map(|e| (e.id.clone(), e.revision));
    let open = edit.as_ref().map(|e| e.open);
    let base = StoredValue::new(spec.clone());
    let submit = move |e: ev::SubmitEvent| {
        e.prevent_default();
        let Some(fields) = Fields::of(form.get_untracked()) else {
            return;
        };
        let spec = match fields.spec(base.get_value()) {
            Ok(spec) => spec,
            Err(why) => {
                action.fail(why);
                return;
            }
        };
        match &edit_id {
            None => {
                let name = fields.get("name").trim().to_owned();
                let vars = object(vec![("name", name.clone().into()), ("spec", spec)]);
                let q = dep::body(
                    create_deployment::QUERY,
                    create_deployment::OPERATION_NAME,
                    vars,
                );
                action.run_body(
                    q,
                    move |_| {
                        go(&format!(
                            "/deployments/{}",
                            String::from(js_sys::encode_uri_component(&name))
                        ));
                        String::new()
                    },
                    None,
                );
            }
            Some((id, revision)) => {
                let vars = object(vec![
                    ("id", id.clone().into()),
                    ("spec", spec),
                    ("expectedRevision", (*revision).into()),
                ]);
                let q = dep::body(
                    update_deployment::QUERY,
                    update_deployment::OPERATION_NAME,
                    vars,
                );
                let refused = |r: Refusal| {
                    if r.code == "CONFLICT" {
                        format!(
                            "Someone else changed this deployment while you edited it ({}). Your edit was not saved: cancel, then edit the newest revision.",
                            r.message
                        )
                    } else {
                        r.message
                    }
                };
                action.run_body(
                    q,
                    move |_| {
                        if let Some(open) = open {
                            open.try_set(false);
                        }
                        String::new()
                    },
                    Some(Box::new(refused)),
                );
            }
        }
    };
    let (head, rest) = markup(&spec, edit.is_none());
    let labels = format!(
        r#"<label>Nodes with these labels <textarea name="node-labels" rows="2">{}</textarea><small class="hint">One key=value a line; a node must carry them all. A node is chosen when any of these choose it.</small></label>"#,
        escape(&pairs_text(&target["labels"]))
    );
    let cancel = open.map(|open| {
        view! { <button type="button" class="cancel" on:click=on(move |_| open.set(false))>"Cancel"</button> }
    });
    let word = if edit.is_some() {
        "Save as a new revision"
    } else {
        "Create"
    };

    view! {
        <form class="deployment-form" novalidate node_ref=form on:submit=on(submit)
            on:input=on(move |_: ev::Event| changed())>
            <fieldset inner_html=head></fieldset>
            <fieldset class="target">
                <legend>"Where it runs"</legend>
                <div class="node-choices" inner_html=boxes></div>
                <div inner_html=labels></div>
                <p class="preview" role="status">{move || preview.get()}</p>
            </fieldset>
            <fieldset inner_html=rest></fieldset>
            <p class="form-buttons">
                <button type="submit" class="save" prop:disabled=action.busy()>{word}</button>
                {cancel}
            </p>
            <Feedback mutation=action/>
        </form>
    }
}

/// The preview's words: "Will run on: leader, ra", saying which nodes have no Docker engine.
fn preview_words(nodes: &[Value]) -> String {
    if nodes.is_empty() {
        return "Will run on no node: choose where it runs.".to_owned();
    }
    let names = nodes
        .iter()
        .map(|n| {
            let name = s(n, "name");
            if n["hasEngine"].as_bool().unwrap_or_default() {
                name.to_owned()
            } else {
                format!("{name} (no Docker engine)")
            }
        })
        .collect::<Vec<_>>();
    format!("Will run on: {}", names.join(", "))
}

/// A JSON object of these fields. Inserted one by one: collecting into a [`Map`] sorts the
/// fields first, and the sort's code costs the wasm about 5 kB gzipped. A list, not an array
/// of a fixed size, so the wasm has one copy of this for every number of fields.
fn object(fields: Vec<(&str, Value)>) -> Value {
    let mut map = Map::new();
    for (k, v) in fields {
        map.insert(k.to_owned(), v);
    }
    Value::Object(map)
}

/// The form's fieldsets before and after the target, as markup, showing `spec` (none for a
/// new deployment, which also asks for a name).
fn markup(spec: &Value, create: bool) -> (String, String) {
    let c = &spec["container"];
    let u = &spec["update"];
    // A field's value as an attribute's: nothing for a new deployment's (null) fields.
    let attr = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(text) => escape(text),
        other => other.to_string(),
    };
    let ports = items(c, "ports")
        .iter()
        .map(|p| {
            let udp = if s(p, "protocol") == "udp" {
                "/udp"
            } else {
                ""
            };
            format!("{}:{}{udp}", p["host"], p["container"])
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut head = String::from("<legend>Container</legend>");
    if create {
        head.push_str(r#"<label>Name <input type="text" name="name" autocomplete="off"><small class="hint">Lower-case letters, digits and dashes; it cannot change. Containers are named after it.</small></label>"#);
    }
    let _ = write!(
        head,
        r#"<label>Image <input type="text" name="image" value="{}" placeholder="registry.example/name:tag"></label>"#,
        attr(&c["image"])
    );
    let _ = write!(
        head,
        r#"<label>Command <input type="text" name="command" value="{}" placeholder="the image's own"><small class="hint">Replaces the image's command. Split at spaces, run without a shell; quote an argument with spaces: sh -c "echo hi; sleep 60"</small></label>"#,
        escape(&join_args(items(c, "command")))
    );
    for (name, title, hint, text) in [
        (
            "env",
            "Environment",
            "One NAME=value a line.",
            pairs_text(&c["env"]),
        ),
        (
            "labels",
            "Labels",
            "One name=value a line, on the container.",
            pairs_text(&c["labels"]),
        ),
        (
            "ports",
            "Ports",
            "One HOST:CONTAINER a line (8080:80), with /udp for UDP.",
            ports,
        ),
    ] {
        let _ = write!(
            head,
            r#"<label>{title} <textarea name="{name}" rows="2">{}</textarea><small class="hint">{hint}</small></label>"#,
            escape(&text)
        );
    }
    let _ = write!(
        head,
        r#"<label>Restart policy <input type="text" name="restart" list="restart-policies" value="{}" placeholder="unless-stopped"><datalist id="restart-policies"><option value="unless-stopped"><option value="always"><option value="on-failure"><option value="on-failure:5"><option value="no"></datalist></label>"#,
        attr(&c["restartPolicy"])
    );
    let _ = write!(
        head,
        r#"<label>Memory limit, MiB <input type="number" name="memory" min="6" value="{}" placeholder="none"></label><label>CPUs <input type="number" name="cpus" min="0" step="any" value="{}" placeholder="no limit"></label>"#,
        attr(&c["memoryMib"]),
        attr(&c["cpus"])
    );
    head.push_str(r#"<label>Pull the image <select name="pull">"#);
    let pull = c["pull"].as_str().unwrap_or("IF_MISSING");
    for (value, word) in [
        ("IF_MISSING", "when the node does not have it"),
        ("ALWAYS", "every time"),
        ("NEVER", "never (loaded offline)"),
    ] {
        let on = if value == pull { " selected" } else { "" };
        let _ = write!(head, r#"<option value="{value}"{on}>{word}</option>"#);
    }
    head.push_str("</select></label>");

    let mut rest = String::from("<legend>How a change rolls out</legend>");
    let or = |v: &Value, default: &str| match v {
        Value::Null => default.to_owned(),
        v => attr(v),
    };
    let _ = write!(
        rest,
        r#"<label>Nodes at once <input type="number" name="parallelism" min="0" value="{}"><small class="hint">0: all at once.</small></label><label>Ready after, seconds <input type="number" name="min-ready" min="0" value="{}"><small class="hint">Running this long without a restart (or healthy, with a health check) passes a node.</small></label>"#,
        or(&u["parallelism"], "1"),
        or(&u["minReadySecs"], "5")
    );
    rest.push_str(r#"<label>When a node fails <select name="failure">"#);
    let failure = u["failureAction"].as_str().unwrap_or("ROLLBACK");
    for (value, word) in [
        ("ROLLBACK", "roll back to the last good revision"),
        ("PAUSE", "pause the rollout"),
    ] {
        let on = if value == failure { " selected" } else { "" };
        let _ = write!(rest, r#"<option value="{value}"{on}>{word}</option>"#);
    }
    rest.push_str("</select></label>");
    (head, rest)
}

/// What the form holds, read when it is sent.
struct Fields(web_sys::FormData);

impl Fields {
    /// What `form` holds now (`None` if the browser cannot say, which it always can).
    fn of(form: Option<web_sys::HtmlFormElement>) -> Option<Fields> {
        web_sys::FormData::new_with_form(&form?).ok().map(Fields)
    }

    fn get(&self, name: &str) -> String {
        self.0.get(name).as_string().unwrap_or_default()
    }

    /// Every value of the fields named `name` (the ticked boxes).
    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .get_all(name)
            .iter()
            .filter_map(|v| v.as_string())
            .collect()
    }

    /// Whether box `name` is ticked.
    fn on(&self, name: &str) -> bool {
        self.0.has(name)
    }

    /// The target the form chooses.
    fn target(&self) -> Result<Value, String> {
        Ok(object(vec![
            ("all", self.on("all").into()),
            (
                "nodeIds",
                self.all("node").into_iter().map(Value::from).collect(),
            ),
            ("labels", pairs("Node labels", &self.get("node-labels"))?),
        ]))
    }

    /// `base` (the spec being edited, or nothing) with the form's fields in place.
    fn spec(&self, mut base: Value) -> Result<Value, String> {
        let image = self.get("image").trim().to_owned();
        if image.is_empty() {
            return Err("Give the image to run, e.g. nginx:1.27.".to_owned());
        }
        let command = split_args(&self.get("command")).ok_or(
            "Command: a quote is not closed (quote an argument that holds spaces: \"like this\").",
        )?;
        base["target"] = self.target()?;
        let c = &mut base["container"];
        c["image"] = image.into();
        c["command"] = command.into_iter().map(Value::from).collect();
        c["env"] = pairs("Environment", &self.get("env"))?;
        c["labels"] = pairs("Labels", &self.get("labels"))?;
        c["ports"] = ports(&self.get("ports"))?;
        c["restartPolicy"] = self.get("restart").trim().into();
        c["memoryMib"] = whole("Memory limit", &self.get("memory"))?;
        c["cpus"] = match self.get("cpus").trim() {
            "" => Value::Null,
            t => crate::components::number_value(t)
                .filter(Value::is_number)
                .ok_or("CPUs: write a number of cores, e.g. 0.5.")?,
        };
        c["pull"] = self.get("pull").into();
        let u = &mut base["update"];
        for (key, field, title) in [
            ("parallelism", "parallelism", "Nodes at once"),
            ("minReadySecs", "min-ready", "Ready after"),
        ] {
            let n = whole(title, &self.get(field))?;
            if !n.is_null() {
                u[key] = n;
            }
        }
        u["failureAction"] = self.get("failure").into();
        Ok(base)
    }
}

/// A whole number field (`null` when empty).
fn whole(title: &str, text: &str) -> Result<Value, String> {
    match text.trim() {
        "" => Ok(Value::Null),
        t => t
            .parse::<u32>()
            .map(Value::from)
            .map_err(|_| format!("{title}: write a whole number.")),
    }
}

/// `name=value` lines as a list of `{name, value}`: the name trimmed, the value as typed.
fn pairs(title: &str, text: &str) -> Result<Value, String> {
    let mut list = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!(
                "{title}, line {}: write name=value, not “{line}”.",
                i + 1
            ));
        };
        list.push(object(vec![
            ("name", name.trim().into()),
            ("value", value.trim_end_matches('\r').into()),
        ]));
    }
    Ok(list.into())
}

/// `HOST:CONTAINER[/udp]` lines as ports.
fn ports(text: &str) -> Result<Value, String> {
    let mut list = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (pair, protocol) = line.split_once('/').unwrap_or((line, "tcp"));
        let port = |p: &str| p.trim().parse::<u16>().ok().map(Value::from);
        let parsed = pair
            .split_once(':')
            .and_then(|(h, c)| Some((port(h)?, port(c)?)));
        let Some((host, container)) = parsed else {
            return Err(format!(
                "Ports, line {}: write HOST:CONTAINER, e.g. 8080:80, not “{line}”.",
                i + 1
            ));
        };
        list.push(object(vec![
            ("host", host),
            ("container", container),
            ("protocol", protocol.trim().into()),
        ]));
    }
    Ok(list.into())
}
