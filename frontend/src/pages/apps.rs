//! The apps: upload a bundle (with its upload's progress), every app with its versions, each
//! version's build state and its live build log, and, for operators, build, deploy (to chosen
//! nodes, with the app's parameters) and remove. A deployed app is the deployment
//! `app-<name>`, linked from here: its instances, live logs, rollouts and rollback are on the
//! deployment's pages. The table is written as markup, its buttons handled by one listener
//! (see `pages::experiment`).

use std::fmt::Write;

use futures::StreamExt;
use leptos::{ev, prelude::*};
use serde_json::{Value, json};
use wasm_bindgen::{JsCast, closure::Closure};

use crate::{
    Cluster,
    api::{
        self, apps,
        deployments::{instances_words, items, outcome_class, s},
        ws::{self, Feed},
    },
    components::{Alert, derive, escape, markup, on},
};

/// How often the list is read again while the page is open (deployment states move).
const RELOAD_MS: u32 = 3_000;

/// Sends `file` to `url` with the session's cookie, reporting `(sent, total)` bytes as it goes;
/// the leader's JSON answer, or the error in words.
async fn upload(
    url: &str,
    file: web_sys::File,
    progress: RwSignal<Option<(f64, f64)>>,
) -> Result<Value, String> {
    let xhr =
        web_sys::XmlHttpRequest::new().map_err(|_| "this browser cannot upload".to_owned())?;
    xhr.open_with_async("POST", url, true)
        .map_err(|_| "the upload could not start".to_owned())?;
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let tx = std::cell::RefCell::new(Some(tx));
    let done = Closure::<dyn FnMut()>::new(move || {
        if let Some(t) = tx.borrow_mut().take() {
            let _ = t.send(());
        }
    });
    let moved =
        Closure::<dyn FnMut(web_sys::ProgressEvent)>::new(move |e: web_sys::ProgressEvent| {
            if e.length_computable() {
                progress.set(Some((e.loaded(), e.total())));
            }
        });
    xhr.set_onloadend(Some(done.as_ref().unchecked_ref()));
    if let Ok(up) = xhr.upload() {
        up.set_onprogress(Some(moved.as_ref().unchecked_ref()));
    }
    xhr.send_with_opt_blob(Some(&file))
        .map_err(|_| "the upload could not start".to_owned())?;
    let _ = rx.await;
    drop((done, moved));
    let status = xhr.status().unwrap_or(0);
    let text = xhr.response_text().ok().flatten().unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match status {
        200 => Ok(body),
        0 => Err("the upload broke off: the connection closed".into()),
        413 => Err("the bundle is over the leader's size limit (--bundle-max-mib)".into()),
        _ => Err(api::errors(&body).unwrap_or_else(|| format!("the leader answered {status}"))),
    }
}

/// Bytes as people read them.
fn size(bytes: f64) -> String {
    if bytes >= 1_048_576.0 {
        format!("{:.1} MiB", bytes / 1_048_576.0)
    } else {
        format!("{:.0} KiB", (bytes / 1024.0).ceil())
    }
}

