//! The hardware a node drives, behind one small trait so jobs run the same on a Raspberry Pi
//! (`rppal`, cargo feature `rpi`) and everywhere else (a simulator with a physical model).

use std::sync::Arc;

pub mod simulator;

#[cfg(feature = "rpi")]
pub mod rpi;

/// A failed hardware operation.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HardwareError {
    /// The pin number is not one the board has.
    #[error("no such pin: {0} (BCM numbering, 0-27)")]
    NoSuchPin(u8),
    /// A PWM duty cycle outside 0.0–1.0.
    #[error("duty cycle {0} is outside 0.0-1.0")]
    BadDuty(f64),
    /// A PWM frequency the backend cannot make.
    #[error("PWM frequency {0} Hz is outside 0.1-10000 Hz")]
    BadFrequency(f64),
    /// The temperature channel does not exist.
    #[error("no temperature sensor {0}")]
    NoSuchSensor(u8),
    /// The backend failed (driver or permission error), with its message.
    #[error("hardware backend error: {0}")]
    Backend(String),
}

/// The operations jobs use. Pins use BCM numbering, as the Raspberry Pi documentation does.
pub trait Hardware: Send + Sync {
    /// Backend name, announced to the leader.
    fn name(&self) -> &'static str;
    /// Drives an output pin high or low.
    fn write_pin(&self, pin: u8, high: bool) -> Result<(), HardwareError>;
    /// Reads a pin's level.
    fn read_pin(&self, pin: u8) -> Result<bool, HardwareError>;
    /// Drives a pin with (software) PWM at `frequency_hz` and a duty cycle of 0.0–1.0; a duty of 0
    /// leaves the pin low.
    fn set_pwm(&self, pin: u8, frequency_hz: f64, duty: f64) -> Result<(), HardwareError>;
    /// Reads a temperature sensor, °C.
    fn read_temperature(&self, sensor: u8) -> Result<f64, HardwareError>;
    /// Measures a shaft's speed, revolutions per minute, from the pulses of a tachometer (a hall
    /// sensor giving [`PULSES_PER_REVOLUTION`] pulses per turn) on an input pin. May block up to
    /// a second while it counts.
    fn read_rpm(&self, pin: u8) -> Result<f64, HardwareError>;
    /// Reads one single-ended input (`channel` 0-3) of an ADS1115 analog-to-digital converter at
    /// I2C `address` (0x48-0x4B), volts (gain ±4.096 V).
    fn read_adc(&self, address: u8, channel: u8) -> Result<f64, HardwareError>;
    /// Simulated seconds per real second: 1 for real hardware.
    fn speed(&self) -> f64 {
        1.0
    }
    /// The pumps this board comes with, calibrated (a real board has none until an operator
    /// calibrates them; the simulator knows its own).
    fn pumps(&self) -> Vec<trellis_proto::PumpCalibration> {
        Vec::new()
    }
}

/// I2C addresses an ADS1115 can have (its ADDR pin to GND, VDD, SDA or SCL).
pub const ADS1115_ADDRESSES: std::ops::RangeInclusive<u8> = 0x48..=0x4B;

pub(crate) fn check_adc(address: u8, channel: u8) -> Result<(), HardwareError> {
    if !ADS1115_ADDRESSES.contains(&address) {
        return Err(HardwareError::Backend(format!(
            "I2C address {address:#04x} is not an ADS1115's (0x48-0x4B)"
        )));
    }
    if channel > 3 {
        return Err(HardwareError::NoSuchSensor(channel));
    }
    Ok(())
}

/// Tachometer pulses per revolution (a stirrer's magnet pair passing a hall sensor).
pub const PULSES_PER_REVOLUTION: f64 = 2.0;

/// Backend names accepted in configuration.
pub const BACKENDS: &[&str] = &["simulator", "rppal"];

/// Checks a backend name from configuration.
pub fn check_name(name: &str) -> Result<(), String> {
    if BACKENDS.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "unknown hardware backend {name:?}; expected one of {BACKENDS:?}"
        ))
    }
}

/// Opens the named backend.
/// `seed` makes each node's simulator differ (its node id's hash) while runs repeat; its time runs
/// `speed` times faster than real time.
pub fn open(name: &str, seed: u64, speed: f64) -> anyhow::Result<Arc<dyn Hardware>> {
    match name {
        "simulator" => Ok(Arc::new(simulator::Simulator::with_models(
            simulator::Vessel::default(),
            simulator::Culture::default(),
            seed,
            speed,
        ))),
        #[cfg(feature = "rpi")]
        "rppal" => Ok(Arc::new(rpi::Rppal::open()?)),
        #[cfg(not(feature = "rpi"))]
        "rppal" => anyhow::bail!(
            "this agent was built without the `rpi` feature; rebuild with --features rpi"
        ),
        other => anyhow::bail!(check_name(other).err().unwrap_or_default()),
    }
}

pub(crate) fn check_pin(pin: u8) -> Result<(), HardwareError> {
    if pin <= 27 {
        Ok(())
    } else {
        Err(HardwareError::NoSuchPin(pin))
    }
}

pub(crate) fn check_duty(duty: f64) -> Result<(), HardwareError> {
    if (0.0..=1.0).contains(&duty) {
        Ok(())
    } else {
        Err(HardwareError::BadDuty(duty))
    }
}

pub(crate) fn check_frequency(hz: f64) -> Result<(), HardwareError> {
    if (0.1..=10_000.0).contains(&hz) {
        Ok(())
    } else {
        Err(HardwareError::BadFrequency(hz))
    }
}
