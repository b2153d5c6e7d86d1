//! The kinds of job an agent can run. Each kind declares its settings (a [`KindSpec`]) and makes a
//! [`Driver`] that puts those settings on the hardware. The runtime (`jobs::runtime`) owns the
//! state machine, supervision and publishing; a driver only touches pins and says what it
//! measured. Automations (`turbidostat`, `chemostat`, `growth_rate`) are built from the others:
//! they read what other jobs measured from the node's [`Bus`](super::context::Bus) and dose with
//! the pumps' calibrations.

use std::time::Duration;

use serde_json::json;
use trellis_proto::{KindSpec, LogStream, SettingSpec, SettingType, Settings};

use super::context::Context;
use crate::hardware::{Hardware, HardwareError};

mod dosing;
mod exec;
mod gpio;
mod growth;
mod pid;
mod pwm;
mod sensor;

/// One thing a job measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// What (`od`, `rpm`, `media_ml`).
    pub metric: String,
    /// The value.
    pub value: f64,
    /// Its unit, when it has one.
    pub unit: Option<String>,
}

impl Measurement {
    /// A measurement of `metric` in `unit`.
    pub fn new(metric: &str, value: f64, unit: Option<&str>) -> Self {
        Measurement {
            metric: metric.to_owned(),
            value,
            unit: unit.map(str::to_owned),
        }
    }
}

/// What a kind does with the hardware. Every call may block briefly (GPIO, I2C): the runtime calls
/// it off the async workers, and catches a panic as the job's failure.
pub trait Driver: Send {
    /// Puts `settings` on the hardware: at start, on resume and after every accepted change.
    fn apply(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError>;
    /// How often [`Driver::tick`] runs while the job is ready, in simulated time (the runtime
    /// divides it by the simulator's speed); `None` for a job with nothing to do between changes.
    fn period(&self, _settings: &Settings) -> Option<Duration> {
        None
    }
    /// Work done every [`Driver::period`] (a blink, a sample).
    fn tick(&mut self, _hw: &dyn Hardware, _settings: &Settings) -> Result<(), HardwareError> {
        Ok(())
    }
    /// Puts the hardware in its safe state: PWM at 0, outputs low. Runs before the job says
    /// `stopped` or `sleeping`.
    fn release(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError>;
    /// What the job measured since the last call, taken once: readings sent to the leader (and
    /// the latest of each shown with the job's status, at most once per
    /// [`crate::jobs::runtime::VALUES_EVERY`]).
    fn take_readings(&mut self) -> Vec<Measurement> {
        Vec::new()
    }
    /// Whether the job has done its work (a pulse that has given its volume): the runtime then
    /// releases the hardware and the job says `stopped`.
    fn finished(&self) -> bool {
        false
    }
    /// Settings the job itself reports it now uses (an `exec` program's `{"setting": ...}`
    /// lines), taken once: published as the job's settings.
    fn take_echoed(&mut self) -> Settings {
        Settings::new()
    }
    /// Log lines since the last call, taken once.
    fn take_logs(&mut self) -> Vec<(LogStream, String)> {
        Vec::new()
    }
}

/// A kind: its declaration and how to make a driver for one job of it.
pub struct Kind {
    /// Name, settings and their rules, as announced.
    pub spec: KindSpec,
    /// Makes the driver for a new job.
    pub make: fn(&Context) -> Box<dyn Driver>,
    /// Whether a job that was running when the agent stopped starts again when it starts (not
    /// a pulse: its dose would be given again in full).
    pub restarts: bool,
}

/// The kinds this agent offers on `hardware` (today every backend offers them all: each reaches
/// the hardware through the [`Hardware`] trait, which both backends implement in full).
pub fn available(_hardware: &dyn Hardware) -> Vec<Kind> {
    vec![
        pwm::kind(),
        gpio::kind(),
        sensor::kind(),
        pid::kind(),
        dosing::pulse(),
        dosing::turbidostat(),
        dosing::chemostat(),
        growth::kind(),
        exec::kind(),
    ]
}

/// A setting spec, briefly.
pub(crate) struct Setting {
    pub name: &'static str,
    pub ty: SettingType,
    pub unit: Option<&'static str>,
    pub range: Option<(f64, f64)>,
    pub choices: &'static [&'static str],
    pub default: serde_json::Value,
    pub live: bool,
    pub description: &'static str,
}

impl From<Setting> for SettingSpec {
    fn from(s: Setting) -> Self {
        SettingSpec {
            name: s.name.to_owned(),
            ty: s.ty,
            unit: s.unit.map(str::to_owned),
            min: s.range.map(|r| r.0),
            max: s.range.map(|r| r.1),
            choices: s.choices.iter().map(|c| (*c).to_owned()).collect(),
            default: s.default,
            live: s.live,
            description: s.description.to_owned(),
        }
    }
}

/// The `pin` setting every pin-driving kind has: a BCM pin, fixed while the job runs.
pub(crate) fn pin_setting(default: u8) -> Setting {
    Setting {
        name: "pin",
        ty: SettingType::Int,
        unit: None,
        range: Some((0.0, 27.0)),
        choices: &[],
        default: json!(default),
        live: false,
        description: "BCM pin number",
    }
}

/// A setting's value as a number (the runtime checked it against its spec first).
pub(crate) fn number(settings: &Settings, name: &str) -> Result<f64, HardwareError> {
    settings
        .get(name)
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| HardwareError::Backend(format!("setting {name} is missing")))
}

/// A setting's value as text.
pub(crate) fn text<'a>(settings: &'a Settings, name: &str) -> Result<&'a str, HardwareError> {
    settings
        .get(name)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| HardwareError::Backend(format!("setting {name} is missing")))
}

/// A setting spec with the fields most have: a number with a unit and a range.
pub(crate) fn float(
    name: &'static str,
    unit: Option<&'static str>,
    range: (f64, f64),
    default: f64,
    live: bool,
    description: &'static str,
) -> Setting {
    Setting {
        name,
        ty: SettingType::Float,
        unit,
        range: Some(range),
        choices: &[],
        default: json!(default),
        live,
        description,
    }
}

/// A text setting.
pub(crate) fn string(
    name: &'static str,
    default: &str,
    live: bool,
    description: &'static str,
) -> Setting {
    Setting {
        name,
        ty: SettingType::String,
        unit: None,
        range: None,
        choices: &[],
        default: json!(default),
        live,
        description,
    }
}

/// A setting's value as a pin number.
pub(crate) fn pin(settings: &Settings) -> Result<u8, HardwareError> {
    let n = number(settings, "pin")?;
    u8::try_from(n as i64).map_err(|_| HardwareError::Backend(format!("pin {n} is not a pin")))
}
