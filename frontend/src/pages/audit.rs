//! The audit log: who did what and when, newest first, live.

use futures::StreamExt;
use leptos::prelude::*;

use crate::{
    api::{self, Feed},
    components::{local_time, same_shape},
};

/// One audit row, as the log query returns it.
type Row = api::audit_log::AuditFields;

/// The audit page.
#[component]
pub fn AuditPage() -> impl IntoView {
    let rows = RwSignal::new(Vec::<Row>::new());
    let error = RwSignal::new(None::<String>);
    leptos::task::spawn_local(async move {
        let mut feed = api::subscribe::<api::AuditEvents>(api::audit_events::Variables {});
        while let Some(item) = feed.next().await {
            match item {
                Feed::Connected => {
                    match api::run::<api::AuditLog>(api::audit_log::Variables { limit: 200 }).await
                    {
                        Ok(d) => rows.set(d.audit_log),
                        Err(e) => error.set(Some(e)),
                    }
                }
                Feed::Event(ev)
                    if ev.audit_events.kind == api::audit_events::AuditFeedKind::RESYNC =>
                {
                    // This page fell behind the live feed: reload the log.
                    match api::run::<api::AuditLog>(api::audit_log::Variables { limit: 200 }).await
                    {
                        Ok(d) => rows.set(d.audit_log),
                        Err(e) => error.set(Some(e)),
                    }
                }
                Feed::Event(ev) => {
                    if let Some(row) = ev
                        .audit_events
                        .entry
                        .as_ref()
                        .and_then(same_shape::<_, Row>)
                    {
                        rows.update(|r| {
                            if !r.iter().any(|x| x.id == row.id) {
                                r.insert(0, row);
                                r.truncate(500);
                            }
                        });
                    }
                }
                Feed::Disconnected => {}
            }
        }
    });
    view! {
        <h1>"Audit log"</h1>
        <Show when=move || error.get().is_some()>
            <p class="error" role="alert">{move || error.get().unwrap_or_default()}</p>
        </Show>
        <table class="nodes audit">
            <thead><tr><th>"When"</th><th>"Who"</th><th>"What"</th><th>"On"</th><th>"Outcome"</th><th>"Detail"</th></tr></thead>
            <tbody>
                {move || rows.get().into_iter().map(|r| {
                    let when = local_time(&r.at);
                    let class = if r.outcome == "ok" { "state online" } else { "state lost" };
                    view! {
                        <tr data-audit-id=r.id.to_string()>
                            <td>{when}</td>
                            <td>{r.actor.clone()}</td>
                            <td><code>{r.action.clone()}</code></td>
                            <td>{r.target.clone().unwrap_or_default()}</td>
                            <td><span class=class>{r.outcome.clone()}</span></td>
                            <td class="addr">{r.detail.clone().unwrap_or_default()}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}
