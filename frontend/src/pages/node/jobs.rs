//! The node page's Jobs section: the node's hardware jobs with their latest values, live through
//! `jobEvents(nodeId)`, with Stop / Pause / Resume and inline editing of live settings for
//! operators, and a form that starts a job from a preset or a kind the node offers, on this node,
//! on every node with a label or on every online node (each node's result listed under the
//! form). Viewers see the same, read-only; the leader enforces the same rule. Each card's name
//! links to the job's own page ([`super::job`]), which shows the same card, and a badge links to
//! the experiment the job runs (or ran) in.
//!
//! Values are checked in the page with [`trellis_proto::SettingSpec::check`], the rule the leader
//! and the agent apply, so a value out of range is refused with the same words before anything
//! is sent; what the leader refuses anyway (a job name taken, a job that failed at start) shows
//! in the same place.

use futures::{FutureExt, StreamExt};
use leptos::{ev::SubmitEvent, prelude::*};
use serde_json::Value;
use std::collections::BTreeMap;
use trellis_proto::{KindSpec, SettingSpec, SettingType, Settings};

use crate::{
    Cluster,
    api::{
        self, NodeState,
        jobs::{self, Job, JobEventKind, JobState, Preset},
        ws::{self, Feed},
    },
    components::{Feedback, Mutation, bind, derive, escape, number, number_value, on, router::A},
};

/// What every part of the section (or of a job's page) shares. `Copy`, so event handlers can
/// hold it.
#[derive(Clone, Copy)]
pub(super) struct Section {
    pub(super) node_id: StoredValue<String>,
    /// The node's jobs, by name (a job's page: that job alone).
    pub(super) jobs: RwSignal<Vec<Job>>,
    /// The kinds the node offers, as the wire protocol describes them (converted once per load).
    kinds: RwSignal<Vec<KindSpec>>,
    /// The presets the node offers (of those kinds).
    presets: RwSignal<Vec<Preset>>,
    /// Whether the node is lost or offline: its jobs that had not ended then show `LOST` or
    /// `OFFLINE`, as the `jobs` query says, since the feed carries the agent's last word and the
    /// node's state comes through `nodeEvents`.
    lost: Memo<bool>,
    /// What a job that had not ended shows instead of the agent's word, while the node is away.
    away: Memo<Option<JobState>>,
    can_operate: bool,
}

impl Section {
    /// The shared state for node `node_id`'s jobs, empty until loaded. The kinds the node offers
    /// are loaded again whenever it comes back online (refusals go to `error`).
    pub(super) fn new(node_id: String, error: RwSignal<Option<String>>) -> Self {
        let cluster = expect_context::<Cluster>();
        let node_state = {
            let id = node_id.clone();
            Memo::new(move |_| {
                cluster
                    .nodes
                    .with(|l| l.iter().find(|n| n.id == id).map(|n| n.state.clone()))
            })
        };
        let s = Section {
            node_id: StoredValue::new(node_id),
            jobs: RwSignal::new(Vec::new()),
            kinds: RwSignal::new(Vec::new()),
            presets: RwSignal::new(Vec::new()),
            lost: Memo::new(move |_| {
                matches!(node_state.get(), Some(NodeState::LOST | NodeState::OFFLINE))
            }),
            away: Memo::new(move |_| match node_state.get() {
                Some(NodeState::LOST) => Some(JobState::LOST),
                Some(NodeState::OFFLINE) => Some(JobState::OFFLINE),
                _ => None,
            }),
            can_operate: cluster.can_operate,
        };
        // A node's kinds are empty until its agent has said (after its first connect), so they
        // are asked again whenever the node comes back online.
        Effect::new(move |was_online: Option<bool>| {
            let online = node_state.get() == Some(NodeState::ONLINE);
            if online && was_online == Some(false) {
                leptos::task::spawn_local(reload_kinds(s, s.node_id.get_value(), error));
            }
            online
        });
        s
    }
}

