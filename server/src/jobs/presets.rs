//! Presets: named configurations of a kind, with the names Pioreactor users know, so a start can
//! say `stirring` instead of a kind and eleven settings. Built in, and working on the simulator out
//! of the box (its stirrer on pin 13 with a tachometer on pin 25, its heater on pin 18, sensor 0,
//! its IR LED on pin 26 and photodiode on the ADS1115 at 0x48, its pumps `media`, `waste` and
//! `alt_media`); operators add their own, stored in the `job_preset` table (the jobs service).
//! A preset is offered on a node only when the node offers its kind.

use serde_json::json;
use trellis_proto::Settings;

/// A preset: a kind and the settings it starts with (the kind's defaults for the rest).
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// Its name, also the default job name.
    pub name: String,
    /// The kind it starts.
    pub kind: String,
    /// One line for people.
    pub description: String,
    /// The settings it gives.
    pub settings: Settings,
    /// Built in (fixed), or stored by an operator.
    pub built_in: bool,
}

fn preset(name: &str, kind: &str, description: &str, settings: Settings) -> Preset {
    Preset {
        name: name.to_owned(),
        kind: kind.to_owned(),
        description: description.to_owned(),
        settings,
        built_in: true,
    }
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
        preset(
            "stirring",
            "pid",
            "Stir at a target speed: the motor's PWM follows the tachometer (rpm)",
            settings(&[
                ("sensor", json!("rpm")),
                ("input", json!(25)),
                ("pin", json!(13)),
                ("frequency", json!(200.0)),
                ("target", json!(500.0)),
                ("kp", json!(0.02)),
                ("ki", json!(0.04)),
                ("interval", json!(0.25)),
            ]),
        ),
        preset(
            "temperature_automation",
            "pid",
            "Thermostat: the heater's PWM holds the vessel at a target temperature (°C)",
            settings(&[
                ("sensor", json!("temperature")),
                ("input", json!(0)),
                ("pin", json!(18)),
                ("frequency", json!(100.0)),
                ("target", json!(30.0)),
                ("kp", json!(10.0)),
                ("ki", json!(0.02)),
                ("interval", json!(2.0)),
            ]),
        ),
        preset(
            "od_reading",
            "sensor",
            "Optical density every 5 s: the IR LED lights the culture, the photodiode (ADS1115 channel 0) reads the scattered light",
            settings(&[
                ("source", json!("ads1115")),
                ("input", json!(0)),
                ("address", json!(72)),
                ("interval", json!(5.0)),
                ("metric", json!("od")),
                ("unit", json!("OD")),
                // The simulator's photodiode: V = 0.02 + 0.5·OD, so OD = 2·V − 0.04. A real
                // one is calibrated against a spectrophotometer and these two changed.
                ("scale", json!(2.0)),
                ("offset", json!(-0.04)),
                ("led_pin", json!(26)),
                ("led_percent", json!(100.0)),
            ]),
        ),
        preset(
            "dosing_automation",
            "turbidostat",
            "Turbidostat: when the OD (from od_reading) is above the target, add 1 ml of media and remove waste",
            settings(&[
                ("target_od", json!(1.0)),
                ("volume", json!(1.0)),
                ("od_job", json!("od_reading")),
            ]),
        ),
        preset(
            "add_media",
            "pulse",
            "Add 1 ml of media (through the media pump's calibration), then stop",
            settings(&[
                ("pump", json!("media")),
                ("mode", json!("volume")),
                ("volume", json!(1.0)),
            ]),
        ),
        preset(
            "remove_waste",
            "pulse",
            "Remove 1 ml of waste (through the waste pump's calibration), then stop",
            settings(&[
                ("pump", json!("waste")),
                ("mode", json!("volume")),
                ("volume", json!(1.0)),
            ]),
        ),
        preset(
            "growth_rate_calculating",
            "growth_rate",
            "The culture's growth rate (1/h) from od_reading's OD, by a Kalman filter over ln(OD)",
            settings(&[("od_job", json!("od_reading"))]),
        ),
        preset(
            "led_intensity",
            "pwm",
            "LED channel A at a set intensity (duty, %; channels B-D are pins 6, 16 and 20)",
            settings(&[
                ("pin", json!(5)),
                ("frequency", json!(1000.0)),
                ("duty", json!(10.0)),
            ]),
        ),
    ]
}

/// The built-in preset `name`, if there is one.
pub fn find(name: &str) -> Option<Preset> {
    builtin().into_iter().find(|p| p.name == name)
}
