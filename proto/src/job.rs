//! Jobs on the wire: what kinds of job a node offers (with each setting's schema), a job's
//! retained status (state and settings), and the rules a setting value is checked against. The
//! agent checks values before applying them and the leader before sending them, with the same
//! code, so both refuse the same values with the same words.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ProtoError;

/// Longest job name accepted, in bytes. Job names are topic segments, like node ids.
pub const MAX_JOB_NAME_LEN: usize = 64;

/// Checks that `name` can be a job name (and so a topic segment): 1 to [`MAX_JOB_NAME_LEN`]
/// characters from `[A-Za-z0-9_-]`.
pub fn validate_job_name(name: &str) -> Result<(), ProtoError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_JOB_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ProtoError::InvalidJobName(name.to_owned()))
    }
}

/// The type of a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SettingType {
    /// A whole number (JSON integer).
    Int,
    /// A number.
    Float,
    /// `true` or `false`.
    Bool,
    /// Text.
    String,
    /// One of `choices`.
    Enum,
}

/// What a setting is and which values it takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingSpec {
    /// The setting's name (`duty`, `target_rpm`).
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: SettingType,
    /// Its unit (`%`, `rpm`, `°C`, `s`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Lowest value accepted (numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Highest value accepted (numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The values an enum takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// The value when a start does not give one.
    pub default: serde_json::Value,
    /// Whether it can change while the job runs; the others are fixed at start.
    pub live: bool,
    /// One line for people.
    pub description: String,
}

impl SettingSpec {
    /// Checks `value` against this setting's rule. The error names the setting, the value and the
    /// rule, in words a user can act on.
    pub fn check(&self, value: &serde_json::Value) -> Result<(), String> {
        let name = &self.name;
        let refuse = |rule: String| Err(format!("setting {name} = {value} refused: {rule}"));
        let number = match self.ty {
            SettingType::Int => match value.as_i64() {
                Some(n) => Some(n as f64),
                None => return refuse("must be a whole number".into()),
            },
            SettingType::Float => match value.as_f64() {
                Some(n) if n.is_finite() => Some(n),
                _ => return refuse("must be a number".into()),
            },
            SettingType::Bool => {
                return if value.is_boolean() {
                    Ok(())
                } else {
                    refuse("must be true or false".into())
                };
            }
            SettingType::String => {
                return match value.as_str() {
                    Some(s) if s.len() <= 1024 => Ok(()),
                    Some(_) => refuse("must be at most 1024 bytes".into()),
                    None => refuse("must be text".into()),
                };
            }
            SettingType::Enum => {
                return match value.as_str() {
                    Some(s) if self.choices.iter().any(|c| c == s) => Ok(()),
                    _ => refuse(format!("must be one of {}", self.choices.join(", "))),
                };
            }
        };
        if let Some(n) = number {
            let unit = self
                .unit
                .as_deref()
                .map(|u| format!(" {u}"))
                .unwrap_or_default();
            match (self.min, self.max) {
                (Some(lo), Some(hi)) if !(lo..=hi).contains(&n) => {
                    return refuse(format!("must be between {lo} and {hi}{unit}"));
                }
                (Some(lo), None) if n < lo => {
                    return refuse(format!("must be at least {lo}{unit}"));
                }
                (None, Some(hi)) if n > hi => return refuse(format!("must be at most {hi}{unit}")),
                _ => {}
            }
        }
        Ok(())
    }
}

/// A kind of job a node can run, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindSpec {
    /// The kind's name (`pwm`, `gpio`, `sensor`).
    pub kind: String,
    /// One line for people.
    pub description: String,
    /// Its settings.
    pub settings: Vec<SettingSpec>,
    /// Whether it takes settings beyond those declared (an `exec` job's program has its own):
    /// such a setting may be any number, `true`/`false` or text up to 1024 bytes, and is live.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open: bool,
}

/// Checks a setting an open kind does not declare: a plain value, not too big.
fn check_open(name: &str, value: &serde_json::Value) -> Result<(), String> {
    crate::validate_job_name(name).map_err(|_| {
        format!("setting name {name:?} is not a plain name (A-Z, a-z, 0-9, '-', '_')")
    })?;
    let ok = match value {
        serde_json::Value::Number(_) | serde_json::Value::Bool(_) => true,
        serde_json::Value::String(s) => s.len() <= 1024,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "setting {name} = {value} refused: must be a number, true/false or text up to 1024 bytes"
        ))
    }
}

/// A job's settings by name.
pub type Settings = BTreeMap<String, serde_json::Value>;

impl KindSpec {
    /// The settings a start would run with: each given value checked, the rest defaulted. Refused:
    /// a setting this kind does not have, or a value its rule does not allow.
    pub fn resolve(&self, given: &Settings) -> Result<Settings, String> {
        let undeclared = given
            .iter()
            .filter(|(k, _)| !self.settings.iter().any(|s| &s.name == *k));
        let mut extra = Settings::new();
        for (name, value) in undeclared {
            if !self.open {
                return Err(format!(
                    "kind {} has no setting {name} (it has: {})",
                    self.kind,
                    self.setting_names()
                ));
            }
            check_open(name, value)?;
            extra.insert(name.clone(), value.clone());
        }
        let mut out = Settings::new();
        for spec in &self.settings {
            let value = given.get(&spec.name).unwrap_or(&spec.default);
            spec.check(value)?;
            out.insert(spec.name.clone(), value.clone());
        }
        out.extend(extra);
        Ok(out)
    }

