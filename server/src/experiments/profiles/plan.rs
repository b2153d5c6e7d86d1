//! What a profile does on a cluster: its checks against the nodes and jobs there (before anything
//! runs), its timeline (the dry run), and, while it runs, which actions are due.
//!
//! Option names are Pioreactor's where they differ from Trellis's settings (`target_rpm` is the
//! `stirring` preset's `target`); [`translate`] holds the table.
//!
//! Keys name each action instance: `<node>/<c|u>/<job>/<i>` for the `i`th action of a job (`c`:
//! from `common`, `u`: the unit's own), `…#<k>` for a repeat's `k`th occurrence, `…#w` for what
//! a `when` runs once its condition held.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;
use trellis_proto::KindSpec;

use super::{
    expr,
    parse::{Action, ActionKind, JobPlan, OptionValue, Piece, Pos, Profile, ProfileError},
};

/// A node as the checks see it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The job kinds its agent offers.
    pub kinds: Vec<KindSpec>,
}

/// What the checks know of the cluster.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Every node.
    pub nodes: Vec<NodeInfo>,
    /// Every preset: name → kind (and its settings over the kind's defaults).
    pub presets: BTreeMap<String, String>,
    /// The experiment's nodes (ids), when the profile is checked for one: `common` acts on
    /// these, and every unit must be one of them.
    pub experiment_nodes: Option<Vec<String>>,
}

/// A Pioreactor option as a Trellis setting: `Ok(Some((name, value)))`, `Ok(None)` when it has
/// nothing to set here (it names what Trellis does anyway), or why it cannot be.
pub fn translate(job: &str, key: &str, value: &Value) -> Result<Option<(String, Value)>, String> {
    let same = || Ok(Some((key.to_owned(), value.clone())));
    match (job, key) {
        ("stirring", "target_rpm") => Ok(Some(("target".into(), value.clone()))),
        ("temperature_automation", "target_temperature") => {
            Ok(Some(("target".into(), value.clone())))
        }
        ("temperature_automation", "automation_name") => match value.as_str() {
            Some("thermostat") => Ok(None),
            _ => Err(format!(
                "temperature_automation here is a thermostat; automation_name {value} is not available"
            )),
        },
        ("dosing_automation", "automation_name") => match value.as_str() {
            Some("turbidostat") => Ok(None),
            _ => Err(format!(
                "dosing_automation here is a turbidostat; automation_name {value} is not available (start the chemostat kind for a chemostat)"
            )),
        },
        ("od_reading", "samples_per_second") => match value.as_f64() {
            Some(s) if s > 0.0 => Ok(Some((
                "interval".into(),
                serde_json::Number::from_f64(1.0 / s).map_or(Value::Null, Value::Number),
            ))),
            _ => Err(format!(
                "samples_per_second {value} must be a number above 0"
            )),
        },
        ("led_intensity", "A") => Ok(Some(("duty".into(), value.clone()))),
        _ => same(),
    }
}

/// The Trellis setting a Pioreactor name reads (for references `unit:job:setting`).
pub fn setting_name<'a>(job: &str, key: &'a str) -> &'a str {
    match (job, key) {
        ("stirring", "target_rpm") | ("temperature_automation", "target_temperature") => "target",
        ("led_intensity", "A") => "duty",
        _ => key,
    }
}

