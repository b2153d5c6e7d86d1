//! Experiments: the list and its feed, one experiment's page and its series for the charts, the
//! live readings those charts append, and the actions on an experiment.
//!
//! The operations are typed against the schema as every other (their variables, and the
//! queries' fields, are checked when the app is built), but their answers are read from the
//! JSON by the functions below rather than by serde: serde's code is generated per answer type,
//! per list and per optional field in it, and these answers hold many lists; reading them by
//! serde took the web app 16 kB gzipped more (measured with `scripts/build-web.sh`), and the
//! app has a size budget (BENCHMARKS.md).

use serde_json::Value;

use super::{
    DateTime,
    jobs::{JobEventKind, JobState},
    list, operation, opt, text,
};

operation!(
    /// Every experiment, newest first, with its nodes.
    Experiments,
    "src/operations/experiments.graphql"
);
operation!(
    /// One experiment's page (and which running experiment holds which node).
    Experiment,
    "src/operations/experiments.graphql",
    extern_enums("JobState")
);
operation!(
    /// One experiment's series, downsampled over a range.
    ExperimentSeries,
    "src/operations/experiments.graphql"
);
operation!(
    /// Changes to one experiment, or to any.
    ExperimentEvents,
    "src/operations/experiments.graphql"
);
operation!(
    /// Every job's changes, with the job's state.
    AllJobEvents,
    "src/operations/experiments.graphql",
    extern_enums("JobEventKind", "JobState")
);
operation!(
    /// An experiment's readings as they are stored, in frames.
    LiveReadings,
    "src/operations/experiments.graphql"
);
operation!(
    /// Create a running experiment.
    CreateExperiment,
    "src/operations/experiments.graphql"
);
operation!(
    /// Rename an experiment.
    RenameExperiment,
    "src/operations/experiments.graphql"
);
operation!(
    /// Replace an experiment's description.
    DescribeExperiment,
    "src/operations/experiments.graphql"
);
operation!(
    /// Add a note to an experiment.
    AnnotateExperiment,
    "src/operations/experiments.graphql"
);
operation!(
    /// End a running experiment.
    EndExperiment,
    "src/operations/experiments.graphql"
);
operation!(
    /// Add nodes to a running experiment (moving them from another when told).
    AddExperimentNodes,
    "src/operations/experiments.graphql"
);
operation!(
    /// Take nodes out of an experiment.
    RemoveExperimentNodes,
    "src/operations/experiments.graphql"
);

