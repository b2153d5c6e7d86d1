//! `gpio`: one output pin held at a level, or blinking with a period (a relay, a valve, a status
//! LED). Mode, level and period are live; the pin is fixed while the job runs.

use std::time::Duration;

use serde_json::json;
use trellis_proto::{KindSpec, SettingType, Settings};

use super::{Driver, Kind, Setting, number, pin, pin_setting};
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
                    choices: &["level", "blink"],
                    default: json!("level"),
                    live: true,
                    description: "Hold `high`, or blink every `period`",
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
                    description: "Time between toggles in `blink` mode",
                }
                .into(),
            ],
            open: false,
        },
        make: || Box::new(Gpio { on: false }),
    }
}

struct Gpio {
    /// The level last written in blink mode.
    on: bool,
}

fn blinking(settings: &Settings) -> bool {
    settings.get("mode").and_then(|m| m.as_str()) == Some("blink")
}

impl Driver for Gpio {
    fn apply(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
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
        if !blinking(settings) {
            return None;
        }
        number(settings, "period").ok().map(Duration::from_secs_f64)
    }

    fn tick(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        self.on = !self.on;
        hw.write_pin(pin(settings)?, self.on)
    }

    fn release(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        self.on = false;
        hw.write_pin(pin(settings)?, false)
    }
}
