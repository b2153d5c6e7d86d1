//! The Trellis web app (Leptos, client-side rendered to WASM): the cluster's nodes with their state,
//! last contact and load, updated live through the `nodeEvents` subscription; each node's page
//! with its jobs, and each job's page with its live log; experiments, each with its nodes, jobs,
//! notes, events, live charts and profile runs; the experiment profiles, written and checked in
//! an editor; container deployments, each with its instances, rollouts, revisions and each
//! node's live log and stats; the audit log; and the first-start setup and login pages that
//! guard them.

pub mod api;
mod components;
mod pages;

use leptos::prelude::*;

use components::{
    derive, on,
    router::{self, A, Route},
};

/// Live cluster state shared by the pages.
#[derive(Clone, Copy)]
pub struct Cluster {
    /// Nodes by name.
    pub nodes: RwSignal<Vec<api::Node>>,
    /// Whether the live feed is connected.
    pub live: RwSignal<bool>,
    /// The last error to show, if any.
    pub error: RwSignal<Option<String>>,
    /// Now, in ms since the epoch, ticking every second (for "5 s ago").
    pub now_ms: RwSignal<f64>,
    /// Nodes waiting for approval.
    pub pending: RwSignal<Vec<api::enroll::PendingNode>>,
    /// Whether the user may change things (operator or admin).
    pub can_operate: bool,
    /// Whether the user is an admin.
    pub is_admin: bool,
}

/// Who is using the app.
#[derive(Clone, PartialEq)]
pub enum SessionState {
    /// Still asking the leader.
    Loading,
    /// The leader has no users: show the first-start setup.
    NeedsSetup,
    /// Not logged in.
    LoggedOut,
    /// Logged in as this user with this role.
    LoggedIn(String, api::Role),
    /// The leader could not be reached.
    Unreachable(String),
}

/// The root component: asks who is logged in, then shows setup, login or the app.
#[component]
pub fn App() -> impl IntoView {
    let session = RwSignal::new(SessionState::Loading);
    leptos::task::spawn_local(async move {
        session.set(
            match api::run::<api::auth::Session>(api::auth::session::Variables {}).await {
                Ok(d) if d.setup_status.needs_setup => SessionState::NeedsSetup,
                Ok(d) => match d.me {
                    Some(me) => SessionState::LoggedIn(me.username, me.role),
                    None => SessionState::LoggedOut,
                },
                Err(e) => SessionState::Unreachable(e),
            },
        );
    });
    move || match session.get() {
        SessionState::Loading => view! { <p class="loading">"Loading…"</p> }.into_any(),
        SessionState::NeedsSetup => view! { <pages::auth::SetupPage/> }.into_any(),
        SessionState::LoggedOut => view! { <pages::auth::LoginPage/> }.into_any(),
        SessionState::Unreachable(e) => {
            view! { <p class="error" role="alert">"Cannot reach the leader: " {e}</p> }.into_any()
        }
        SessionState::LoggedIn(user, role) => view! { <Shell user=user role=role/> }.into_any(),
    }
}

/// The app for a logged-in user.
#[component]
fn Shell(user: String, role: api::Role) -> impl IntoView {
    let cluster = Cluster {
        nodes: RwSignal::new(Vec::new()),
        live: RwSignal::new(false),
        error: RwSignal::new(None),
        now_ms: RwSignal::new(js_sys::Date::now()),
        pending: RwSignal::new(Vec::new()),
        can_operate: role.can_operate(),
        is_admin: role == api::Role::ADMIN,
    };
    provide_context(cluster);
    components::start_live_feed(cluster);
    // The audit log is for operators and admins (the server enforces the same rule).
    let can_audit = role.can_operate();
    let logout = move |_| {
        leptos::task::spawn_local(async move {
            let _ = api::run::<api::auth::Logout>(api::auth::logout::Variables {}).await;
            api::reload_at("/");
        });
    };

    let route = router::start();
    // The page by its kind: a node's page stays (and follows its `id`) when a link shows another
    // node, as it did under leptos_router.
    let page = Memo::new(move |_| route.with(std::mem::discriminant));
    let pages = move || {
        // Read, not only tracked: a memo that has never run follows nothing.
        let _ = page.get();
        match route.get_untracked() {
            Route::Nodes => view! { <pages::nodes::NodesPage/> }.into_any(),
            Route::Node(_) => {
                let id = router::param(route, |r| match r {
                    Route::Node(id) => Some(id),
                    _ => None,
                });
                view! { <pages::node::NodePage id/> }.into_any()
            }
            Route::Job(..) => {
                let node_id = router::param(route, |r| match r {
                    Route::Job(id, _) => Some(id),
                    _ => None,
                });
                let name = router::param(route, |r| match r {
                    Route::Job(_, name) => Some(name),
                    _ => None,
                });
                view! { <pages::node::JobPage node_id name/> }.into_any()
            }
            Route::Experiments => view! { <pages::experiments::ExperimentsPage/> }.into_any(),
            Route::Experiment(_) => {
                let id = router::param(route, |r| match r {
                    Route::Experiment(id) => Some(id),
                    _ => None,
                });
                view! { <pages::experiment::ExperimentPage id/> }.into_any()
            }
            Route::Profiles => view! { <pages::profiles::ProfilesPage/> }.into_any(),
            Route::Deployments => view! { <pages::deployments::DeploymentsPage/> }.into_any(),
            Route::Apps => view! { <pages::apps::AppsPage/> }.into_any(),
            Route::Deployment(_) => {
                let name = router::param(route, |r| match r {
                    Route::Deployment(name) => Some(name),
                    _ => None,
                });
                view! { <pages::deployment::DeploymentPage name/> }.into_any()
            }
            Route::Instance(..) => {
                let name = router::param(route, |r| match r {
                    Route::Instance(name, _) => Some(name),
                    _ => None,
                });
                let node_id = router::param(route, |r| match r {
                    Route::Instance(_, node) => Some(node),
                    _ => None,
                });
                view! { <pages::deployment::InstancePage name node_id/> }.into_any()
            }
            Route::Audit => view! { <pages::audit::AuditPage/> }.into_any(),
            Route::Access => view! { <pages::access::AccessPage/> }.into_any(),
            Route::NotFound => view! {
                <h1>"Page not found"</h1><p><A href="/">"Back to the nodes"</A></p>
            }
            .into_any(),
        }
    };

    view! {
            <header class="top">
                <A href="/" class="brand">"Trellis"</A>
                <nav>
                    <A href="/">"Nodes"</A>
                    <A href="/experiments">"Experiments"</A>
                    <A href="/profiles">"Profiles"</A>
                    <A href="/deployments">"Deployments"</A>
                    <A href="/apps">"Apps"</A>
                    <Show when=move || can_audit><A href="/audit">"Audit log"</A></Show>
                    <A href="/access">"Access"</A>
                    <a href="/graphiql" rel="external">"GraphiQL"</a>
                </nav>
                <span class="live" class:on=derive(move || cluster.live.get())>
                    {move || if cluster.live.get() { "live" } else { "reconnecting…" }}
                </span>
                <span class="user">{user} " (" {role.word().to_owned()} ")"</span>
                <button type="button" class="logout" on:click=on(logout)>"Log out"</button>
            </header>
            <Show when=move || cluster.error.get().is_some()>
                <p class="error" role="alert">{move || cluster.error.get().unwrap_or_default()}</p>
            </Show>
            <main>{pages}</main>
    }
}