/// The Jobs section of node `node_id`'s page. Re-created when the page shows another node, so its
/// live feed is always that node's.
#[component]
pub fn JobsSection(
    /// The node whose jobs to show.
    node_id: String,
) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let s = Section::new(node_id.clone(), error);

    let mut feed = ws::subscribe::<jobs::JobEvents, jobs::job_events::ResponseData>(
        jobs::job_events::Variables {
            node_id: node_id.clone(),
        },
    )
    .scoped();
    {
        leptos::task::spawn_local(async move {
            while let Some(item) = feed.next().await {
                match item {
                    // The server keeps no backlog for a new or returning subscriber: load all.
                    Feed::Resync => reload(s, &node_id, error).await,
                    Feed::Event(ev) => {
                        let ev = ev.job_events;
                        if ev.kind == JobEventKind::REMOVED {
                            s.jobs.try_update(|l| l.retain(|j| j.name != ev.name));
                        } else {
                            // UPDATED (the event names the job, the list query brings it),
                            // RESYNC (this page fell behind), or a kind this app does not know.
                            // A pid or exec job reports values every second: take every event
                            // that arrives within RELOAD_EVERY_MS, then reload the list once.
                            gloo_timers::future::TimeoutFuture::new(RELOAD_EVERY_MS).await;
                            while let Some(Some(_)) = feed.next().now_or_never() {}
                            reload_jobs(s, &node_id, error).await;
                        }
                    }
                    Feed::Failed(why) => {
                        error.try_set(Some(why));
                    }
                    Feed::Disconnected => {}
                }
            }
        });
    }
    // A card per name and kind: a name started again as another kind gets a fresh card.
    let cards = move || {
        s.jobs.with(|l| {
            l.iter()
                .map(|j| (j.name.clone(), j.kind.clone()))
                .collect::<Vec<_>>()
        })
    };
    view! {
        <section class="jobs" id="jobs">
            <h2>"Jobs"</h2>
            // Parts that come and go are hidden rather than re-rendered where that will do: each
            // reactive view closure is its own code in the wasm, which has a size budget.
            <p class="error" role="alert" class:hidden=derive(move || error.with(Option::is_none))>
                {move || error.get().unwrap_or_default()}
            </p>
            <p class="empty" class:hidden=derive(move || !s.jobs.with(Vec::is_empty))>"No jobs on this node."</p>
            <For each=cards key=|c| c.clone() children=move |(name, kind)| view! { <JobCard s name kind/> }/>
            {s.can_operate.then(|| view! { <StartForm s/> })}
        </section>
    }
}

/// Loads the node's jobs and the kinds it offers.
pub(super) async fn reload(s: Section, node_id: &str, error: RwSignal<Option<String>>) {
    reload_jobs(s, node_id, error).await;
    reload_kinds(s, node_id.to_owned(), error).await;
}

/// How long the page gathers job events before it reloads the list once, milliseconds.
pub(super) const RELOAD_EVERY_MS: u32 = 1_000;

/// Loads the node's jobs (the kinds do not change with a job's status).
pub(super) async fn reload_jobs(s: Section, node_id: &str, error: RwSignal<Option<String>>) {
    let vars = jobs::jobs::Variables {
        node_id: node_id.to_owned(),
    };
    match api::run::<jobs::Jobs>(vars).await {
        Ok(d) => {
            let mut list = d.jobs;
            sort(&mut list);
            s.jobs.try_set(list);
            error.try_set(None);
        }
        Err(e) => {
            error.try_set(Some(e));
        }
    }
}

/// Loads the kinds and presets the node offers.
pub(super) async fn reload_kinds(s: Section, node_id: String, error: RwSignal<Option<String>>) {
    match api::run::<jobs::JobKinds>(jobs::job_kinds::Variables { node_id }).await {
        Ok(d) => {
            s.kinds
                .try_set(d.job_kinds.iter().map(jobs::spec).collect());
            s.presets.try_set(d.job_presets);
        }
        Err(e) => {
            error.try_set(Some(e));
        }
    }
}

