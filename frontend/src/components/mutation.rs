//! One pattern for every control that changes something: a [`Mutation`] runs the operation,
//! tracks pending, success and error, and [`Feedback`] shows that status where the user acted.
//! Pages no longer repeat `spawn_local` / `match` / message code per button.

use graphql_client::GraphQLQuery;
use leptos::prelude::*;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::api;

/// Turns an answer's `data` into the text to show.
type Done = Box<dyn FnOnce(Value) -> Result<String, String>>;
/// Turns a refusal into the text to show.
pub type Refused = Box<dyn FnOnce(api::Refusal) -> String>;

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

    /// [`Mutation::pending`] as a signal, for a control's `disabled`: one type for every
    /// control, so the wasm carries its code once.
    pub fn busy(self) -> Signal<bool> {
        Signal::derive(move || self.pending())
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
            None,
        );
    }

    /// Like [`Mutation::run`], for a page that reads the answer from its JSON (see
    /// `api::experiments`); a refusal goes to `refused` first, when given, with its code: it
    /// returns the text to show (the leader's words, or the page's own for a code it answers).
    pub fn run_json<Q, F>(self, variables: Q::Variables, done: F, refused: Option<Refused>)
    where
        Q: GraphQLQuery,
        Q::Variables: Serialize,
        F: FnOnce(Value) -> String + 'static,
    {
        self.run_body(api::body::<Q>(variables), done, refused);
    }

    /// Like [`Mutation::run_json`], for a request body the page built itself (the deployment
    /// spec, sent as JSON: see `api::deployments`).
    pub fn run_body<F>(self, body: Value, done: F, refused: Option<Refused>)
    where
        F: FnOnce(Value) -> String + 'static,
    {
        self.send(body, Box::new(move |data| Ok(done(data))), refused);
    }

    /// The part of [`Mutation::run`] that is the same for every operation, so the wasm carries
    /// its task once rather than once per operation.
    fn send(self, body: Value, done: Done, refused: Option<Refused>) {
        self.0.set(Status::Pending);
        leptos::task::spawn_local(async move {
            let status = match api::send(body).await {
                Ok(data) => match done(data) {
                    Ok(text) => Status::Done(text),
                    Err(e) => Status::Failed(e),
                },
                Err(r) => Status::Failed(match refused {
                    Some(refused) => refused(r),
                    None => r.message,
                }),
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
