//! `pid`: drives a PWM output so that a measured value follows a target: a stirrer's speed
//! (tachometer, rpm) or a vessel's temperature (temperature sensor, °C). Target, gains and output
//! limits are live.
//!
//! The controller, each `interval` of `dt` seconds, with error `e = target − measured`:
//! `out = kp·e + ki·I + kd·(e − e_prev)/dt`, clamped to [`output_min`, `output_max`] (percent).
//! Anti-windup by conditional integration: `I += e·dt` only when the output is not saturated, or
//! when this error would move it back from the limit, so a long saturation (a heater warming from
//! cold) does not build an integral that overshoots afterwards.

use std::time::Duration;

use serde_json::json;
use trellis_proto::{KindSpec, SettingType, Settings};

use super::{Driver, Kind, Measurement, Setting, number, pin};
use crate::hardware::{Hardware, HardwareError};

/// The kind's declaration.
pub fn kind() -> Kind {
    let live_float = |name, unit, range, default: f64, description| Setting {
        name,
        ty: SettingType::Float,
        unit,
        range,
        choices: &[],
        default: json!(default),
        live: true,
        description,
    };
    Kind {
        spec: KindSpec {
            kind: "pid".into(),
            description: "Drive a PWM output so a measured speed or temperature follows a target"
                .into(),
            settings: vec![
                Setting {
                    name: "sensor",
                    ty: SettingType::Enum,
                    unit: None,
                    range: None,
                    choices: &["rpm", "temperature"],
                    default: json!("rpm"),
                    live: false,
                    description: "What is measured: a tachometer (rpm) or a temperature sensor (°C)",
                }
                .into(),
                Setting {
                    name: "input",
                    ty: SettingType::Int,
                    unit: None,
                    range: Some((0.0, 27.0)),
                    choices: &[],
                    default: json!(25),
                    live: false,
                    description: "The tachometer's BCM pin, or the temperature sensor's index",
                }
                .into(),
                Setting {
                    description: "BCM pin of the PWM output",
                    ..super::pin_setting(13)
                }
                .into(),
                Setting {
                    name: "frequency",
                    ty: SettingType::Float,
                    unit: Some("Hz"),
                    range: Some((0.1, 10_000.0)),
                    choices: &[],
                    default: json!(200.0),
                    live: false,
                    description: "PWM frequency of the output",
                }
                .into(),
                live_float(
                    "target",
                    None,
                    Some((0.0, 10_000.0)),
                    500.0,
                    "The value to hold, in the sensor's unit (rpm or °C)",
                )
                .into(),
                live_float("kp", None, Some((0.0, 1000.0)), 0.02, "Proportional gain, % per unit").into(),
                live_float("ki", None, Some((0.0, 1000.0)), 0.04, "Integral gain, % per unit·s").into(),
                live_float("kd", None, Some((0.0, 1000.0)), 0.0, "Derivative gain, % per unit/s").into(),
                live_float("output_min", Some("%"), Some((0.0, 100.0)), 0.0, "Lowest output").into(),
                live_float("output_max", Some("%"), Some((0.0, 100.0)), 100.0, "Highest output").into(),
                Setting {
                    name: "interval",
                    ty: SettingType::Float,
                    unit: Some("s"),
                    range: Some((0.05, 3600.0)),
                    choices: &[],
                    default: json!(0.25),
                    live: false,
                    description: "Time between measurements",
                }
                .into(),
            ],
            open: false,
        },
        make: |cx| {
            Box::new(Pid {
                speed: cx.speed,
                ..Pid::default()
            })
        },
        restarts: true,
    }
}

/// What the controller measures.
#[derive(Default, Clone, Copy)]
enum Sensor {
    #[default]
    Rpm,
    Temperature,
}

/// The controller's memory.
#[derive(Default)]
struct Pid {
    /// Simulated seconds per real second: the controller's `dt` is in the process's time.
    speed: f64,
    /// When the last measurement was taken: the real step, not the configured interval (reading
    /// a tachometer on a Pi takes a second of its own).
    last: Option<std::time::Instant>,
    integral: f64,
    previous_error: Option<f64>,
    measured: Option<f64>,
    sensor: Sensor,
    output: f64,
}