/// Jobs by name (one sort for the whole section: each sort call is its own code in the wasm).
fn sort(list: &mut [Job]) {
    list.sort_unstable_by(|a, b| a.name.cmp(&b.name));
}

/// A value as a person reads it: text without quotes, anything else as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A reported value as a person reads it: a number as [`number`] shows it, anything else as text.
fn reading(value: &Value) -> String {
    match value.as_f64() {
        Some(x) => number(x),
        None => text(value),
    }
}

/// A value with its setting's unit ("55 %").
fn with_unit(value: &Value, spec: Option<&SettingSpec>) -> String {
    match spec.and_then(|s| s.unit.as_deref()) {
        Some(unit) => format!("{} {unit}", text(value)),
        None => text(value),
    }
}

/// What an input's text means for `spec`: a number for numbers (anything else is kept as text,
/// so the check names the bad value), `true`/`false` for a checkbox, text for the rest.
fn parse(spec: &SettingSpec, input: &str) -> Value {
    match spec.ty {
        SettingType::Int | SettingType::Float => number_value(input)
            .filter(Value::is_number)
            .unwrap_or_else(|| Value::String(input.to_owned())),
        SettingType::Bool => Value::Bool(input == "true"),
        SettingType::String | SettingType::Enum => Value::String(input.to_owned()),
    }
}

/// The allowed range in words ("0 to 100 %"), if the setting has one.
fn range(spec: &SettingSpec) -> Option<String> {
    let unit = spec
        .unit
        .as_deref()
        .map(|u| format!(" {u}"))
        .unwrap_or_default();
    match (spec.min, spec.max) {
        (Some(lo), Some(hi)) => Some(format!("{lo} to {hi}{unit}")),
        (Some(lo), None) => Some(format!("at least {lo}{unit}")),
        (None, Some(hi)) => Some(format!("at most {hi}{unit}")),
        (None, None) => None,
    }
}

/// The input for one setting's value, by its type: a number input with the rule's `min`/`max`
/// (the browser's spinner stays in range; typed values are checked before sending, and the forms
/// are `novalidate` so the refusal is said in words next to the field rather than in a browser
/// tooltip that disappears), a checkbox,
/// a select of the choices, or a text field. `name` is the input's `name` attribute.
///
/// The input shows, and follows, `value` (the value in force, or what a start form fills in);
/// what is typed goes to `set` only. Refilling the input from what is typed would rewrite a
/// half-typed number: a number input reads as empty while it holds `0.` or `1e`, so `0.6`
/// came out as `6`.
fn setting_input(
    spec: &SettingSpec,
    value: Signal<String>,
    set: impl Fn(String) + 'static,
    name: String,
) -> AnyView {
    match spec.ty {
        SettingType::Int | SettingType::Float => {
            let step = if spec.ty == SettingType::Int {
                "1"
            } else {
                "any"
            };
            view! {
                <input type="number" name=name step=step
                    min=spec.min.map(|m| m.to_string()) max=spec.max.map(|m| m.to_string())
                    prop:value=value
                    on:input=on(move |ev| set(event_target_value(&ev)))/>
            }
            .into_any()
        }
        SettingType::Bool => view! {
            <input type="checkbox" name=name prop:checked=derive(move || value.get() == "true")
                on:change=on(move |ev| set(event_target_checked(&ev).to_string()))/>
        }
        .into_any(),
        SettingType::Enum => {
            let options = spec
                .choices
                .iter()
                .map(|c| {
                    let chosen = c.clone();
                    view! { <option value=c.clone() selected=derive(move || value.get() == chosen)>{c.clone()}</option> }
                })
                .collect_view();
            view! { <select name=name on:change=on(move |ev| set(event_target_value(&ev)))>{options}</select> }
                .into_any()
        }
        SettingType::String => view! {
            <input type="text" name=name maxlength="1024" prop:value=value
                on:input=on(move |ev| set(event_target_value(&ev)))/>
        }
        .into_any(),
    }
}

