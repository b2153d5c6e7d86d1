//! Access: your API tokens (create once-shown tokens, revoke them) and, for admins, the users.

use leptos::prelude::*;

use crate::{Cluster, api, components::local_time};

/// Role names offered in forms, lowest first.
const ROLES: [&str; 3] = ["viewer", "operator", "admin"];

fn role_value(name: &str) -> api::create_api_token::Role {
    match name {
        "admin" => api::create_api_token::Role::ADMIN,
        "operator" => api::create_api_token::Role::OPERATOR,
        _ => api::create_api_token::Role::VIEWER,
    }
}

fn user_role_value(name: &str) -> api::create_user::Role {
    match name {
        "admin" => api::create_user::Role::ADMIN,
        "operator" => api::create_user::Role::OPERATOR,
        _ => api::create_user::Role::VIEWER,
    }
}

/// The access page.
#[component]
pub fn AccessPage() -> impl IntoView {
    let cluster = expect_context::<Cluster>();
    let tokens = RwSignal::new(Vec::<api::access::AccessApiTokens>::new());
    let users = RwSignal::new(Vec::<api::users::UsersUsers>::new());
    let message = RwSignal::new(None::<String>);
    let is_admin = cluster.is_admin;
    let load = move || {
        leptos::task::spawn_local(async move {
            match api::run::<api::Access>(api::access::Variables {}).await {
                Ok(d) => tokens.set(d.api_tokens),
                Err(e) => message.set(Some(e)),
            }
            if is_admin {
                match api::run::<api::Users>(api::users::Variables {}).await {
                    Ok(d) => users.set(d.users),
                    Err(e) => message.set(Some(e)),
                }
            }
        });
    };
    load();

    let token_name = RwSignal::new(String::new());
    let token_role = RwSignal::new("viewer".to_owned());
    let create_token = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let vars = api::create_api_token::Variables {
            name: token_name.get(),
            role: role_value(&token_role.get()),
        };
        leptos::task::spawn_local(async move {
            match api::run::<api::CreateApiToken>(vars).await {
                Ok(d) => message.set(Some(format!(
                    "New token (copy it now, it is not shown again): {}",
                    d.create_api_token.token
                ))),
                Err(e) => message.set(Some(e)),
            }
            load();
        });
    };
    let revoke = move |id: String| {
        leptos::task::spawn_local(async move {
            if let Err(e) =
                api::run::<api::RevokeApiToken>(api::revoke_api_token::Variables { id }).await
            {
                message.set(Some(e));
            }
            load();
        });
    };

    let user_name = RwSignal::new(String::new());
    let user_password = RwSignal::new(String::new());
    let user_role = RwSignal::new("viewer".to_owned());
    let create_user = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let vars = api::create_user::Variables {
            username: user_name.get(),
            password: user_password.get(),
            role: user_role_value(&user_role.get()),
        };
        leptos::task::spawn_local(async move {
            match api::run::<api::CreateUser>(vars).await {
                Ok(d) => message.set(Some(format!("User {} created.", d.create_user.username))),
                Err(e) => message.set(Some(e)),
            }
            load();
        });
    };
    let delete_user = move |id: String| {
        leptos::task::spawn_local(async move {
            if let Err(e) = api::run::<api::DeleteUser>(api::delete_user::Variables { id }).await {
                message.set(Some(e));
            }
            load();
        });
    };
    let role_options = move || {
        ROLES
            .iter()
            .map(|r| view! { <option value=*r>{*r}</option> })
            .collect_view()
    };

    view! {
        <h1>"Access"</h1>
        <Show when=move || message.get().is_some()>
            <p class="message join-command" role="status"><code>{move || message.get().unwrap_or_default()}</code></p>
        </Show>
        <h2>"API tokens"</h2>
        <p>"For scripts and integrations: send as " <code>"Authorization: Bearer <token>"</code> ". A token's role is never above yours."</p>
        <form class="actions token-form" on:submit=create_token>
            <input name="token-name" type="text" placeholder="What is it for?" maxlength="64" required
                on:input=move |ev| token_name.set(event_target_value(&ev))/>
            <select name="token-role" on:change=move |ev| token_role.set(event_target_value(&ev))>{role_options}</select>
            <button type="submit">"Create token"</button>
        </form>
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
                            <td>{format!("{:?}", t.role).to_lowercase()}</td>
                            <td><code>{t.prefix.clone()}</code></td>
                            <td>{t.last_used_at.as_deref().map(local_time).unwrap_or_else(|| "never".into())}</td>
                            <td>{state}</td>
                            <td><Show when=move || t.active>
                                <button type="button" class="danger revoke" on:click={let id = id.clone(); move |_| revoke(id.clone())}>"Revoke"</button>
                            </Show></td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        <Show when=move || is_admin>
            <h2>"Users"</h2>
            <form class="actions user-form" on:submit=create_user>
                <input name="new-username" type="text" placeholder="Username" required
                    on:input=move |ev| user_name.set(event_target_value(&ev))/>
                <input name="new-password" type="password" placeholder="Password (8+ characters)" minlength="8" required
                    autocomplete="new-password" on:input=move |ev| user_password.set(event_target_value(&ev))/>
                <select name="new-role" on:change=move |ev| user_role.set(event_target_value(&ev))>{role_options}</select>
                <button type="submit">"Create user"</button>
            </form>
            <table class="nodes users">
                <thead><tr><th>"Username"</th><th>"Role"</th><th>"Since"</th><th></th></tr></thead>
                <tbody>
                    {move || users.get().into_iter().map(|u| {
                        let id = u.id.clone();
                        let shown = u.username.clone();
                        view! {
                            <tr data-username=u.username>
                                <td>{shown}</td>
                                <td>{format!("{:?}", u.role).to_lowercase()}</td>
                                <td>{local_time(&u.created_at)}</td>
                                <td><button type="button" class="danger" on:click=move |_| delete_user(id.clone())>"Delete"</button></td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </Show>
    }
}