impl Pid {
    fn measure(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<f64, HardwareError> {
        let input = number(settings, "input")? as u8;
        match settings.get("sensor").and_then(|s| s.as_str()) {
            Some("temperature") => {
                self.sensor = Sensor::Temperature;
                hw.read_temperature(input)
            }
            _ => {
                self.sensor = Sensor::Rpm;
                hw.read_rpm(input)
            }
        }
    }

    /// One step of the controller; returns the output, percent.
    fn step(&mut self, settings: &Settings, measured: f64, dt: f64) -> Result<f64, HardwareError> {
        let (kp, ki, kd) = (
            number(settings, "kp")?,
            number(settings, "ki")?,
            number(settings, "kd")?,
        );
        let (lo, hi) = (
            number(settings, "output_min")?,
            number(settings, "output_max")?,
        );
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        let error = number(settings, "target")? - measured;
        let derivative = self
            .previous_error
            .map_or(0.0, |previous| (error - previous) / dt);
        self.previous_error = Some(error);
        let unclamped = kp * error + ki * (self.integral + error * dt) + kd * derivative;
        let saturated_high = unclamped > hi && error > 0.0;
        let saturated_low = unclamped < lo && error < 0.0;
        if !saturated_high && !saturated_low {
            self.integral += error * dt;
        }
        Ok((kp * error + ki * self.integral + kd * derivative).clamp(lo, hi))
    }
}

impl Driver for Pid {
    fn apply(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        // A (re)start or a new target keeps the integral: the output does not jump. The sensor is
        // read once so a missing one fails the start, not the first tick (not a reading: the
        // controller has not acted on it).
        self.measure(hw, settings)?;
        hw.set_pwm(
            pin(settings)?,
            number(settings, "frequency")?,
            self.output / 100.0,
        )
    }

    fn period(&self, settings: &Settings) -> Option<Duration> {
        number(settings, "interval")
            .ok()
            .map(Duration::from_secs_f64)
    }

    fn tick(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        let now = std::time::Instant::now();
        let dt = match self.last {
            Some(t) => (now.duration_since(t).as_secs_f64() * self.speed).max(1e-3),
            None => number(settings, "interval")?,
        };
        self.last = Some(now);
        let measured = self.measure(hw, settings)?;
        self.measured = Some(measured);
        self.output = self.step(settings, measured, dt)?;
        hw.set_pwm(
            pin(settings)?,
            number(settings, "frequency")?,
            self.output / 100.0,
        )
    }

    fn release(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        self.integral = 0.0;
        self.previous_error = None;
        self.output = 0.0;
        self.last = None;
        hw.set_pwm(pin(settings)?, number(settings, "frequency")?, 0.0)
    }

    fn take_readings(&mut self) -> Vec<Measurement> {
        let Some(measured) = self.measured.take() else {
            return Vec::new();
        };
        // Named after what is measured, as a Pioreactor user reads them.
        let (metric, unit) = match self.sensor {
            Sensor::Temperature => ("temperature", "°C"),
            Sensor::Rpm => ("rpm", "rpm"),
        };
        vec![
            Measurement::new(metric, measured, Some(unit)),
            Measurement::new("output", self.output, Some("%")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::simulator::{STIRRER_PIN, Simulator, TACH_PIN};

    fn settings(over: &[(&str, serde_json::Value)]) -> Settings {
        let mut s = kind()
            .spec
            .resolve(&Settings::new())
            .expect("defaults are valid");
        for (k, v) in over {
            s.insert((*k).to_owned(), v.clone());
        }
        s
    }

    #[test]
    fn the_stirrer_settles_at_its_target_in_simulated_time() {
        let sim = Simulator::seeded(3);
        let s = settings(&[]);
        let mut pid = Pid {
            speed: 1.0,
            ..Pid::default()
        };
        pid.apply(&sim, &s).unwrap();
        // 20 simulated seconds in steps of the interval (`tick` measures real time; the
        // simulated clock runs ahead of it here, so the controller is stepped with it).
        for _ in 0..80 {
            sim.advance(0.25);
            let measured = sim.read_rpm(TACH_PIN).unwrap();
            pid.output = pid.step(&s, measured, 0.25).unwrap();
            sim.set_pwm(STIRRER_PIN, 200.0, pid.output / 100.0).unwrap();
        }
        let rpm = sim.read_rpm(TACH_PIN).unwrap();
        assert!((rpm - 500.0).abs() < 15.0, "settled at {rpm} rpm");
        // Near 25 % duty, which gives 500 rpm in the model.
        assert!((pid.output - 25.0).abs() < 2.0, "output {}", pid.output);
        pid.release(&sim, &s).unwrap();
        assert_eq!(sim.pin(STIRRER_PIN).map(|p| p.2), Some(0.0));
    }

    #[test]
    fn a_long_saturation_does_not_wind_the_integral_up() {
        let mut pid = Pid::default();
        let s = settings(&[("output_max", json!(10.0))]);
        // Far below target for a long time: the output sits at its limit...
        for _ in 0..1000 {
            assert_eq!(pid.step(&s, 0.0, 0.25).unwrap(), 10.0);
        }
        // ...and the integral did not grow meanwhile, so once above target the output leaves the
        // limit at once instead of staying saturated while a huge integral unwinds.
        let out = pid.step(&s, 600.0, 0.25).unwrap();
        assert!(out < 10.0, "{out}");
    }
}
