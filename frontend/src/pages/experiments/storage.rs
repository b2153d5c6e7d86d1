//! The experiments page's storage section: what the database holds (its size, readings,
//! series, job log lines) and the ingester's queue, loaded again every few seconds while the
//! page is open; and the retention rules, which admins set, remove and apply from here (the
//! leader refuses other roles, so they see the rules without the controls, as elsewhere).
//! The figures and the rules are written as markup, as the list above them is.

use std::fmt::Write;

use leptos::{ev, prelude::*};

use crate::{
    Cluster,
    api::storage::{self, Figures, Rule},
    components::{
        Alert, Feedback, Mutation, bind, clicked, derive, escape, local_time, markup, on, size,
        thousands,
    },
};

/// How often the figures are loaded again: they move with every batch stored, and a count of
/// millions of rows costs the leader a little, so not with every frame.
const RELOAD_EVERY_MS: u32 = 5_000;

/// The storage section.
#[component]
pub fn StorageSection() -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let figures = RwSignal::new(None::<Figures>);
    let error = RwSignal::new(None::<String>);
    let load = move || async move {
        match storage::figures().await {
            Ok(f) => figures.try_set(Some(f)).is_none() && error.try_set(None).is_none(),
            Err(e) => error.try_set(Some(e)).is_none(),
        }
    };
    // Until the page is gone (a signal that cannot be set any more).
    leptos::task::spawn_local(async move {
        while load().await {
            gloo_timers::future::TimeoutFuture::new(RELOAD_EVERY_MS).await;
        }
    });

    let facts = markup(move || {
        let mut html = String::new();
        figures.with(|f| {
            let Some(f) = f else { return };
            let _ = write!(
                html,
                r#"<dt>Database size</dt><dd data-figure="size">{}</dd><dt>Readings</dt><dd data-figure="readings">{}</dd><dt>Series</dt><dd data-figure="series">{}</dd><dt>Log lines</dt><dd data-figure="log-lines">{}</dd><dt>Ingest queue</dt><dd data-figure="queue">{} of {} batches waiting <small class="hint">(at most {} at once since the leader started)</small></dd>"#,
                size(f.database_bytes),
                thousands(f.readings),
                thousands(f.series),
                thousands(f.log_lines),
                thousands(f.queue_depth),
                thousands(f.queue_capacity),
                thousands(f.queue_high_water),
            );
        });
        html
    });
    let is_admin = cluster.is_admin;
    let rows = markup(move || {
        let mut html = String::new();
        figures.with(|f| {
            for r in f.iter().flat_map(|f| &f.rules) {
                let metric = r.metric.as_deref().map(escape);
                let remove = if is_admin {
                    format!(
                        r#"<td><button type="button" class="danger small remove-rule" data-metric="{}">Remove</button></td>"#,
                        metric.as_deref().unwrap_or_default()
                    )
                } else {
                    String::new()
                };
                let _ = write!(
                    html,
                    r#"<tr data-metric="{}"><td>{}</td><td class="num">{}</td><td>{}</td><td>{}</td>{remove}</tr>"#,
                    metric.as_deref().unwrap_or_default(),
                    metric.as_deref().unwrap_or("<em>every metric</em>"),
                    thousands(r.days),
                    escape(r.updated_by.strip_prefix("user:").unwrap_or(&r.updated_by)),
                    local_time(&r.updated),
                );
            }
        });
        html
    });
    let action = Mutation::new();
    // A row's Remove button (the rows are markup, with one listener on the table).
    let remove = move |e: ev::MouseEvent| {
        let Some(m) = clicked(&e, "button.remove-rule", "data-metric") else {
            return;
        };
        action.run_json::<storage::SetRetention, _>(
            storage::set_retention::Variables {
                metric: (!m.is_empty()).then_some(m),
                days: None,
            },
            move |d| {
                set_rules(figures, &d);
                "Rule removed.".into()
            },
            None,
        );
    };
    let no_rules = derive(move || figures.with(|f| f.as_ref().is_none_or(|f| f.rules.is_empty())));

    view! {
        <section class="storage">
            <h2>"Storage"</h2>
            <Alert error/>
            <dl class="facts storage-figures" inner_html=facts></dl>
            <h3>"Retention"</h3>
            <p class="empty" class:hidden=derive(move || figures.with(Option::is_none) || !no_rules.get())>
                "No rules: every reading is kept."
            </p>
            <table class="nodes retention" class:hidden=no_rules on:click=on(remove)>
                <thead><tr>
                    <th>"Metric"</th><th>"Days kept"</th><th>"Set by"</th><th>"When"</th>
                    {is_admin.then(|| view! { <th></th> })}
                </tr></thead>
                <tbody inner_html=rows></tbody>
            </table>
            {is_admin.then(|| view! { <RetentionForm figures action/> })}
        </section>
    }
}

