//! Presets: named configurations of a kind, with the names Pioreactor users know, so a start can
//! say `stirring` instead of a kind and eleven settings. Built in, and working on the simulator out
//! of the box (its stirrer on pin 13 with a tachometer on pin 25, its heater on pin 18, sensor 0).
//! A preset is offered on a node only when the node offers its kind.

use serde_json::json;
use trellis_proto::Settings;

/// A preset: a kind and the settings it starts with (the kind's defaults for the rest).
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// Its name, also the default job name.
    pub name: &'static str,
    /// The kind it starts.
    pub kind: &'static str,
    /// One line for people.
    pub description: &'static str,
    /// The settings it gives.
    pub settings: Settings,
}

fn settings(pairs: &[(&str, serde_json::Value)]) -> Settings {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// The built-in presets.
pub fn builtin() -> Vec<Preset> {
    vec![
        Preset {
            name: "stirring",
            kind: "pid",
            description: "Stir at a target speed: the motor's PWM follows the tachometer (rpm)",
            settings: settings(&[
                ("sensor", json!("rpm")),
                ("input", json!(25)),
                ("pin", json!(13)),
                ("frequency", json!(200.0)),
                ("target", json!(500.0)),
                ("kp", json!(0.02)),
                ("ki", json!(0.04)),
                ("interval", json!(0.25)),
            ]),
        },
        Preset {
            name: "temperature_automation",
            kind: "pid",
            description: "Thermostat: the heater's PWM holds the vessel at a target temperature (°C)",
            settings: settings(&[
                ("sensor", json!("temperature")),
                ("input", json!(0)),
                ("pin", json!(18)),
                ("frequency", json!(100.0)),
                ("target", json!(30.0)),
                ("kp", json!(10.0)),
                ("ki", json!(0.02)),
                ("interval", json!(2.0)),
            ]),
        },
        Preset {
            name: "led_intensity",
            kind: "pwm",
            description: "An LED channel at a set intensity (duty, %)",
            settings: settings(&[
                ("pin", json!(22)),
                ("frequency", json!(1000.0)),
                ("duty", json!(10.0)),
            ]),
        },
    ]
}

/// The built-in preset `name`, if there is one.
pub fn find(name: &str) -> Option<Preset> {
    builtin().into_iter().find(|p| p.name == name)
}
