//! The experiment profiles, `/profiles`: every stored profile (name, author and description
//! from its metadata, when it was stored and by whom), each opened into the editor or deleted
//! (after a confirmation in the page); and the editor, a text area for the YAML that is checked
//! as it is written (`checkProfile` 300 ms after the last keystroke: every problem with its line
//! and column beside the text, a click selecting it there, and the dry run's timeline under it),
//! loaded from a
//! `.yaml` file read in the browser, and saved (a refusal lists the leader's problems one a
//! line). Opening a profile or starting a new one over unsaved text asks first.
//!
//! Viewers can open and check profiles; Save and Delete are for operators (the leader enforces
//! the same rule, and any refusal shows in words where the user acted). The list, the problems
//! and the dry run are written as markup, as the experiment page's lists are (see there).

use std::fmt::Write;

use leptos::{ev, html, prelude::*};
use wasm_bindgen::JsCast;

use crate::{
    Cluster,
    api::{
        Refusal,
        profiles::{self, Check, Stored},
    },
    components::{
        Alert, Feedback, Mutation, clicked, derive, escape, local_time, markup, name_of,
        node_names, number, on,
    },
};

/// How long after the last keystroke the text is checked.
const CHECK_AFTER_MS: u32 = 300;
/// Most dry-run lines the page shows (the leader lists up to 10 000).
const TIMELINE_ROWS: usize = 500;

/// A new profile's first text: the parts every profile has.
const TEMPLATE: &str = "experiment_profile_name: my-profile
metadata:
  author: your name
  description: what it does
common:
  jobs:
    stirring:
      actions:
        - type: start
          hours_elapsed: 0
          options:
            target_rpm: 400
";

/// What the list asks before it acts.
#[derive(Clone, PartialEq)]
enum Ask {
    /// Delete this profile.
    Delete(String),
    /// Put this profile (`None`: a new one) in the editor over its unsaved text.
    Replace(Option<String>),
}

/// The editor's text and where it came from. `Copy`, so handlers can hold it.
#[derive(Clone, Copy)]
struct Editor {
    source: RwSignal<String>,
    /// The text as last opened or saved: the editor has unsaved changes when it differs.
    saved: RwSignal<String>,
    /// The stored profile it holds (`None`: a new one, or one from a file).
    name: RwSignal<Option<String>>,
    /// What the editor's heading says it holds.
    label: RwSignal<String>,
}

impl Editor {
    fn dirty(self) -> bool {
        self.source
            .with_untracked(|s| self.saved.with_untracked(|v| s != v))
    }

    /// Shows `text`, from stored profile `name` when it is one (then it has no unsaved changes).
    fn show(self, label: String, name: Option<String>, text: String) {
        self.saved.set(if name.is_some() {
            text.clone()
        } else {
            String::new()
        });
        // The same text again (saved as it is) is not checked again.
        if self.source.with_untracked(|s| *s != text) {
            self.source.set(text);
        }
        self.name.set(name);
        self.label.set(label);
    }
}

