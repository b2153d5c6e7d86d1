//! Access: your API tokens (create once-shown tokens, revoke them) and, for admins, the users.

use leptos::prelude::*;

use crate::{
    Cluster,
    api::{
        self, Role,
        access::{self, ApiToken, User},
    },
    components::{Feedback, Mutation, bind, local_time, on},
};

/// The access page.
#[component]
pub fn AccessPage() -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let tokens = RwSignal::new(Vec::<ApiToken>::new());
    let users = RwSignal::new(Vec::<User>::new());
    let load_error = RwSignal::new(None::<String>);
    let is_admin = cluster.is_admin;
    let load = move || {
        leptos::task::spawn_local(async move {
            match api::run::<access::ApiTokens>(access::api_tokens::Variables {}).await {
                Ok(d) => {
                    tokens.try_set(d.api_tokens);
                }
                Err(e) => {
                    load_error.try_set(Some(e));
                }
            }
            if is_admin {
                match api::run::<access::Users>(access::users::Variables {}).await {
                    Ok(d) => {
                        users.try_set(d.users);
                    }
                    Err(e) => {
                        load_error.try_set(Some(e));
                    }
                }
            }
        });
    };
    load();

    // Each form, and each table's row buttons, report next to themselves.
    let token_form = Mutation::new();
    let token_rows = Mutation::new();
    let user_form = Mutation::new();
    let user_rows = Mutation::new();

    let token_name = RwSignal::new(String::new());
    let token_role = RwSignal::new(Role::VIEWER);
    let create_token = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let vars = access::create_api_token::Variables {
            name: token_name.get(),
            role: token_role.get(),
        };
        token_form.run::<access::CreateApiToken, _>(vars, move |d| {
            load();
            format!(
                "New token (copy it now, it is not shown again): {}",
                d.create_api_token.token
            )
        });
    };
    let revoke = move |id: String| {
        token_rows.run::<access::RevokeApiToken, _>(
            access::revoke_api_token::Variables { id },
            move |_| {
                load();
                "Token revoked.".into()
            },
        );
    };

    let user_name = RwSignal::new(String::new());
    let user_password = RwSignal::new(String::new());
    let user_role = RwSignal::new(Role::VIEWER);
    let create_user = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let vars = access::create_user::Variables {
            username: user_name.get(),
            password: user_password.get(),
            role: user_role.get(),
        };
        user_form.run::<access::CreateUser, _>(vars, move |d| {
            load();
            format!("User {} created.", d.create_user.username)
        });
    };
    let delete_user = move |id: String| {
        user_rows.run::<access::DeleteUser, _>(access::delete_user::Variables { id }, move |_| {
            load();
            "User deleted.".into()
        });
    };
    let role_options = move || {
        Role::ALL
            .iter()
            .map(|r| {
                let (value, label) = (r.word().to_owned(), r.word().to_owned());
                view! { <option value=value>{label}</option> }
            })
            .collect_view()
    };

    view! {
        <h1>"Access"</h1>
        <Show when=move || load_error.get().is_some()>
            <p class="error" role="alert">{move || load_error.get().unwrap_or_default()}</p>
        </Show>
        <h2>"API tokens"</h2>
        <p>"For scripts and integrations: send as " <code>"Authorization: Bearer <token>"</code> ". A token's role is never above yours."</p>
        <form class="actions token-form" on:submit=on(create_token)>
            <input name="token-name" type="text" placeholder="What is it for?" maxlength="64" required
                on:input=bind(token_name)/>
            <select name="token-role" on:change=on(move |ev| token_role.set(Role::from_word(&event_target_value(&ev))))>{role_options}</select>
            <button type="submit" prop:disabled=token_form.busy()>"Create token"</button>
        </form>
        <Feedback mutation=token_form class="join-command" code=true/>
        <Feedback mutation=token_rows/>
        <table class="nodes tokens">
            <thead><tr><th>"Name"</th><th>"Role"</th><th>"Starts with"</th><th>"Last used"</th><th>"State"</th><th></th></tr></thead>
            <tbody>
                {move || tokens.get().into_iter().map(|t| {
                    let id = t.id.clone();
                    let state = if t.active { "active" } else { "revoked or expired" };
                    let shown = t.name.clone();
                    view! {
                        <tr data-token-name=t.name>
                            <td>{shown}</td>
                            <td>{t.role.word().to_owned()}</td>
                            <td><code>{t.prefix.clone()}</code></td>
                            <td>{t.last_used_at.as_deref().map(local_time).unwrap_or_else(|| "never".into())}</td>
                            <td>{state}</td>
                            <td><Show when=move || t.active>
                                <button type="button" class="danger revoke" prop:disabled=token_rows.busy() on:click=on({let id = id.clone(); move |_| revoke(id.clone())})>"Revoke"</button>
                            </Show></td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        <Show when=move || is_admin>
            <h2>"Users"</h2>
            <form class="actions user-form" on:submit=on(create_user)>
                <input name="new-username" type="text" placeholder="Username" required
                    on:input=bind(user_name)/>
                <input name="new-password" type="password" placeholder="Password (8+ characters)" minlength="8" required
                    autocomplete="new-password" on:input=bind(user_password)/>
                <select name="new-role" on:change=on(move |ev| user_role.set(Role::from_word(&event_target_value(&ev))))>{role_options}</select>
                <button type="submit" prop:disabled=user_form.busy()>"Create user"</button>
            </form>
            <Feedback mutation=user_form/>
            <Feedback mutation=user_rows/>
            <table class="nodes users">
                <thead><tr><th>"Username"</th><th>"Role"</th><th>"Since"</th><th></th></tr></thead>
                <tbody>
                    {move || users.get().into_iter().map(|u| {
                        let id = u.id.clone();
                        let shown = u.username.clone();
                        view! {
                            <tr data-username=u.username>
                                <td>{shown}</td>
                                <td>{u.role.word().to_owned()}</td>
                                <td>{local_time(&u.created_at)}</td>
                                <td><button type="button" class="danger" prop:disabled=user_rows.busy() on:click=on(move |_| delete_user(id.clone()))>"Delete"</button></td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </Show>
    }
}
