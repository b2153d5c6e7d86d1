//! One pattern for every control that changes something: a [`Mutation`] runs the operation,
//! tracks pending, success and error, and [`Feedback`] shows that status where the user acted.
//! Pages no longer repeat `spawn_local` / `match` / message code per button.

use graphql_client::GraphQLQuery;
use leptos::prelude::*;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::api;

/// What became of the last action.
#[derive(Clone, PartialEq)]
pub enum Status {
    /// Nothing done yet.
    Idle,
    /// Sent, no answer yet.
    Pending,
    /// Done; the text for the user (empty: nothing to say).
    Done(String),
    /// Refused or failed; the reason for the user.
    Failed(String),
}

/// The status of one control's (or one group of controls') actions. `Copy`, so event handlers
/// can hold it.
#[derive(Clone, Copy)]
pub struct Mutation(RwSignal<Status>);

impl Mutation {
    /// A mutation with nothing done yet, owned by the current component.
    pub fn new() -> Self {
        Mutation(RwSignal::new(Status::Idle))
    }

    /// Whether an action is under way (controls disable themselves meanwhile).
    pub fn pending(self) -> bool {
        self.0.with(|s| matches!(s, Status::Pending))
    }

    /// Runs `Q`; on success `done` turns the answer into the text to show (and may start
    /// follow-up work, such as reloading a list); on failure the server's message is shown.
    pub fn run<Q, F>(self, variables: Q::Variables, done: F)
    where
        Q: GraphQLQuery,
        Q::Variables: Serialize,
        Q::ResponseData: DeserializeOwned,
        F: FnOnce(Q::ResponseData) -> String + 'static,
    {
        self.send(
            api::body::<Q>(variables),
            Box::new(move |data| api::decode(data).map(done)),
        );
    }

    /// The part of [`Mutation::run`] that is the same for every operation, so the wasm carries
    /// its task once rather than once per operation.
    fn send(self, body: Value, done: Box<dyn FnOnce(Value) -> Result<String, String>>) {
        self.0.set(Status::Pending);
        leptos::task::spawn_local(async move {
            let status = match api::request(body).await.and_then(done) {
                Ok(text) => Status::Done(text),
                Err(e) => Status::Failed(e),
            };
            // The page may be gone by now; then there is nobody to tell.
            self.0.try_set(status);
        });
    }

    /// Forgets the last outcome (it no longer describes what the page shows); an action under
    /// way keeps its status.
    /// Untracked, so an effect that clears on some change does not also run on this status.
    pub fn clear(self) {
        if !self.0.with_untracked(|s| matches!(s, Status::Pending)) {
            self.0.set(Status::Idle);
        }
    }

    /// Shows an error found before anything was sent (a form check).
    pub fn fail(self, why: impl Into<String>) {
        self.0.set(Status::Failed(why.into()));
    }
}

impl Default for Mutation {
    fn default() -> Self {
        Mutation::new()
    }
}

/// A mutation's status, shown next to the control: "Working…" while pending, then the result
/// (`p.message`, in `<code>` when `code`, for commands and secrets to copy) or the error
/// (`p.error`, announced to screen readers).
#[component]
pub fn Feedback(
    /// Whose status to show.
    mutation: Mutation,
    /// More classes for the success message.
    #[prop(optional)]
    class: &'static str,
    /// Whether the success text is something to copy (shown as code).
    #[prop(optional)]
    code: bool,
) -> impl IntoView {
    move || match mutation.0.get() {
        Status::Idle => ().into_any(),
        Status::Done(text) if text.is_empty() => ().into_any(),
        Status::Pending => view! { <p class="pending" role="status">"Working…"</p> }.into_any(),
        Status::Done(text) => {
            let class = format!("message {class}").trim_end().to_owned();
            if code {
                view! { <p class=class role="status"><code>{text}</code></p> }.into_any()
            } else {
                view! { <p class=class role="status">{text}</p> }.into_any()
            }
        }
        Status::Failed(why) => view! { <p class="error" role="alert">{why}</p> }.into_any(),
    }
}
