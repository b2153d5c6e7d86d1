//! The first-start setup page and the login page.

use leptos::prelude::*;

use crate::{
    api::{self, auth},
    components::{Feedback, Mutation, bind, on},
};

/// Shown while the leader has no users: creates the first admin, who is then logged in.
#[component]
pub fn SetupPage() -> impl IntoView {
    let username = RwSignal::new("admin".to_owned());
    let password = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let setup = Mutation::new();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if password.get() != confirm.get() {
            setup.fail("The passwords do not match.");
            return;
        }
        let vars = auth::setup::Variables {
            username: username.get(),
            password: password.get(),
        };
        setup.run::<auth::Setup, _>(vars, |_| {
            api::reload_at("/");
            String::new()
        });
    };
    view! {
        <main class="auth">
            <h1>"Welcome to Trellis"</h1>
            <p>"Create the first administrator. Nothing else is reachable until you do."</p>
            <form class="auth-form" on:submit=on(submit)>
                <label>"Username"<input name="username" type="text" autocomplete="username" prop:value=username
                    on:input=bind(username) required/></label>
                <label>"Password (at least 8 characters)"<input name="password" type="password" autocomplete="new-password"
                    on:input=bind(password) required minlength="8"/></label>
                <label>"Repeat the password"<input name="confirm" type="password" autocomplete="new-password"
                    on:input=bind(confirm) required/></label>
                <button type="submit" prop:disabled=setup.busy()>"Create administrator"</button>
            </form>
            <Feedback mutation=setup/>
        </main>
    }
}

/// The login form.
#[component]
pub fn LoginPage() -> impl IntoView {
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let login = Mutation::new();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let vars = auth::login::Variables {
            username: username.get(),
            password: password.get(),
        };
        login.run::<auth::Login, _>(vars, |_| {
            let here = web_sys::window()
                .and_then(|w| w.location().pathname().ok())
                .unwrap_or_else(|| "/".into());
            api::reload_at(&here);
            String::new()
        });
    };
    view! {
        <main class="auth">
            <h1>"Trellis"</h1>
            <form class="auth-form" on:submit=on(submit)>
                <label>"Username"<input name="username" type="text" autocomplete="username"
                    on:input=bind(username) required/></label>
                <label>"Password"<input name="password" type="password" autocomplete="current-password"
                    on:input=bind(password) required/></label>
                <button type="submit" prop:disabled=login.busy()>"Log in"</button>
            </form>
            <Feedback mutation=login/>
        </main>
    }
}
