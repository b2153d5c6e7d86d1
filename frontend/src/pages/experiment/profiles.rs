//! The experiment page's Profiles section: a stored profile started on the experiment at a time
//! scale (the leader's refusal, such as a node the profile names that is not in the experiment,
//! shown in words, one problem a line), and the experiment's runs: each one's state, profile
//! hours elapsed out of its total, actions begun, its next action (what, where, and when in
//! profile and real time), Pause / Resume / Stop as its state allows (Stop after a confirmation
//! in the page), and the steps it took, shown under it on request.
//!
//! No subscription carries runs: `profileRuns` is loaded every second while a run is running or
//! paused, every five seconds otherwise (a run started elsewhere shows within that), and at
//! once after each action taken here. The runs table is markup with one listener, as the page's
//! other lists are.

use std::fmt::Write;

use leptos::{ev, prelude::*};

use super::{Page, actor, clock};
use crate::{
    Cluster,
    api::{
        Refusal,
        profiles::{self, Run, Step},
    },
    components::{
        Alert, Feedback, Mutation, bind, clicked, derive, escape, markup, name_of, node_names,
        number, number_value, on, router::A,
    },
};

/// How often runs are loaded while one is running or paused.
const ACTIVE_POLL_MS: u32 = 1_000;
/// Every how many of those ticks they are loaded while none is.
const IDLE_TICKS: u32 = 5;

/// What the runs and their controls share. `Copy`, so tasks and handlers can hold it.
#[derive(Clone, Copy)]
struct Runs {
    id: StoredValue<String>,
    runs: RwSignal<Vec<Run>>,
    /// The run whose steps are shown, and its steps.
    steps_of: RwSignal<Option<String>>,
    steps: RwSignal<Vec<Step>>,
    error: RwSignal<Option<String>>,
}

impl Runs {
    /// Loads the runs (and the steps shown); false when the page is gone.
    async fn load(self) -> bool {
        let Some(id) = self.id.try_get_value() else {
            return false;
        };
        match profiles::runs(id).await {
            Ok(r) => {
                if self.runs.try_set(r).is_some() {
                    return false;
                }
                self.error.try_set(None);
            }
            Err(e) => {
                return self.error.try_set(Some(e)).is_none();
            }
        }
        if let Some(Some(run)) = self.steps_of.try_get_untracked() {
            match profiles::steps(run).await {
                Ok(s) => {
                    self.steps.try_set(s);
                }
                Err(e) => {
                    self.error.try_set(Some(e));
                }
            }
        }
        true
    }

    fn refresh(self) {
        leptos::task::spawn_local(async move {
            self.load().await;
        });
    }
}

/// Hours as people read them: "0.25 h".
fn hours(h: f64) -> String {
    format!("{} h", number(h))
}

/// A clock's hours, to the hundredth: "0.06 h" (more digits would only flicker).
fn elapsed(h: f64) -> String {
    hours((h * 100.0).round() / 100.0)
}

/// A real duration in seconds, roughly: "6 s", "2.5 min", "3 h", "2 d".
fn duration(secs: f64) -> String {
    match secs {
        s if s < 60.0 => format!("{} s", number(s.max(0.0).round())),
        s if s < 3600.0 => format!("{} min", number(s / 60.0)),
        s if s < 86_400.0 => format!("{} h", number(s / 3600.0)),
        s => format!("{} d", number(s / 86_400.0)),
    }
}

/// What a time scale means, in words.
fn scale_words(text: &str) -> String {
    match number_value(text).and_then(|v| v.as_f64()) {
        Some(1.0) => "1 = real time: a profile hour takes an hour.".into(),
        Some(s) if s > 0.0 => format!(
            "The profile's clock runs {}× real time: a profile hour takes {} (1 = real time).",
            number(s),
            duration(3600.0 / s)
        ),
        _ => "A number above 0: 1 = real time, 60 = a profile hour each minute.".into(),
    }
}

/// The state's CSS class.
fn state_class(state: &str) -> &'static str {
    match state {
        "running" => "state online",
        "paused" => "state paused",
        "failed" => "state lost",
        _ => "state offline",
    }
}

