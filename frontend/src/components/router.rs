//! Client-side routing: which page a path shows ([`Route`]), links ([`A`]) and the browser's
//! history. It replaces leptos_router, whose general machinery (nested routes, matching by
//! generic route types, one `EitherOf` view for all routes, URL parsing) cost the web app
//! 45.5 kB gzipped (405.6 -> 360.1 kB) for the app's few flat paths; the web app has a size
//! budget (BENCHMARKS.md).
//!
//! What it keeps of leptos_router's behaviour: a click on a same-origin link is handled in the
//! page (`history.pushState`, no reload) unless it has a `target`, `download` or
//! `rel="external"`, or a modifier key or another button is used; Back and Forward show the page
//! of the path they go to; a navigation scrolls to the top; a link to the page shown, or to one
//! above it, is marked `aria-current="page"`; path parameters are percent-decoded.

use leptos::{ev, prelude::*};
use wasm_bindgen::{JsCast, JsValue};

/// The path the browser shows (`location.pathname`), shared through the context.
#[derive(Clone, Copy)]
struct Path(RwSignal<String>);

/// What a path shows, with its parameters (percent-decoded).
#[derive(Clone, PartialEq)]
pub enum Route {
    /// `/`: the nodes.
    Nodes,
    /// `/nodes/<id>`.
    Node(String),
    /// `/nodes/<id>/jobs/<name>`.
    Job(String, String),
    /// `/experiments`.
    Experiments,
    /// `/experiments/<id>`.
    Experiment(String),
    /// `/profiles`.
    Profiles,
    /// `/apps`.
    Apps,
    /// `/deployments`.
    Deployments,
    /// `/deployments/<name>`.
    Deployment(String),
    /// `/deployments/<name>/<node>`: one node's instance.
    Instance(String, String),
    /// `/audit`.
    Audit,
    /// `/access`.
    Access,
    /// Anything else.
    NotFound,
}

impl Route {
    fn of(path: &str) -> Route {
        let decode = |s: &str| {
            js_sys::decode_uri_component(s)
                .map(String::from)
                .unwrap_or_else(|_| s.to_owned())
        };
        // A trailing slash names the same page, as leptos_router matched it.
        let parts = path.trim_end_matches('/').split('/').collect::<Vec<_>>();
        match parts.as_slice() {
            [""] => Route::Nodes,
            ["", "audit"] => Route::Audit,
            ["", "profiles"] => Route::Profiles,
            ["", "apps"] => Route::Apps,
            ["", "deployments"] => Route::Deployments,
            ["", "deployments", name] if !name.is_empty() => Route::Deployment(decode(name)),
            ["", "deployments", name, node] if !name.is_empty() && !node.is_empty() => {
                Route::Instance(decode(name), decode(node))
            }
            ["", "access"] => Route::Access,
            ["", "experiments"] => Route::Experiments,
            ["", "experiments", id] if !id.is_empty() => Route::Experiment(decode(id)),
            ["", "nodes", id] if !id.is_empty() => Route::Node(decode(id)),
            ["", "nodes", id, "jobs", name] if !id.is_empty() && !name.is_empty() => {
                Route::Job(decode(id), decode(name))
            }
            _ => Route::NotFound,
        }
    }
}

fn window() -> web_sys::Window {
    leptos::prelude::window()
}

fn pathname() -> String {
    window().location().pathname().unwrap_or_default()
}

/// Starts routing for the app (once, in the logged-in shell): the route the browser's path
/// shows, following links and Back / Forward.
pub fn start() -> Memo<Route> {
    let path = RwSignal::new(pathname());
    provide_context(Path(path));
    // Back / Forward: the browser has changed the path already.
    let back = window_event_listener(ev::popstate, move |_| path.set(pathname()));
    let click = window_event_listener(ev::click, move |e| {
        if let Some(to) = in_page_link(&e) {
            e.prevent_default();
            if to != path.get_untracked() {
                let _ = window()
                    .history()
                    .and_then(|h| h.push_state_with_url(&JsValue::NULL, "", Some(&to)));
                path.set(to);
            }
            window().scroll_to_with_x_and_y(0.0, 0.0);
        }
    });
    on_cleanup(move || {
        back.remove();
        click.remove();
    });
    Memo::new(move |_| path.with(|p| Route::of(p)))
}

/// Goes to `to` (an absolute path of the app) in the page, as a link would: for a page that
/// leads on by itself (to what a form just made). Taken while a component is built, where the
/// router's context is.
pub fn navigator() -> impl Fn(&str) + Copy + 'static {
    let path = expect_context::<Path>().0;
    move |to: &str| {
        let _ = window()
            .history()
            .and_then(|h| h.push_state_with_url(&JsValue::NULL, "", Some(to)));
        path.set(to.to_owned());
        window().scroll_to_with_x_and_y(0.0, 0.0);
    }
}

/// The path a click should go to in the page, if it is a plain left click on a link to a path
/// of this origin that the browser need not handle itself.
fn in_page_link(e: &web_sys::MouseEvent) -> Option<String> {
    if e.default_prevented()
        || e.button() != 0
        || e.meta_key()
        || e.alt_key()
        || e.ctrl_key()
        || e.shift_key()
    {
        return None;
    }
    let a = e
        .target()?
        .dyn_into::<web_sys::Element>()
        .ok()?
        .closest("a[href]")
        .ok()??;
    let external = a
        .get_attribute("rel")
        .is_some_and(|r| r.split_ascii_whitespace().any(|p| p == "external"));
    if external || a.has_attribute("target") || a.has_attribute("download") {
        return None;
    }
    // The app's own links are written as absolute paths; `//host/…` is another origin.
    let href = a.get_attribute("href")?;
    (href.starts_with('/') && !href.starts_with("//")).then_some(href)
}

/// A parameter of the route shown, picked by `pick`. It keeps its last value while the route
/// is another: a page's view is disposed only after the path has changed, and must not be
/// rebuilt for a path it does not show meanwhile.
pub fn param(route: Memo<Route>, pick: fn(&Route) -> Option<&String>) -> Memo<String> {
    Memo::new(move |last: Option<&String>| {
        route
            .with(|r| pick(r).cloned())
            .or_else(|| last.cloned())
            .unwrap_or_default()
    })
}

/// Whether a link to `href` is to the page shown at `path` or to one above it (`/nodes/a` for
/// `/nodes/a/jobs/b`); `/` only for itself.
fn current(href: &str, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    let href = href.trim_end_matches('/');
    path == href
        || (!href.is_empty() && path.strip_prefix(href).is_some_and(|r| r.starts_with('/')))
}

/// A link within the app: an `<a>` that [`start`]'s click handler follows in the page, marked
/// `aria-current="page"` while it leads to the page shown (or one above it).
#[component]
pub fn A(
    /// An absolute path of the app.
    #[prop(into)]
    href: String,
    /// The link's class, if any.
    #[prop(optional)]
    class: Option<&'static str>,
    /// What the link shows.
    children: Children,
) -> impl IntoView {
    let path = expect_context::<Path>().0;
    let here = {
        let href = href.clone();
        move || path.with(|p| current(&href, p)).then_some("page")
    };
    view! { <a href=href class=class aria-current=here>{children()}</a> }
}