/// The text an action's answer leaves next to the buttons. The job itself is already shown: an
/// action returns once the agent's status shows it, which the feed has brought.
fn acted(state: &JobState) -> String {
    format!("Now {}.", state.word().0)
}

/// One job: its name (a link to its page), state, actions, error and settings.
#[component]
pub(super) fn JobCard(s: Section, name: String, kind: String) -> impl IntoView {
    let job_name = StoredValue::new(name.clone());
    let job = Memo::new(move |_| {
        s.jobs
            .with(|l| job_name.with_value(|n| l.iter().find(|j| &j.name == n).cloned()))
    });
    let state = Memo::new(move |_| {
        let own = job.with(|j| j.as_ref().map(|j| j.state.clone()))?;
        match s.away.get() {
            Some(away) if own.is_live() => Some(away),
            _ => Some(own),
        }
    });
    let action = Mutation::new();
    let vars = move || (s.node_id.get_value(), job_name.get_value());
    let stop = move |_| {
        let (node_id, name) = vars();
        let vars = jobs::stop_job::Variables { node_id, name };
        action.run::<jobs::StopJob, _>(vars, |d| acted(&d.stop_job.state));
    };
    let pause = move |_| {
        let (node_id, name) = vars();
        let vars = jobs::pause_job::Variables { node_id, name };
        action.run::<jobs::PauseJob, _>(vars, |d| acted(&d.pause_job.state));
    };
    let resume = move |_| {
        let (node_id, name) = vars();
        let vars = jobs::resume_job::Variables { node_id, name };
        action.run::<jobs::ResumeJob, _>(vars, |d| acted(&d.resume_job.state));
    };
    // The job's settings, in the order its kind declares them, then any the kind does not.
    let of_kind = kind.clone();
    let setting_names = Memo::new(move |_| {
        let have = job.with(|j| {
            j.as_ref()
                .and_then(|j| j.settings.as_object())
                .map(|m| m.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        });
        let mut names = s.kinds.with(|ks| {
            ks.iter()
                .filter(|k| k.kind == of_kind)
                .flat_map(|k| &k.settings)
                .filter(|x| have.contains(&x.name))
                .map(|x| x.name.clone())
                .collect::<Vec<_>>()
        });
        for n in have {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
    });
    let shown = name.clone();
    let page = format!("/nodes/{}/jobs/{name}", s.node_id.get_value());
    // The state's badge, and the buttons it allows (for operators while the node is reachable).
    let buttons = move || {
        let st = state.get()?;
        let (word, class) = st.word();
        let badge = view! { <span class=class>{word.to_owned()}</span> };
        if !s.can_operate || s.lost.get() {
            return Some(view! { {badge} }.into_any());
        }
        let busy = move || action.pending();
        Some(view! {
            {badge}
            <span class="job-actions">
                {(st == JobState::READY).then(|| view! {
                    <button type="button" class="pause" prop:disabled=busy on:click=on(pause)>"Pause"</button>
                })}
                {(st == JobState::SLEEPING).then(|| view! {
                    <button type="button" class="resume" prop:disabled=busy on:click=on(resume)>"Resume"</button>
                })}
                {st.is_live().then(|| view! {
                    <button type="button" class="danger stop" prop:disabled=busy on:click=on(stop)>"Stop"</button>
                })}
            </span>
        }.into_any())
    };
    let failure = move || job.with(|j| j.as_ref().and_then(|j| j.error.clone()));
    // The job's latest values (a pid job's `measured` and `output`), as each reload brings them.
    let values = Memo::new(move |_| {
        job.with(|j| {
            j.as_ref()
                .and_then(|j| j.values.as_ref()?.as_object())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), reading(v)))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
    });
    // The experiment it runs (or ran) in: a link, as markup (see `pages::experiment`).
    let experiment = Signal::derive(move || {
        job.with(|j| {
            j.as_ref()
                .and_then(|j| j.experiment.as_ref())
                .map(|e| {
                    format!(
                        r#"<a class="badge experiment" href="/experiments/{}">in {}</a>"#,
                        escape(&e.id),
                        escape(&e.name)
                    )
                })
                .unwrap_or_default()
        })
    });
    // A new state makes the last action's message old news (a job stopped, then started again
    // under the same name, keeps this card).
    Effect::new(move |_| {
        state.track();
        action.clear();
    });

    view! {
        <article class="job" data-job-name=name
            data-state=derive(move || state.get().map(|st| st.name().to_owned()).unwrap_or_default())>
            <header>
                // On the job's own page this is a link to itself: the router marks it
                // `aria-current`, which the style shows as plain text.
                <strong class="job-name"><A href=page>{shown}</A></strong>
                <span class="badge kind">{kind}</span>
                <span class="experiment" inner_html=experiment></span>
                {buttons}
            </header>
            <Feedback mutation=action/>
            <p class="error job-error" role="alert" class:hidden=derive(move || failure().is_none())>
                {move || failure().unwrap_or_default()}
            </p>
            <table class="values" class:hidden=derive(move || values.with(Vec::is_empty))>
                <thead><tr><th>"metric"</th><th>"value"</th></tr></thead>
                <tbody>
                    {move || values.get().into_iter().map(|(metric, shown)| {
                        let key = metric.clone();
                        view! { <tr data-value=key><th>{metric}</th><td class="value">{shown}</td></tr> }
                    }).collect_view()}
                </tbody>
            </table>
            <table class="settings">
                <thead><tr><th>"setting"</th><th>"in force"</th></tr></thead>
                <tbody>
                    <For each=move || setting_names.get() key=|n| n.clone()
                        children=move |setting| view! { <SettingRow s job job_name setting/> }/>
                </tbody>
            </table>
        </article>
    }
}

/// One setting of a job: its echoed value, and for an operator on a running job with a live
/// setting, an input, a Save button and what became of the last save, next to the field.
#[component]
fn SettingRow(
    s: Section,
    job: Memo<Option<Job>>,
    job_name: StoredValue<String>,
    setting: String,
) -> impl IntoView {
    let key = StoredValue::new(setting.clone());
    let value = Memo::new(move |_| {
        job.with(|j| {
            j.as_ref()
                .and_then(|j| key.with_value(|k| j.settings.get(k).cloned()))
        })
    });
    let spec = Memo::new(move |_| {
        let kind = job.with(|j| j.as_ref().map(|j| j.kind.clone()))?;
        s.kinds.with(|ks| {
            ks.iter()
                .find(|k| k.kind == kind)
                .and_then(|k| key.with_value(|n| k.settings.iter().find(|x| &x.name == n)))
                .cloned()
        })
    });
    let editable = Memo::new(move |_| {
        s.can_operate
            && !s.lost.get()
            && spec.with(|x| x.as_ref().is_some_and(|x| x.live))
            && job.with(|j| j.as_ref().is_some_and(|j| j.state == JobState::READY))
    });
    // The input shows, and follows, the value in force (after a save, the agent's echo); what
    // is typed is kept in `draft` (see [`setting_input`]). A refused value stays in the input,
    // next to the reason. An input shown afresh (the job paused and resumed) starts again from
    // the value in force, and so does the draft.
    let in_force = Memo::new(move |_| value.with(|v| v.as_ref().map(text).unwrap_or_default()));
    let draft = RwSignal::new(String::new());
    Effect::new(move |_| {
        editable.track();
        draft.set(in_force.get());
    });
    let save_m = Mutation::new();
    let save = move |ev: SubmitEvent| {
        ev.prevent_default();
        let Some(spec) = spec.get_untracked() else {
            return;
        };
        let value = parse(&spec, &draft.get_untracked());
        if let Err(why) = spec.check(&value) {
            save_m.fail(why);
            return;
        }
        let mut change = serde_json::Map::new();
        change.insert(spec.name.clone(), value);
        let vars = jobs::set_job_settings::Variables {
            node_id: s.node_id.get_value(),
            name: job_name.get_value(),
            settings: Value::Object(change),
        };
        // The answer is the agent's echo (the feed has already put it in the row).
        save_m.run::<jobs::SetJobSettings, _>(vars, move |d| {
            let echoed = d
                .set_job_settings
                .settings
                .get(&spec.name)
                .map(|v| with_unit(v, Some(&spec)))
                .unwrap_or_default();
            format!("{} is now {echoed}.", spec.name)
        });
    };
    view! {
        <tr data-setting=setting>
            <th>{setting.clone()}</th>
            <td class="value">{move || value.get().map(|v| with_unit(&v, spec.get().as_ref()))}</td>
            <td class="edit">
                {move || match spec.get() {
                    Some(sp) if editable.get() => {
                        let input = setting_input(&sp, in_force.into(), move |v| draft.set(v), format!("edit-{}", sp.name));
                        view! {
                            <form class="setting-form" title=sp.description novalidate on:submit=on(save)>
                                {input}
                                <button type="submit" class="save" prop:disabled=save_m.busy()>"Save"</button>
                            </form>
                            // Only while the field can be edited: a stopped job's row shows no
                            // leftover refusal.
                            <Feedback mutation=save_m/>
                        }.into_any()
                    }
                    _ => ().into_any(),
                }}
            </td>
        </tr>
    }
}

/// A target label as the user wrote it: `key=value`.
fn target_label(written: &str) -> Result<jobs::start_jobs::LabelInput, String> {
    match written.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok(jobs::start_jobs::LabelInput {
            key: key.trim().to_owned(),
            value: value.trim().to_owned(),
        }),
        _ => Err("Write the nodes' label as key=value (for example room=lab).".to_owned()),
    }
}

