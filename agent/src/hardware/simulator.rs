//! A simulated board with a physical model: a culture vessel warmed by a heater on PWM pin
//! [`HEATER_PIN`] and losing heat to the room (Newton's law of cooling), read by temperature sensor 0.
//! Time is real elapsed time, so jobs see a vessel that heats and cools as a real one would.

use std::{sync::Mutex, time::Instant};

use super::{Hardware, HardwareError, check_duty, check_frequency, check_pin};

/// BCM pin the simulated heater is wired to.
pub const HEATER_PIN: u8 = 18;

/// Physical constants of the simulated vessel.
#[derive(Debug, Clone, Copy)]
pub struct Vessel {
    /// Heater power at 100 % duty, W.
    pub heater_watts: f64,
    /// Heat capacity of vessel and contents, J/K (about 120 ml of water).
    pub heat_capacity: f64,
    /// Heat loss to the room, W/K.
    pub loss_w_per_k: f64,
    /// Room temperature, °C.
    pub ambient_c: f64,
}

impl Default for Vessel {
    fn default() -> Self {
        Vessel {
            heater_watts: 10.0,
            heat_capacity: 500.0,
            loss_w_per_k: 0.25,
            ambient_c: 22.0,
        }
    }
}

#[derive(Debug)]
struct State {
    levels: [bool; 28],
    duty: [f64; 28],
    frequency: [f64; 28],
    temperature_c: f64,
    last: Instant,
}

/// The simulator backend.
#[derive(Debug)]
pub struct Simulator {
    vessel: Vessel,
    state: Mutex<State>,
}

impl Default for Simulator {
    fn default() -> Self {
        Self::new()
    }
}

impl Simulator {
    /// A vessel at room temperature with every pin low.
    pub fn new() -> Self {
        Self::with_vessel(Vessel::default())
    }

    /// A simulator with other physical constants.
    pub fn with_vessel(vessel: Vessel) -> Self {
        Simulator {
            vessel,
            state: Mutex::new(State {
                levels: [false; 28],
                duty: [0.0; 28],
                frequency: [0.0; 28],
                temperature_c: vessel.ambient_c,
                last: Instant::now(),
            }),
        }
    }

    /// What a pin is driven with now: its level, and its PWM frequency and duty (0 when none).
    pub fn pin(&self, pin: u8) -> Option<(bool, f64, f64)> {
        let s = self.lock();
        let i = usize::from(pin);
        (i < 28).then(|| (s.levels[i], s.frequency[i], s.duty[i]))
    }

    /// Advances the model by `dt` seconds of simulated time (on top of real time).
    pub fn advance(&self, dt: f64) {
        let mut s = self.lock();
        self.integrate(&mut s, dt);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain numbers behind: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn catch_up(&self, s: &mut State) {
        let now = Instant::now();
        let dt = now.duration_since(s.last).as_secs_f64();
        s.last = now;
        self.integrate(s, dt);
    }

    /// dT/dt = (P·duty − k·(T − T_room)) / C, integrated in steps of at most one second.
    fn integrate(&self, s: &mut State, mut dt: f64) {
        let v = self.vessel;
        let duty = if s.levels[HEATER_PIN as usize] {
            1.0
        } else {
            s.duty[HEATER_PIN as usize]
        };
        while dt > 0.0 {
            let h = dt.min(1.0);
            let power_in = v.heater_watts * duty;
            let power_out = v.loss_w_per_k * (s.temperature_c - v.ambient_c);
            s.temperature_c += (power_in - power_out) * h / v.heat_capacity;
            dt -= h;
        }
    }
}

impl Hardware for Simulator {
    fn name(&self) -> &'static str {
        "simulator"
    }

    fn write_pin(&self, pin: u8, high: bool) -> Result<(), HardwareError> {
        check_pin(pin)?;
        let mut s = self.lock();
        self.catch_up(&mut s);
        s.levels[pin as usize] = high;
        s.duty[pin as usize] = 0.0;
        Ok(())
    }

    fn read_pin(&self, pin: u8) -> Result<bool, HardwareError> {
        check_pin(pin)?;
        Ok(self.lock().levels[pin as usize])
    }

    fn set_pwm(&self, pin: u8, frequency_hz: f64, duty: f64) -> Result<(), HardwareError> {
        check_pin(pin)?;
        check_duty(duty)?;
        check_frequency(frequency_hz)?;
        let mut s = self.lock();
        self.catch_up(&mut s);
        s.levels[pin as usize] = false;
        s.duty[pin as usize] = duty;
        s.frequency[pin as usize] = frequency_hz;
        Ok(())
    }

    fn read_temperature(&self, sensor: u8) -> Result<f64, HardwareError> {
        if sensor != 0 {
            return Err(HardwareError::NoSuchSensor(sensor));
        }
        let mut s = self.lock();
        self.catch_up(&mut s);
        Ok(s.temperature_c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heater_warms_the_vessel_towards_its_equilibrium_and_it_cools_back() {
        let sim = Simulator::new();
        let v = Vessel::default();
        assert!((sim.read_temperature(0).unwrap() - v.ambient_c).abs() < 0.01);
        sim.set_pwm(HEATER_PIN, 100.0, 0.5).unwrap();
        // Equilibrium: P·duty = k·ΔT → ΔT = 10·0.5/0.25 = 20 K; time constant C/k = 2000 s.
        sim.advance(20_000.0);
        let hot = sim.read_temperature(0).unwrap();
        assert!((hot - 42.0).abs() < 0.1, "{hot}");
        sim.set_pwm(HEATER_PIN, 100.0, 0.0).unwrap();
        sim.advance(2_000.0);
        let cooled = sim.read_temperature(0).unwrap();
        // One time constant: the excess falls to 1/e (≈ 7.36 K above room).
        assert!(
            (cooled - (22.0 + 20.0 / std::f64::consts::E)).abs() < 0.2,
            "{cooled}"
        );
    }

    #[test]
    fn bad_pins_duties_and_sensors_are_named() {
        let sim = Simulator::new();
        assert_eq!(sim.write_pin(40, true), Err(HardwareError::NoSuchPin(40)));
        assert_eq!(
            sim.set_pwm(18, 100.0, 1.5),
            Err(HardwareError::BadDuty(1.5))
        );
        assert_eq!(sim.read_temperature(3), Err(HardwareError::NoSuchSensor(3)));
        sim.write_pin(17, true).unwrap();
        assert!(sim.read_pin(17).unwrap());
    }
}
