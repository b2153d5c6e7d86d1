//! `gpio`: one output pin held at a level, or blinking with a period (a relay, a valve, a status
//! LED), or one input pin watched for edges (a float switch, a door): in `watch` mode the pin is
//! read every `period` and each change of level is a reading (`level`, 0 or 1) and a log line.
//! Mode, level and period are live; the pin is fixed while the job runs.

use std::time::Duration;

use serde_json::json;
use trellis_proto::{KindSpec, LogStream, SettingType, Settings};

use super::{Driver, Kind, Measurement, Setting, number, pin, pin_setting};
use crate::hardware::{Hardware, HardwareError};

/// The kind's declaration.
pub fn kind() -> Kind {
    Kind {
        spec: KindSpec {
            kind: "gpio".into(),
            description: "Hold an output pin high or low, or blink it".into(),
            settings: vec![
                pin_setting(17).into(),
                Setting {
                    name: "mode",
                    ty: SettingType::Enum,
                    unit: None,
                    range: None,
                    choices: &["level", "blink", "watch"],
                    default: json!("level"),
                    live: true,
                    description: "Hold `high`, blink every `period`, or watch the pin as an input",
                }
                .into(),
                Setting {
                    name: "high",
                    ty: SettingType::Bool,
                    unit: None,
                    range: None,
                    choices: &[],
                    default: json!(false),
                    live: true,
                    description: "The level in `level` mode",
                }
                .into(),
                Setting {
                    name: "period",
                    ty: SettingType::Float,
                    unit: Some("s"),
                    range: Some((0.05, 3600.0)),
                    choices: &[],
                    default: json!(1.0),
                    live: true,
                    description: "Time between toggles in `blink` mode, between reads in `watch` mode",
                }
                .into(),
            ],
            open: false,
        },
        make: |_| Box::new(Gpio::default()),
        restarts: true,
    }
}

#[derive(Default)]
struct Gpio {
    /// The level last written in blink mode, or last read in watch mode.
    on: bool,
    /// Whether a level was read yet in watch mode.
    watched: bool,
    readings: Vec<Measurement>,
    logs: Vec<(LogStream, String)>,
}

fn mode(settings: &Settings) -> &str {
    settings
        .get("mode")
        .and_then(|m| m.as_str())
        .unwrap_or("level")
}

fn blinking(settings: &Settings) -> bool {
    mode(settings) == "blink"
}

fn watching(settings: &Settings) -> bool {
    mode(settings) == "watch"
}

impl Gpio {
    fn watch(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        let level = hw.read_pin(pin(settings)?)?;
        if !self.watched || level != self.on {
            if self.watched {
                let edge = if level { "rising" } else { "falling" };
                self.logs.push((LogStream::Agent, format!("{edge} edge")));
            }
            self.readings
                .push(Measurement::new("level", f64::from(u8::from(level)), None));
        }
        self.watched = true;
        self.on = level;
        Ok(())
    }
}

impl Driver for Gpio {
    fn apply(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        if watching(settings) {
            return self.watch(hw, settings);
        }
        self.watched = false;
        let level = if blinking(settings) {
            self.on
        } else {
            settings
                .get("high")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false)
        };
        hw.write_pin(pin(settings)?, level)
    }

    fn period(&self, settings: &Settings) -> Option<Duration> {
        if !blinking(settings) && !watching(settings) {
            return None;
        }
        number(settings, "period").ok().map(Duration::from_secs_f64)
    }

    fn tick(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        if watching(settings) {
            return self.watch(hw, settings);
        }
        self.on = !self.on;
        hw.write_pin(pin(settings)?, self.on)
    }

    fn release(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        self.on = false;
        if watching(settings) {
            // An input is left an input: driving it low could fight whatever drives it.
            self.watched = false;
            return Ok(());
        }
        hw.write_pin(pin(settings)?, false)
    }

    fn take_readings(&mut self) -> Vec<Measurement> {
        std::mem::take(&mut self.readings)
    }

    fn take_logs(&mut self) -> Vec<(LogStream, String)> {
        std::mem::take(&mut self.logs)
    }
}
