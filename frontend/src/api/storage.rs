//! Storage: what the database holds (its size, readings, series, log lines), the ingester's
//! queue, and the retention rules. Answers are read from their JSON, as `experiments` explains.

use serde_json::Value;

use super::{DateTime, list, operation, opt, text};

operation!(
    /// The database's figures, the ingester's queue and the retention rules.
    StorageFigures,
    "src/operations/storage.graphql"
);
operation!(
    /// Set or remove a retention rule (admins).
    SetRetention,
    "src/operations/storage.graphql"
);
operation!(
    /// Run a retention pass now (admins).
    ApplyRetention,
    "src/operations/storage.graphql"
);

/// A retention rule.
#[derive(Clone, PartialEq)]
pub struct Rule {
    /// The metric; `None` for every metric without a rule of its own.
    pub metric: Option<String>,
    /// Days kept.
    pub days: i64,
    /// Who set it.
    pub updated_by: String,
    /// When (RFC 3339).
    pub updated: DateTime,
}

/// What the storage section shows.
#[derive(Clone, PartialEq, Default)]
pub struct Figures {
    /// The database's size on disk, bytes.
    pub database_bytes: i64,
    /// Readings stored.
    pub readings: i64,
    /// Series stored.
    pub series: i64,
    /// Job log lines stored.
    pub log_lines: i64,
    /// Batches waiting to be stored now.
    pub queue_depth: i64,
    /// The most that ever waited at once.
    pub queue_high_water: i64,
    /// How many may wait before agents are held back.
    pub queue_capacity: i64,
    /// The retention rules, by metric (every metric's first).
    pub rules: Vec<Rule>,
}

fn int(v: &Value, key: &str) -> i64 {
    v[key].as_i64().unwrap_or_default()
}

/// A rule read from its JSON.
pub fn rule(v: &Value) -> Rule {
    Rule {
        // The leader stores the rule for every metric under the empty name; null says so.
        metric: opt(v, "metric").filter(|m| !m.is_empty()),
        days: int(v, "days"),
        updated_by: text(v, "updatedBy"),
        updated: text(v, "updated"),
    }
}

/// The figures and the rules now.
pub async fn figures() -> Result<Figures, String> {
    let d = super::request(super::body::<StorageFigures>(storage_figures::Variables {})).await?;
    let (s, q) = (&d["storage"], &d["ingestQueue"]);
    Ok(Figures {
        database_bytes: int(s, "databaseBytes"),
        readings: int(s, "readings"),
        series: int(s, "series"),
        log_lines: int(s, "logLines"),
        queue_depth: int(q, "depth"),
        queue_high_water: int(q, "highWater"),
        queue_capacity: int(q, "capacity"),
        rules: list(s, "retention", rule),
    })
}