/// The admins' controls: set a rule, apply the rules now.
#[component]
fn RetentionForm(
    /// What the section shows; the rules are replaced by what a change returns.
    figures: RwSignal<Option<Figures>>,
    /// The status of setting and removing rules (the rows' buttons share it).
    action: Mutation,
) -> impl IntoView {
    let metric = RwSignal::new(String::new());
    let days = RwSignal::new(String::new());
    let apply = Mutation::new();
    let set = move |e: ev::SubmitEvent| {
        e.prevent_default();
        let m = metric.get_untracked().trim().to_owned();
        // Only whether it is a whole number is checked here: the range is the leader's to say.
        let Ok(n) = days.get_untracked().trim().parse::<i64>() else {
            action.fail("Days must be a whole number (1 to 36,500).");
            return;
        };
        let who = if m.is_empty() {
            "every metric".to_owned()
        } else {
            format!("“{m}”")
        };
        action.run_json::<storage::SetRetention, _>(
            storage::set_retention::Variables {
                metric: (!m.is_empty()).then_some(m),
                days: Some(n),
            },
            move |d| {
                set_rules(figures, &d);
                format!("Readings of {who} are kept {} days.", thousands(n))
            },
            None,
        );
    };
    let run_pass = move |_| {
        apply.run_json::<storage::ApplyRetention, _>(
            storage::apply_retention::Variables {},
            move |d| {
                // What is left is worth seeing now rather than at the next load.
                leptos::task::spawn_local(async move {
                    if let Ok(f) = storage::figures().await {
                        figures.try_set(Some(f));
                    }
                });
                let s = &d["applyRetention"];
                let n = |k: &str| thousands(s[k].as_i64().unwrap_or_default());
                format!(
                    "Deleted {} readings; {} series left empty.",
                    n("readingsDeleted"),
                    n("seriesEmptied")
                )
            },
            None,
        );
    };
    let busy = action.busy();

    view! {
        <form class="actions retention-form" on:submit=on(set)>
            <input type="text" name="metric" placeholder="Metric (empty: every metric)" maxlength="200"
                prop:value=metric on:input=bind(metric)/>
            <input type="number" name="days" placeholder="Days (1 to 36,500)" step="1" required
                prop:value=days on:input=bind(days)/>
            <button type="submit" class="set-rule" prop:disabled=busy>"Set rule"</button>
            <button type="button" class="apply-retention" prop:disabled=apply.busy()
                on:click=on(run_pass)>"Apply now"</button>
        </form>
        <Feedback mutation=action/>
        <Feedback mutation=apply/>
    }
}

/// Shows the rules a change answered with (`setRetention` returns every rule).
fn set_rules(figures: RwSignal<Option<Figures>>, d: &serde_json::Value) {
    let rules = d["setRetention"]
        .as_array()
        .map(|a| a.iter().map(storage::rule).collect::<Vec<Rule>>())
        .unwrap_or_default();
    // The page may be gone by the time the answer comes.
    figures.try_update(|f| {
        if let Some(f) = f {
            f.rules = rules;
        }
    });
}
