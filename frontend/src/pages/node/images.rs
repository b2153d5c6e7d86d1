//! The node page's Images and apps section: the node's free disk for Docker, the images its
//! engine holds (installed apps among them, with their versions and running containers), the
//! latest transfers from the leader with live progress, and for operators a sideload from the
//! leader's engine and a prune of the images no deployment needs. The tables are written as
//! markup (see `pages::experiment`).

use std::fmt::Write;

use futures::StreamExt;
use leptos::{ev::SubmitEvent, prelude::*};
use serde_json::Value;

use crate::{
    Cluster,
    api::{
        self,
        deployments::{items, s},
        images,
        ws::{self, Feed},
    },
    components::{Alert, Feedback, Mutation, bind, bytes, escape, markup, on},
};

/// A byte count from the JSON, as people read it; "—" when there is none.
fn size_of(v: &Value) -> String {
    v.as_i64().map(bytes).unwrap_or_else(|| "—".into())
}

/// The images table.
fn images_table(list: &[Value]) -> String {
    if list.is_empty() {
        return r#"<p class="empty">No image on this node's engine.</p>"#.into();
    }
    let mut out = String::from(
        r#"<table class="values node-images"><thead><tr><th>image</th><th>app</th><th>size</th><th>containers</th><th>built</th></tr></thead><tbody>"#,
    );
    for i in list {
        let tags = items(i, "tags")
            .iter()
            .filter_map(Value::as_str)
            .map(escape)
            .collect::<Vec<_>>()
            .join("<br>");
        let id = s(i, "id");
        let name = if tags.is_empty() {
            format!(
                "<code>{}</code> (untagged)",
                escape(id.get(7..19).unwrap_or(id))
            )
        } else {
            tags
        };
        let app = match (i["app"].as_str(), i["appVersion"].as_str()) {
            (Some(a), Some(v)) => format!(r#"<a href="/apps">{}</a> {}"#, escape(a), escape(v)),
            (Some(a), None) => escape(a),
            _ => "—".into(),
        };
        let running = i["running"].as_i64().unwrap_or(0);
        let containers = i["containers"].as_i64().unwrap_or(0);
        let class = if running > 0 { "running" } else { "idle" };
        let _ = write!(
            out,
            r#"<tr class="{class}" data-image="{}"><td>{name}</td><td class="app">{app}</td><td>{}</td><td class="containers">{running} running of {containers}</td><td>{}</td></tr>"#,
            escape(id),
            size_of(&i["sizeBytes"]),
            escape(s(i, "created").get(..16).unwrap_or_default()).replace('T', " "),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// The transfers table.
fn transfers_table(list: &[Value]) -> String {
    if list.is_empty() {
        return r#"<p class="empty">No image sent to this node yet.</p>"#.into();
    }
    let mut out = String::from(
        r#"<table class="values transfers"><thead><tr><th>image</th><th>state</th><th>progress</th><th>note</th><th>why</th></tr></thead><tbody>"#,
    );
    for t in list {
        let state = s(t, "state");
        let class = match state {
            "DONE" => "state online",
            "FAILED" => "state lost",
            _ => "state paused",
        };
        let progress = match t["percent"].as_f64() {
            Some(p) => format!(
                r#"<progress max="100" value="{p:.0}"></progress> {p:.0} % ({} of {})"#,
                size_of(&t["bytes"]),
                size_of(&t["totalBytes"])
            ),
            None => size_of(&t["bytes"]),
        };
        let _ = write!(
            out,
            r#"<tr data-transfer="{}"><td><code>{}</code></td><td><span class="{class}">{}</span></td><td class="progress">{progress}</td><td class="note">{}</td><td>{} ({})</td></tr>"#,
            escape(s(t, "id")),
            escape(s(t, "image")),
            state.to_lowercase(),
            escape(t["error"].as_str().unwrap_or("")),
            escape(s(t, "cause")),
            escape(s(t, "createdBy")),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// The section.
#[component]
pub(super) fn ImagesSection(node_id: String) -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let id = StoredValue::new(node_id);
    let images_list = RwSignal::new(None::<Vec<Value>>);
    let disk = RwSignal::new(Value::Null);
    let transfers = RwSignal::new(Vec::<Value>::new());
    let error = RwSignal::new(None::<String>);
    let image = RwSignal::new(String::new());
    let action = Mutation::new();

    let load_images = move || async move {
        let vars = images::node_images::Variables { id: id.get_value() };
        match api::request(api::body::<images::NodeImages>(vars)).await {
            Ok(mut d) => {
                let list = match d["nodeImages"].take() {
                    Value::Array(a) => a,
                    _ => Vec::new(),
                };
                images_list.try_set(Some(list));
                error.try_set(None);
            }
            Err(e) => {
                error.try_set(Some(format!("The node's images: {e}")));
            }
        }
    };
    let load_transfers = move || async move {
        let vars = images::node_transfers::Variables { id: id.get_value() };
        if let Ok(mut d) = api::request(api::body::<images::NodeTransfers>(vars)).await {
            disk.try_set(d["node"].take());
            if let Value::Array(a) = d["imageTransfers"].take() {
                transfers.try_set(a);
            }
        }
    };
    leptos::task::spawn_local(load_images());
    leptos::task::spawn_local(load_transfers());
    // Transfers as they move: each event replaces its row (or adds it on top); a resync reads
    // them all again. A transfer that ends changes what the engine holds.
    let mut feed = ws::subscribe::<images::ImageTransferEvents, Value>(
        images::image_transfer_events::Variables { id: id.get_value() },
    )
    .scoped();
    leptos::task::spawn_local(async move {
        while let Some(item) = feed.next().await {
            match item {
                Feed::Event(mut ev) => {
                    let t = ev["imageTransferEvents"]["transfer"].take();
                    if t.is_null() {
                        load_transfers().await;
                        continue;
                    }
                    let ended = matches!(s(&t, "state"), "DONE" | "FAILED");
                    transfers.try_update(|l| match l.iter_mut().find(|x| x["id"] == t["id"]) {
                        Some(x) => *x = t,
                        None => l.insert(0, t),
                    });
                    if ended {
                        load_images().await;
                        load_transfers().await;
                    }
                }
                Feed::Resync => load_transfers().await,
                Feed::Failed(why) => {
                    error.try_set(Some(why));
                }
                Feed::Disconnected => {}
            }
        }
    });

    let sideload = move |ev: SubmitEvent| {
        ev.prevent_default();
        let name = image.get_untracked().trim().to_owned();
        if name.is_empty() {
            action.fail("Name an image the leader's engine has (repo:tag or id).");
            return;
        }
        let vars = images::sideload_image::Variables {
            id: id.get_value(),
            image: name.clone(),
        };
        action.run_json::<images::SideloadImage, _>(
            vars,
            move |_| format!("Sending {name}: its progress is below."),
            None,
        );
    };
    let prune = move |_| {
        let vars = images::prune_images::Variables { id: id.get_value() };
        action.run_json::<images::PruneImages, _>(
            vars,
            move |d| {
                leptos::task::spawn_local(load_images());
                let r = &d["pruneImages"];
                let removed = items(r, "removed").len();
                let kept = items(r, "kept").len();
                format!(
                    "Removed {removed} image(s), freeing {}; kept {kept} (running or the rollback image).",
                    size_of(&r["freedBytes"])
                )
            },
            None,
        );
    };
    let disk_words = move || {
        disk.with(
            |d| match (d["diskFreeBytes"].as_i64(), d["diskTotalBytes"].as_i64()) {
                (Some(free), Some(total)) => format!(
                    "{} free of {} on {}",
                    bytes(free),
                    bytes(total),
                    d["diskPath"].as_str().unwrap_or("the Docker data root")
                ),
                _ => "not reported by the node's agent".into(),
            },
        )
    };
    let images_markup = markup(move || {
        images_list.with(|l| match l {
            None => r#"<p class="empty">Loading…</p>"#.to_owned(),
            Some(l) => images_table(l),
        })
    });
    let transfers_markup = markup(move || transfers.with(|l| transfers_table(l)));
    view! {
        <section class="images">
            <h2>"Images and apps"</h2>
            <p class="disk">"Disk for Docker: " {disk_words}</p>
            <Alert error/>
            <div class="node-images" inner_html=images_markup></div>
            <p>
                <button type="button" class="reload-images" on:click=on(move |_| leptos::task::spawn_local(load_images()))>"Reload"</button>
            </p>
            <Show when=move || cluster.can_operate>
                <form class="actions sideload" on:submit=on(sideload)>
                    <input type="text" name="image" placeholder="An image on the leader's engine (repo:tag)"
                        aria-label="image" maxlength="255" prop:value=image on:input=bind(image)/>
                    <button type="submit" prop:disabled=action.busy()>"Send from the leader"</button>
                    <button type="button" class="prune" prop:disabled=action.busy() on:click=on(prune)>"Prune unused images"</button>
                </form>
                <Feedback mutation=action/>
            </Show>
            <h3>"Transfers from the leader"</h3>
            <div class="transfers" inner_html=transfers_markup></div>
        </section>
    }
}
