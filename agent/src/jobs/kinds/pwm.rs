//! `pwm`: one pin driven with pulse-width modulation (a heater, an LED, a fan, a stirrer's
//! motor driver). Duty is live; pin and frequency are fixed while the job runs.

use serde_json::json;
use trellis_proto::{KindSpec, SettingType, Settings};

use super::{Driver, Kind, Setting, number, pin, pin_setting};
use crate::hardware::{Hardware, HardwareError};

/// The kind's declaration.
pub fn kind() -> Kind {
    Kind {
        spec: KindSpec {
            kind: "pwm".into(),
            description: "Drive one pin with pulse-width modulation".into(),
            settings: vec![
                pin_setting(18).into(),
                Setting {
                    name: "frequency",
                    ty: SettingType::Float,
                    unit: Some("Hz"),
                    range: Some((0.1, 10_000.0)),
                    choices: &[],
                    default: json!(100.0),
                    live: false,
                    description: "PWM frequency",
                }
                .into(),
                Setting {
                    name: "duty",
                    ty: SettingType::Float,
                    unit: Some("%"),
                    range: Some((0.0, 100.0)),
                    choices: &[],
                    default: json!(0.0),
                    live: true,
                    description: "Share of each period the pin is high",
                }
                .into(),
            ],
            open: false,
        },
        make: |_| Box::new(Pwm),
        restarts: true,
    }
}

struct Pwm;

impl Driver for Pwm {
    fn apply(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        let duty = number(settings, "duty")? / 100.0;
        hw.set_pwm(pin(settings)?, number(settings, "frequency")?, duty)
    }

    fn release(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        hw.set_pwm(pin(settings)?, number(settings, "frequency")?, 0.0)
    }
}
