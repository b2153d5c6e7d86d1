//! The audit log: who did what and when, newest first, live. The live feed is this page's own
//! subscription on the tab's socket, completed when the page unmounts.

use futures::StreamExt;
use leptos::prelude::*;

use crate::{
    api::{
        self,
        audit::{self, AuditRow},
        ws::{self, Feed},
    },
    components::local_time,
};

/// How many rows the page loads, and keeps while events arrive.
const LOADED: i64 = 200;
const KEPT: usize = 500;

/// Loads the newest rows of the log into `rows` (or the error into `error`).
async fn reload(rows: RwSignal<Vec<AuditRow>>, error: RwSignal<Option<String>>) {
    let vars = audit::audit_log::Variables { limit: LOADED };
    match api::run::<audit::AuditLog>(vars).await {
        Ok(d) => {
            error.try_set(None);
            rows.try_set(d.audit_log);
        }
        Err(e) => {
            error.try_set(Some(e));
        }
    }
}

/// The audit page.
#[component]
pub fn AuditPage() -> impl IntoView {
    let rows = RwSignal::new(Vec::<AuditRow>::new());
    let error = RwSignal::new(None::<String>);
    let mut feed = ws::subscribe::<audit::AuditEvents, audit::AuditEventData>(
        audit::audit_events::Variables {},
    )
    .scoped();
    leptos::task::spawn_local(async move {
        while let Some(item) = feed.next().await {
            match item {
                // The server keeps no backlog for a new or returning subscriber, and says RESYNC
                // when this page fell behind: load the log.
                Feed::Resync => {
                    reload(rows, error).await;
                }
                Feed::Event(ev) if ev.audit_events.kind == audit::AuditFeedKind::RESYNC => {
                    reload(rows, error).await;
                }
                Feed::Event(ev) => {
                    if let Some(row) = ev.audit_events.entry {
                        rows.try_update(|r| {
                            if !r.iter().any(|x| x.id == row.id) {
                                r.insert(0, row);
                                r.truncate(KEPT);
                            }
                        });
                    }
                }
                Feed::Failed(why) => {
                    error.try_set(Some(why));
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
                    // `outcome` is a string in the schema: `ok` or an error code.
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
