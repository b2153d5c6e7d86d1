//! Experiment profiles: the stored ones, a profile checked as it is written, and the runs of an
//! experiment with their steps. Answers are read from their JSON, as `experiments` reads its
//! own (and for its reason: the web app's size budget).

use serde_json::Value;

use super::{DateTime, list, operation, opt, text};

operation!(
    /// Every stored profile, by name, without its YAML.
    Profiles,
    "src/operations/profiles.graphql"
);
operation!(
    /// One stored profile's YAML.
    Profile,
    "src/operations/profiles.graphql"
);
operation!(
    /// A profile's problems and dry run.
    CheckProfile,
    "src/operations/profiles.graphql"
);
operation!(
    /// Store a profile under its `experiment_profile_name`.
    SaveProfile,
    "src/operations/profiles.graphql"
);
operation!(
    /// Delete a stored profile.
    DeleteProfile,
    "src/operations/profiles.graphql"
);
operation!(
    /// An experiment's runs.
    ProfileRuns,
    "src/operations/profiles.graphql"
);
operation!(
    /// What a run did.
    ProfileSteps,
    "src/operations/profiles.graphql"
);
operation!(
    /// Start a stored profile on an experiment.
    StartProfile,
    "src/operations/profiles.graphql"
);
operation!(
    /// Stop a run's clock.
    PauseProfileRun,
    "src/operations/profiles.graphql"
);
operation!(
    /// Start a paused run's clock again.
    ResumeProfileRun,
    "src/operations/profiles.graphql"
);
operation!(
    /// End a run for good.
    StopProfileRun,
    "src/operations/profiles.graphql"
);

/// A stored profile as the list shows it.
#[derive(Clone, PartialEq)]
pub struct Stored {
    /// Its `experiment_profile_name`.
    pub name: String,
    /// Its `metadata.author`.
    pub author: Option<String>,
    /// Its `metadata.description`.
    pub description: Option<String>,
    /// Who stored it.
    pub updated_by: String,
    /// When (RFC 3339).
    pub updated: String,
}

/// One thing wrong with a profile.
#[derive(Clone, PartialEq)]
pub struct Problem {
    /// Its line (1-based), when it has one.
    pub line: Option<u32>,
    /// Its column (1-based).
    pub column: Option<u32>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// Where it is: "line 3, column 7" (empty for the whole file).
    pub fn place(&self) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("line {l}, column {c}"),
            (Some(l), None) => format!("line {l}"),
            _ => String::new(),
        }
    }
}

/// One line of a dry run, or a run's next action.
#[derive(Clone, PartialEq)]
pub struct Entry {
    /// Hours from the profile's start.
    pub hours: f64,
    /// The node's id.
    pub node_id: String,
    /// The job.
    pub job: String,
    /// The action's type.
    pub action: String,
    /// Its settings, message or period, in words.
    pub detail: String,
}

/// A profile as checked.
#[derive(Clone, PartialEq)]
pub struct Check {
    /// Whether it has no problem.
    pub ok: bool,
    /// Its name, when it reads.
    pub name: Option<String>,
    /// Every problem, by line.
    pub problems: Vec<Problem>,
    /// What it would do, in time order.
    pub timeline: Vec<Entry>,
}

/// A profile run on an experiment.
#[derive(Clone, PartialEq)]
pub struct Run {
    /// Its id.
    pub id: String,
    /// The profile.
    pub profile_name: String,
    /// `running`, `paused`, `stopped`, `done` or `failed`.
    pub state: String,
    /// Profile hours per real hour.
    pub time_scale: f64,
    /// When it started (RFC 3339).
    pub started: String,
    /// Who started it.
    pub started_by: String,
    /// Profile hours elapsed.
    pub elapsed_hours: f64,
    /// When its last action is due, profile hours; `None` when not known before it runs.
    pub total_hours: Option<f64>,
    /// Actions begun.
    pub actions_begun: i64,
    /// What it does next.
    pub next: Option<Entry>,
}

