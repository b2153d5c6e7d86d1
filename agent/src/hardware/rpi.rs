//! The Raspberry Pi backend: GPIO and I2C (an ADS1115 converter) through `rppal`, temperature from
//! DS18B20 1-wire sensors in sysfs.

use std::{collections::HashMap, sync::Mutex};

use rppal::gpio::{Gpio, IoPin, Mode};

use super::{Hardware, HardwareError, check_adc, check_duty, check_frequency, check_pin};

/// GPIO pins claimed so far, by BCM number.
pub struct Rppal {
    gpio: Gpio,
    pins: Mutex<HashMap<u8, IoPin>>,
}

impl Rppal {
    /// Opens `/dev/gpiomem`; fails on a machine that is not a Pi.
    pub fn open() -> Result<Self, HardwareError> {
        let gpio = Gpio::new().map_err(|e| HardwareError::Backend(e.to_string()))?;
        Ok(Rppal {
            gpio,
            pins: Mutex::new(HashMap::new()),
        })
    }

    fn with_pin<T>(
        &self,
        pin: u8,
        mode: Mode,
        f: impl FnOnce(&mut IoPin) -> Result<T, HardwareError>,
    ) -> Result<T, HardwareError> {
        check_pin(pin)?;
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        if !pins.contains_key(&pin) {
            let p = self
                .gpio
                .get(pin)
                .map_err(|e| HardwareError::Backend(e.to_string()))?;
            pins.insert(pin, p.into_io(mode));
        }
        let io = pins.get_mut(&pin).ok_or(HardwareError::NoSuchPin(pin))?;
        if io.mode() != mode {
            io.set_mode(mode);
        }
        f(io)
    }
}

impl Hardware for Rppal {
    fn name(&self) -> &'static str {
        "rppal"
    }

    fn write_pin(&self, pin: u8, high: bool) -> Result<(), HardwareError> {
        self.with_pin(pin, Mode::Output, |io| {
            io.clear_pwm()
                .map_err(|e| HardwareError::Backend(e.to_string()))?;
            if high {
                io.set_high()
            } else {
                io.set_low()
            }
            Ok(())
        })
    }

    fn read_pin(&self, pin: u8) -> Result<bool, HardwareError> {
        self.with_pin(pin, Mode::Input, |io| Ok(io.is_high()))
    }

    fn set_pwm(&self, pin: u8, frequency_hz: f64, duty: f64) -> Result<(), HardwareError> {
        check_duty(duty)?;
        check_frequency(frequency_hz)?;
        self.with_pin(pin, Mode::Output, |io| {
            if duty == 0.0 {
                // rppal's software PWM keeps a thread toggling the pin: stop it, pin low.
                io.clear_pwm()
                    .map_err(|e| HardwareError::Backend(e.to_string()))?;
                io.set_low();
                return Ok(());
            }
            io.set_pwm_frequency(frequency_hz, duty)
                .map_err(|e| HardwareError::Backend(e.to_string()))
        })
    }

    fn read_rpm(&self, pin: u8) -> Result<f64, HardwareError> {
        // Count rising edges for one second by polling every 250 µs: a stirrer at 2000 rpm gives
        // 67 pulses per second, far below what polling misses, and it needs no interrupt thread.
        let window = std::time::Duration::from_secs(1);
        let start = std::time::Instant::now();
        let mut last = self.read_pin(pin)?;
        let mut edges = 0u32;
        while start.elapsed() < window {
            std::thread::sleep(std::time::Duration::from_micros(250));
            let now = self.read_pin(pin)?;
            if now && !last {
                edges += 1;
            }
            last = now;
        }
        Ok(f64::from(edges) / super::PULSES_PER_REVOLUTION * 60.0 / window.as_secs_f64())
    }

    fn read_temperature(&self, sensor: u8) -> Result<f64, HardwareError> {
        let mut devices: Vec<_> = std::fs::read_dir("/sys/bus/w1/devices")
            .map_err(|e| HardwareError::Backend(format!("1-wire bus: {e}")))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("28-"))
            .map(|e| e.path())
            .collect();
        devices.sort();
        let dev = devices
            .get(sensor as usize)
            .ok_or(HardwareError::NoSuchSensor(sensor))?;
        let text = std::fs::read_to_string(dev.join("temperature"))
            .map_err(|e| HardwareError::Backend(e.to_string()))?;
        let milli: f64 = text
            .trim()
            .parse()
            .map_err(|_| HardwareError::Backend(format!("bad reading {text:?}")))?;
        Ok(milli / 1000.0)
    }

    fn read_adc(&self, address: u8, channel: u8) -> Result<f64, HardwareError> {
        check_adc(address, channel)?;
        let bus = |e: rppal::i2c::Error| HardwareError::Backend(format!("I2C: {e}"));
        let mut i2c = rppal::i2c::I2c::new().map_err(bus)?;
        i2c.set_slave_address(u16::from(address)).map_err(bus)?;
        // Config register (ADS1115 datasheet, table 8): start a single conversion (OS=1), input
        // AINx against GND (MUX=100+x), ±4.096 V (PGA=001), single-shot (MODE=1); 128 samples/s
        // (DR=100), comparator off (COMP_QUE=11).
        let config: u16 = 0x8000
            | ((0b100 | u16::from(channel)) << 12)
            | (0b001 << 9)
            | 0x0100
            | (0b100 << 5)
            | 0b11;
        i2c.block_write(0x01, &config.to_be_bytes()).map_err(bus)?;
        // One conversion at 128 SPS takes 7.8 ms; then the OS bit reads 1 again.
        let mut ready = [0u8; 2];
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(2));
            i2c.block_read(0x01, &mut ready).map_err(bus)?;
            if ready[0] & 0x80 != 0 {
                let mut raw = [0u8; 2];
                i2c.block_read(0x00, &mut raw).map_err(bus)?;
                return Ok(f64::from(i16::from_be_bytes(raw)) * 4.096 / 32768.0);
            }
        }
        Err(HardwareError::Backend(format!(
            "the ADS1115 at {address:#04x} did not finish a conversion"
        )))
    }
}
