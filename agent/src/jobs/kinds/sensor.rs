//! `sensor`: samples an input every `interval` and reports it as a reading: a channel of an
//! ADS1115 analog-to-digital converter over I2C (volts: a photodiode for optical density, a pH
//! probe's amplifier), a DS18B20 temperature sensor over 1-wire (°C), or a GPIO input (0 or 1).
//! The raw value is turned into the reported one linearly: `value = raw·scale + offset` (a
//! calibration line; `od_reading` uses it to turn photodiode volts into optical density).
//!
//! An optical measurement needs light: with `led_pin` set, the job drives that LED at
//! `led_percent` while it runs and switches it off when it stops or pauses.

use std::time::Duration;

use serde_json::json;
use trellis_proto::{KindSpec, SettingType, Settings};

use super::{Driver, Kind, Measurement, Setting, float, number, string, text};
use crate::hardware::{Hardware, HardwareError};

/// PWM frequency of the LED an optical sensor lights.
const LED_HZ: f64 = 1000.0;

/// The kind's declaration.
pub fn kind() -> Kind {
    let int = |name, range: (f64, f64), default: i64, description| Setting {
        name,
        ty: SettingType::Int,
        unit: None,
        range: Some(range),
        choices: &[],
        default: json!(default),
        live: false,
        description,
    };
    Kind {
        spec: KindSpec {
            kind: "sensor".into(),
            description: "Sample an input (ADS1115 channel, DS18B20 temperature, GPIO pin) at an interval".into(),
            settings: vec![
                Setting {
                    name: "source",
                    ty: SettingType::Enum,
                    unit: None,
                    range: None,
                    choices: &["ads1115", "ds18b20", "gpio"],
                    default: json!("ads1115"),
                    live: false,
                    description: "What is read: an ADS1115 channel (V), a DS18B20 (°C) or a GPIO input (0/1)",
                }
                .into(),
                int(
                    "input",
                    (0.0, 27.0),
                    0,
                    "The ADS1115 channel (0-3), the DS18B20's index (by id), or the BCM pin",
                )
                .into(),
                int("address", (72.0, 75.0), 72, "The ADS1115's I2C address (72-75 = 0x48-0x4B)").into(),
                float("interval", Some("s"), (0.1, 86_400.0), 5.0, true, "Time between samples").into(),
                string("metric", "value", false, "The reading's name (od, temperature, ph)").into(),
                string("unit", "", false, "The reading's unit, if any").into(),
                float("scale", None, (-1e6, 1e6), 1.0, true, "value = raw·scale + offset").into(),
                float("offset", None, (-1e6, 1e6), 0.0, true, "value = raw·scale + offset").into(),
                int("led_pin", (-1.0, 27.0), -1, "BCM pin of an LED to light while sampling (-1: none)").into(),
                float("led_percent", Some("%"), (0.0, 100.0), 100.0, true, "The LED's intensity").into(),
            ],
            open: false,
        },
        make: |_| Box::new(Sensor::default()),
        restarts: true,
    }
}

#[derive(Default)]
struct Sensor {
    readings: Vec<Measurement>,
}

fn led(settings: &Settings) -> Result<Option<u8>, HardwareError> {
    let pin = number(settings, "led_pin")?;
    Ok((pin >= 0.0).then_some(pin as u8))
}

impl Sensor {
    fn sample(hw: &dyn Hardware, settings: &Settings) -> Result<f64, HardwareError> {
        let input = number(settings, "input")? as u8;
        let raw = match text(settings, "source")? {
            "ds18b20" => hw.read_temperature(input)?,
            "gpio" => f64::from(u8::from(hw.read_pin(input)?)),
            _ => hw.read_adc(number(settings, "address")? as u8, input)?,
        };
        Ok(raw * number(settings, "scale")? + number(settings, "offset")?)
    }
}

impl Driver for Sensor {
    fn apply(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        if let Some(pin) = led(settings)? {
            hw.set_pwm(pin, LED_HZ, number(settings, "led_percent")? / 100.0)?;
        }
        // One sample at once: a missing sensor fails the start, not a later tick.
        self.tick(hw, settings)
    }

    fn period(&self, settings: &Settings) -> Option<Duration> {
        number(settings, "interval")
            .ok()
            .map(Duration::from_secs_f64)
    }

    fn tick(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        let value = Self::sample(hw, settings)?;
        let unit = text(settings, "unit")?;
        self.readings.push(Measurement::new(
            text(settings, "metric")?,
            value,
            (!unit.is_empty()).then_some(unit),
        ));
        Ok(())
    }

    fn release(&mut self, hw: &dyn Hardware, settings: &Settings) -> Result<(), HardwareError> {
        match led(settings)? {
            Some(pin) => hw.set_pwm(pin, LED_HZ, 0.0),
            None => Ok(()),
        }
    }

    fn take_readings(&mut self) -> Vec<Measurement> {
        std::mem::take(&mut self.readings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::simulator::{IR_LED_PIN, OD_BIAS_V, OD_GAIN_V, Simulator};

    fn settings(over: &[(&str, serde_json::Value)]) -> Settings {
        let mut given = Settings::new();
        for (k, v) in over {
            given.insert((*k).to_owned(), v.clone());
        }
        kind().spec.resolve(&given).unwrap()
    }

    #[test]
    fn an_od_sensor_lights_its_led_and_converts_volts_to_optical_density() {
        let sim = Simulator::seeded(4);
        // The od_reading preset's line: OD = (V − bias) / gain.
        let s = settings(&[
            ("metric", json!("od")),
            ("scale", json!(1.0 / OD_GAIN_V)),
            ("offset", json!(-OD_BIAS_V / OD_GAIN_V)),
            ("led_pin", json!(IR_LED_PIN)),
        ]);
        let mut sensor = Sensor::default();
        sensor.apply(&sim, &s).unwrap();
        assert_eq!(sim.pin(IR_LED_PIN).map(|p| p.2), Some(1.0));
        let got = sensor.take_readings();
        let od = sim.culture().0;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].metric, "od");
        assert!(
            (got[0].value - od).abs() < od * 0.01,
            "{} vs {od}",
            got[0].value
        );
        sensor.release(&sim, &s).unwrap();
        assert_eq!(sim.pin(IR_LED_PIN).map(|p| p.2), Some(0.0));
    }

    #[test]
    fn temperature_and_gpio_inputs_and_a_missing_sensor() {
        let sim = Simulator::seeded(4);
        let s = settings(&[("source", json!("ds18b20")), ("unit", json!("°C"))]);
        let mut sensor = Sensor::default();
        sensor.apply(&sim, &s).unwrap();
        let r = sensor.take_readings();
        assert_eq!((r[0].value, r[0].unit.as_deref()), (22.0, Some("°C")));
        sim.write_pin(4, true).unwrap();
        let s = settings(&[("source", json!("gpio")), ("input", json!(4))]);
        sensor.tick(&sim, &s).unwrap();
        assert_eq!(sensor.take_readings()[0].value, 1.0);
        let s = settings(&[("source", json!("ds18b20")), ("input", json!(2))]);
        assert_eq!(sensor.apply(&sim, &s), Err(HardwareError::NoSuchSensor(2)));
    }
}