    /// A change to a running job's settings: every named setting must exist, be live and take the
    /// value. All or nothing: the first refusal refuses the whole change.
    pub fn check_change(&self, change: &Settings) -> Result<(), String> {
        if change.is_empty() {
            return Err("no setting to change".into());
        }
        for (name, value) in change {
            let Some(spec) = self.settings.iter().find(|s| &s.name == name) else {
                if self.open {
                    check_open(name, value)?;
                    continue;
                }
                return Err(format!(
                    "kind {} has no setting {name} (it has: {})",
                    self.kind,
                    self.setting_names()
                ));
            };
            if !spec.live {
                return Err(format!(
                    "setting {name} cannot change while the job runs; stop and start the job with the new value"
                ));
            }
            spec.check(value)?;
        }
        Ok(())
    }

    fn setting_names(&self) -> String {
        self.settings
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The kinds a node offers, published retained by its agent after every connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobKinds {
    /// Every kind this agent can run on this node's hardware.
    pub kinds: Vec<KindSpec>,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Starting: the hardware is being set up.
    Init,
    /// Running.
    Ready,
    /// Paused: the hardware is released, the settings kept.
    Sleeping,
    /// Stopped on request; the hardware is released.
    Stopped,
    /// Stopped by a failure (see the status's `error`).
    Failed,
}

impl JobState {
    /// The lowercase name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Init => "init",
            JobState::Ready => "ready",
            JobState::Sleeping => "sleeping",
            JobState::Stopped => "stopped",
            JobState::Failed => "failed",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            JobState::Init,
            JobState::Ready,
            JobState::Sleeping,
            JobState::Stopped,
            JobState::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Whether the job is over (stopped or failed).
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Stopped | JobState::Failed)
    }
}

/// A job's status, published retained by its agent on every change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job's name (unique on its node; the topic segment).
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Its state.
    pub state: JobState,
    /// The settings in force.
    pub settings: Settings,
    /// Why it failed, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The job's latest values (a `pid` job's `measured` and `output`), refreshed at most once a
    /// second; readings with history are the telemetry stream's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, f64>,
    /// The id of the start that made this job (`Action::StartJob::start`), when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pwm() -> KindSpec {
        KindSpec {
            kind: "pwm".into(),
            description: "a PWM output".into(),
            settings: vec![
                SettingSpec {
                    name: "pin".into(),
                    ty: SettingType::Int,
                    unit: None,
                    min: Some(0.0),
                    max: Some(27.0),
                    choices: vec![],
                    default: json!(18),
                    live: false,
                    description: "BCM pin".into(),
                },
                SettingSpec {
                    name: "duty".into(),
                    ty: SettingType::Float,
                    unit: Some("%".into()),
                    min: Some(0.0),
                    max: Some(100.0),
                    choices: vec![],
                    default: json!(0.0),
                    live: true,
                    description: "duty cycle".into(),
                },
            ],
            open: false,
        }
    }

    #[test]
    fn values_are_checked_against_their_rule_and_the_error_says_which() {
        let k = pwm();
        let s = k
            .resolve(&Settings::from([("duty".into(), json!(40))]))
            .expect("resolve");
        assert_eq!(s["pin"], json!(18));
        assert_eq!(s["duty"], json!(40));
        let e = k
            .resolve(&Settings::from([("duty".into(), json!(150))]))
            .unwrap_err();
        assert_eq!(e, "setting duty = 150 refused: must be between 0 and 100 %");
        let e = k
            .resolve(&Settings::from([("pin".into(), json!(2.5))]))
            .unwrap_err();
        assert_eq!(e, "setting pin = 2.5 refused: must be a whole number");
        let e = k
            .resolve(&Settings::from([("speed".into(), json!(1))]))
            .unwrap_err();
        assert!(
            e.contains("has no setting speed (it has: pin, duty)"),
            "{e}"
        );
        let e = k
            .check_change(&Settings::from([("pin".into(), json!(4))]))
            .unwrap_err();
        assert!(e.contains("pin cannot change while the job runs"), "{e}");
        assert!(
            k.check_change(&Settings::from([("duty".into(), json!("x"))]))
                .unwrap_err()
                .contains("must be a number")
        );
        assert!(
            k.check_change(&Settings::from([("duty".into(), json!(12.5))]))
                .is_ok()
        );
    }

    #[test]
    fn job_names_are_plain_topic_segments() {
        assert!(validate_job_name("stirring_2").is_ok());
        for bad in ["", "a/b", "+", "#", "a b", &"x".repeat(65)] {
            assert!(validate_job_name(bad).is_err(), "{bad:?}");
        }
        for st in ["init", "ready", "sleeping", "stopped", "failed"] {
            assert_eq!(JobState::parse(st).map(JobState::as_str), Some(st));
        }
    }
}
