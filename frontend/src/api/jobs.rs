//! Hardware jobs: one node's jobs and their live feed, the kinds and presets it offers, the
//! actions on a job (a start on one node or on every node a selector names), and one job's
//! readings and live log. The `Jobs` query generates the shared [`JobState`] enum, and
//! `JobLogLines` the [`LogStream`] one. Settings travel as JSON objects (the schema's `JSON`
//! scalar); the kinds convert to [`trellis_proto::KindSpec`] so the page checks a value with the
//! very rule, and words, the leader and the agent use.

use serde::Deserialize;

use super::{DateTime, JSON, operation};

operation!(
    /// One node's jobs.
    Jobs,
    "src/operations/jobs.graphql"
);
operation!(
    /// The kinds of job a node offers, with each setting's rule, and the presets of those kinds.
    JobKinds,
    "src/operations/jobs.graphql"
);
operation!(
    /// One node's job events: which job changed, and how.
    JobEvents,
    "src/operations/jobs.graphql"
);
operation!(
    /// A job's newest readings.
    JobReadings,
    "src/operations/jobs.graphql"
);
operation!(
    /// The newest lines of a job's log, and how many older ones the leader no longer keeps.
    JobLogLines,
    "src/operations/jobs.graphql"
);
operation!(
    /// Each new line of a job's log, decoded as [`JobLogData`].
    JobLogs,
    "src/operations/jobs.graphql",
    extern_enums("LogStream")
);
operation!(
    /// Start a job.
    StartJob,
    "src/operations/jobs.graphql",
    extern_enums("JobState")
);
operation!(
    /// Start the same job on every node a selector names (a label, all online nodes): one
    /// result per node.
    StartJobs,
    "src/operations/jobs.graphql",
    extern_enums("JobState")
);
operation!(
    /// Stop a job (its hardware is released first).
    StopJob,
    "src/operations/jobs.graphql",
    extern_enums("JobState")
);
operation!(
    /// Pause a running job.
    PauseJob,
    "src/operations/jobs.graphql",
    extern_enums("JobState")
);
operation!(
    /// Resume a paused job.
    ResumeJob,
    "src/operations/jobs.graphql",
    extern_enums("JobState")
);
operation!(
    /// Change live settings of a running job; answers once the agent echoed them.
    SetJobSettings,
    "src/operations/jobs.graphql"
);

pub use job_events::JobEventKind;
pub use job_kinds::SettingType;
pub use job_log_lines::LogStream;
pub use job_logs::JobLogEventKind;
pub use jobs::JobState;

/// A job as the page holds it.
pub type Job = jobs::JobFields;
/// One line of a job's log.
pub type LogLine = job_log_lines::LogLine;
/// One reading of a job, as its page counts them.
pub type Reading = job_readings::JobReadingsReadings;

/// What the log feed sends, decoded into the one [`LogLine`] type `JobLogLines` also brings.
#[derive(Deserialize)]
pub struct JobLogData {
    /// The event.
    #[serde(rename = "jobLogs")]
    pub job_logs: JobLogEvent,
}

/// One event of the log feed.
#[derive(Deserialize)]
pub struct JobLogEvent {
    /// A new line, or a resync.
    pub kind: JobLogEventKind,
    /// The line, for `LINE`.
    pub line: Option<LogLine>,
}

impl LogStream {
    /// How a line's source is shown beside it, and its CSS class (standard error stands out).
    pub fn word(&self) -> (&'static str, &'static str) {
        match self {
            LogStream::STDOUT => ("out", "out"),
            LogStream::STDERR => ("err", "stderr"),
            LogStream::AGENT => ("agent", "agent"),
            LogStream::Other(_) => ("?", "out"),
        }
    }
}
/// A kind of job a node offers.
pub type JobKind = job_kinds::JobKindsJobKinds;
/// A preset a node offers: a kind and the settings a start from it uses.
pub type Preset = job_kinds::JobKindsJobPresets;

impl JobState {
    /// The state as people read it and its CSS class (the node states' colours: green runs,
    /// grey rests, red needs a look).
    pub fn word(&self) -> (&str, &'static str) {
        match self {
            JobState::INIT => ("starting", "state offline"),
            JobState::READY => ("ready", "state online"),
            JobState::SLEEPING => ("paused", "state offline"),
            JobState::STOPPED => ("stopped", "state offline"),
            JobState::FAILED => ("failed", "state lost"),
            JobState::LOST => ("lost", "state lost"),
            JobState::OFFLINE => ("node offline", "state offline"),
            JobState::Other(other) => (other, "state lost"),
        }
    }

    /// The schema's name ("READY"), for the page's `data-state` attributes.
    pub fn name(&self) -> &str {
        match self {
            JobState::INIT => "INIT",
            JobState::READY => "READY",
            JobState::SLEEPING => "SLEEPING",
            JobState::STOPPED => "STOPPED",
            JobState::FAILED => "FAILED",
            JobState::LOST => "LOST",
            JobState::OFFLINE => "OFFLINE",
            JobState::Other(other) => other,
        }
    }

    /// Whether the job still holds its node's hardware or will again (so it can be stopped).
    pub fn is_live(&self) -> bool {
        matches!(self, JobState::INIT | JobState::READY | JobState::SLEEPING)
    }
}

/// A kind as the wire protocol describes it, for [`trellis_proto::KindSpec::resolve`] and
/// [`trellis_proto::SettingSpec::check`]. A setting type this app does not know is checked as
/// text: the leader checks it again with the real rule.
pub fn spec(kind: &JobKind) -> trellis_proto::KindSpec {
    use trellis_proto::SettingType as Wire;
    trellis_proto::KindSpec {
        kind: kind.kind.clone(),
        description: kind.description.clone(),
        settings: kind
            .settings
            .iter()
            .map(|s| trellis_proto::SettingSpec {
                name: s.name.clone(),
                ty: match s.type_ {
                    SettingType::INT => Wire::Int,
                    SettingType::FLOAT => Wire::Float,
                    SettingType::BOOL => Wire::Bool,
                    SettingType::ENUM => Wire::Enum,
                    SettingType::STRING | SettingType::Other(_) => Wire::String,
                },
                unit: s.unit.clone(),
                min: s.min,
                max: s.max,
                choices: s.choices.clone(),
                default: s.default.clone(),
                live: s.live,
                description: s.description.clone(),
            })
            .collect(),
        open: kind.open,
    }
}