/// The form that starts a job: a preset or a kind, an optional name, one input per setting (the
/// kind's, with its default, unit, range and description; a preset fills in its own values), and
/// where: this node, every node with a label, or every online node. A start on several nodes
/// lists what happened on each under the form.
#[component]
fn StartForm(s: Section) -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    // The first select's value: `preset:<name>` or `kind:<kind>`; empty until the user picks.
    let source = RwSignal::new(String::new());
    let job_name = RwSignal::new(String::new());
    // `node`, `label` or `all`: the target select's value.
    let target = RwSignal::new("node".to_owned());
    let label = RwSignal::new(String::new());
    let values = RwSignal::new(BTreeMap::<String, String>::new());
    // What a start on several nodes did on each: node id, what happened, whether it started.
    let results = RwSignal::new(Vec::<(String, String, bool)>::new());
    let start_m = Mutation::new();
    // The chosen kind, with the chosen preset (of that kind) if any; the first kind until the
    // user picks.
    let choice = Memo::new(move |_| {
        let want = source.get();
        let preset = want.strip_prefix("preset:").and_then(|n| {
            s.presets
                .with(|ps| ps.iter().find(|p| p.name == n).cloned())
        });
        let kind = preset
            .as_ref()
            .map(|p| p.kind.as_str())
            .or_else(|| want.strip_prefix("kind:"));
        let spec = s.kinds.with(|ks| match kind {
            Some(kind) => ks.iter().find(|k| k.kind == kind).cloned(),
            None => ks.first().cloned(),
        })?;
        Some((spec, preset))
    });
    // What the choice fills the inputs with: the kind's defaults, and over them the preset's.
    let filled = Memo::new(move |_| {
        // Maps are filled by insertion: collecting into one sorts first, more code in the wasm.
        let mut m = BTreeMap::new();
        choice.with(|c| {
            if let Some((k, p)) = c {
                for sp in &k.settings {
                    let given = p.as_ref().and_then(|p| p.settings.get(&sp.name));
                    m.insert(sp.name.clone(), text(given.unwrap_or(&sp.default)));
                }
            }
        });
        m
    });
    // Another choice (or its first load): every input back to what it fills in.
    Effect::new(move |_| values.set(filled.get()));
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        let Some((k, preset)) = choice.get_untracked() else {
            start_m.fail("This node offers no kind of job yet.");
            return;
        };
        let name = job_name.get_untracked().trim().to_owned();
        if !name.is_empty()
            && let Err(e) = trellis_proto::validate_job_name(&name)
        {
            start_m.fail(e.to_string());
            return;
        }
        // Only what differs from what the choice filled in is sent: the leader fills in the
        // rest the same way, and the audit log shows what the user chose. The whole start is
        // checked as the leader will: the preset's values, then the user's, over the defaults.
        let mut given = Settings::new();
        if let Some(m) = preset.as_ref().and_then(|p| p.settings.as_object()) {
            for (n, v) in m {
                given.insert(n.clone(), v.clone());
            }
        }
        let mut sent = serde_json::Map::new();
        filled.with_untracked(|f| {
            values.with_untracked(|m| {
                for sp in &k.settings {
                    if let Some(t) = m.get(&sp.name)
                        && f.get(&sp.name) != Some(t)
                    {
                        let value = parse(sp, t);
                        given.insert(sp.name.clone(), value.clone());
                        sent.insert(sp.name.clone(), value);
                    }
                }
            })
        });
        if let Err(why) = k.resolve(&given) {
            start_m.fail(why);
            return;
        }
        // A preset is started by its name, so the leader applies its values.
        let (kind, preset) = match preset {
            Some(p) => (None, Some(p.name)),
            None => (Some(k.kind), None),
        };
        let name = (!name.is_empty()).then_some(name);
        let settings = Some(Value::Object(sent));
        let (labels, all_online) = match target.get_untracked().as_str() {
            "label" => match label.with_untracked(|l| target_label(l)) {
                Ok(l) => (vec![l], false),
                Err(why) => {
                    start_m.fail(why);
                    return;
                }
            },
            "all" => (Vec::new(), true),
            _ => {
                let vars = jobs::start_job::Variables {
                    node_id: s.node_id.get_value(),
                    kind,
                    preset,
                    name,
                    settings,
                };
                results.set(Vec::new());
                start_m.run::<jobs::StartJob, _>(vars, move |d| {
                    job_name.try_set(String::new());
                    let job = d.start_job;
                    format!("Started {}: {}.", job.name, job.state.word().0)
                });
                return;
            }
        };
        let vars = jobs::start_jobs::Variables {
            nodes: jobs::start_jobs::NodeSelector {
                node_ids: Vec::new(),
                labels,
                all_online,
            },
            kind,
            preset,
            name,
            settings,
        };
        results.set(Vec::new());
        start_m.run::<jobs::StartJobs, _>(vars, move |d| {
            job_name.try_set(String::new());
            let total = d.start_jobs.len();
            let each = d
                .start_jobs
                .into_iter()
                .map(|r| match r.job {
                    Some(job) => {
                        let said = format!("started {}: {}.", job.name, job.state.word().0);
                        (r.node_id, said, true)
                    }
                    None => (r.node_id, r.error.unwrap_or_default(), false),
                })
                .collect::<Vec<_>>();
            let started = each.iter().filter(|r| r.2).count();
            results.try_set(each);
            format!("Started on {started} of {total} nodes.")
        });
    };
    let fields = move || {
        choice.get().map(|(k, _)| {
            k.settings
                .into_iter()
                .map(|sp| {
                    let n = sp.name.clone();
                    // The input shows what the choice fills in; `values` keeps what is typed
                    // (see [`setting_input`]).
                    let value = Signal::derive({
                        let n = n.clone();
                        move || filled.with(|m| m.get(&n).cloned().unwrap_or_default())
                    });
                    let set = {
                        let n = n.clone();
                        move |v| {
                            values.update(|m| {
                                m.insert(n.clone(), v);
                            })
                        }
                    };
                    let unit = sp.unit.clone().map(|u| format!(" ({u})"));
                    let mut help = sp.description.clone();
                    if let Some(r) = range(&sp) {
                        help = format!("{help}; {r}");
                    }
                    if sp.live {
                        help.push_str("; can change while it runs");
                    }
                    view! {
                        <label class="setting" data-setting=n>
                            <span class="setting-name">{n.clone()}{unit}</span>
                            {setting_input(&sp, value, set, format!("setting-{n}"))}
                            <small>{help}</small>
                        </label>
                    }
                })
                .collect_view()
        })
    };
    // The name a job gets when the user gives none: the preset's, or the kind's.
    let default_name = move || {
        choice.with(|c| match c {
            Some((_, Some(p))) => p.name.clone(),
            Some((k, None)) => k.kind.clone(),
            None => String::new(),
        })
    };
    // Each start result by the node's name (its id when the page does not know it).
    let node_name = move |id: &str| {
        cluster
            .nodes
            .with_untracked(|l| l.iter().find(|n| n.id == id).map(|n| n.name.clone()))
            .unwrap_or_else(|| id.to_owned())
    };

    view! {
        <h3>"Start a job"</h3>
        <p class="empty" class:hidden=derive(move || !s.kinds.with(Vec::is_empty))>
            "This node has not said which jobs it can run (yet)."
        </p>
        <form class="start-job" class:hidden=derive(move || s.kinds.with(Vec::is_empty)) novalidate on:submit=on(submit)>
                <label class="setting">
                    <span class="setting-name">"Preset or kind"</span>
                    <select name="start-from" on:change=bind(source)>
                        <optgroup label="Presets" class:hidden=derive(move || s.presets.with(Vec::is_empty))>
                            {move || s.presets.get().into_iter().map(|p| {
                                let this = p.name.clone();
                                view! {
                                    <option value=format!("preset:{}", p.name)
                                        selected=derive(move || choice.with(|c| matches!(c, Some((_, Some(p))) if p.name == this)))>
                                        {format!("{}: {}", p.name, p.description)}
                                    </option>
                                }
                            }).collect_view()}
                        </optgroup>
                        <optgroup label="Kinds">
                            {move || s.kinds.get().into_iter().map(|k| {
                                let this = k.kind.clone();
                                view! {
                                    <option value=format!("kind:{}", k.kind)
                                        selected=derive(move || choice.with(|c| matches!(c, Some((c, None)) if c.kind == this)))>
                                        {format!("{}: {}", k.kind, k.description)}
                                    </option>
                                }
                            }).collect_view()}
                        </optgroup>
                    </select>
                    <small>"A preset fills in its kind's settings with its own values."</small>
                </label>
                <label class="setting">
                    <span class="setting-name">"Name"</span>
                    <input type="text" name="job-name" maxlength="64" placeholder=default_name
                        prop:value=job_name on:input=bind(job_name)/>
                    <small>"Letters, digits, - and _; unique on each node."</small>
                </label>
                <label class="setting">
                    <span class="setting-name">"Start on"</span>
                    <select name="target" on:change=bind(target)>
                        <option value="node">"this node"</option>
                        <option value="label">"nodes with a label"</option>
                        <option value="all">"all online nodes"</option>
                    </select>
                    <input type="text" name="target-label" maxlength="130" placeholder="key=value"
                        class:hidden=derive(move || target.with(|t| t != "label"))
                        prop:value=label on:input=bind(label)/>
                    <small>"Other nodes check the settings again with their own kinds."</small>
                </label>
                {fields}
                <p><button type="submit" class="start" prop:disabled=start_m.busy()>"Start"</button></p>
            </form>
        <Feedback mutation=start_m/>
        <ul class="start-results" class:hidden=derive(move || results.with(Vec::is_empty))>
            {move || results.get().into_iter().map(|(node, said, started)| {
                let shown = node_name(&node);
                view! {
                    <li data-node-id=node class=if started { "message" } else { "error" }>
                        <strong>{shown}</strong> ": " {said}
                    </li>
                }
            }).collect_view()}
        </ul>
    }
}
