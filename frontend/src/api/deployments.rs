//! Container deployments: the list, one deployment's page, one node's instance with its live
//! log and stats, the target preview, and the actions.
//!
//! The operations are typed against the schema as every other (their queries' fields are
//! checked when the app is built). Their answers are read from the JSON where the pages write
//! them into markup, as `api::experiments` explains (serde's code per answer type costs the
//! size-budgeted wasm more). The spec and target inputs are built as JSON too, and sent with
//! [`body`]: the edit form sends back the spec the page read, with the form's fields changed, so
//! the fields it does not show (volumes, devices, overrides, ...) are kept as they are.

use std::fmt::Write;

use serde_json::{Map, Value};

use super::{DateTime, operation};

operation!(
    /// Every deployment with its instances' states and its last rollout.
    Deployments,
    "src/operations/deployments.graphql"
);
operation!(
    /// One deployment's page.
    Deployment,
    "src/operations/deployments.graphql"
);
operation!(
    /// One node's instance of a deployment, with its container's exits.
    DeploymentInstance,
    "src/operations/deployments.graphql"
);
operation!(
    /// Which nodes a target chooses now.
    PreviewDeploymentTarget,
    "src/operations/deployments.graphql"
);
operation!(
    /// Changes to deployments (to one, when told).
    DeploymentEvents,
    "src/operations/deployments.graphql"
);
operation!(
    /// One node's container log: its last 100 lines, then each new one.
    ContainerLogs,
    "src/operations/deployments.graphql"
);
operation!(
    /// One node's container resource use, about once a second.
    ContainerStats,
    "src/operations/deployments.graphql"
);
operation!(
    /// Make a deployment (its spec sent as JSON, see [`body`]).
    CreateDeployment,
    "src/operations/deployments.graphql"
);
operation!(
    /// Change a deployment's spec: a new revision (its spec sent as JSON, see [`body`]).
    UpdateDeployment,
    "src/operations/deployments.graphql"
);
operation!(
    /// Roll back to an earlier revision's spec (a new revision).
    RollbackDeployment,
    "src/operations/deployments.graphql"
);
operation!(
    /// Resume a paused rollout.
    ResumeRollout,
    "src/operations/deployments.graphql"
);
operation!(
    /// Start a deployment's containers (or one node's).
    StartDeployment,
    "src/operations/deployments.graphql"
);
operation!(
    /// Stop a deployment's containers (or one node's).
    StopDeployment,
    "src/operations/deployments.graphql"
);
operation!(
    /// Restart a deployment's containers (or one node's).
    RestartDeployment,
    "src/operations/deployments.graphql"
);
operation!(
    /// Remove a deployment and its containers.
    RemoveDeployment,
    "src/operations/deployments.graphql"
);
operation!(
    /// Run a command in one node's container.
    ExecInInstance,
    "src/operations/deployments.graphql"
);

/// The request body of an operation given by its generated module's `QUERY` and
/// `OPERATION_NAME`, with variables built as JSON (the spec and target inputs).
pub fn body(query: &str, operation: &str, variables: Value) -> Value {
    let mut body = Map::new();
    body.insert("query".into(), query.into());
    body.insert("operationName".into(), operation.into());
    body.insert("variables".into(), variables);
    Value::Object(body)
}

/// The state of an instance as its badge's CSS class: green runs, yellow is on its way, grey
/// rests, red needs a look.
pub fn instance_class(state: &str) -> &'static str {
    match state {
        "RUNNING" | "HEALTHY" => "state online",
        "PENDING" | "PULLING" | "CREATING" | "STARTING" | "RESTARTING" | "REMOVING" => {
            "state paused"
        }
        "STOPPED" | "PAUSED" | "EXCLUDED" => "state offline",
        _ => "state lost",
    }
}

/// A rollout's or a revision's state as its badge's CSS class.
pub fn outcome_class(state: &str) -> &'static str {
    match state {
        "succeeded" | "rolled_out" => "state online",
        "running" | "paused" => "state paused",
        "superseded" => "state offline",
        _ => "state lost",
    }
}

/// A text field of an answer (empty when absent).
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// The items of a list field of an answer (none when absent).
pub fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// `name=value` lines of a list of `{name, value}`.
pub fn pairs_text(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| format!("{}={}", s(p, "name"), s(p, "value")))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// A target in words: "all nodes", "nodes leader, ra", "nodes with zone=north", joined by
/// "or" (a node is chosen when any part chooses it). `name_of` names a node id.
pub fn target_words(t: &Value, name_of: impl Fn(&str) -> String) -> String {
    let mut parts = Vec::new();
    if t["all"].as_bool().unwrap_or_default() {
        parts.push("all nodes".to_owned());
    }
    let ids = items(t, "nodeIds");
    if !ids.is_empty() {
        let names = ids
            .iter()
            .map(|id| name_of(id.as_str().unwrap_or_default()))
            .collect::<Vec<_>>();
        parts.push(format!("nodes {}", names.join(", ")));
    }
    if !items(t, "labels").is_empty() {
        let labels = pairs_text(&t["labels"]).replace('\n', ", ");
        parts.push(format!("nodes with {labels}"));
    }
    if parts.is_empty() {
        return "no nodes".to_owned();
    }
    parts.join(" or ")
}

/// "1/2 running": of a deployment's instances, how many run (healthy counts as running), and
/// the others' states.
pub fn instances_words(instances: &[Value]) -> String {
    if instances.is_empty() {
        return "no instances".to_owned();
    }
    let running = instances
        .iter()
        .filter(|i| matches!(s(i, "state"), "RUNNING" | "HEALTHY"))
        .count();
    let mut words = format!("{running}/{} running", instances.len());
    // The other states, each once (a sort would add its code to the wasm for this).
    let mut others = Vec::new();
    for st in instances.iter().map(|i| s(i, "state")) {
        if !matches!(st, "RUNNING" | "HEALTHY") && !others.contains(&st) {
            others.push(st);
        }
    }
    if !others.is_empty() {
        let _ = write!(words, " ({})", others.join(", ").to_ascii_lowercase());
    }
    words
}

/// Who did something, as people read it: the audit log's `user:admin` as `admin`.
pub fn actor(who: &str) -> &str {
    who.strip_prefix("user:").unwrap_or(who)
}

/// Splits a command line into arguments, as a shell would split words (there is no shell: the
/// arguments go to the program as they are). Spaces separate; `"…"` and `'…'` keep spaces in
/// one argument; a backslash outside single quotes takes the next character as it is. `None`
/// when a quote is not closed.
pub fn split_args(line: &str) -> Option<Vec<String>> {
    let mut args = Vec::new();
    let mut word = String::new();
    // Whether a word is under way (`""` is an empty argument).
    let mut started = false;
    let mut quote = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if started {
                    args.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None | Some('"'), '\\') => {
                word.extend(chars.next());
                started = true;
            }
            (_, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if started {
        args.push(word);
    }
    Some(args)
}

/// Arguments as one command line that [`split_args`] reads back: an argument with spaces,
/// quotes or backslashes (or an empty one) is written in double quotes.
pub fn join_args(args: &[Value]) -> String {
    args.iter()
        .map(|a| {
            let a = a.as_str().unwrap_or_default();
            if !a.is_empty() && !a.contains(|c: char| c.is_whitespace() || "\"'\\".contains(c)) {
                return a.to_owned();
            }
            let mut quoted = String::from("\"");
            for c in a.chars() {
                if c == '"' || c == '\\' {
                    quoted.push('\\');
                }
                quoted.push(c);
            }
            quoted.push('"');
            quoted
        })
        .collect::<Vec<_>>()
        .join(" ")
}