/// The profiles page.
#[component]
pub fn ProfilesPage() -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let can = cluster.can_operate;
    let list = RwSignal::new(Vec::<Stored>::new());
    let loaded = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let reload = move || {
        leptos::task::spawn_local(async move {
            match profiles::list_all().await {
                Ok(l) => {
                    list.try_set(l);
                    error.try_set(None);
                    loaded.try_set(true);
                }
                Err(e) => {
                    error.try_set(Some(e));
                }
            }
        });
    };
    reload();

    let ed = Editor {
        source: RwSignal::new(String::new()),
        saved: RwSignal::new(String::new()),
        name: RwSignal::new(None),
        label: RwSignal::new("New profile".into()),
    };
    let area = NodeRef::<html::Textarea>::new();
    let asking = RwSignal::new(None::<Ask>);
    let list_action = Mutation::new();

    let open = move |name: String| {
        leptos::task::spawn_local(async move {
            match profiles::source(name.clone()).await {
                Ok(Some(text)) => {
                    ed.show(format!("Editing “{name}”"), Some(name), text);
                    if let Some(a) = area.get_untracked() {
                        a.scroll_into_view();
                        let _ = a.focus();
                    }
                }
                Ok(None) => {
                    error.try_set(Some(format!("There is no profile “{name}” now.")));
                }
                Err(e) => {
                    error.try_set(Some(e));
                }
            }
        });
    };
    let start_new = move || ed.show("New profile".into(), None, TEMPLATE.into());
    let delete = move |name: String| {
        let vars = profiles::delete_profile::Variables { name: name.clone() };
        list_action.run_json::<profiles::DeleteProfile, _>(
            vars,
            move |_| {
                // The editor keeps its text, now a profile that is not stored.
                if ed.name.get_untracked().as_deref() == Some(name.as_str()) {
                    ed.show(
                        format!("“{name}” (deleted)"),
                        None,
                        ed.source.get_untracked(),
                    );
                }
                reload();
                format!("Deleted “{name}”.")
            },
            None,
        );
    };
    let act = move |e: ev::MouseEvent| {
        let Some(what) = clicked(&e, "button[data-act]", "data-act") else {
            return;
        };
        let name = clicked(&e, "[data-profile]", "data-profile").unwrap_or_default();
        list_action.clear();
        match what.as_str() {
            "open" if ed.dirty() => asking.set(Some(Ask::Replace(Some(name)))),
            "open" => {
                asking.set(None);
                open(name);
            }
            "delete" => asking.set(Some(Ask::Delete(name))),
            "confirm" => {
                match asking.get_untracked() {
                    Some(Ask::Delete(name)) => delete(name),
                    Some(Ask::Replace(Some(name))) => open(name),
                    Some(Ask::Replace(None)) => start_new(),
                    None => {}
                }
                asking.set(None);
            }
            _ => asking.set(None),
        }
    };
    let rows = markup(move || {
        let mut html = String::new();
        list.with(|l| {
            for p in l {
                let name = escape(&p.name);
                let _ = write!(
                    html,
                    r#"<tr data-profile="{name}"><td><button type="button" class="link name" data-act="open">{name}</button></td><td class="author">{}</td><td class="description">{}</td><td>{}<small class="id">by {}</small></td><td class="row-actions"><button type="button" class="small open" data-act="open">{}</button>"#,
                    escape(p.author.as_deref().unwrap_or("—")),
                    escape(p.description.as_deref().unwrap_or("")),
                    local_time(&p.updated),
                    escape(p.updated_by.strip_prefix("user:").unwrap_or(&p.updated_by)),
                    if can { "Edit" } else { "Open" }
                );
                if can {
                    html.push_str(r#" <button type="button" class="small danger delete" data-act="delete">Delete</button>"#);
                }
                html.push_str("</td></tr>");
            }
        });
        html
    });
    let question = markup(move || match asking.get() {
        None => String::new(),
        Some(Ask::Delete(name)) => format!(
            r#"<p class="confirm" data-profile="{0}">Delete “{0}”? Runs that used it keep their own copy. <button type="button" class="danger confirm-delete" data-act="confirm">Delete it</button> <button type="button" data-act="cancel">Cancel</button></p>"#,
            escape(&name)
        ),
        Some(Ask::Replace(what)) => format!(
            r#"<p class="confirm">The editor has unsaved changes. Replace them with {}? <button type="button" class="danger confirm-replace" data-act="confirm">Replace them</button> <button type="button" data-act="cancel">Keep editing</button></p>"#,
            what.map_or("a new profile".to_owned(), |n| format!("“{}”", escape(&n)))
        ),
    });
    let none = derive(move || list.with(Vec::is_empty));

    view! {
        <h1>"Profiles"</h1>
        <p class="hint">"Experiment profiles in Pioreactor's YAML format: what to start, change and stop on an experiment's nodes, and when. Start one from an experiment's page."</p>
        <Alert error/>
        <div class="profile-list" on:click=on(act)>
            <p class="empty" class:hidden=derive(move || !loaded.get() || !none.get())>
                "No stored profiles yet: write one below, or upload a .yaml file."
            </p>
            <table class="nodes profiles" class:hidden=none>
                <thead><tr><th>"Name"</th><th>"Author"</th><th>"Description"</th><th>"Stored"</th><th></th></tr></thead>
                <tbody inner_html=rows></tbody>
            </table>
            <div inner_html=question></div>
            <Feedback mutation=list_action/>
        </div>
        <ProfileEditor ed area can reload=move || reload() new=move || {
            if ed.dirty() { asking.set(Some(Ask::Replace(None))) } else { start_new() }
        }/>
    }
}