/// The experiment's profiles: the start form (operators, while it runs) and its runs.
#[component]
pub(super) fn Profiles(p: Page, running: Signal<bool>, can: bool) -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let r = Runs {
        id: p.id,
        runs: RwSignal::new(Vec::new()),
        steps_of: RwSignal::new(None),
        steps: RwSignal::new(Vec::new()),
        error: RwSignal::new(None),
    };
    // Loads every second while a run may move, every IDLE_TICKS seconds otherwise, until the
    // page is gone.
    leptos::task::spawn_local(async move {
        let mut idle = IDLE_TICKS;
        loop {
            let Some(active) = r.runs.try_with_untracked(|l| l.iter().any(Run::active)) else {
                return;
            };
            if active || idle >= IDLE_TICKS {
                idle = 0;
                if !r.load().await {
                    return;
                }
            } else {
                idle += 1;
            }
            gloo_timers::future::TimeoutFuture::new(ACTIVE_POLL_MS).await;
        }
    });

    let stored = RwSignal::new(Vec::<String>::new());
    let load_stored = move || {
        leptos::task::spawn_local(async move {
            if let Ok(l) = profiles::list_all().await {
                stored.try_set(l.into_iter().map(|p| p.name).collect());
            }
        });
    };
    load_stored();
    let chosen = RwSignal::new(String::new());
    let scale = RwSignal::new("1".to_owned());
    let start_action = Mutation::new();
    let start = move |e: ev::SubmitEvent| {
        e.prevent_default();
        let name = chosen.get_untracked();
        if name.is_empty() {
            start_action.fail("Choose a profile to start.");
            return;
        }
        let Some(time_scale) = number_value(&scale.get_untracked())
            .and_then(|v| v.as_f64())
            .filter(|s| *s > 0.0)
        else {
            start_action.fail("The time scale is a number above 0 (1 = real time).");
            return;
        };
        let vars = profiles::start_profile::Variables {
            experiment_id: p.id.get_value(),
            name,
            time_scale,
        };
        start_action.run_json::<profiles::StartProfile, _>(
            vars,
            move |_| {
                r.refresh();
                String::new()
            },
            Some(Box::new(|r: Refusal| profiles::problem_lines(&r.message))),
        );
    };
    let choices = markup(move || {
        let mut html = String::from(r#"<option value="">Choose a profile…</option>"#);
        stored.with(|l| {
            for name in l {
                let n = escape(name);
                let _ = write!(html, r#"<option value="{n}">{n}</option>"#);
            }
        });
        html
    });
    // New choices show "Choose a profile…" again.
    Effect::new(move |_| {
        choices.track();
        chosen.set(String::new());
    });

    // Pause, Resume, Stop (asking first), and the steps shown or hidden, by the buttons'
    // `data-act` and their row's run.
    let run_action = Mutation::new();
    let stopping = RwSignal::new(None::<String>);
    let act = move |e: ev::MouseEvent| {
        let Some(what) = clicked(&e, "button[data-act]", "data-act") else {
            return;
        };
        let Some(id) = clicked(&e, "[data-run-id]", "data-run-id") else {
            return;
        };
        let done = move |_| {
            r.refresh();
            String::new()
        };
        match what.as_str() {
            "pause" => run_action.run_json::<profiles::PauseProfileRun, _>(
                profiles::pause_profile_run::Variables { id },
                done,
                None,
            ),
            "resume" => run_action.run_json::<profiles::ResumeProfileRun, _>(
                profiles::resume_profile_run::Variables { id },
                done,
                None,
            ),
            "stop" => stopping.set(Some(id)),
            "confirm-stop" => {
                stopping.set(None);
                run_action.run_json::<profiles::StopProfileRun, _>(
                    profiles::stop_profile_run::Variables { id },
                    done,
                    None,
                );
            }
            "cancel" => stopping.set(None),
            _ => {
                let shown = r.steps_of.get_untracked().as_deref() == Some(id.as_str());
                r.steps.set(Vec::new());
                r.steps_of.set((!shown).then_some(id));
                r.refresh();
            }
        }
    };

    let names = node_names(cluster);
    let name_of = move |id: &str| name_of(names, id);
    let table = markup(move || {
        let controls = can && running.get();
        let stopping = stopping.get();
        let steps_of = r.steps_of.get();
        r.runs.with(|runs| {
            if runs.is_empty() {
                return r#"<p class="empty">No profile has run on it.</p>"#.to_owned();
            }
            let mut html = String::from(
                r#"<table class="nodes profile-runs"><thead><tr><th>Profile</th><th>State</th><th>Progress</th><th>Actions begun</th><th>Next action</th><th>Started</th><th></th></tr></thead><tbody>"#,
            );
            for run in runs {
                let shown = steps_of.as_deref() == Some(run.id.as_str());
                html.push_str(&row(run, controls, stopping.as_deref(), shown, &name_of));
                if shown {
                    r.steps
                        .with(|s| html.push_str(&steps(s, &name_of)));
                }
            }
            html.push_str("</tbody></table>");
            html
        })
    });

    let can_start = derive(move || can && running.get());
    view! {
        <section class="profiles">
            <h2>"Profiles"</h2>
            <Alert error=r.error/>
            <form class="start-profile" class:hidden=derive(move || !can_start.get()) on:submit=on(start)>
                <label>"Profile"
                    <select name="profile" inner_html=choices on:focus=on(move |_| load_stored())
                        on:change=on(move |e| chosen.set(event_target_value(&e)))></select>
                </label>
                <label>"Time scale"
                    <input type="number" name="time-scale" min="0" step="any" prop:value=scale on:input=bind(scale)/>
                </label>
                <button type="submit" class="start-profile" prop:disabled=start_action.busy()>"Start"</button>
                <small class="hint scale-words">{move || scale.with(|s| scale_words(s))}</small>
            </form>
            <p class="hint" class:hidden=derive(move || !can_start.get() || stored.with(|s| !s.is_empty()))>
                "No stored profiles yet: write one on the " <A href="/profiles">"Profiles"</A> " page."
            </p>
            <div class="start-feedback"><Feedback mutation=start_action/></div>
            <div class="runs" inner_html=table on:click=on(act)></div>
            <Feedback mutation=run_action/>
        </section>
    }
}

/// One run's row: `controls` whether its buttons are shown, `stopping` the run asking whether to
/// stop, `shown` whether its steps are.
fn row(
    run: &Run,
    controls: bool,
    stopping: Option<&str>,
    shown: bool,
    name_of: &dyn Fn(&str) -> String,
) -> String {
    let mut html = String::with_capacity(1024);
    let id = escape(&run.id);
    let progress = match run.total_hours {
        Some(total) => {
            // A finished run's clock ran on until the leader saw it had nothing left to do.
            let at = if run.state == "done" {
                run.elapsed_hours.min(total)
            } else {
                run.elapsed_hours
            };
            format!(
                r#"<progress max="{}" value="{}"></progress> <span class="hours">{} of {}</span>"#,
                total.max(1e-9),
                at.min(total),
                elapsed(at),
                hours(total)
            )
        }
        None => format!(
            r#"<span class="hours">{}</span> <small>(no set end)</small>"#,
            elapsed(run.elapsed_hours)
        ),
    };
    let next = match &run.next {
        None => "—".to_owned(),
        Some(n) => {
            // Real time to it: profile hours left over the clock's speed.
            let left = (n.hours - run.elapsed_hours) * 3600.0 / run.time_scale.max(1e-9);
            let when = match run.state.as_str() {
                "paused" => "paused".to_owned(),
                _ if left <= 0.5 => "now".to_owned(),
                _ => format!("in {}", duration(left)),
            };
            format!(
                r#"<span class="badge">{}</span> {} on {} at {} <small>({when})</small>"#,
                escape(&n.action),
                escape(&n.job),
                escape(&name_of(&n.node_id)),
                hours(n.hours)
            )
        }
    };
    let _ = write!(
        html,
        r#"<tr data-run-id="{id}" data-state="{0}"><td class="profile-name">{1}</td><td><span class="{2}">{0}</span></td><td class="progress">{progress}</td><td class="num begun">{3}</td><td class="next">{next}</td><td class="started">{4}<small>by {5} · {6}× real time</small></td><td class="run-actions">"#,
        escape(&run.state),
        escape(&run.profile_name),
        state_class(&run.state),
        run.actions_begun,
        clock(&run.started),
        escape(actor(&run.started_by)),
        number(run.time_scale)
    );
    let button = |act: &str, class: &str, word: &str| {
        format!(r#"<button type="button" class="small {class}" data-act="{act}">{word}</button> "#)
    };
    if controls && stopping == Some(run.id.as_str()) {
        html.push_str(
            r#"<span class="confirm">Stop it for good? Its jobs keep running as they are. "#,
        );
        html.push_str(&button("confirm-stop", "danger confirm-stop", "Stop it"));
        html.push_str(&button("cancel", "", "Cancel"));
        html.push_str("</span>");
    } else if controls {
        match run.state.as_str() {
            "running" => html.push_str(&button("pause", "pause", "Pause")),
            "paused" => html.push_str(&button("resume", "resume", "Resume")),
            _ => {}
        }
        if run.active() {
            html.push_str(&button("stop", "danger stop", "Stop"));
        }
    }
    let _ = write!(
        html,
        r#"<button type="button" class="small steps" data-act="steps" aria-expanded="{shown}">{}</button></td></tr>"#,
        if shown { "Hide steps" } else { "Steps" }
    );
    html
}

/// A run's steps, in a row under it.
fn steps(steps: &[Step], name_of: &dyn Fn(&str) -> String) -> String {
    let mut html = String::from(r#"<tr class="run-steps"><td colspan="7">"#);
    if steps.is_empty() {
        html.push_str(r#"<p class="empty">No action begun yet.</p></td></tr>"#);
        return html;
    }
    html.push_str(r#"<table class="profile-steps"><thead><tr><th>Due</th><th>When</th><th>Node</th><th>Job</th><th>Action</th><th>State</th><th>Outcome</th></tr></thead><tbody>"#);
    for s in steps {
        let class = match s.state.as_str() {
            "done" => "state online",
            "failed" => "state lost",
            _ => "state offline",
        };
        let _ = write!(
            html,
            r#"<tr><td class="num">{}</td><td>{}</td><td>{}</td><td>{}</td><td><span class="badge">{}</span></td><td><span class="{class}">{}</span></td><td>{}</td></tr>"#,
            hours(s.due_hours),
            clock(&s.at),
            escape(&name_of(&s.node_id)),
            escape(&s.job),
            escape(&s.action),
            escape(&s.state),
            escape(&s.outcome)
        );
    }
    html.push_str("</tbody></table></td></tr>");
    html
}