impl Cluster {
    /// The node a unit names: an id, a name, or the label of a unit in the profile.
    pub fn node<'a>(
        &'a self,
        unit: &str,
        labels: &HashMap<String, String>,
    ) -> Option<&'a NodeInfo> {
        let unit = labels.get(unit).map_or(unit, String::as_str);
        self.nodes
            .iter()
            .find(|n| n.id == unit)
            .or_else(|| self.nodes.iter().find(|n| n.name == unit))
    }

    /// The kind a job runs as on `node`: a preset's kind, or a kind by its own name.
    pub fn kind<'a>(&'a self, node: &'a NodeInfo, job: &str) -> Result<&'a KindSpec, String> {
        let kind = self.presets.get(job).map_or(job, String::as_str);
        node.kinds.iter().find(|k| k.kind == kind).ok_or_else(|| {
            if node.kinds.is_empty() {
                format!(
                    "node {:?} has not said which jobs it runs (is its agent connected?)",
                    node.id
                )
            } else {
                format!(
                    "node {:?} has no job {job:?} (presets: {}; kinds: {})",
                    node.id,
                    self.presets
                        .iter()
                        .filter(|(_, k)| node.kinds.iter().any(|s| &s.kind == *k))
                        .map(|(p, _)| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    node.kinds
                        .iter()
                        .map(|k| k.kind.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        })
    }
}

/// Unit labels → the unit as written.
pub fn labels(p: &Profile) -> HashMap<String, String> {
    p.units
        .iter()
        .filter_map(|u| u.label.clone().map(|l| (l, u.unit.clone())))
        .collect()
}

/// The (node id, job plan, key prefix) pairs a profile acts on: `common` on every node of the
/// experiment, each unit's on its node. Units that name no node are left out (the checks report
/// them).
pub fn targets<'a>(
    p: &'a Profile,
    cluster: &Cluster,
    experiment_nodes: &[String],
) -> Vec<(String, &'a JobPlan, String)> {
    let labels = labels(p);
    let mut out = Vec::new();
    for n in experiment_nodes {
        for j in &p.common {
            out.push((n.clone(), j, format!("{n}/c/{}", j.job)));
        }
    }
    for u in &p.units {
        if let Some(node) = cluster.node(&u.unit, &labels) {
            for j in &u.jobs {
                out.push((node.id.clone(), j, format!("{}/u/{}", node.id, j.job)));
            }
        }
    }
    out
}

struct Checker<'a> {
    cluster: &'a Cluster,
    profile: &'a Profile,
    labels: HashMap<String, String>,
    errors: Vec<ProfileError>,
}

impl Checker<'_> {
    fn error(&mut self, pos: Pos, message: String) {
        self.errors.push(ProfileError {
            pos: Some(pos),
            message,
        });
    }

    fn expression(&mut self, e: &expr::Expr, pos: Pos, what: &str) {
        let mut names = Vec::new();
        expr::inputs(e, &mut names);
        for n in names {
            if !self.profile.inputs.contains_key(&n) {
                self.error(
                    pos,
                    format!("{what} reads input {n:?}, which inputs does not define"),
                );
            }
        }
        let mut refs = Vec::new();
        expr::references(e, &mut refs);
        for (unit, _, _) in refs {
            if let Some(u) = unit
                && self.cluster.node(&u, &self.labels).is_none()
            {
                self.error(
                    pos,
                    format!("{what} reads unit {u:?}, which is no node here (nor a label)"),
                );
            }
        }
    }

    fn option_value(&mut self, v: &OptionValue, pos: Pos, what: &str) -> Option<Value> {
        match v {
            OptionValue::Literal(v) => Some(v.clone()),
            OptionValue::Template(pieces) => {
                for p in pieces {
                    if let Piece::Expr(e) = p {
                        self.expression(e, pos, what);
                    }
                }
                None
            }
        }
    }

    fn options(
        &mut self,
        node: &NodeInfo,
        job: &str,
        spec: &KindSpec,
        options: &[(String, OptionValue, Pos)],
        live_only: bool,
    ) {
        for (key, value, pos) in options {
            let literal = self.option_value(value, *pos, &format!("option {key:?}"));
            let probe = literal.clone().unwrap_or(Value::Null);
            let name = match translate(job, key, &probe) {
                Ok(Some((name, _))) => name,
                Ok(None) => continue,
                Err(e) if literal.is_some() => {
                    self.error(*pos, e);
                    continue;
                }
                Err(_) => setting_name(job, key).to_owned(),
            };
            let Some(setting) = spec.settings.iter().find(|s| s.name == name) else {
                if spec.open {
                    continue;
                }
                let names: Vec<&str> = spec.settings.iter().map(|s| s.name.as_str()).collect();
                self.error(
                    *pos,
                    format!(
                        "job {job} on node {:?} has no setting {key:?} (it has: {})",
                        node.id,
                        names.join(", ")
                    ),
                );
                continue;
            };
            if live_only && !setting.live {
                self.error(
                    *pos,
                    format!("{key:?} of {job} is fixed at start: an update cannot change it"),
                );
            }
            if let Some(v) = literal
                && let Ok(Some((_, v))) = translate(job, key, &v)
                && let Err(e) = setting.check(&v)
            {
                self.error(*pos, e);
            }
        }
    }

    fn actions(&mut self, node: &NodeInfo, job: &str, spec: &KindSpec, actions: &[Action]) {
        for a in actions {
            if let Some(c) = &a.only_if {
                self.expression(c, a.pos, "if");
            }
            match &a.kind {
                ActionKind::Start(o) => self.options(node, job, spec, o, false),
                ActionKind::Update(o) => self.options(node, job, spec, o, true),
                ActionKind::Log(m) => {
                    self.option_value(m, a.pos, "message");
                }
                ActionKind::Repeat { actions, .. } => self.actions(node, job, spec, actions),
                ActionKind::When { condition, actions } => {
                    self.expression(condition, a.pos, "condition");
                    self.actions(node, job, spec, actions);
                }
                ActionKind::Stop | ActionKind::Pause | ActionKind::Resume => {}
            }
        }
    }

    fn job(&mut self, node: &NodeInfo, plan: &JobPlan) {
        match self.cluster.kind(node, &plan.job) {
            Ok(spec) => self.actions(node, &plan.job, spec, &plan.actions),
            Err(e) => self.error(plan.pos, e),
        }
    }
}