/// The apps page.
#[component]
pub fn AppsPage() -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let list = RwSignal::new(Value::Null);
    let loaded = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let progress = RwSignal::new(None::<(f64, f64)>);
    let uploading = RwSignal::new(false);
    // Whose build log is shown, with a number that grows with each change (a task following
    // an older one stops).
    let log_of = RwSignal::new(None::<(String, String)>);
    let log_gen = RwSignal::new(0u32);
    let log = RwSignal::new(Vec::<String>::new());
    let log_state = RwSignal::new(String::new());
    let deploy_of = RwSignal::new(None::<(String, String)>);

    let load = move || async move {
        match api::request(api::body::<apps::Apps>(apps::apps::Variables {})).await {
            Ok(mut d) => {
                list.try_set(d["apps"].take());
                loaded.try_set(true);
            }
            Err(e) => {
                error.try_set(Some(e));
            }
        }
    };
    leptos::task::spawn_local(load());
    leptos::task::spawn_local(async move {
        loop {
            gloo_timers::future::TimeoutFuture::new(RELOAD_MS).await;
            if list.try_get_untracked().is_none() {
                return;
            }
            load().await;
        }
    });

    // The build log of the version chosen: its lines so far, then each new one.
    let show_log = move |app: String, version: String| {
        let generation = log_gen.get_untracked() + 1;
        log_gen.set(generation);
        log.set(Vec::new());
        log_state.set("BUILDING".into());
        log_of.set(Some((app.clone(), version.clone())));
        let mut feed = ws::subscribe::<apps::AppBuildLog, Value>(apps::app_build_log::Variables {
            name: app,
            version,
        })
        .scoped();
        leptos::task::spawn_local(async move {
            while let Some(item) = feed.next().await {
                if log_gen.try_get_untracked() != Some(generation) {
                    return;
                }
                match item {
                    Feed::Event(ev) => {
                        let l = &ev["appBuildLog"];
                        let st = s(l, "state").to_owned();
                        if !s(l, "line").is_empty() {
                            log.update(|v| v.push(s(l, "line").to_owned()));
                        }
                        if st == "BUILT" || st == "FAILED" || st == "STORED" {
                            log_state.set(st);
                            load().await;
                            return;
                        }
                    }
                    Feed::Resync => log.set(Vec::new()),
                    Feed::Failed(why) => {
                        log_state.set("FAILED".into());
                        error.set(Some(why));
                        return;
                    }
                    Feed::Disconnected => {}
                }
            }
        });
    };

    let can_operate = cluster.can_operate;
    let rows = markup(move || {
        let mut html = String::new();
        list.with(|l| {
            for a in l.as_array().map(Vec::as_slice).unwrap_or_default() {
                let name = escape(s(a, "name"));
                let d = &a["deployment"];
                let live_image = s(&d["spec"]["container"], "image").to_owned();
                let deployed = if d.is_null() {
                    "not deployed".to_owned()
                } else {
                    let r = &d["lastRollout"];
                    format!(
                        r#"<a href="/deployments/{0}">{0}</a> · {1}{2}"#,
                        escape(s(d, "name")),
                        escape(&instances_words(items(d, "instances"))),
                        if r.is_null() {
                            String::new()
                        } else {
                            format!(
                                r#" · revision {} <span class="{}">{}</span>"#,
                                r["toRevision"],
                                outcome_class(s(r, "state")),
                                escape(&s(r, "state").replace('_', " "))
                            )
                        }
                    )
                };
                let versions = items(a, "versions");
                let _ = write!(
                    html,
                    r#"<tr class="app" data-app="{name}"><th colspan="4">{name}<small class="description">{}</small></th><td colspan="2" class="deployment">{deployed}{}</td></tr>"#,
                    escape(a["description"].as_str().unwrap_or_default()),
                    if can_operate {
                        format!(r#" <button class="danger" data-act="remove" data-app="{name}">Remove app</button>"#)
                    } else {
                        String::new()
                    }
                );
                for v in versions {
                    let version = escape(s(v, "version"));
                    let state = s(v, "buildState");
                    let class = match state {
                        "BUILT" => "state online",
                        "BUILDING" => "state paused",
                        "FAILED" => "state lost",
                        _ => "state offline",
                    };
                    let live = if s(v, "image") == live_image && !live_image.is_empty() {
                        r#" <span class="state online">deployed</span>"#
                    } else {
                        ""
                    };
                    let on_nodes = s(v, "buildOn") == "node";
                    let actions = if can_operate {
                        format!(
                            r#"{}<button data-act="deploy" data-app="{name}" data-v="{version}">Deploy…</button> "#,
                            if on_nodes {
                                String::new()
                            } else {
                                format!(r#"<button data-act="build" data-app="{name}" data-v="{version}">Build</button> "#)
                            }
                        )
                    } else {
                        String::new()
                    };
                    let _ = write!(
                        html,
                        r#"<tr data-version="{name}/{version}"><td></td><td>{version}{live}</td><td>{}</td><td><span class="{class}">{}</span>{}</td><td>{}</td><td>{actions}<button data-act="log" data-app="{name}" data-v="{version}">Build log</button></td></tr>"#,
                        escape(&format!(
                            "{}{}",
                            s(v, "kind").to_lowercase(),
                            if on_nodes { " · built on its nodes" } else { "" }
                        )),
                        state.to_lowercase(),
                        [&v["buildError"], &v["deployError"]]
                            .iter()
                            .filter_map(|e| e.as_str())
                            .map(|e| format!(r#"<small class="error">{}</small>"#, escape(e)))
                            .collect::<String>(),
                        size(v["bundleBytes"].as_f64().unwrap_or_default()),
                    );
                }
            }
        });
        html
    });
    let none = derive(move || list.with(|l| l.as_array().is_none_or(Vec::is_empty)));

    let act = move |e: ev::MouseEvent| {
        let Some(button) = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .and_then(|el| el.closest("button[data-act]").ok().flatten())
        else {
            return;
        };
        let attr = |k: &str| button.get_attribute(k).unwrap_or_default();
        let (app, version) = (attr("data-app"), attr("data-v"));
        match attr("data-act").as_str() {
            "log" => show_log(app, version),
            "deploy" => deploy_of.set(Some((app, version))),
            "build" => {
                let vars = apps::build_app::Variables {
                    name: app.clone(),
                    version: version.clone(),
                };
                leptos::task::spawn_local(async move {
                    match api::request(api::body::<apps::BuildApp>(vars)).await {
                        Ok(_) => {
                            show_log(app, version);
                            load().await;
                        }
                        Err(e) => error.set(Some(e)),
                    }
                });
            }
            "remove" => {
                let sure = window()
                    .confirm_with_message(&format!(
                        "Remove the app {app}, its deployment (its containers leave every node), versions and images?"
                    ))
                    .unwrap_or(false);
                if !sure {
                    return;
                }
                let vars = apps::remove_app::Variables { name: app.clone() };
                leptos::task::spawn_local(async move {
                    match api::request(api::body::<apps::RemoveApp>(vars)).await {
                        Ok(_) => {
                            notice.set(Some(format!("Removed the app {app}.")));
                            load().await;
                        }
                        Err(e) => error.set(Some(e)),
                    }
                });
            }
            _ => {}
        }
    };

    let send = move |e: ev::SubmitEvent| {
        e.prevent_default();
        let form = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlFormElement>().ok());
        let Some(data) = form
            .as_ref()
            .and_then(|f| web_sys::FormData::new_with_form(f).ok())
        else {
            return;
        };
        let Some(file) = data
            .get("bundle")
            .dyn_into::<web_sys::File>()
            .ok()
            .filter(|f| !f.name().is_empty())
        else {
            error.set(Some("Choose a bundle (a .tar or .tar.gz) first.".into()));
            return;
        };
        let text = |k: &str| {
            data.get(k)
                .as_string()
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let mut query = Vec::new();
        for key in ["name", "version", "deploy"] {
            let v = text(key);
            if !v.is_empty() {
                query.push(format!(
                    "{key}={}",
                    String::from(js_sys::encode_uri_component(&v))
                ));
            }
        }
        let url = format!("/upload/bundle?{}", query.join("&"));
        uploading.set(true);
        progress.set(Some((0.0, file.size())));
        error.set(None);
        notice.set(None);
        leptos::task::spawn_local(async move {
            match upload(&url, file, progress).await {
                Ok(v) => {
                    notice.set(Some(match v["deployment"].as_str() {
                        Some(d) => format!(
                            "Uploaded {} {} ({}): fast deploy, building and running it as {d}; its bundle is not kept.",
                            s(&v, "app"),
                            s(&v, "version"),
                            s(&v, "kind")
                        ),
                        None => format!(
                            "Uploaded {} {} ({}): build it, or deploy it (it builds first).",
                            s(&v, "app"),
                            s(&v, "version"),
                            s(&v, "kind")
                        ),
                    }));
                    if let Some(f) = form {
                        f.reset();
                    }
                    load().await;
                }
                Err(e) => error.set(Some(e)),
            }
            uploading.set(false);
        });
    };

    // The deploy form of the version chosen: nodes, and the app's parameters.
    let deploy_form = move || {
        let (app, version) = deploy_of.get()?;
        let (params, deployed, built, on_nodes) = list.with_untracked(|l| {
            let a = l
                .as_array()
                .and_then(|l| l.iter().find(|a| s(a, "name") == app))
                .cloned()
                .unwrap_or_default();
            let v = items(&a, "versions")
                .iter()
                .find(|v| s(v, "version") == version)
                .cloned()
                .unwrap_or_default();
            (
                items(&v, "params").to_vec(),
                !a["deployment"].is_null(),
                s(&v, "buildState") == "BUILT",
                s(&v, "buildOn") == "node",
            )
        });
        let nodes = cluster.nodes.get_untracked();
        let mut options = String::new();
        if deployed {
            options.push_str(r#"<option value="">the nodes it runs on now</option>"#);
        }
        options.push_str(r#"<option value="*">every node</option>"#);
        for (i, n) in nodes.iter().enumerate() {
            let _ = write!(
                options,
                r#"<option value="{}"{}>{}</option>"#,
                escape(&n.id),
                if i == 0 && !deployed { " selected" } else { "" },
                escape(&n.name)
            );
        }
        let mut fields = String::new();
        for p in &params {
            let pname = escape(s(p, "name"));
            let _ = write!(
                fields,
                r#"<label>{pname} <small>{}</small><input name="param:{pname}" placeholder="{}"></label>"#,
                escape(p["description"].as_str().unwrap_or(s(p, "kind"))),
                escape(p["default"].as_str().unwrap_or_default())
            );
        }
        let title = format!("Deploy {app} {version}");
        let submit = move |e: ev::SubmitEvent| {
            e.prevent_default();
            let Some(data) = e
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlFormElement>().ok())
                .and_then(|f| web_sys::FormData::new_with_form(&f).ok())
            else {
                return;
            };
            let node = data.get("node").as_string().unwrap_or_default();
            let target = match node.as_str() {
                "" => Value::Null,
                "*" => json!({"all": true}),
                id => json!({"nodeIds": [id]}),
            };
            let mut env = Vec::new();
            for p in &params {
                let key = format!("param:{}", s(p, "name"));
                let v = data.get(&key).as_string().unwrap_or_default();
                if !v.trim().is_empty() {
                    env.push(json!({"name": s(p, "name"), "value": v.trim()}));
                }
            }
            let mut body = api::body::<apps::DeployApp>(apps::deploy_app::Variables {
                name: app.clone(),
                version: version.clone(),
                target: None,
                env: Vec::new(),
            });
            body["variables"]["target"] = target;
            body["variables"]["env"] = Value::Array(env);
            let (app, version) = (app.clone(), version.clone());
            deploy_of.set(None);
            leptos::task::spawn_local(async move {
                // Not built yet: the build is started first, so its log can be followed while
                // the deploy waits for it.
                if !built && !on_nodes {
                    let vars = apps::build_app::Variables {
                        name: app.clone(),
                        version: version.clone(),
                    };
                    if let Err(e) = api::request(api::body::<apps::BuildApp>(vars)).await {
                        error.set(Some(e));
                        return;
                    }
                    show_log(app.clone(), version.clone());
                }
                let answer = api::request(body).await;
                if on_nodes && answer.is_ok() {
                    show_log(app.clone(), version.clone());
                }
                match answer {
                    Ok(d) => {
                        let when = if s(&d["deployApp"], "buildState") == "BUILT" {
                            ""
                        } else {
                            " once built"
                        };
                        notice.set(Some(format!(
                            "{app} {version} goes out as the deployment app-{app}{when}."
                        )));
                        load().await;
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        };
        Some(view! {
            <form class="deploy-app" on:submit=submit>
                <h2>{title}</h2>
                <label>"Nodes " <select name="node" inner_html=options></select></label>
                <div class="params" inner_html=fields></div>
                <button type="submit">"Deploy"</button>
                " "
                <button type="button" on:click=on(move |_: ev::MouseEvent| deploy_of.set(None))>"Cancel"</button>
            </form>
        })
    };

    let log_title = move || {
        log_of
            .get()
            .map(|(a, v)| format!("Build log of {a} {v}"))
            .unwrap_or_default()
    };
    let log_text = move || log.with(|l| l.join("\n"));

    view! {
        <h1>"Apps"</h1>
        <Alert error/>
        <p class="notice" role="status" class:hidden=derive(move || notice.with(Option::is_none))>
            {move || notice.get().unwrap_or_default()}
        </p>
        {can_operate.then(|| view! {
            <form class="upload-bundle" on:submit=send>
                <h2>"Upload a bundle"</h2>
                <p class="hint">"A .tar or .tar.gz: py3 (app.py, optional requirements.txt), \
                    dockerfile (a build context with a Dockerfile) or nodered (flows.json); \
                    an app.yaml may name it and declare its parameters."</p>
                <input type="file" name="bundle" accept=".tar,.tgz,.tar.gz,.gz"/>
                <input name="name" placeholder="name (else app.yaml's)"/>
                <input name="version" placeholder="version (else app.yaml's)"/>
                <select name="deploy" aria-label="after the upload">
                    <option value="">"Keep it (install): build and deploy it later"</option>
                    <option value="*">"Fast deploy: build and run it on every node now, keep no bundle"</option>
                    {move || cluster.nodes.with(|l| l.iter().map(|n| {
                        let label = format!("Fast deploy on {}: build and run it there now, keep no bundle", n.name);
                        view! { <option value=n.id.clone()>{label}</option> }
                    }).collect::<Vec<_>>())}
                </select>
                <button type="submit" disabled=move || uploading.get()>"Upload"</button>
                <span class="progress" class:hidden=derive(move || progress.with(Option::is_none))>
                    <progress
                        max=move || progress.get().map(|p| p.1).unwrap_or(1.0)
                        value=move || progress.get().map(|p| p.0).unwrap_or(0.0)
                    ></progress>
                    " "
                    {move || progress.get().map(|(sent, total)| format!(
                        "{} of {} ({:.0} %)",
                        size(sent),
                        size(total),
                        if total > 0.0 { sent * 100.0 / total } else { 0.0 }
                    )).unwrap_or_default()}
                </span>
            </form>
        })}
        {deploy_form}
        <p class="empty" class:hidden=derive(move || !loaded.get() || !none.get())>
            "No apps yet."
        </p>
        <table class="nodes apps" class:hidden=none on:click=act>
            <thead><tr><th>"App"</th><th>"Version"</th><th>"Type"</th><th>"Build"</th><th>"Bundle"</th><th></th></tr></thead>
            <tbody inner_html=rows></tbody>
        </table>
        <section class="build-log" class:hidden=derive(move || log_of.with(Option::is_none))>
            <h2>{log_title} " " <span class="state">{move || log_state.get().to_lowercase()}</span></h2>
            <pre class="log">{log_text}</pre>
        </section>
    }
}