/// The editor: its text, checked as it is written, with the problems and the dry run beside
/// it; a file upload, New and Save.
#[component]
fn ProfileEditor(
    /// Its text and where it came from.
    ed: Editor,
    /// The text area (the page scrolls to it when a profile is opened).
    area: NodeRef<html::Textarea>,
    /// Whether the user may save (an operator).
    can: bool,
    /// Loads the list again (after a save).
    reload: impl Fn() + Copy + 'static,
    /// Starts a new profile (asking first over unsaved text).
    new: impl Fn() + Copy + 'static,
) -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let save_action = Mutation::new();
    let check = RwSignal::new(None::<Check>);
    let checking = RwSignal::new(false);
    let check_error = RwSignal::new(None::<String>);
    // Which edit the latest check is for: an answer to an older text is dropped.
    let generation = StoredValue::new(0_u32);
    Effect::new(move |_| {
        let text = ed.source.get();
        generation.update_value(|g| *g += 1);
        let mine = generation.get_value();
        if text.trim().is_empty() {
            check.set(None);
            checking.set(false);
            return;
        }
        checking.set(true);
        leptos::task::spawn_local(async move {
            gloo_timers::future::TimeoutFuture::new(CHECK_AFTER_MS).await;
            if generation.try_get_value() != Some(mine) {
                return;
            }
            let answer = profiles::check(text).await;
            if generation.try_get_value() != Some(mine) {
                return;
            }
            match answer {
                Ok(c) => {
                    check.try_set(Some(c));
                    check_error.try_set(None);
                }
                Err(e) => {
                    check_error.try_set(Some(e));
                }
            }
            checking.try_set(false);
        });
    });

    let upload = move |e: ev::Event| {
        let Some(input) = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        else {
            return;
        };
        let Some(file) = input.files().and_then(|f| f.get(0)) else {
            return;
        };
        // The same file chosen again (after an edit) is read again.
        input.set_value("");
        save_action.clear();
        leptos::task::spawn_local(async move {
            let name = file.name();
            match wasm_bindgen_futures::JsFuture::from(file.text()).await {
                Ok(text) => ed.show(
                    format!("From the file “{name}” (not saved)"),
                    None,
                    text.as_string().unwrap_or_default(),
                ),
                Err(_) => save_action.fail(format!("Cannot read the file “{name}”.")),
            }
        });
    };
    let save = move |_| {
        let text = ed.source.get_untracked();
        if text.trim().is_empty() {
            save_action.fail("Write or upload a profile first.");
            return;
        }
        let vars = profiles::save_profile::Variables {
            source: text.clone(),
        };
        save_action.run_json::<profiles::SaveProfile, _>(
            vars,
            move |d| {
                let name = d["saveProfile"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                ed.show(format!("Editing “{name}”"), Some(name.clone()), text);
                reload();
                format!("Saved “{name}”.")
            },
            Some(Box::new(|r: Refusal| profiles::problem_lines(&r.message))),
        );
    };
    // A problem's place, clicked: select from there to the end of its line.
    let go_to = move |e: ev::MouseEvent| {
        let at = |attr| {
            clicked(&e, "li[data-line]", attr)
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(1)
        };
        let (line, column) = (at("data-line"), at("data-column"));
        let Some(a) = area.get_untracked() else {
            return;
        };
        let text = a.value();
        // The text area counts its selection in UTF-16 units.
        let mut start = 0;
        let mut end = 0;
        for (i, l) in text.split('\n').enumerate() {
            if i + 1 == line {
                let col: usize = l
                    .chars()
                    .take(column.saturating_sub(1))
                    .map(char::len_utf16)
                    .sum();
                end = start + l.encode_utf16().count();
                start += col;
                break;
            }
            start += l.encode_utf16().count() + 1;
        }
        let _ = a.focus();
        let _ = a.set_selection_range(start as u32, end.max(start) as u32);
    };

    let names = node_names(cluster);
    let status = derive(move || {
        if let Some(e) = check_error.get() {
            return format!("Cannot check it: {e}");
        }
        if checking.get() {
            return "Checking…".into();
        }
        check.with(|c| match c {
            None => "Write a profile, or upload one.".into(),
            Some(c) if c.ok => "No problems: it reads, and this cluster can run it.".into(),
            Some(c) if c.problems.len() == 1 => "1 problem:".into(),
            Some(c) => format!("{} problems:", c.problems.len()),
        })
    });
    let problems = markup(move || {
        let mut html = String::new();
        check.with(|c| {
            for p in c.iter().flat_map(|c| &c.problems) {
                let place = p.place();
                if place.is_empty() {
                    let _ = write!(html, "<li>{}</li>", escape(&p.message));
                } else {
                    let _ = write!(
                        html,
                        r#"<li data-line="{}" data-column="{}"><button type="button" class="link place">{place}</button>: {}</li>"#,
                        p.line.unwrap_or(1),
                        p.column.unwrap_or(1),
                        escape(&p.message)
                    );
                }
            }
        });
        html
    });
    let timeline = markup(move || {
        check.with(|c| {
            let Some(c) = c.as_ref().filter(|c| !c.timeline.is_empty()) else {
                return String::new();
            };
            let mut html = String::from(
                r#"<h3>Dry run</h3><p class="hint">What it would do on every node that runs jobs (started on an experiment: on the experiment's nodes), in profile hours from its start. A repeat with no end is shown three times.</p><table class="nodes profile-timeline"><thead><tr><th>Hours</th><th>Node</th><th>Job</th><th>Action</th><th>Detail</th></tr></thead><tbody>"#,
            );
            for e in c.timeline.iter().take(TIMELINE_ROWS) {
                let _ = write!(
                    html,
                    r#"<tr><td class="num">{}</td><td>{}</td><td>{}</td><td><span class="badge">{}</span></td><td>{}</td></tr>"#,
                    number(e.hours),
                    escape(&name_of(names, &e.node_id)),
                    escape(&e.job),
                    escape(&e.action),
                    escape(&e.detail)
                );
            }
            html.push_str("</tbody></table>");
            if c.timeline.len() > TIMELINE_ROWS {
                let _ = write!(
                    html,
                    r#"<p class="hint">… and {} more.</p>"#,
                    c.timeline.len() - TIMELINE_ROWS
                );
            }
            html
        })
    });
    // Green or red for the text shown, not while it is being checked again.
    let verdict = move |ok: bool| {
        derive(move || {
            !checking.get()
                && check_error.with(Option::is_none)
                && check.with(|c| c.as_ref().is_some_and(|c| c.ok == ok))
        })
    };
    let (good, bad) = (verdict(true), verdict(false));
    let unsaved = derive(move || ed.source.with(|s| ed.saved.with(|v| s != v)));

    view! {
        <section class="profile-editor">
            <div class="editor-bar">
                <h2>{move || ed.label.get()} <small class="unsaved" class:hidden=derive(move || !unsaved.get())>"unsaved changes"</small></h2>
                <button type="button" class="new-profile" on:click=on(move |_| new())>"New profile"</button>
                <label class="upload">"Upload a .yaml file "
                    <input type="file" name="upload" accept=".yaml,.yml,text/yaml,application/yaml" on:change=on(upload)/>
                </label>
            </div>
            <div class="editor-columns">
                <div>
                    <textarea class="profile-source" name="source" rows="26" spellcheck="false"
                        autocomplete="off" autocapitalize="off" wrap="off" aria-label="The profile (YAML)"
                        placeholder="experiment_profile_name: …" node_ref=area prop:value=ed.source
                        on:input=on(move |e| { save_action.clear(); ed.source.set(event_target_value(&e)); })></textarea>
                    <p class="form-buttons" class:hidden=!can>
                        <button type="button" class="save-profile" prop:disabled=save_action.busy() on:click=on(save)>"Save"</button>
                        <small class="hint">"Stored under its experiment_profile_name, replacing a profile of that name."</small>
                    </p>
                    <div class="save-feedback"><Feedback mutation=save_action/></div>
                </div>
                <div class="check-report">
                    <p class="check-status" class:bad=bad class:good=good role="status">{status}</p>
                    <ol class="profile-problems" inner_html=problems on:click=on(go_to)></ol>
                </div>
            </div>
            <div class="dry-run" inner_html=timeline></div>
        </section>
    }
}