/// Checks a profile against the cluster: units that are no node (or not in the experiment), jobs
/// a node cannot run, unknown or refused settings, inputs and units that expressions read but do
/// not exist. Every error says where.
pub fn check(p: &Profile, cluster: &Cluster) -> Vec<ProfileError> {
    let mut c = Checker {
        cluster,
        profile: p,
        labels: labels(p),
        errors: Vec::new(),
    };
    let common_nodes: Vec<&NodeInfo> = match &cluster.experiment_nodes {
        Some(ids) => cluster
            .nodes
            .iter()
            .filter(|n| ids.contains(&n.id))
            .collect(),
        // Without an experiment, common jobs are checked on every node that offers anything.
        None => cluster
            .nodes
            .iter()
            .filter(|n| !n.kinds.is_empty())
            .collect(),
    };
    if !p.common.is_empty() && common_nodes.is_empty() {
        let pos = p.common[0].pos;
        c.error(
            pos,
            "common jobs run on the experiment's nodes, and it has none".into(),
        );
    }
    for plan in &p.common {
        // One error per job and node would repeat itself: check on the first node that runs it.
        match common_nodes
            .iter()
            .find(|n| cluster.kind(n, &plan.job).is_ok())
        {
            Some(n) => c.job(n, plan),
            None => {
                if let Some(n) = common_nodes.first() {
                    c.job(n, plan);
                }
            }
        }
    }
    for u in &p.units {
        let labels = c.labels.clone();
        match cluster.node(&u.unit, &labels) {
            None => c.error(
                u.pos,
                format!("unit {:?} is no node here (by id or name)", u.unit),
            ),
            Some(node) => {
                if let Some(ids) = &cluster.experiment_nodes
                    && !ids.contains(&node.id)
                {
                    c.error(
                        u.pos,
                        format!("node {:?} is not in the experiment", node.id),
                    );
                }
                for plan in &u.jobs {
                    c.job(node, plan);
                }
            }
        }
    }
    c.errors.sort_by_key(|e| e.pos.map(|p| (p.line, p.column)));
    c.errors
}

/// One line of a dry run.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Hours from the start (for what a `when` runs: from when its condition holds).
    pub hours: f64,
    /// The node.
    pub node_id: String,
    /// The job.
    pub job: String,
    /// The action's type.
    pub action: &'static str,
    /// Its settings, message, condition or period, in words.
    pub detail: String,
}

/// Most lines a dry run shows of one unbounded repeat.
pub const TIMELINE_REPEATS: usize = 3;

