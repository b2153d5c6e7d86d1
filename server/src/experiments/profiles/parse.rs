//! Reading a profile: YAML (with line and column on every node) into a [`Profile`], refusing every
//! unknown key, bad value and bad expression, each with where it is. All errors are gathered, not
//! only the first, so a user fixes a file in one go.

use std::{collections::BTreeMap, fmt};

use marked_yaml::{Node, types::MarkedScalarNode};
use serde_json::Value;

use super::expr::{self, Expr};

/// Longest profile accepted, bytes.
pub const MAX_SOURCE: usize = 256 * 1024;
/// Most actions (nested ones included) in one profile.
pub const MAX_ACTIONS: usize = 2_000;
/// Deepest nesting of `repeat` and `when`.
pub const MAX_NESTING: usize = 8;
/// Most hours any time in a profile may be (a hundred years): profile times stay far from
/// overflowing when added up.
pub const MAX_HOURS: f64 = 876_000.0;

/// A place in the profile's text (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line.
    pub line: usize,
    /// Column.
    pub column: usize,
}

/// One thing wrong with a profile, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileError {
    /// Where; `None` when it is about the whole file.
    pub pos: Option<Pos>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "line {}, column {}: {}", p.line, p.column, self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A profile as read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    /// `experiment_profile_name`.
    pub name: String,
    /// `metadata.author`.
    pub author: Option<String>,
    /// `metadata.description`.
    pub description: Option<String>,
    /// `inputs`: named constants.
    pub inputs: BTreeMap<String, Value>,
    /// `common.jobs`: for every node of the experiment.
    pub common: Vec<JobPlan>,
    /// `pioreactors.<unit>`: for one node each.
    pub units: Vec<UnitPlan>,
}

/// The jobs of one unit.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitPlan {
    /// The unit as written: a node id or name (or another unit's label).
    pub unit: String,
    /// Its alias in expressions.
    pub label: Option<String>,
    /// Where it is written.
    pub pos: Pos,
    /// Its jobs.
    pub jobs: Vec<JobPlan>,
}

/// The actions of one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    /// The job (a preset or kind, as a start names it).
    pub job: String,
    /// Where it is written.
    pub pos: Pos,
    /// Its actions.
    pub actions: Vec<Action>,
}

/// One action.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// What it does.
    pub kind: ActionKind,
    /// When, hours from the profile's start (or from its `repeat` or `when`).
    pub hours: f64,
    /// `if`: it runs only when this holds then.
    pub only_if: Option<Expr>,
    /// Where it is written.
    pub pos: Pos,
}

/// What an action does.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionKind {
    /// Start the job with these settings.
    Start(Options),
    /// Stop it.
    Stop,
    /// Pause it.
    Pause,
    /// Resume it.
    Resume,
    /// Change its settings.
    Update(Options),
    /// Write a message to the experiment's notes.
    Log(OptionValue),
    /// Run `actions` every `every` hours (from this action's time), until `max` hours.
    Repeat {
        /// The period, hours.
        every: f64,
        /// How long, hours; `None`: until the profile ends.
        max: Option<f64>,
        /// What runs each time (hours from each start).
        actions: Vec<Action>,
    },
    /// From this action's time, check `condition`; the first time it holds, run `actions`
    /// (hours from then).
    When {
        /// The condition.
        condition: Expr,
        /// What runs.
        actions: Vec<Action>,
    },
}

impl ActionKind {
    /// Its `type` as written.
    pub fn name(&self) -> &'static str {
        match self {
            ActionKind::Start(_) => "start",
            ActionKind::Stop => "stop",
            ActionKind::Pause => "pause",
            ActionKind::Resume => "resume",
            ActionKind::Update(_) => "update",
            ActionKind::Log(_) => "log",
            ActionKind::Repeat { .. } => "repeat",
            ActionKind::When { .. } => "when",
        }
    }
}

/// Settings of a start or update, in order, with where each is.
pub type Options = Vec<(String, OptionValue, Pos)>;

/// An option's value: as written, or with `${{ }}` expressions evaluated when the action runs.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    /// A plain value.
    Literal(Value),
    /// Text with expressions in it; one expression alone keeps its value's type.
    Template(Vec<Piece>),
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Text as written.
    Text(String),
    /// `${{ expr }}`.
    Expr(Expr),
}

struct Reader {
    errors: Vec<ProfileError>,
    actions: usize,
}

