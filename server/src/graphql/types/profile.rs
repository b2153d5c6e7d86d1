//! GraphQL types of experiment profiles: stored profiles, checks with their dry run, runs and
//! their steps.

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};

use super::time;
use crate::experiments::profiles::{
    parse::{self, ProfileError},
    plan::Entry,
    service::{Checked, RunView},
};

/// A stored profile.
#[derive(SimpleObject)]
pub struct StoredProfile {
    /// Its `experiment_profile_name`.
    pub name: String,
    /// Its `metadata.author`.
    pub author: Option<String>,
    /// Its `metadata.description`.
    pub description: Option<String>,
    /// The YAML.
    pub source: String,
    /// Who stored it.
    pub updated_by: String,
    /// When.
    pub updated: DateTime<Utc>,
}

impl From<entity::profile::Model> for StoredProfile {
    fn from(p: entity::profile::Model) -> Self {
        // A stored profile reads (it is checked when saved); its metadata is read from it
        // rather than stored twice.
        let meta = parse::parse(&p.source).ok();
        StoredProfile {
            name: p.name,
            author: meta.as_ref().and_then(|m| m.author.clone()),
            description: meta.and_then(|m| m.description),
            source: p.source,
            updated_by: p.updated_by,
            updated: time(p.updated_ms),
        }
    }
}

/// One thing wrong with a profile, and where.
#[derive(SimpleObject)]
pub struct ProfileProblem {
    /// Line (1-based); null when it is about the whole file.
    pub line: Option<i32>,
    /// Column (1-based).
    pub column: Option<i32>,
    /// What is wrong.
    pub message: String,
}

impl From<ProfileError> for ProfileProblem {
    fn from(e: ProfileError) -> Self {
        ProfileProblem {
            line: e.pos.map(|p| p.line as i32),
            column: e.pos.map(|p| p.column as i32),
            message: e.message,
        }
    }
}

/// One line of a dry run (or a run's next action).
#[derive(SimpleObject)]
pub struct ProfileEntry {
    /// Hours from the profile's start.
    pub hours: f64,
    /// The node.
    pub node_id: String,
    /// The job.
    pub job: String,
    /// The action's type.
    pub action: String,
    /// Its settings, message or period, in words.
    pub detail: String,
}

impl From<Entry> for ProfileEntry {
    fn from(e: Entry) -> Self {
        ProfileEntry {
            hours: e.hours,
            node_id: e.node_id,
            job: e.job,
            action: e.action.to_owned(),
            detail: e.detail,
        }
    }
}

/// A profile read and checked against the cluster.
#[derive(SimpleObject)]
pub struct ProfileCheck {
    /// Whether it has no problem.
    pub ok: bool,
    /// Its name, when it reads.
    pub name: Option<String>,
    /// Every problem, with its line and column.
    pub problems: Vec<ProfileProblem>,
    /// What it would do, in time order (the dry run).
    pub timeline: Vec<ProfileEntry>,
}

impl From<Checked> for ProfileCheck {
    fn from(c: Checked) -> Self {
        ProfileCheck {
            ok: c.errors.is_empty(),
            name: c.name,
            problems: c.errors.into_iter().map(ProfileProblem::from).collect(),
            timeline: c.timeline.into_iter().map(ProfileEntry::from).collect(),
        }
    }
}

/// One action a run began.
#[derive(SimpleObject)]
pub struct ProfileStep {
    /// Which action instance (node, job, place in the profile, repeat occurrence).
    pub key: String,
    /// When it was due, profile hours from the start.
    pub due_hours: f64,
    /// The node.
    pub node_id: String,
    /// The job.
    pub job: String,
    /// The action's type.
    pub action: String,
    /// `running`, `done`, `skipped` or `failed`.
    pub state: String,
    /// What happened.
    pub outcome: String,
    /// When (real time).
    pub at: DateTime<Utc>,
}

impl From<entity::profile_step::Model> for ProfileStep {
    fn from(s: entity::profile_step::Model) -> Self {
        ProfileStep {
            key: s.key,
            due_hours: s.due_ms as f64 / 3_600_000.0,
            node_id: s.node_id,
            job: s.job,
            action: s.action,
            state: s.state,
            outcome: s.outcome,
            at: time(s.at_ms),
        }
    }
}

/// A profile running (or run) on an experiment.
#[derive(SimpleObject)]
pub struct ProfileRun {
    /// Its id.
    pub id: String,
    /// The experiment.
    pub experiment_id: String,
    /// The profile.
    pub profile_name: String,
    /// `running`, `paused`, `stopped`, `done` or `failed`.
    pub state: String,
    /// Profile hours per real hour.
    pub time_scale: f64,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it stopped or finished.
    pub ended: Option<DateTime<Utc>>,
    /// Who started it.
    pub started_by: String,
    /// Profile hours elapsed.
    pub elapsed_hours: f64,
    /// Actions begun.
    pub actions_begun: i32,
    /// What it does next (`hours` from the start).
    pub next: Option<ProfileEntry>,
    /// When its last action is due, profile hours from the start (what `elapsedHours` runs
    /// up to); null when that is not known before it runs (an unbounded `repeat`, a `when`).
    pub total_hours: Option<f64>,
    /// The profile as it runs.
    pub source: String,
}

impl From<RunView> for ProfileRun {
    fn from(v: RunView) -> Self {
        let r = v.run;
        ProfileRun {
            id: r.id,
            experiment_id: r.experiment_id,
            profile_name: r.profile_name,
            state: r.state,
            time_scale: r.time_scale,
            started: time(r.started_ms),
            ended: r.ended_ms.map(time),
            started_by: r.started_by,
            elapsed_hours: v.elapsed_hours,
            actions_begun: v.begun as i32,
            next: v.next.map(|(at, node_id, job, action)| ProfileEntry {
                hours: at as f64 / 3_600_000.0,
                node_id,
                job,
                action: action.to_owned(),
                detail: String::new(),
            }),
            total_hours: v.total_hours,
            source: r.source,
        }
    }
}