fn describe(a: &Action) -> String {
    let opts = |o: &[(String, OptionValue, Pos)]| {
        o.iter()
            .map(|(k, v, _)| match v {
                OptionValue::Literal(v) => format!("{k}={v}"),
                OptionValue::Template(_) => format!("{k}=(computed when it runs)"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut d = match &a.kind {
        ActionKind::Start(o) | ActionKind::Update(o) => opts(o),
        ActionKind::Log(OptionValue::Literal(v)) => v.as_str().unwrap_or_default().to_owned(),
        ActionKind::Log(_) => "(message computed when it runs)".into(),
        ActionKind::Repeat { every, max, .. } => match max {
            Some(m) => format!("every {every} h for {m} h"),
            None => format!("every {every} h until stopped"),
        },
        ActionKind::When { .. } => "when its condition holds".into(),
        _ => String::new(),
    };
    if a.only_if.is_some() {
        d = format!("{d} (if its condition holds then)")
            .trim()
            .to_owned();
    }
    d
}

/// Most lines a dry run shows; past it, it stops (nested repeats multiply).
pub const TIMELINE_MAX: usize = 10_000;

fn timeline_of(node: &str, job: &str, actions: &[Action], base: f64, out: &mut Vec<Entry>) {
    for a in actions {
        if out.len() >= TIMELINE_MAX {
            return;
        }
        let at = base + a.hours;
        out.push(Entry {
            hours: at,
            node_id: node.to_owned(),
            job: job.to_owned(),
            action: a.kind.name(),
            detail: describe(a),
        });
        match &a.kind {
            ActionKind::Repeat {
                every,
                max,
                actions,
            } => {
                let n = match max {
                    Some(m) => ((m / every).ceil() as usize).min(TIMELINE_MAX),
                    None => TIMELINE_REPEATS,
                };
                for k in 0..n {
                    if out.len() >= TIMELINE_MAX {
                        return;
                    }
                    timeline_of(node, job, actions, at + *every * k as f64, out);
                }
            }
            ActionKind::When { actions, .. } => timeline_of(node, job, actions, at, out),
            _ => {}
        }
    }
}

/// The dry run: every action on every node it would run on, in time order (repeats expanded,
/// an unbounded one [`TIMELINE_REPEATS`] times; what a `when` runs at the earliest it could),
/// at most [`TIMELINE_MAX`] lines (the first ones written, then sorted).
pub fn timeline(p: &Profile, cluster: &Cluster, experiment_nodes: &[String]) -> Vec<Entry> {
    let mut out = Vec::new();
    for (node, plan, _) in targets(p, cluster, experiment_nodes) {
        timeline_of(&node, &plan.job, &plan.actions, 0.0, &mut out);
    }
    out.sort_by(|a, b| {
        a.hours
            .total_cmp(&b.hours)
            .then_with(|| a.node_id.cmp(&b.node_id))
    });
    out
}

/// Hours as profile milliseconds.
pub fn ms(hours: f64) -> i64 {
    (hours * 3_600_000.0).round() as i64
}

/// When the last of `actions` (hours from `base`) is due, or `None` when that is not known
/// before the run: an unbounded `repeat` goes on until the run is stopped, and what a `when`
/// runs waits for its condition.
fn end_of(actions: &[Action], base: f64) -> Option<f64> {
    let mut end = base;
    for a in actions {
        let at = base + a.hours;
        let last = match &a.kind {
            ActionKind::Repeat {
                every,
                max: Some(m),
                actions,
            } => {
                // The last occurrence is the last to start before `max` hours have passed, as
                // [`finished`] counts them.
                let k = (ms(*m) - 1).max(0) / ms(*every).max(1);
                end_of(actions, at + every * k as f64)?
            }
            ActionKind::Repeat { max: None, .. } | ActionKind::When { .. } => return None,
            _ => at,
        };
        end = end.max(last);
    }
    Some(end)
}

/// When a profile's last action is due, hours from its start (what a run's progress is out of);
/// `None` when that is not known before it runs (an unbounded `repeat`, a `when`).
pub fn end_hours(p: &Profile) -> Option<f64> {
    p.common
        .iter()
        .chain(p.units.iter().flat_map(|u| &u.jobs))
        .try_fold(0.0_f64, |end, j| Some(end.max(end_of(&j.actions, 0.0)?)))
}

/// Something a run is to do now.
#[derive(Debug, Clone)]
pub enum Due<'a> {
    /// Run `action` (key, due time in profile ms, node, job).
    Run {
        /// The instance's key.
        key: String,
        /// When it was due.
        due_ms: i64,
        /// The node.
        node_id: String,
        /// The job.
        job: String,
        /// The action.
        action: &'a Action,
    },
    /// Check a `when`'s condition.
    Check {
        /// The `when`'s key.
        key: String,
        /// The node.
        node_id: String,
        /// The job.
        job: String,
        /// The condition.
        condition: &'a expr::Expr,
    },
}

impl Due<'_> {
    fn due_ms(&self) -> i64 {
        match self {
            Due::Run { due_ms, .. } => *due_ms,
            Due::Check { .. } => i64::MIN,
        }
    }
}

/// Where a run stands: the keys it has begun, and when each `when` held (profile ms).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Keys of every action instance begun.
    pub begun: BTreeSet<String>,
    /// `when` keys whose condition held, with when (profile ms).
    pub triggered: HashMap<String, i64>,
}

/// The occurrence of a repeat starting at `start` that is current at `t` (`None` before the
/// first or after the last).
fn occurrence(start: i64, every: f64, max: Option<f64>, t: i64) -> Option<i64> {
    if t < start {
        return None;
    }
    let every_ms = ms(every).max(1);
    let mut k = (t - start) / every_ms;
    if let Some(m) = max {
        // Occurrences start before max_hours: 0, every, ... < max.
        let last = (ms(m) - 1).max(0) / every_ms;
        k = k.min(last);
    }
    Some(k)
}

// Each argument is one level of the tree being walked.
#[allow(clippy::too_many_arguments)]
fn walk<'a>(
    prefix: &str,
    node: &str,
    job: &str,
    actions: &'a [Action],
    base: i64,
    t: i64,
    progress: &Progress,
    out: &mut Vec<Due<'a>>,
) {
    for (i, a) in actions.iter().enumerate() {
        let key = format!("{prefix}/{i}");
        let due = base.saturating_add(ms(a.hours));
        if due > t {
            continue;
        }
        match &a.kind {
            ActionKind::Repeat {
                every,
                max,
                actions,
            } => {
                // Only the current occurrence: earlier ones ran, or were missed (a leader that
                // was down, a profile time step longer than the period) and are not caught up.
                if let Some(k) = occurrence(due, *every, *max, t) {
                    let start = due.saturating_add(k.saturating_mul(ms(*every).max(1)));
                    walk(
                        &format!("{key}#{k}"),
                        node,
                        job,
                        actions,
                        start,
                        t,
                        progress,
                        out,
                    );
                }
            }
            ActionKind::When { condition, actions } => match progress.triggered.get(&key) {
                Some(&held) => walk(
                    &format!("{key}#w"),
                    node,
                    job,
                    actions,
                    held,
                    t,
                    progress,
                    out,
                ),
                None => out.push(Due::Check {
                    key,
                    node_id: node.to_owned(),
                    job: job.to_owned(),
                    condition,
                }),
            },
            _ => {
                if !progress.begun.contains(&key) {
                    out.push(Due::Run {
                        key,
                        due_ms: due,
                        node_id: node.to_owned(),
                        job: job.to_owned(),
                        action: a,
                    });
                }
            }
        }
    }
}

