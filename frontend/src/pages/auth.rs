//! The first-start setup page and the login page.

use leptos::prelude::*;

use crate::api;

/// Shown while the leader has no users: creates the first admin, who is then logged in.
#[component]
pub fn SetupPage() -> impl IntoView {
    let username = RwSignal::new("admin".to_owned());
    let password = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if password.get() != confirm.get() {
            error.set(Some("The passwords do not match.".into()));
            return;
        }
        let vars = api::setup::Variables {
            username: username.get(),
            password: password.get(),
        };
        leptos::task::spawn_local(async move {
            match api::run::<api::Setup>(vars).await {
                Ok(_) => api::reload_at("/"),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <main class="auth">
            <h1>"Welcome to Trellis"</h1>
            <p>"Create the first administrator. Nothing else is reachable until you do."</p>
            <form class="auth-form" on:submit=submit>
                <label>"Username"<input name="username" type="text" autocomplete="username" prop:value=move || username.get()
                    on:input=move |ev| username.set(event_target_value(&ev)) required/></label>
                <label>"Password (at least 8 characters)"<input name="password" type="password" autocomplete="new-password"
                    on:input=move |ev| password.set(event_target_value(&ev)) required minlength="8"/></label>
                <label>"Repeat the password"<input name="confirm" type="password" autocomplete="new-password"
                    on:input=move |ev| confirm.set(event_target_value(&ev)) required/></label>
                <button type="submit">"Create administrator"</button>
            </form>
            <Show when=move || error.get().is_some()>
                <p class="error" role="alert">{move || error.get().unwrap_or_default()}</p>
            </Show>
        </main>
    }
}

/// The login form.
#[component]
pub fn LoginPage() -> impl IntoView {
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let vars = api::login::Variables {
            username: username.get(),
            password: password.get(),
        };
        leptos::task::spawn_local(async move {
            match api::run::<api::Login>(vars).await {
                Ok(_) => {
                    let here = web_sys::window()
                        .and_then(|w| w.location().pathname().ok())
                        .unwrap_or_else(|| "/".into());
                    api::reload_at(&here);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <main class="auth">
            <h1>"Trellis"</h1>
            <form class="auth-form" on:submit=submit>
                <label>"Username"<input name="username" type="text" autocomplete="username"
                    on:input=move |ev| username.set(event_target_value(&ev)) required/></label>
                <label>"Password"<input name="password" type="password" autocomplete="current-password"
                    on:input=move |ev| password.set(event_target_value(&ev)) required/></label>
                <button type="submit">"Log in"</button>
            </form>
            <Show when=move || error.get().is_some()>
                <p class="error" role="alert">{move || error.get().unwrap_or_default()}</p>
            </Show>
        </main>
    }
}