fn pos_of(node: &Node) -> Pos {
    node.span()
        .start()
        .map(|m| Pos {
            line: m.line(),
            column: m.column(),
        })
        .unwrap_or_default()
}

fn pos_of_scalar(s: &MarkedScalarNode) -> Pos {
    s.span()
        .start()
        .map(|m| Pos {
            line: m.line(),
            column: m.column(),
        })
        .unwrap_or_default()
}

impl Reader {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(ProfileError {
            pos: Some(pos),
            message: message.into(),
        });
    }

    /// The entries of a mapping, refusing keys not in `allowed` (named in the error).
    fn mapping<'a>(
        &mut self,
        node: &'a Node,
        what: &str,
        allowed: Option<&[&str]>,
    ) -> Vec<(&'a MarkedScalarNode, &'a Node)> {
        let Some(m) = node.as_mapping() else {
            self.error(
                pos_of(node),
                format!("{what} must be a mapping (key: value)"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in m.iter() {
            if let Some(allowed) = allowed
                && !allowed.contains(&k.as_str())
            {
                self.error(
                    pos_of_scalar(k),
                    format!(
                        "unknown key {:?} in {what} (known: {})",
                        k.as_str(),
                        allowed.join(", ")
                    ),
                );
                continue;
            }
            out.push((k, v));
        }
        out
    }

    fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.as_scalar() {
            Some(s) => Some(s.as_str().to_owned()),
            None => {
                self.error(pos_of(node), format!("{what} must be text"));
                None
            }
        }
    }

    fn hours(&mut self, node: &Node, what: &str) -> Option<f64> {
        match node
            .as_scalar()
            .and_then(|s| s.as_str().trim().parse::<f64>().ok())
        {
            Some(h) if h.is_finite() && (0.0..=MAX_HOURS).contains(&h) => Some(h),
            _ => {
                self.error(
                    pos_of(node),
                    format!("{what} must be a number of hours, 0 to {MAX_HOURS} (a hundred years)"),
                );
                None
            }
        }
    }

    fn expression(&mut self, node: &Node, what: &str) -> Option<Expr> {
        let src = self.text(node, what)?;
        // `${{ ... }}` around a whole condition is allowed, as Pioreactor writes it.
        let inner = src
            .trim()
            .strip_prefix("${{")
            .and_then(|s| s.strip_suffix("}}"))
            .unwrap_or(&src);
        match expr::parse(inner) {
            Ok(e) => Some(e),
            Err(e) => {
                let p = pos_of(node);
                self.error(p, format!("{what}: {e}"));
                None
            }
        }
    }

    fn value(&mut self, node: &Node, what: &str) -> Option<OptionValue> {
        let Some(s) = node.as_scalar() else {
            self.error(pos_of(node), format!("{what} must be a single value"));
            return None;
        };
        let raw = s.as_str();
        if raw.contains("${{") {
            return self.template(raw, pos_of(node), what);
        }
        if !s.may_coerce() {
            return Some(OptionValue::Literal(Value::String(raw.to_owned())));
        }
        let v = match raw {
            "true" | "True" => Value::Bool(true),
            "false" | "False" => Value::Bool(false),
            "~" | "null" | "" => Value::Null,
            _ => match raw.parse::<i64>() {
                Ok(i) => Value::from(i),
                Err(_) => match raw.parse::<f64>() {
                    Ok(f) if f.is_finite() => {
                        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
                    }
                    _ => Value::String(raw.to_owned()),
                },
            },
        };
        Some(OptionValue::Literal(v))
    }

    fn template(&mut self, raw: &str, pos: Pos, what: &str) -> Option<OptionValue> {
        let mut pieces = Vec::new();
        let mut rest = raw;
        while let Some(start) = rest.find("${{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 3..];
            let Some(end) = after.find("}}") else {
                self.error(pos, format!("{what}: a ${{{{ is not closed by }}}}"));
                return None;
            };
            match expr::parse(&after[..end]) {
                Ok(e) => pieces.push(Piece::Expr(e)),
                Err(e) => {
                    self.error(pos, format!("{what}: {e}"));
                    return None;
                }
            }
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Some(OptionValue::Template(pieces))
    }

    fn options(&mut self, node: &Node) -> Options {
        let mut out = Vec::new();
        for (k, v) in self.mapping(node, "options", None) {
            if let Some(val) = self.value(v, &format!("option {:?}", k.as_str())) {
                out.push((k.as_str().to_owned(), val, pos_of_scalar(k)));
            }
        }
        out
    }

    fn actions(&mut self, node: &Node, depth: usize) -> Vec<Action> {
        let Some(seq) = node.as_sequence() else {
            self.error(pos_of(node), "actions must be a list (- type: ...)");
            return Vec::new();
        };
        if seq.is_empty() {
            self.error(pos_of(node), "actions must not be empty");
        }
        seq.iter().filter_map(|a| self.action(a, depth)).collect()
    }

    fn action(&mut self, node: &Node, depth: usize) -> Option<Action> {
        const KEYS: &[&str] = &[
            "type",
            "hours_elapsed",
            "options",
            "if",
            "repeat_every_hours",
            "max_hours",
            "actions",
            "condition",
        ];
        self.actions += 1;
        if self.actions > MAX_ACTIONS {
            if self.actions == MAX_ACTIONS + 1 {
                self.error(
                    pos_of(node),
                    format!("a profile has at most {MAX_ACTIONS} actions"),
                );
            }
            return None;
        }
        let entries = self.mapping(node, "an action", Some(KEYS));
        let get = |key: &str| entries.iter().find(|(k, _)| k.as_str() == key).map(|e| e.1);
        // An action is where its first key is written (the "- type:" line).
        let pos = entries
            .first()
            .map_or_else(|| pos_of(node), |(k, _)| pos_of_scalar(k));
        let Some(ty) = get("type") else {
            self.error(
                pos,
                "an action needs a type (start, stop, pause, resume, update, log, repeat or when)",
            );
            return None;
        };
        let ty_name = self.text(ty, "type")?;
        let hours = match get("hours_elapsed") {
            Some(h) => self.hours(h, "hours_elapsed")?,
            None => {
                self.error(pos, format!("the {ty_name} action needs hours_elapsed"));
                return None;
            }
        };
        // A bad `if` is reported and the rest of the action still checked.
        let only_if = get("if").and_then(|c| self.expression(c, "if"));
        // Keys that belong to other types of action.
        let allowed: &[&str] = match ty_name.as_str() {
            "start" | "update" => &["options"],
            "log" => &["options"],
            "repeat" => &["repeat_every_hours", "max_hours", "actions"],
            "when" => &["condition", "actions"],
            _ => &[],
        };
        for (k, _) in &entries {
            let k = k.as_str();
            if !["type", "hours_elapsed", "if"].contains(&k) && !allowed.contains(&k) {
                let at = entries
                    .iter()
                    .find(|(x, _)| x.as_str() == k)
                    .map(|(x, _)| pos_of_scalar(x))
                    .unwrap_or(pos);
                self.error(at, format!("a {ty_name} action takes no {k:?}"));
            }
        }
        let nested = |me: &mut Self| -> Option<Vec<Action>> {
            if depth + 1 > MAX_NESTING {
                me.error(
                    pos,
                    format!("repeat and when nest at most {MAX_NESTING} deep"),
                );
                return None;
            }
            match get("actions") {
                Some(a) => Some(me.actions(a, depth + 1)),
                None => {
                    me.error(pos, format!("the {ty_name} action needs actions"));
                    None
                }
            }
        };
        let kind = match ty_name.as_str() {
            "start" => {
                ActionKind::Start(get("options").map(|o| self.options(o)).unwrap_or_default())
            }
            "update" => {
                let Some(o) = get("options") else {
                    self.error(
                        pos,
                        "an update action needs options (the settings to change)",
                    );
                    return None;
                };
                ActionKind::Update(self.options(o))
            }
            "stop" => ActionKind::Stop,
            "pause" => ActionKind::Pause,
            "resume" => ActionKind::Resume,
            "log" => {
                let message = get("options").and_then(|o| {
                    let m = o.as_mapping()?;
                    for (k, _) in m.iter() {
                        if k.as_str() != "message" {
                            self.error(
                                pos_of_scalar(k),
                                format!(
                                    "a log action's options hold only message, not {:?}",
                                    k.as_str()
                                ),
                            );
                        }
                    }
                    m.get_node("message")
                });
                let Some(message) = message else {
                    self.error(pos, "a log action needs options.message");
                    return None;
                };
                ActionKind::Log(self.value(message, "message")?)
            }
            "repeat" => {
                // Every part is checked before giving up, so all its mistakes are reported.
                let every = match get("repeat_every_hours") {
                    Some(h) => match self.hours(h, "repeat_every_hours") {
                        Some(e) if e <= 0.0 => {
                            self.error(pos_of(h), "repeat_every_hours must be more than 0");
                            None
                        }
                        other => other,
                    },
                    None => {
                        self.error(pos, "a repeat action needs repeat_every_hours");
                        None
                    }
                };
                let max = get("max_hours").map(|h| self.hours(h, "max_hours"));
                let actions = nested(self);
                ActionKind::Repeat {
                    every: every?,
                    max: max.map_or(Some(None), |m| m.map(Some))?,
                    actions: actions?,
                }
            }
            "when" => {
                let condition = match get("condition") {
                    Some(c) => self.expression(c, "condition"),
                    None => {
                        self.error(pos, "a when action needs a condition");
                        None
                    }
                };
                let actions = nested(self);
                ActionKind::When {
                    condition: condition?,
                    actions: actions?,
                }
            }
            other => {
                self.error(
                    pos_of(ty),
                    format!("unknown action type {other:?} (start, stop, pause, resume, update, log, repeat or when)"),
                );
                return None;
            }
        };
        Some(Action {
            kind,
            hours,
            only_if,
            pos,
        })
    }

    fn jobs(&mut self, node: &Node) -> Vec<JobPlan> {
        let mut out = Vec::new();
        for (k, v) in self.mapping(node, "jobs", None) {
            let entries = self.mapping(v, &format!("job {:?}", k.as_str()), Some(&["actions"]));
            let actions = match entries.first() {
                Some((_, a)) => self.actions(a, 0),
                None => {
                    self.error(
                        pos_of_scalar(k),
                        format!("job {:?} needs actions", k.as_str()),
                    );
                    continue;
                }
            };
            out.push(JobPlan {
                job: k.as_str().to_owned(),
                pos: pos_of_scalar(k),
                actions,
            });
        }
        out
    }
}

/// Reads a profile; every problem is reported with where it is.
pub fn parse(source: &str) -> Result<Profile, Vec<ProfileError>> {
    if source.len() > MAX_SOURCE {
        return Err(vec![ProfileError {
            pos: None,
            message: format!(
                "the profile is {} bytes; at most {MAX_SOURCE} are accepted",
                source.len()
            ),
        }]);
    }
    if let Some(e) = too_deep(source) {
        return Err(vec![e]);
    }
    let options = marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true);
    let root = marked_yaml::parse_yaml_with_options(0, source, options).map_err(|e| {
        let (pos, message) = load_error(&e);
        vec![ProfileError { pos, message }]
    })?;
    let mut r = Reader {
        errors: Vec::new(),
        actions: 0,
    };
    let mut p = Profile::default();
    let top = r.mapping(
        &root,
        "the profile",
        Some(&[
            "experiment_profile_name",
            "metadata",
            "inputs",
            "common",
            "pioreactors",
            "plugins",
            "stop_on_exit",
        ]),
    );
    let mut named = false;
    for (k, v) in top {
        match k.as_str() {
            "experiment_profile_name" => {
                if let Some(n) = r.text(v, "experiment_profile_name") {
                    p.name = n;
                    named = true;
                }
            }
            "metadata" => {
                for (mk, mv) in r.mapping(v, "metadata", Some(&["author", "description"])) {
                    let t = r.text(mv, mk.as_str());
                    match mk.as_str() {
                        "author" => p.author = t,
                        _ => p.description = t,
                    }
                }
            }
            "inputs" => {
                for (ik, iv) in r.mapping(v, "inputs", None) {
                    match r.value(iv, &format!("input {:?}", ik.as_str())) {
                        Some(OptionValue::Literal(val)) => {
                            p.inputs.insert(ik.as_str().to_owned(), val);
                        }
                        Some(OptionValue::Template(_)) => r.error(
                            pos_of(iv),
                            format!(
                                "input {:?} must be a plain value, not an expression",
                                ik.as_str()
                            ),
                        ),
                        None => {}
                    }
                }
            }
            "common" => {
                for (_, jobs) in r.mapping(v, "common", Some(&["jobs"])) {
                    p.common = r.jobs(jobs);
                }
            }
            "pioreactors" => {
                for (uk, uv) in r.mapping(v, "pioreactors", None) {
                    let mut unit = UnitPlan {
                        unit: uk.as_str().to_owned(),
                        label: None,
                        pos: pos_of_scalar(uk),
                        jobs: Vec::new(),
                    };
                    let what = format!("unit {:?}", uk.as_str());
                    for (k2, v2) in r.mapping(uv, &what, Some(&["label", "jobs"])) {
                        if k2.as_str() == "label" {
                            unit.label = r.text(v2, "label");
                        } else {
                            unit.jobs = r.jobs(v2);
                        }
                    }
                    p.units.push(unit);
                }
            }
            // Pioreactor's plugin requirements and exit behaviour: accepted, nothing to do here
            // (Trellis stops nothing when a profile ends).
            _ => {}
        }
    }
    if !named {
        r.errors.push(ProfileError {
            pos: Some(Pos { line: 1, column: 1 }),
            message: "the profile needs experiment_profile_name".into(),
        });
    }
    if r.errors.is_empty() {
        Ok(p)
    } else {
        r.errors.sort_by_key(|e| e.pos.map(|p| (p.line, p.column)));
        Err(r.errors)
    }
}

/// Widest indentation (spaces and `- ` markers before a line's content) and deepest bracket
/// nesting accepted: the YAML parser recurses once per level, and a profile needs a dozen.
pub const MAX_INDENT: usize = 200;
/// Deepest `[`/`{` nesting accepted.
pub const MAX_BRACKETS: usize = 64;

/// A profile nested deeper than any real one, refused before the parser recurses into it.
fn too_deep(source: &str) -> Option<ProfileError> {
    let mut depth = 0usize;
    for (i, line) in source.lines().enumerate() {
        let indent = line
            .chars()
            .take_while(|c| matches!(c, ' ' | '\t' | '-' | '?' | ':'))
            .count();
        if indent > MAX_INDENT {
            return Some(ProfileError {
                pos: Some(Pos {
                    line: i + 1,
                    column: 1,
                }),
                message: format!(
                    "nested too deeply (more than {MAX_INDENT} columns of indentation)"
                ),
            });
        }
        for (j, c) in line.chars().enumerate() {
            match c {
                '[' | '{' => depth += 1,
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth > MAX_BRACKETS {
                return Some(ProfileError {
                    pos: Some(Pos {
                        line: i + 1,
                        column: j + 1,
                    }),
                    message: format!("nested too deeply (more than {MAX_BRACKETS} brackets)"),
                });
            }
        }
    }
    None
}

fn load_error(e: &marked_yaml::LoadError) -> (Option<Pos>, String) {
    use marked_yaml::LoadError as L;
    let at = |m: &marked_yaml::Marker| {
        Some(Pos {
            line: m.line(),
            column: m.column(),
        })
    };
    match e {
        L::TopLevelMustBeMapping(m) => (at(m), "the profile must be a mapping (key: value)".into()),
        L::ScanError(m, _) => (
            at(m),
            format!("not valid YAML: {}", strip_marker(&e.to_string())),
        ),
        L::DuplicateKey(d) => (
            d.key.span().start().and_then(at),
            format!("{:?} appears twice in the same mapping", d.key.as_str()),
        ),
        other => (None, other.to_string()),
    }
}

/// The loader's message without its own position prefix (ours comes first).
fn strip_marker(s: &str) -> String {
    match s.split_once(": ") {
        Some((_, rest)) => rest.to_owned(),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DEMO: &str = r#"experiment_profile_name: demo
metadata:
  author: Cam
  description: stir, read and heat; warmer after an hour
inputs:
  warm: 37
common:
  jobs:
    stirring:
      actions:
        - type: start
          hours_elapsed: 0
          options:
            target_rpm: 500
        - type: update
          hours_elapsed: 1.5
          options:
            target_rpm: ${{ 400 + 100 * 2 }}
    od_reading:
      actions:
        - type: start
          hours_elapsed: 0
pioreactors:
  worker-1:
    label: alpha
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
            if: unit() == 'worker-1'
            options:
              target_temperature: ${{ warm }}
          - type: repeat
            hours_elapsed: 2
            repeat_every_hours: 0.5
            max_hours: 2
            actions:
              - type: log
                hours_elapsed: 0
                options:
                  message: "OD is ${{ ::od_reading:od }}"
          - type: when
            hours_elapsed: 0
            condition: ${{ ::od_reading:od > 0.5 }}
            actions:
              - type: stop
                hours_elapsed: 0
"#;

    #[test]
    fn a_pioreactor_profile_reads_whole() {
        let p = parse(DEMO).unwrap();
        assert_eq!(p.name, "demo");
        assert_eq!(p.author.as_deref(), Some("Cam"));
        assert_eq!(p.inputs["warm"], json!(37));
        assert_eq!(p.common.len(), 2);
        assert_eq!(p.common[0].job, "stirring");
        assert_eq!(p.common[0].actions[1].hours, 1.5);
        let ActionKind::Update(o) = &p.common[0].actions[1].kind else {
            panic!()
        };
        assert!(matches!(&o[0].1, OptionValue::Template(p) if p.len() == 1));
        let u = &p.units[0];
        assert_eq!(
            (u.unit.as_str(), u.label.as_deref()),
            ("worker-1", Some("alpha"))
        );
        let t = &u.jobs[0].actions;
        assert!(t[1].only_if.is_some());
        assert!(
            matches!(&t[2].kind, ActionKind::Repeat { every, max: Some(m), actions } if *every == 0.5 && *m == 2.0 && actions.len() == 1)
        );
        assert!(matches!(&t[3].kind, ActionKind::When { actions, .. } if actions.len() == 1));
        assert_eq!(
            t[3].pos,
            Pos {
                line: 48,
                column: 13
            }
        );
        assert_eq!(t[3].hours, 0.0);
    }

    #[test]
    fn every_mistake_is_named_with_its_line_and_column() {
        let bad = r#"experiment_profile_name: bad
colour: blue
common:
  jobs:
    stirring:
      actions:
        - type: strat
          hours_elapsed: 0
        - type: start
          hours_elapsed: -1
        - type: update
          hours_elapsed: 1
          options:
            target_rpm: ${{ 1 + }}
        - type: stop
          hours_elapsed: 2
          if: (1 > 
          options:
            x: 1
        - type: repeat
          hours_elapsed: 0
          actions: []
"#;
        let errors = parse(bad).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let want = [
            "line 2, column 1: unknown key \"colour\" in the profile",
            "line 7, column 17: unknown action type \"strat\"",
            "line 10, column 26: hours_elapsed must be a number of hours, 0 to 876000",
            "line 14, column 25: option \"target_rpm\": at character 6 of the expression: it ends where a value should be",
            "line 17, column 15: if: at character 5 of the expression: it ends where a value should be",
            "line 18, column 11: a stop action takes no \"options\"",
            "line 20, column 11: a repeat action needs repeat_every_hours",
            "line 22, column 20: actions must not be empty",
        ];
        for w in want {
            assert!(
                text.iter().any(|t| t.starts_with(w)),
                "missing {w:?} in {text:#?}"
            );
        }
        assert_eq!(text.len(), want.len(), "{text:#?}");
    }

    #[test]
    fn hostile_nesting_is_refused_before_the_parser_recurses() {
        let deep = "- ".repeat(20_000) + "x";
        let e = parse(&deep).unwrap_err();
        assert!(e[0].message.contains("nested too deeply"), "{e:?}");
        let flow = format!("experiment_profile_name: x\ninputs: {}", "[".repeat(10_000));
        let e = parse(&flow).unwrap_err();
        assert!(e[0].message.contains("nested too deeply"), "{e:?}");
        let e = parse("experiment_profile_name: x\ncommon:\n  jobs:\n    a:\n      actions:\n        - type: stop\n          hours_elapsed: 1e300\n").unwrap_err();
        assert!(e[0].message.contains("0 to 876000"), "{e:?}");
    }

    #[test]
    fn broken_yaml_and_duplicates_say_where() {
        let e = parse("experiment_profile_name: x\ncommon: [a\n").unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].pos.is_some(), "{e:?}");
        assert!(e[0].message.starts_with("not valid YAML"), "{e:?}");
        let e = parse("experiment_profile_name: x\nexperiment_profile_name: y\n").unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "line 2, column 1: \"experiment_profile_name\" appears twice in the same mapping"
        );
        let e = parse("- a\n- b\n").unwrap_err();
        assert!(e[0].message.contains("must be a mapping"), "{e:?}");
        let e = parse("metadata: {}\n").unwrap_err();
        assert!(
            e[0].message.contains("needs experiment_profile_name"),
            "{e:?}"
        );
    }
}