/// What is due at profile time `t` (ms from the start), oldest first; `when` checks first.
pub fn due<'a>(
    targets: &[(String, &'a JobPlan, String)],
    t: i64,
    progress: &Progress,
) -> Vec<Due<'a>> {
    let mut out = Vec::new();
    for (node, plan, prefix) in targets {
        walk(
            prefix,
            node,
            &plan.job,
            &plan.actions,
            0,
            t,
            progress,
            &mut out,
        );
    }
    out.sort_by_key(Due::due_ms);
    out
}

/// The next thing a run will do after profile time `t`: (profile ms, node, job, action type).
pub type Next = (i64, String, String, &'static str);

fn consider(best: &mut Option<Next>, at: i64, node: &str, job: &str, action: &'static str) {
    if best.as_ref().is_none_or(|b| at < b.0) {
        *best = Some((at, node.to_owned(), job.to_owned(), action));
    }
}

// Walks the same tree as `walk`; each argument is one level of it.
#[allow(clippy::too_many_arguments)]
fn next_walk(
    prefix: &str,
    node: &str,
    job: &str,
    actions: &[Action],
    base: i64,
    t: i64,
    progress: &Progress,
    best: &mut Option<Next>,
) {
    for (i, a) in actions.iter().enumerate() {
        let key = format!("{prefix}/{i}");
        let due = base.saturating_add(ms(a.hours));
        match &a.kind {
            ActionKind::Repeat {
                every,
                max,
                actions,
            } => {
                if due > t {
                    consider(best, due, node, job, "repeat");
                    continue;
                }
                if let Some(k) = occurrence(due, *every, *max, t) {
                    let every_ms = ms(*every).max(1);
                    let start = due.saturating_add(k.saturating_mul(every_ms));
                    next_walk(
                        &format!("{key}#{k}"),
                        node,
                        job,
                        actions,
                        start,
                        t,
                        progress,
                        best,
                    );
                    let following = start.saturating_add(every_ms);
                    if max.is_none_or(|m| following.saturating_sub(due) < ms(m)) {
                        let first = actions.first().map_or("repeat", |a| a.kind.name());
                        consider(best, following, node, job, first);
                    }
                }
            }
            ActionKind::When { actions, .. } => match progress.triggered.get(&key) {
                Some(&held) => {
                    next_walk(
                        &format!("{key}#w"),
                        node,
                        job,
                        actions,
                        held,
                        t,
                        progress,
                        best,
                    );
                }
                None => consider(best, due.max(t), node, job, "when"),
            },
            _ => {
                if !progress.begun.contains(&key) {
                    consider(best, due, node, job, a.kind.name());
                }
            }
        }
    }
}

/// What a run does next after profile time `t` (a `when` still waiting counts as now).
pub fn next(targets: &[(String, &JobPlan, String)], t: i64, progress: &Progress) -> Option<Next> {
    let mut best = None;
    for (node, plan, prefix) in targets {
        next_walk(
            prefix,
            node,
            &plan.job,
            &plan.actions,
            0,
            t,
            progress,
            &mut best,
        );
    }
    best
}

fn finished_walk(prefix: &str, actions: &[Action], progress: &Progress) -> bool {
    actions.iter().enumerate().all(|(i, a)| {
        let key = format!("{prefix}/{i}");
        match &a.kind {
            ActionKind::Repeat {
                every,
                max,
                actions,
            } => match max {
                None => false,
                Some(m) => {
                    let last = (ms(*m) - 1).max(0) / ms(*every).max(1);
                    finished_walk(&format!("{key}#{last}"), actions, progress)
                }
            },
            ActionKind::When { actions, .. } => {
                progress.triggered.contains_key(&key)
                    && finished_walk(&format!("{key}#w"), actions, progress)
            }
            _ => progress.begun.contains(&key),
        }
    })
}

/// Whether nothing is left to do: every action begun, every repeat past its last occurrence,
/// every `when` held and its actions begun. (An unbounded repeat never finishes.)
pub fn finished(targets: &[(String, &JobPlan, String)], progress: &Progress) -> bool {
    targets
        .iter()
        .all(|(_, plan, prefix)| finished_walk(prefix, &plan.actions, progress))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use trellis_proto::{SettingSpec, SettingType};

    use super::*;
    use crate::experiments::profiles::parse::parse;

    fn spec(kind: &str, settings: &[(&str, bool)]) -> KindSpec {
        KindSpec {
            kind: kind.into(),
            description: String::new(),
            open: false,
            settings: settings
                .iter()
                .map(|(n, live)| SettingSpec {
                    name: (*n).into(),
                    ty: SettingType::Float,
                    unit: None,
                    min: Some(0.0),
                    max: Some(2000.0),
                    choices: Vec::new(),
                    default: json!(1.0),
                    live: *live,
                    description: String::new(),
                })
                .collect(),
        }
    }

    fn cluster() -> Cluster {
        let kinds = vec![
            spec("pid", &[("target", true), ("pin", false)]),
            spec("sensor", &[("interval", true)]),
        ];
        Cluster {
            nodes: vec![
                NodeInfo {
                    id: "n1".into(),
                    name: "alpha".into(),
                    kinds: kinds.clone(),
                },
                NodeInfo {
                    id: "n2".into(),
                    name: "beta".into(),
                    kinds,
                },
            ],
            presets: [
                ("stirring".to_owned(), "pid".to_owned()),
                ("temperature_automation".to_owned(), "pid".to_owned()),
                ("od_reading".to_owned(), "sensor".to_owned()),
            ]
            .into(),
            experiment_nodes: Some(vec!["n1".into(), "n2".into()]),
        }
    }

    const PROFILE: &str = r#"experiment_profile_name: p
inputs:
  hot: 35
common:
  jobs:
    stirring:
      actions:
        - type: start
          hours_elapsed: 0
          options:
            target_rpm: 500
pioreactors:
  beta:
    label: b
    jobs:
      temperature_automation:
        actions:
          - type: start
            hours_elapsed: 0
            options:
              automation_name: thermostat
              target_temperature: 30
          - type: update
            hours_elapsed: 1
            options:
              target_temperature: ${{ hot }}
          - type: repeat
            hours_elapsed: 0.5
            repeat_every_hours: 0.25
            max_hours: 1
            actions:
              - type: log
                hours_elapsed: 0
                options:
                  message: tick
          - type: when
            hours_elapsed: 0
            condition: b:temperature_automation:target_temperature > 32
            actions:
              - type: stop
                hours_elapsed: 0.1
"#;

    #[test]
    fn a_good_profile_passes_its_checks_and_a_dry_run_lists_its_timeline() {
        let p = parse(PROFILE).unwrap();
        let c = cluster();
        assert_eq!(check(&p, &c), []);
        let nodes = vec!["n1".to_owned(), "n2".to_owned()];
        let t = timeline(&p, &c, &nodes);
        let lines: Vec<String> = t
            .iter()
            .map(|e| {
                format!(
                    "{} {} {} {} {}",
                    e.hours, e.node_id, e.job, e.action, e.detail
                )
            })
            .collect();
        assert_eq!(lines[0], "0 n1 stirring start target_rpm=500");
        assert!(
            lines.contains(
                &"1 n2 temperature_automation update target_temperature=(computed when it runs)"
                    .to_owned()
            ),
            "{lines:#?}"
        );
        // The repeat starts at 0.5 h and repeats for an hour: 0.5, 0.75, 1 and 1.25 (each
        // occurrence starts before its max_hours are over).
        assert_eq!(
            lines.iter().filter(|l| l.ends_with("log tick")).count(),
            4,
            "{lines:#?}"
        );
    }

    #[test]
    fn checks_name_unknown_units_jobs_settings_and_inputs_where_they_are() {
        let bad = r#"experiment_profile_name: p
common:
  jobs:
    stiring:
      actions:
        - type: start
          hours_elapsed: 0
    stirring:
      actions:
        - type: start
          hours_elapsed: 0
          options:
            target_rpm: 5000
            speed: 3
        - type: update
          hours_elapsed: 1
          options:
            pin: 3
        - type: update
          hours_elapsed: 2
          if: nope > 1 and worker9:stirring:target_rpm > 1
          options:
            target_rpm: 10
pioreactors:
  worker1:
    jobs:
      stirring:
        actions:
          - type: stop
            hours_elapsed: 0
"#;
        let p = parse(bad).unwrap();
        let errors: Vec<String> = check(&p, &cluster())
            .iter()
            .map(ToString::to_string)
            .collect();
        let want = [
            "line 4, column 5: node \"n1\" has no job \"stiring\"",
            "line 13, column 13: setting target = 5000 refused",
            "line 14, column 13: job stirring on node \"n1\" has no setting \"speed\"",
            "line 18, column 13: \"pin\" of stirring is fixed at start",
            "line 19, column 11: if reads input \"nope\"",
            "line 19, column 11: if reads unit \"worker9\"",
            "line 25, column 3: unit \"worker1\" is no node here",
        ];
        for w in want {
            assert!(
                errors.iter().any(|e| e.starts_with(w)),
                "missing {w:?} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), want.len(), "{errors:#?}");
    }

    #[test]
    fn actions_fall_due_in_time_and_each_instance_once() {
        let p = parse(PROFILE).unwrap();
        let c = cluster();
        let nodes = vec!["n1".to_owned(), "n2".to_owned()];
        let targets = targets(&p, &c, &nodes);
        let mut progress = Progress::default();
        let keys = |d: &[Due]| -> Vec<String> {
            d.iter()
                .map(|d| match d {
                    Due::Run { key, .. } | Due::Check { key, .. } => key.clone(),
                })
                .collect()
        };
        // At the start: the starts, and the when's check.
        let now = due(&targets, 0, &progress);
        assert_eq!(
            keys(&now),
            [
                "n2/u/temperature_automation/3",
                "n1/c/stirring/0",
                "n2/c/stirring/0",
                "n2/u/temperature_automation/0"
            ]
        );
        for k in keys(&now).into_iter().filter(|k| !k.ends_with("/3")) {
            progress.begun.insert(k);
        }
        // 0.6 h: the repeat's first occurrence; nothing begun runs again.
        let now = due(&targets, ms(0.6), &progress);
        assert_eq!(
            keys(&now),
            [
                "n2/u/temperature_automation/3",
                "n2/u/temperature_automation/2#0/0"
            ]
        );
        progress
            .begun
            .insert("n2/u/temperature_automation/2#0/0".into());
        // 5 h later (a leader that was down): the update, and only the repeat's last occurrence
        // (at 1.25 h), not the missed ones between.
        let now = due(&targets, ms(5.0), &progress);
        assert_eq!(
            keys(&now),
            [
                "n2/u/temperature_automation/3",
                "n2/u/temperature_automation/1",
                "n2/u/temperature_automation/2#3/0"
            ]
        );
        for k in [
            "n2/u/temperature_automation/2#3/0",
            "n2/u/temperature_automation/1",
        ] {
            progress.begun.insert(k.into());
        }
        assert!(!finished(&targets, &progress));
        // The when held at 5 h: its stop is due 0.1 h later.
        progress
            .triggered
            .insert("n2/u/temperature_automation/3".into(), ms(5.0));
        assert!(due(&targets, ms(5.05), &progress).is_empty());
        let now = due(&targets, ms(5.1), &progress);
        assert_eq!(keys(&now), ["n2/u/temperature_automation/3#w/0"]);
        progress
            .begun
            .insert("n2/u/temperature_automation/3#w/0".into());
        assert!(finished(&targets, &progress));
    }

    #[test]
    fn a_profile_ends_at_its_last_action_unless_a_repeat_or_when_has_no_end() {
        // PROFILE has a `when`: its end is not known before it runs.
        assert_eq!(end_hours(&parse(PROFILE).unwrap()), None);
        let ends = |repeat: &str| {
            let src = format!(
                "experiment_profile_name: p
common:
  jobs:
    stirring:
      actions:
        - type: start
          hours_elapsed: 0
        - type: update
          hours_elapsed: 1
          options:
            target_rpm: 300
        - type: repeat
          hours_elapsed: 0.5
          repeat_every_hours: 0.25
{repeat}          actions:
            - type: log
              hours_elapsed: 0.1
              options:
                message: tick
"
            );
            end_hours(&parse(&src).unwrap())
        };
        // Occurrences at 0.5, 0.75, 1 and 1.25 h (each starts before max_hours are over); the
        // last one's log 0.1 h after it.
        let end = ends("          max_hours: 1\n").unwrap();
        assert!((end - 1.35).abs() < 1e-9, "{end}");
        assert_eq!(ends(""), None);
    }
}