/// A node, by id and name.
#[derive(Clone, PartialEq)]
pub struct NodeRef {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// An experiment as the list shows it.
#[derive(Clone, PartialEq)]
pub struct Summary {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Whether it runs.
    pub running: bool,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Who created it.
    pub created_by: String,
    /// The nodes in it now.
    pub nodes: Vec<NodeRef>,
}

/// A job that ran or runs in an experiment.
#[derive(Clone, PartialEq)]
pub struct JobRow {
    /// Its node.
    pub node_id: String,
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Its state.
    pub state: JobState,
}

/// A note.
#[derive(Clone, PartialEq)]
pub struct Note {
    /// Its id.
    pub id: i64,
    /// When (RFC 3339).
    pub time: String,
    /// Who wrote it.
    pub author: String,
    /// The note.
    pub text: String,
}

/// An audit entry on the experiment, its nodes or their jobs.
#[derive(Clone, PartialEq)]
pub struct Event {
    /// Its id.
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// `ok`, or the error code.
    pub outcome: String,
}

/// One experiment as its page shows it.
#[derive(Clone, PartialEq)]
pub struct Details {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// What it is about.
    pub description: String,
    /// Who created it.
    pub created_by: String,
    /// When (RFC 3339).
    pub created: String,
    /// When it ended.
    pub ended: Option<String>,
    /// Who ended it.
    pub ended_by: Option<String>,
    /// Whether it runs.
    pub running: bool,
    /// Its nodes now.
    pub nodes: Vec<NodeRef>,
    /// Its jobs.
    pub jobs: Vec<JobRow>,
    /// Its notes, oldest first.
    pub notes: Vec<Note>,
    /// Its events, newest first.
    pub events: Vec<Event>,
}

/// One series of readings: its buckets' middles and averages, by time.
pub struct Series {
    /// The metric.
    pub metric: String,
    /// Its unit.
    pub unit: Option<String>,
    /// The node.
    pub node_id: String,
    /// The job.
    pub job: String,
    /// (ms since the epoch, value).
    pub points: Vec<(f64, f64)>,
}

/// A reading of the live feed.
pub struct LiveReading {
    /// The node.
    pub node_id: String,
    /// The job.
    pub job: String,
    /// The metric.
    pub metric: String,
    /// When, in ms since the epoch.
    pub time: f64,
    /// The value.
    pub value: f64,
}

/// A frame of the live feed.
pub struct Frame {
    /// Its readings.
    pub readings: Vec<LiveReading>,
    /// How many were left out.
    pub skipped: i64,
    /// Whether this client fell behind.
    pub resync: bool,
}

/// A job's change, from `AllJobEvents`.
pub struct JobChange {
    /// `UPDATED`, `REMOVED` or `RESYNC`.
    pub kind: String,
    /// The node.
    pub node_id: String,
    /// The job.
    pub name: String,
    /// Its state now, when it has one.
    pub state: Option<JobState>,
}

fn time(v: &Value, key: &str) -> f64 {
    js_sys::Date::parse(v[key].as_str().unwrap_or_default())
}

fn state(v: &Value) -> JobState {
    serde_json::from_value(v.clone()).unwrap_or(JobState::Other(String::new()))
}

fn node(v: &Value) -> NodeRef {
    NodeRef {
        id: text(v, "id"),
        name: text(v, "name"),
    }
}

fn summary(v: &Value) -> Summary {
    Summary {
        id: text(v, "id"),
        name: text(v, "name"),
        running: v["running"].as_bool().unwrap_or_default(),
        created: text(v, "created"),
        created_by: text(v, "createdBy"),
        nodes: list(v, "nodes", node),
    }
}

fn details(v: &Value) -> Details {
    Details {
        id: text(v, "id"),
        name: text(v, "name"),
        description: text(v, "description"),
        created_by: text(v, "createdBy"),
        created: text(v, "created"),
        ended: opt(v, "ended"),
        ended_by: opt(v, "endedBy"),
        running: v["running"].as_bool().unwrap_or_default(),
        nodes: list(v, "nodes", node),
        jobs: list(v, "jobs", |j| JobRow {
            node_id: text(j, "nodeId"),
            name: text(j, "name"),
            kind: text(j, "kind"),
            state: state(&j["state"]),
        }),
        notes: list(v, "notes", |n| Note {
            id: n["id"].as_i64().unwrap_or_default(),
            time: text(n, "time"),
            author: text(n, "author"),
            text: text(n, "text"),
        }),
        events: list(v, "events", |e| Event {
            id: e["id"].as_i64().unwrap_or_default(),
            at: text(e, "at"),
            actor: text(e, "actor"),
            action: text(e, "action"),
            target: opt(e, "target"),
            outcome: text(e, "outcome"),
        }),
    }
}

/// Every experiment, newest first.
pub async fn list_all() -> Result<Vec<Summary>, String> {
    let d = super::request(super::body::<Experiments>(experiments::Variables {})).await?;
    Ok(list(&d, "experiments", summary))
}

/// Experiment `id` (none when there is none), and every running experiment.
pub async fn one(id: String) -> Result<(Option<Details>, Vec<Summary>), String> {
    let d = super::request(super::body::<Experiment>(experiment::Variables { id })).await?;
    let found = d["experiment"]
        .is_object()
        .then(|| details(&d["experiment"]));
    Ok((found, list(&d, "experiments", summary)))
}

/// Every series of experiment `id`, downsampled from `from` to `to`.
pub async fn series(vars: experiment_series::Variables) -> Result<Vec<Series>, String> {
    let d = super::request(super::body::<ExperimentSeries>(vars)).await?;
    Ok(list(&d["experiment"], "series", |s| Series {
        metric: text(s, "metric"),
        unit: opt(s, "unit"),
        node_id: text(s, "nodeId"),
        job: text(s, "job"),
        // Each bucket drawn at its middle.
        points: list(s, "buckets", |b| {
            (
                time(b, "start") + b["widthMs"].as_f64().unwrap_or_default() / 2.0,
                b["avg"].as_f64().unwrap_or_default(),
            )
        }),
    }))
}

/// A frame of `LiveReadings`.
pub fn frame(v: &Value) -> Frame {
    let f = &v["liveReadings"];
    Frame {
        // Each series' times and values side by side, flattened to readings.
        readings: f["series"]
            .as_array()
            .map(|all| {
                all.iter()
                    .flat_map(|s| {
                        let numbers = |key: &str| {
                            s[key]
                                .as_array()
                                .map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
                                .unwrap_or_default()
                        };
                        let (times, values) = (numbers("timesMs"), numbers("values"));
                        let (node_id, job, metric) =
                            (text(s, "nodeId"), text(s, "job"), text(s, "metric"));
                        times
                            .into_iter()
                            .zip(values)
                            .map(move |(time, value)| LiveReading {
                                node_id: node_id.clone(),
                                job: job.clone(),
                                metric: metric.clone(),
                                time,
                                value,
                            })
                    })
                    .collect()
            })
            .unwrap_or_default(),
        skipped: f["skipped"].as_i64().unwrap_or_default(),
        resync: f["resync"].as_bool().unwrap_or_default(),
    }
}

/// An event of `AllJobEvents`.
pub fn job_change(v: &Value) -> JobChange {
    let e = &v["jobEvents"];
    JobChange {
        kind: text(e, "kind"),
        node_id: text(e, "nodeId"),
        name: text(e, "name"),
        state: e["job"]["state"]
            .is_string()
            .then(|| state(&e["job"]["state"])),
    }
}

/// The kind of an `ExperimentEvents` event (`UPDATED`, `REMOVED`, `RESYNC`).
pub fn event_kind(v: &Value) -> &str {
    v["experimentEvents"]["kind"].as_str().unwrap_or_default()
}