impl Run {
    /// Whether its clock may still move (the page polls while one may).
    pub fn active(&self) -> bool {
        matches!(self.state.as_str(), "running" | "paused")
    }
}

/// One action a run began.
#[derive(Clone, PartialEq)]
pub struct Step {
    /// When it was due, profile hours.
    pub due_hours: f64,
    /// The node's id.
    pub node_id: String,
    /// The job.
    pub job: String,
    /// The action's type.
    pub action: String,
    /// `running`, `done`, `skipped` or `failed`.
    pub state: String,
    /// What happened.
    pub outcome: String,
    /// When (RFC 3339).
    pub at: String,
}

fn float(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_default()
}

fn entry(v: &Value) -> Entry {
    Entry {
        hours: float(v, "hours"),
        node_id: text(v, "nodeId"),
        job: text(v, "job"),
        action: text(v, "action"),
        detail: text(v, "detail"),
    }
}

/// Every stored profile, by name.
pub async fn list_all() -> Result<Vec<Stored>, String> {
    let d = super::request(super::body::<Profiles>(profiles::Variables {})).await?;
    Ok(list(&d, "profiles", |p| Stored {
        name: text(p, "name"),
        author: opt(p, "author"),
        description: opt(p, "description"),
        updated_by: text(p, "updatedBy"),
        updated: text(p, "updated"),
    }))
}

/// The YAML of stored profile `name` (`None` when there is none now).
pub async fn source(name: String) -> Result<Option<String>, String> {
    let d = super::request(super::body::<Profile>(profile::Variables { name })).await?;
    Ok(opt(&d["profile"], "source"))
}

/// `source` read and checked against the cluster.
pub async fn check(source: String) -> Result<Check, String> {
    let vars = check_profile::Variables {
        source,
        experiment_id: None,
    };
    let d = super::request(super::body::<CheckProfile>(vars)).await?;
    let c = &d["checkProfile"];
    Ok(Check {
        ok: c["ok"].as_bool().unwrap_or_default(),
        name: opt(c, "name"),
        problems: list(c, "problems", |p| Problem {
            line: p["line"].as_u64().map(|n| n as u32),
            column: p["column"].as_u64().map(|n| n as u32),
            message: text(p, "message"),
        }),
        timeline: list(c, "timeline", entry),
    })
}

/// The runs of experiment `experiment_id`, newest first.
pub async fn runs(experiment_id: String) -> Result<Vec<Run>, String> {
    let vars = profile_runs::Variables { experiment_id };
    let d = super::request(super::body::<ProfileRuns>(vars)).await?;
    Ok(list(&d, "profileRuns", |r| Run {
        id: text(r, "id"),
        profile_name: text(r, "profileName"),
        state: text(r, "state"),
        time_scale: float(r, "timeScale"),
        started: text(r, "started"),
        started_by: text(r, "startedBy"),
        elapsed_hours: float(r, "elapsedHours"),
        total_hours: r["totalHours"].as_f64(),
        actions_begun: r["actionsBegun"].as_i64().unwrap_or_default(),
        next: r["next"].is_object().then(|| entry(&r["next"])),
    }))
}

/// The steps of run `run_id`, in the order they began.
pub async fn steps(run_id: String) -> Result<Vec<Step>, String> {
    let vars = profile_steps::Variables { run_id };
    let d = super::request(super::body::<ProfileSteps>(vars)).await?;
    Ok(list(&d, "profileSteps", |s| Step {
        due_hours: float(s, "dueHours"),
        node_id: text(s, "nodeId"),
        job: text(s, "job"),
        action: text(s, "action"),
        state: text(s, "state"),
        outcome: text(s, "outcome"),
        at: text(s, "at"),
    }))
}

/// A refusal that lists a profile's problems (`… does not read: line 3, column 1: …; line 9,
/// …`), one problem a line: the page shows it with `white-space: pre-line`.
pub fn problem_lines(message: &str) -> String {
    message
        .replace(": line ", ":\nline ")
        .replace("; line ", "\nline ")
}
